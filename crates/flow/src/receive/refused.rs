//! Why an inbound file or message cannot be taken: it is set aside in
//! quarantine with this reason (its `.reason` file and the log say it).

use crate::message::Name;

/// Why an inbound file, mail or message is set aside.
#[derive(Debug, thiserror::Error)]
pub enum Unreadable {
    #[error("the file is empty (0 bytes): it holds no envelope")]
    Empty,
    /// Its envelope, or a message in it, does not read.
    #[error(transparent)]
    Message(#[from] crate::message::Error),
    /// It could not be read.
    #[error(transparent)]
    Spool(#[from] crate::spool::Error),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("unreadable mail headers: {0}")]
    MailHeaders(#[from] mailparse::MailParseError),
    #[error("mail from component {component}, which is not a configured peer")]
    UnknownComponent { component: String },
    #[error("mail from `{from}`, which is no configured peer's address")]
    UnknownAddress { from: String },
    #[error("{peer} is not a configured peer")]
    NotAPeer { peer: Name },
    #[error("a protected message from {peer}, whose protection is not configured (set protection, our_key and peer_cert in config.toml)")]
    ProtectionNotConfigured { peer: Name },
    #[error("the message is not protected, and {peer}'s messages must be signed")]
    Unsigned { peer: Name },
    /// Its protection refused it (a bad signature, not for this site).
    #[error("{0}")]
    Refused(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_reason_names_what_it_concerns_and_the_remedy() {
        let peer = Name::new("component", "a.host").unwrap();
        assert_eq!(
            Unreadable::Empty.to_string(),
            "the file is empty (0 bytes): it holds no envelope"
        );
        assert_eq!(
            Unreadable::UnknownComponent {
                component: "m.allory".into()
            }
            .to_string(),
            "mail from component m.allory, which is not a configured peer"
        );
        assert_eq!(
            Unreadable::ProtectionNotConfigured { peer: peer.clone() }.to_string(),
            "a protected message from a.host, whose protection is not configured (set protection, our_key and peer_cert in config.toml)"
        );
        assert_eq!(
            Unreadable::Unsigned { peer }.to_string(),
            "the message is not protected, and a.host's messages must be signed"
        );
    }
}
