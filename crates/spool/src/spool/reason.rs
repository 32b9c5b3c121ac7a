//! Why a file is in `dead/` or `quarantine/`: the kinds of burial and of
//! quarantine, and the `.reason` file written beside each (`id:`,
//! `time:`, `reason:`, `from:`, `detail:`, one line each; see
//! `spool/README.md`). Parsing is lenient: a damaged `.reason` file reads
//! as empty fields, never as an error.

use crate::time::Timestamp;

/// Why a message went to `dead/`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeadKind {
    Expired,
    Evicted,
    Rejected,
    Deleted,
    /// Not taken by the peer it waits for within that peer's hold time.
    Unclaimed,
    /// Refused for good by the route to the next hop (not by a message
    /// response, whose sender tells the origin itself).
    Refused,
}

impl DeadKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DeadKind::Expired => "expired",
            DeadKind::Evicted => "evicted",
            DeadKind::Rejected => "rejected",
            DeadKind::Deleted => "deleted",
            DeadKind::Unclaimed => "unclaimed",
            DeadKind::Refused => "refused",
        }
    }

    /// Whether the origin of a message buried so is owed a notice from
    /// here. A rejection is not: whoever rejected it tells the origin.
    pub fn tells_origin(self) -> bool {
        self != DeadKind::Rejected
    }
}

/// Why something is in `quarantine/`: the `reason:` of its `.reason` file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Quarantined {
    /// It cannot be read (not an envelope, damaged, too deep, ...).
    Unreadable,
    /// It fails its peer's protection (not decrypted, unsigned, signed by
    /// another key, ...).
    Unverified,
    /// Its peer speaks for a component it may not.
    Forged,
    /// It did not come from whom it may (SPEC.md section 13a): a control
    /// message not made by the registrar, a notice from off the message's
    /// path.
    Refused,
}

impl Quarantined {
    pub fn as_str(self) -> &'static str {
        match self {
            Quarantined::Unreadable => "unreadable",
            Quarantined::Unverified => "unverified",
            Quarantined::Forged => "forged",
            Quarantined::Refused => "refused",
        }
    }
}

/// A `.reason` file's content.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reason {
    pub id: String,
    pub time: Timestamp,
    pub kind: String,
    pub from: String,
    pub detail: String,
}

impl Reason {
    pub(super) fn to_text(&self) -> String {
        format!(
            "id: {}\ntime: {}\nreason: {}\nfrom: {}\ndetail: {}\n",
            self.id,
            self.time,
            self.kind,
            self.from,
            self.detail.replace('\n', " ")
        )
    }

    pub fn parse(text: &str) -> Reason {
        let mut r = Reason {
            id: String::new(),
            time: Timestamp::EPOCH,
            kind: String::new(),
            from: String::new(),
            detail: String::new(),
        };
        for line in text.lines() {
            let Some((k, v)) = line.split_once(": ") else {
                continue;
            };
            match k {
                "id" => r.id = v.to_string(),
                "time" => r.time = Timestamp::parse(v).unwrap_or_default(),
                "reason" => r.kind = v.to_string(),
                "from" => r.from = v.to_string(),
                "detail" => r.detail = v.to_string(),
                _ => {}
            }
        }
        r
    }
}
