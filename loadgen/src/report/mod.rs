//! Writes what a ramp run measured, for a person and for other tools.
//!
//! # Layout
//! - [`csv`]: `steps.csv` (one row per step) and `samples.csv` (one row per second), for
//!   spreadsheets and scripts.
//! - [`summary`]: `summary.json` (the whole [`Summary`](crate::model::Summary)) and
//!   `summary.md`, the answer in words: clients held, the limit that stopped the ramp, the
//!   evidence, and what to change to go further.
//! - [`plots`]: PNG charts (latency, throughput, broker resources, connects) drawn with a
//!   bundled font, so they render on a machine with no fonts installed.
//!
//! Everything here only formats data it is given; deciding the verdict is
//! [`crate::diagnose`]'s job.

pub mod csv;
pub mod plots;
pub mod run;
pub mod summary;

pub use self::csv::{write_samples_csv, write_steps_csv, StepRow};
pub use self::plots::{plot_all, plot_spectrum, XAxis};
pub use self::run::{headline, run_markdown, write_run};
pub use self::summary::{steps_table_markdown, summary_markdown, write_summary};

use std::path::PathBuf;

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
    /// plotters' errors carry the backend's error type; kept as text so callers need not.
    #[error("drawing {path}: {message}")]
    Plot { path: PathBuf, message: String },
}
