//! How numbers, durations and sizes are written for people: one function per kind of figure,
//! so the terminal, the markdown and the charts say the same figure the same way.

/// Bytes in a MiB.
pub const MIB: f64 = 1024.0 * 1024.0;

/// Bytes as MiB, a number (for tables and charts).
pub fn to_mib(bytes: u64) -> f64 {
    bytes as f64 / MIB
}

/// Bytes as MiB in words, e.g. "512 MiB" (one decimal under 10 MiB).
pub fn mib(bytes: u64) -> String {
    let v = to_mib(bytes);
    if v < 10.0 {
        format!("{v:.1} MiB")
    } else {
        format!("{v:.0} MiB")
    }
}

/// Microseconds as milliseconds, a number (for tables and charts).
pub fn to_ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// Microseconds as milliseconds in words, with the precision the size calls for: "0.231 ms",
/// "12.3 ms", "700 ms".
pub fn ms(us: u64) -> String {
    format!("{} ms", ms_number(us))
}

/// [`ms`] without the unit, for a table column headed "(ms)".
pub fn ms_number(us: u64) -> String {
    let v = to_ms(us);
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

/// How [`short`] writes its decimals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// Fixed decimals, so a column of figures lines up: "10.90M", "48.2k", "0.500".
    Table,
    /// Trailing zeros dropped, so tick labels stay short: "10.9M", "48.2k", "0.5".
    Axis,
}

/// A count or a rate in a few characters: 10.9M, 48.2k, 912, 0.541.
pub fn short(v: f64, style: Style) -> String {
    let a = v.abs();
    let (scaled, suffix) = match style {
        Style::Table if a >= 1e6 => (format!("{:.2}", v / 1e6), "M"),
        Style::Table if a >= 1e4 => (format!("{:.1}", v / 1e3), "k"),
        Style::Table if a >= 100.0 => (format!("{v:.0}"), ""),
        Style::Table => (format!("{v:.3}"), ""),
        Style::Axis if a >= 1e6 => (trimmed(v / 1e6), "M"),
        Style::Axis if a >= 1e3 => (trimmed(v / 1e3), "k"),
        Style::Axis => (trimmed(v), ""),
    };
    scaled + suffix
}

/// A number with at most three significant decimals and no trailing zeros.
pub fn trimmed(v: f64) -> String {
    let s = if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    };
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// 2000000 as "2,000,000".
pub fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, d) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(d);
    }
    out
}

/// `a`, `a and b`, `a, b and c`: a list as a sentence has it.
pub fn in_words(items: &[&str]) -> String {
    match items {
        [] => String::new(),
        [one] => one.to_string(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// "1 run", "3 runs".
pub fn plural(n: usize, noun: &str) -> String {
    format!("{n} {noun}{}", if n == 1 { "" } else { "s" })
}

/// "2,000 subscribers", "1 channel".
pub fn counted(n: u64, noun: &str) -> String {
    format!("{} {noun}{}", grouped(n), if n == 1 { "" } else { "s" })
}

/// `part` as a percentage of `whole` (0 when `whole` is 0).
pub fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_read_as_a_sentence() {
        assert_eq!(in_words(&[]), "");
        assert_eq!(in_words(&["Redis"]), "Redis");
        assert_eq!(in_words(&["Redis", "NATS"]), "Redis and NATS");
        assert_eq!(
            in_words(&["Redis", "NATS", "Mosquitto"]),
            "Redis, NATS and Mosquitto"
        );
    }

    #[test]
    fn figures_in_words() {
        assert_eq!(ms(231), "0.231 ms");
        assert_eq!(ms(12_345), "12.3 ms");
        assert_eq!(ms(700_000), "700 ms");
        assert_eq!(mib(512 << 20), "512 MiB");
        assert_eq!(mib(3 << 19), "1.5 MiB");
        assert_eq!(short(10_904_000.0, Style::Table), "10.90M");
        assert_eq!(short(10_904_000.0, Style::Axis), "10.9M");
        assert_eq!(short(48_200.0, Style::Table), "48.2k");
        assert_eq!(short(2_000.0, Style::Axis), "2k");
        assert_eq!(short(912.0, Style::Table), "912");
        assert_eq!(short(0.5, Style::Table), "0.500");
        assert_eq!(short(0.5, Style::Axis), "0.5");
        assert_eq!(grouped(2_000_000), "2,000,000");
        assert_eq!(grouped(999), "999");
        assert_eq!(plural(1, "run"), "1 run");
        assert_eq!(plural(3, "run"), "3 runs");
        assert_eq!(counted(2_000, "channel"), "2,000 channels");
        assert_eq!(counted(1, "channel"), "1 channel");
        assert_eq!(percent(1, 4), 25.0);
        assert_eq!(percent(1, 0), 0.0);
    }
}
