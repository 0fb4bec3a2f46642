//! Writing a report's files: where a report goes, the one error type for a file that could
//! not be written, and writers for text, JSON and CSV that name the file in their errors.

use std::path::{Path, PathBuf};

/// Why a report file could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("writing {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("writing {path}: {source}")]
    Csv { path: PathBuf, source: ::csv::Error },
    #[error("encoding summary.json: {0}")]
    Json(#[from] serde_json::Error),
    /// The interval log's encoder failed (its error type is generic; kept as text).
    #[error("encoding {path}: {message}")]
    Encode { path: PathBuf, message: String },
    /// plotters' errors carry the backend's error type; kept as text so callers need not.
    #[error("drawing {path}: {message}")]
    Plot { path: PathBuf, message: String },
}

/// Where a command writes its report unless told (`--out`): `reports/runs/<UTC time>-<kind>`.
pub fn default_out(kind: &str) -> PathBuf {
    let stamp = humantime::format_rfc3339_seconds(std::time::SystemTime::now())
        .to_string()
        .replace([':', '-'], "");
    PathBuf::from("reports/runs").join(format!("{stamp}-{kind}"))
}

/// Creates the report folder `dir` (and its parents).
pub fn create_dir(dir: &Path) -> Result<(), ReportError> {
    std::fs::create_dir_all(dir).map_err(|source| ReportError::Io {
        path: dir.to_path_buf(),
        source,
    })
}

/// Writes `text` to `path`.
pub(crate) fn write_text(path: &Path, text: &str) -> Result<(), ReportError> {
    write_bytes(path, text.as_bytes())
}

/// Writes `bytes` to `path`.
pub(crate) fn write_bytes(path: &Path, bytes: &[u8]) -> Result<(), ReportError> {
    std::fs::write(path, bytes).map_err(|source| ReportError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Writes `value` to `path` as pretty JSON.
pub(crate) fn write_json(path: &Path, value: &impl serde::Serialize) -> Result<(), ReportError> {
    write_text(path, &serde_json::to_string_pretty(value)?)
}

/// Writes a CSV file: a header named after `T`'s fields, then one row per item.
pub(crate) fn write_rows<T: serde::Serialize>(
    path: &Path,
    rows: impl Iterator<Item = T>,
) -> Result<(), ReportError> {
    let csv_err = |source| ReportError::Csv {
        path: path.to_path_buf(),
        source,
    };
    let mut w = ::csv::Writer::from_path(path).map_err(csv_err)?;
    for row in rows {
        w.serialize(row).map_err(csv_err)?;
    }
    w.flush().map_err(|source| ReportError::Io {
        path: path.to_path_buf(),
        source,
    })
}
