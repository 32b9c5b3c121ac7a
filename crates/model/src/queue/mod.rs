//! Queue policy: ordering, expiry, admission and eviction, the throttle.
//!
//! Architecture invariant: everything here is a pure function of entry
//! metadata, settings and `now`. No file is read or written; the spool
//! applies the decisions. That is what lets every rule be tested with a
//! table of cases.

pub mod entry;
pub mod evict;
pub mod retry;
pub mod settings;
pub mod throttle;

use entry::EntryName;

/// Sorts entries into send order: higher precedence first, then arrival.
pub fn sort_send_order(entries: &mut [EntryName]) {
    entries.sort_by_key(EntryName::send_order_key);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{MessageId, Persistence, Precedence};
    use crate::time::Timestamp;

    #[test]
    fn precedence_then_arrival_even_with_equal_timestamps() {
        let mk = |arrival: u64, p: Precedence| EntryName {
            arrival,
            id: MessageId::parse(&format!("m{arrival}")).unwrap(),
            precedence: p,
            persistence: Persistence::Normal,
            addressed: false,
            created: Timestamp::from_secs(5),
            expiry: None,
            size: 1,
        };
        use Precedence::*;
        let mut e = vec![
            mk(1, Bulk),
            mk(2, Normal),
            mk(3, Urgent),
            mk(4, Normal),
            mk(5, Urgent),
            mk(6, Bulk),
        ];
        sort_send_order(&mut e);
        let order: Vec<u64> = e.iter().map(|e| e.arrival).collect();
        assert_eq!(order, vec![3, 5, 2, 4, 1, 6]);
    }
}
