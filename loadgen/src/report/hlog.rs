//! `latency.hlog`: every latency histogram a run recorded, one per second of each counted
//! window, as an HdrHistogram interval log (compressed V2 histograms, base64, one line per
//! interval), the format HdrHistogram's own tools read (`HistogramLogProcessor`,
//! HdrHistogram's plotter). Each line is tagged with its step, and its time is seconds since the
//! run started (`BaseTime`), so a reader can replay the run's latency second by second.
//!
//! The histograms are the workers' merged: HDR histograms of equal precision add without loss.

use std::path::Path;
use std::time::{Duration, SystemTime};

use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};
use hdrhistogram::serialization::V2DeflateSerializer;
use hdrhistogram::Histogram;

use super::files::ReportError;

/// One second of one step: its tag, when it started (on the monotonic clock of the stamps),
/// and the latencies (µs) of the messages sent in it.
pub struct Interval<'a> {
    pub tag: String,
    pub start_ns: u64,
    pub histogram: &'a Histogram<u64>,
}

/// Writes `intervals` to `path`, timed from `base_ns` on the monotonic clock, which was
/// `base` on the wall clock.
pub fn write_hlog<'a>(
    path: &Path,
    base: SystemTime,
    base_ns: u64,
    intervals: impl IntoIterator<Item = Interval<'a>>,
) -> Result<(), ReportError> {
    let fail = |message: String| ReportError::Encode {
        path: path.to_path_buf(),
        message,
    };
    let mut out = Vec::new();
    let mut serializer = V2DeflateSerializer::new();
    {
        let mut builder = IntervalLogWriterBuilder::new();
        builder
            .add_comment("loadgen delivery latency, microseconds, one histogram per second")
            .with_start_time(base)
            .with_base_time(base)
            .with_max_value_divisor(1000.0);
        let mut log = builder
            .begin_log_with(&mut out, &mut serializer)
            .map_err(|e| fail(e.to_string()))?;
        for i in intervals {
            let since = Duration::from_nanos(i.start_ns.saturating_sub(base_ns));
            let tag = Tag::new(&i.tag);
            log.write_histogram(i.histogram, since, Duration::from_secs(1), tag)
                .map_err(|e| fail(e.to_string()))?;
        }
    }
    super::files::write_bytes(path, &out)
}

#[cfg(test)]
mod tests {
    use base64::Engine;
    use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
    use hdrhistogram::serialization::Deserializer;

    use super::*;
    use crate::model::histogram::new_histogram;

    #[test]
    fn the_log_reads_back_equal_to_what_was_written() {
        let mut seconds = vec![new_histogram(), new_histogram(), new_histogram()];
        for (i, h) in seconds.iter_mut().enumerate() {
            for v in 1..=1_000u64 {
                h.record(v * (i as u64 + 1) + 17).unwrap();
            }
        }
        let dir = std::env::temp_dir().join(format!("loadgen-hlog-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("latency.hlog");
        let base_ns = 5_000_000_000;
        let intervals = seconds.iter().enumerate().map(|(i, h)| Interval {
            tag: "step-1".into(),
            start_ns: base_ns + 2_000_000_000 + i as u64 * 1_000_000_000,
            histogram: h,
        });
        write_hlog(&path, SystemTime::now(), base_ns, intervals).unwrap();

        let bytes = std::fs::read(&path).unwrap();
        let mut read = Vec::new();
        for entry in IntervalLogIterator::new(&bytes) {
            if let LogEntry::Interval(i) = entry.unwrap() {
                assert_eq!(i.tag().map(|t| t.as_str()), Some("step-1"));
                assert_eq!(i.duration(), Duration::from_secs(1));
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(i.encoded_histogram())
                    .unwrap();
                let h: Histogram<u64> = Deserializer::new()
                    .deserialize(&mut decoded.as_slice())
                    .unwrap();
                read.push((i.start_timestamp(), h));
            }
        }
        assert_eq!(read.len(), 3);
        for (i, ((at, h), wrote)) in read.iter().zip(&seconds).enumerate() {
            assert_eq!(*at, Duration::from_secs(2 + i as u64));
            assert_eq!(h, wrote, "second {i}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
