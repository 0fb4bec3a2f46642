//! What the benchmarks measure hubbub against, and the Criterion benches (in `benches/`).
//!
//! - [`plain`]: the plain tokio broker, the baseline every comparison includes.

pub mod plain;
