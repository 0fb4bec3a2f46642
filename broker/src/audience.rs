//! One channel's subscribers, laid out for the common case.
//!
//! A broker where every client has a channel of its own (a user's inbox, a device's topic)
//! holds as many channels as clients, nearly all with one subscriber. A hash table for that
//! one entry costs each channel two allocations and about 150 bytes; [`Audience::One`] costs
//! none. A second subscriber turns it into an [`IndexMap`] (iteration as fast as a `Vec`'s,
//! removal O(1) by `swap_remove`, so a mass disconnect from a channel of 50,000 stays linear).

use std::sync::Arc;

use indexmap::IndexMap;

use crate::outbox::Outbox;

/// Identifies a connection for the life of the broker process.
pub type ConnId = u64;

/// The subscribers of one channel: never empty (a channel without any is forgotten).
#[derive(Debug)]
pub(crate) enum Audience {
    One(ConnId, Arc<Outbox>),
    /// Boxed, so that a channel of one is no larger than it needs to be: the registry's
    /// table holds an `Audience` inline in every slot.
    Many(Box<IndexMap<ConnId, Arc<Outbox>>>),
}

/// What [`Audience::remove`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Removal {
    NotThere,
    Removed,
    /// Removed, and it was the last: the channel is to be forgotten.
    Last,
}

impl Audience {
    /// Adds a subscriber; `false` if it was already there.
    pub(crate) fn insert(&mut self, id: ConnId, outbox: &Arc<Outbox>) -> bool {
        match self {
            Audience::One(have, _) if *have == id => false,
            Audience::One(have, first) => {
                let mut map = IndexMap::with_capacity(2);
                map.insert(*have, Arc::clone(first));
                map.insert(id, Arc::clone(outbox));
                *self = Audience::Many(Box::new(map));
                true
            }
            Audience::Many(map) => map.insert(id, Arc::clone(outbox)).is_none(),
        }
    }

    /// Removes a subscriber; a table left with one turns back into [`Audience::One`].
    pub(crate) fn remove(&mut self, id: ConnId) -> Removal {
        match self {
            Audience::One(have, _) if *have == id => Removal::Last,
            Audience::One(..) => Removal::NotThere,
            Audience::Many(map) => {
                if map.swap_remove(&id).is_none() {
                    return Removal::NotThere;
                }
                if map.len() == 1 {
                    let (last, outbox) = map.pop().expect("one left");
                    *self = Audience::One(last, outbox);
                }
                Removal::Removed
            }
        }
    }

    pub(crate) fn len(&self) -> usize {
        match self {
            Audience::One(..) => 1,
            Audience::Many(map) => map.len(),
        }
    }

    /// Every subscriber, in no particular order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (ConnId, &Arc<Outbox>)> {
        let (one, many) = match self {
            Audience::One(id, outbox) => (Some((*id, outbox)), None),
            Audience::Many(map) => (None, Some(map.iter().map(|(id, o)| (*id, o)))),
        };
        one.into_iter().chain(many.into_iter().flatten())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(a: &Audience) -> Vec<ConnId> {
        let mut ids: Vec<_> = a.iter().map(|(id, _)| id).collect();
        ids.sort();
        ids
    }

    #[test]
    fn grows_into_a_table_and_shrinks_back_to_one() {
        let outbox = Arc::new(Outbox::new(1));
        let mut a = Audience::One(1, Arc::clone(&outbox));
        assert!(!a.insert(1, &outbox));
        assert!(a.insert(2, &outbox));
        assert!(a.insert(3, &outbox));
        assert!(matches!(a, Audience::Many(_)));
        assert_eq!((a.len(), ids(&a)), (3, vec![1, 2, 3]));
        assert_eq!(a.remove(9), Removal::NotThere);
        assert_eq!(a.remove(1), Removal::Removed);
        assert_eq!(a.remove(3), Removal::Removed);
        assert!(matches!(a, Audience::One(2, _)));
        assert_eq!(a.remove(3), Removal::NotThere);
        assert_eq!(a.remove(2), Removal::Last);
    }

    #[test]
    fn a_channel_of_one_is_two_words_plus_a_tag() {
        assert!(std::mem::size_of::<Audience>() <= 24);
    }
}
