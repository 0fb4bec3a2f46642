//! PNG charts.
//!
//! Text is drawn by plotters' pure-Rust `ab_glyph` renderer with DejaVu Sans embedded in the
//! binary (`assets/DejaVuSans.ttf`): the charts render the same on a bare container with no
//! fontconfig, FreeType or fonts installed, where the usual system-font lookup draws nothing.
//!
//! # Layout
//! - [`ramp`]: a ramp's charts (latency, throughput, resources, connects).
//! - [`compare`]: the comparison's overlay charts, one colour per broker.
//! - [`sweep`]: throughput as the fan-out grows.
//! - [`soak`]: a soak's broker memory and latency over time, its windows marked.
//! - `spectrum`: a latency distribution by percentile.
//! - `draw`: the look every chart shares (fonts, colours, frames, lines, legends).
//! - `scale`: log axes and their ranges, and subtitles wrapped to the width.

pub mod compare;
mod draw;
pub mod ramp;
mod scale;
pub mod soak;
mod spectrum;
pub mod sweep;

pub use self::draw::{Verdict, XAxis};
pub use self::ramp::{plot_all, Context};
pub use self::spectrum::plot_spectrum;

#[cfg(test)]
mod tests;
