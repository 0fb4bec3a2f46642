//! The channels one connection is subscribed to.
//!
//! Nearly every client is on one channel or a few, and an idle broker is mostly such clients,
//! so the set is laid out for that: up to [`FEW`] names packed into a single allocation and
//! searched linearly. A `HashSet<Box<str>>` would cost a table of four slots plus one
//! allocation per name even for a single channel, on every connection. Past [`FEW`] channels
//! the set turns into a `HashSet`, so that a client on thousands of channels still subscribes
//! and unsubscribes in O(1).

use std::collections::HashSet;

/// Most channels kept packed: few enough that a linear search, and copying the buffer on each
/// change, stay cheap.
const FEW: usize = 16;
/// Bytes before each packed name: its length.
const LEN: usize = std::mem::size_of::<usize>();

/// A set of channel names.
#[derive(Debug, Default)]
pub(crate) struct Subscriptions(Repr);

#[derive(Debug)]
enum Repr {
    /// Each name as its length (native-endian `usize`) followed by its UTF-8 bytes.
    Few(Box<[u8]>),
    /// Boxed so that the common case does not carry a hash set's size in every connection.
    #[allow(clippy::box_collection)]
    Many(Box<HashSet<Box<str>>>),
}

impl Default for Repr {
    fn default() -> Self {
        Repr::Few(Box::default())
    }
}

/// The names packed in `buf`.
fn packed(buf: &[u8]) -> impl Iterator<Item = &str> + Clone {
    let mut rest = buf;
    std::iter::from_fn(move || {
        let (len, tail) = rest.split_first_chunk::<LEN>()?;
        let (name, tail) = tail.split_at(usize::from_ne_bytes(*len));
        rest = tail;
        Some(std::str::from_utf8(name).expect("packed from a str"))
    })
}

/// `names` packed into one exactly sized allocation.
fn pack<'a>(names: impl Iterator<Item = &'a str> + Clone) -> Box<[u8]> {
    let size = names.clone().map(|n| LEN + n.len()).sum();
    let mut buf = Vec::with_capacity(size);
    for name in names {
        buf.extend_from_slice(&name.len().to_ne_bytes());
        buf.extend_from_slice(name.as_bytes());
    }
    buf.into_boxed_slice()
}

impl Subscriptions {
    pub(crate) fn len(&self) -> usize {
        match &self.0 {
            Repr::Few(buf) => packed(buf).count(),
            Repr::Many(set) => set.len(),
        }
    }

    pub(crate) fn contains(&self, channel: &str) -> bool {
        match &self.0 {
            Repr::Few(buf) => packed(buf).any(|c| c == channel),
            Repr::Many(set) => set.contains(channel),
        }
    }

    /// Adds `channel`; returns `false` if it was already there.
    pub(crate) fn insert(&mut self, channel: &str) -> bool {
        if self.contains(channel) {
            return false;
        }
        match &mut self.0 {
            Repr::Few(buf) if packed(buf).count() < FEW => {
                *buf = pack(packed(buf).chain([channel]));
            }
            Repr::Few(buf) => {
                let set = packed(buf).chain([channel]).map(Box::from).collect();
                self.0 = Repr::Many(Box::new(set));
            }
            Repr::Many(set) => {
                set.insert(channel.into());
            }
        }
        true
    }

    /// Removes `channel`; returns `false` if it was not there.
    pub(crate) fn remove(&mut self, channel: &str) -> bool {
        match &mut self.0 {
            Repr::Few(buf) => {
                if !packed(buf).any(|c| c == channel) {
                    return false;
                }
                *buf = pack(packed(buf).filter(|c| *c != channel));
                true
            }
            Repr::Many(set) => set.remove(channel),
        }
    }

    /// Empties the set, yielding every channel.
    pub(crate) fn drain(&mut self) -> impl Iterator<Item = Box<str>> {
        let names: Vec<Box<str>> = match std::mem::take(&mut self.0) {
            Repr::Few(buf) => packed(&buf).map(Box::from).collect(),
            Repr::Many(set) => set.into_iter().collect(),
        };
        names.into_iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("ch{i}")).collect()
    }

    #[test]
    fn behaves_as_a_set_on_both_sides_of_the_threshold() {
        for n in [1, FEW, FEW + 1, 3 * FEW] {
            let mut subs = Subscriptions::default();
            for name in names(n) {
                assert!(subs.insert(&name));
                assert!(!subs.insert(&name));
            }
            assert_eq!(subs.len(), n);
            assert!(names(n).iter().all(|c| subs.contains(c)));
            assert!(!subs.contains("ch"));
            assert!(subs.remove("ch0"));
            assert!(!subs.remove("ch0"));
            assert_eq!(subs.len(), n - 1);
            let mut left: Vec<String> = subs.drain().map(String::from).collect();
            left.sort();
            let mut want = names(n)[1..].to_vec();
            want.sort();
            assert_eq!(left, want);
            assert_eq!(subs.len(), 0);
        }
    }

    #[test]
    fn keeps_any_name_intact() {
        let odd = ["", "é\n\"", &"x".repeat(70_000)];
        let mut subs = Subscriptions::default();
        for name in odd {
            assert!(subs.insert(name));
        }
        assert!(odd.iter().all(|c| subs.contains(c)));
        assert!(subs.remove(""));
        assert_eq!(subs.len(), 2);
    }

    #[test]
    fn one_channel_is_one_small_allocation_in_a_small_field() {
        let mut subs = Subscriptions::default();
        subs.insert("news");
        match &subs.0 {
            Repr::Few(buf) => assert_eq!(buf.len(), LEN + 4),
            Repr::Many(_) => panic!("one channel is few"),
        }
        assert_eq!(std::mem::size_of::<Subscriptions>(), 16);
    }
}
