//! Writes what a run measured, for a person and for other tools. Depends on the
//! [`model`](crate::model) only: everything here formats data it is given; deciding the
//! verdict is [`diagnose`](crate::diagnose)'s job, measuring the scenarios'.
//!
//! # Layout
//! - [`csv`]: `steps.csv` (one row per step) and `samples.csv` (one row per second), for
//!   spreadsheets and scripts.
//! - [`summary`]: a ramp's `summary.json` (the whole [`Summary`](crate::model::Summary)) and
//!   `summary.md`, the answer in words: clients held, the limit that stopped the ramp, the
//!   evidence, and what to change to go further.
//! - [`run`]: the same for a fixed-size run (`throughput`, `latency`).
//! - [`hlog`]: every latency histogram as an HdrHistogram interval log.
//! - [`fanout`], [`memory`], [`compare`], [`soak`]: the reports of those commands.
//! - [`plots`]: PNG charts drawn with a bundled font, so they render on a machine with no
//!   fonts installed.

pub mod compare;
pub mod csv;
pub mod fanout;
pub mod files;
pub mod hlog;
pub mod memory;
pub mod plots;
pub mod run;
pub mod soak;
pub mod summary;

pub use self::csv::{write_hosts_csv, write_samples_csv, write_steps_csv, StepRow};
pub use self::plots::{plot_all, plot_spectrum, XAxis};
pub use self::run::{headline, run_markdown, write_run};
pub use self::summary::{steps_table_markdown, summary_markdown, write_summary};

pub use self::files::{create_dir, default_out, ReportError};
