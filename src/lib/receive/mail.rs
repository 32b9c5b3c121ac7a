//! Mail in: which peer a mail comes from.
//!
//! Outgoing mail carries `X-Rs-From: COMPONENT`; a mail without it is
//! attributed by its `From:` address to the peer whose mail route sends to
//! that address. Mail from no configured peer is quarantined, never
//! delivered and never acknowledged. (Without protection this identifies,
//! it does not authenticate: see the protection settings.)

use mailparse::MailHeaderMap;

use crate::config::{Config, Route};
use crate::message::Name;

/// The peer that sent `mail`, or why none can be named.
pub fn sender(config: &Config, mail: &[u8]) -> Result<Name, String> {
    let (headers, _) =
        mailparse::parse_headers(mail).map_err(|e| format!("unreadable mail headers: {e}"))?;
    if let Some(component) = headers.get_first_value("X-Rs-From") {
        let component = component.trim();
        return config.peer(component).map(|p| p.id.clone()).ok_or_else(|| {
            format!("mail from component {component}, which is not a configured peer")
        });
    }
    let from = headers.get_first_value("From").unwrap_or_default();
    let address = address_of(&from).to_ascii_lowercase();
    config
        .peers
        .iter()
        .find(|p| {
            p.routes
                .iter()
                .any(|r| matches!(r, Route::Smtp(s) if s.to.eq_ignore_ascii_case(&address)))
        })
        .map(|p| p.id.clone())
        .ok_or_else(|| {
            format!(
                "mail from `{}`, which is no configured peer's address",
                from.trim()
            )
        })
}

/// The bare address in a From: value (`Name <a@b>` or `a@b`).
fn address_of(from: &str) -> &str {
    match (from.rfind('<'), from.rfind('>')) {
        (Some(a), Some(b)) if a < b => from[a + 1..b].trim(),
        _ => from.trim(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config::parse("site='b'\ncomponent='b.hub'\n[[peer]]\nid='a.host'\nroutes=['smtp://mx?from=b@y.test&to=a@x.test']\n").unwrap()
    }

    #[test]
    fn senders_are_named_by_header_or_address() {
        let c = config();
        assert_eq!(
            sender(&c, b"X-Rs-From: a.host\nFrom: x@y\n\nbody")
                .unwrap()
                .as_str(),
            "a.host"
        );
        assert_eq!(
            sender(&c, b"From: Site A <A@X.test>\n\nbody")
                .unwrap()
                .as_str(),
            "a.host"
        );
        assert!(sender(&c, b"X-Rs-From: m.allory\n\n")
            .unwrap_err()
            .contains("not a configured peer"));
        assert!(sender(&c, b"From: stranger@z\n\n")
            .unwrap_err()
            .contains("stranger@z"));
        assert!(sender(&c, b"Subject: no from\n\n").is_err());
    }
}
