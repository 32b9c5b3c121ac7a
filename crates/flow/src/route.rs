//! Where a message goes next: delivered here, or to which peer.
//!
//! Forward-path messages (with a source) go to the upstream peer; a site
//! without one is the end of the forward path and delivers them. Messages
//! with destinations go to the peer that leads to their first destination:
//! the peer itself, a peer configured with that component, a peer learned
//! from forward traffic (the first peer a component's messages came through
//! wins), else upstream.
//!
//! The learned table is `state/routes`, lines of `COMPONENT PEER`. It also
//! anchors who may speak for whom ([`may_speak_for`]): a peer speaks for
//! itself, for the components configured behind it, and for those whose
//! first message it carried; never for this site, another configured peer,
//! or a component configured or learned behind another peer (unless that
//! peer is its twin in a failover group: redundant relays carry for the
//! same sites).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::message::{Header, Locator, Name, Target};
use crate::spool::{durable, Area, Result, Spool};
use crate::time::Timestamp;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NextHop {
    /// This site is the destination.
    Local,
    /// Send it to this peer.
    Peer(Name),
    /// No known way on (a group this site cannot expand, an unknown
    /// destination at the top of the tree).
    Unknown(String),
}

/// Components learned to be reachable through a peer.
#[derive(Clone, Debug, Default)]
pub struct Learned {
    map: BTreeMap<String, String>,
    changed: bool,
}

fn path(spool: &Spool) -> PathBuf {
    spool.dir(Area::State).join("routes")
}

impl Learned {
    /// What a shared database holds: (component, peer) pairs.
    pub fn from_pairs(pairs: impl IntoIterator<Item = (String, String)>) -> Learned {
        Learned {
            map: pairs.into_iter().collect(),
            changed: false,
        }
    }

    pub fn load(spool: &Spool) -> Learned {
        let text = std::fs::read_to_string(path(spool)).unwrap_or_default();
        let map = text
            .lines()
            .filter_map(|l| l.split_once(' '))
            .map(|(c, p)| (c.to_string(), p.to_string()))
            .collect();
        Learned {
            map,
            changed: false,
        }
    }

    /// Records that `component` was seen arriving through `peer`, unless it
    /// is already known through another.
    pub fn learn(&mut self, component: &Name, peer: &Name) {
        if !self.map.contains_key(component.as_str()) {
            self.map.insert(component.to_string(), peer.to_string());
            self.changed = true;
        }
    }

    /// Forgets every component learned through `peer`; returns how many.
    pub fn forget_peer(&mut self, peer: &str) -> usize {
        let before = self.map.len();
        self.map.retain(|_, p| p != peer);
        let n = before - self.map.len();
        self.changed |= n > 0;
        n
    }

    pub fn peer_for(&self, component: &str) -> Option<&str> {
        self.map.get(component).map(String::as_str)
    }

    /// Writes the table if it changed (under the receive lock).
    pub fn save(&mut self, spool: &Spool, now: Timestamp) -> Result<()> {
        if !self.changed {
            return Ok(());
        }
        let text: String = self.map.iter().map(|(c, p)| format!("{c} {p}\n")).collect();
        let target = path(spool);
        let dir = target.parent().unwrap_or(Path::new("."));
        durable::write_durable(
            &spool.dir(Area::Tmp),
            dir,
            "routes",
            text.as_bytes(),
            now.as_micros(),
        )?;
        self.changed = false;
        Ok(())
    }
}

fn pins(spool: &Spool) -> PathBuf {
    spool.dir(Area::State).join("pinned")
}

/// Keeping `peer` as the next hop of a message, chosen by a rule (routing
/// alone would send it elsewhere) in `state/pinned/ID`: a pin staged in
/// tmp/ (written, not yet synced); [`commit_pins`] puts it in place once
/// the group commit of its message made it durable.
pub fn stage_pin(spool: &Spool, peer: &Name, now: Timestamp) -> Result<crate::spool::Staged> {
    let mut staged = spool.stage(now)?;
    std::io::Write::write_all(&mut staged, peer.as_str().as_bytes())
        .map_err(|e| crate::spool::Error::io("write", staged.path(), e))?;
    Ok(staged)
}

/// Puts staged pins (synced since) in place; durable on return.
pub fn commit_pins(
    spool: &Spool,
    staged: Vec<(crate::spool::Staged, &crate::message::MessageId)>,
) -> Result<()> {
    if staged.is_empty() {
        return Ok(());
    }
    let dir = pins(spool);
    durable::create_dir_all(&dir)?;
    for (s, id) in staged {
        s.commit(&dir.join(id.as_str()))?;
    }
    durable::fsync_dir(&dir)
}

/// The next hop a rule chose for message `id`, if one did.
pub fn pinned(spool: &Spool, id: &str) -> Option<Name> {
    let text = std::fs::read_to_string(pins(spool).join(id)).ok()?;
    Name::new("peer", text.trim()).ok()
}

/// Forgets the pins of messages no longer held (`outbound`: the IDs held).
pub fn unpin_gone(spool: &Spool, outbound: &std::collections::HashSet<String>) {
    let Ok(entries) = std::fs::read_dir(pins(spool)) else {
        return;
    };
    for e in entries.flatten() {
        if !outbound.contains(e.file_name().to_string_lossy().as_ref()) {
            let _ = durable::remove_file(&e.path());
        }
    }
}

/// The peer a queued message waits for: the one a rule pinned it to (with
/// `pins`), the upstream peer for a forward-path message, else where
/// routing sends it.
pub fn next_hop_of(
    spool: &Spool,
    e: &crate::spool::Entry,
    learned: &Learned,
    pins: bool,
) -> Option<Name> {
    let config = spool.config();
    if pins {
        if let Some(p) = pinned(spool, e.name.id.as_str()) {
            return Some(p);
        }
    }
    if !e.name.addressed {
        return config.upstream().map(|u| u.id.clone());
    }
    let file = std::fs::File::open(spool.entry_path(e)).ok()?;
    let header = crate::message::envelope::first_header(file).ok()?;
    match next_hop(&header, config, learned) {
        NextHop::Peer(hop) => Some(hop),
        _ => None,
    }
}

/// Decides where a message with this header goes next.
pub fn next_hop(header: &Header, config: &Config, learned: &Learned) -> NextHop {
    let upstream = || config.upstream().map(|p| p.id.clone());
    match &header.locator {
        Locator::Source(_) => upstream().map_or(NextHop::Local, NextHop::Peer),
        Locator::Destination(d) => match d.targets.first() {
            None => NextHop::Unknown("no destination".into()),
            Some(Target::Component(c)) => toward(c, config, learned)
                .or_else(|| upstream().map(NextHop::Peer))
                .unwrap_or_else(|| NextHop::Unknown(format!("no route to component {c}"))),
            Some(Target::Group(g)) => config
                .peers
                .iter()
                .find(|p| p.components.contains(g))
                .map(|p| NextHop::Peer(p.id.clone()))
                .unwrap_or_else(|| NextHop::Unknown(format!("no route to group {g}"))),
        },
    }
}

/// Why a peer may not carry a message: it speaks for a component it may
/// not speak for (the message is forged, or a route is misconfigured).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Forged {
    #[error("{peer} may not speak for {component}: {why} (list {component} in the `components` of peer {peer} in config.toml if {peer} may carry its messages)")]
    NotFor {
        peer: Name,
        component: Name,
        why: NotItsOwn,
    },
    /// Down from the upstream peer, a message claiming this site made it.
    #[error("{peer} may not speak for {component}: it is this site's own component ID")]
    ThisSite { peer: Name, component: Name },
}

/// Whose a component is, when it is not the peer's to speak for.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NotItsOwn {
    #[error("it is this site's own component ID")]
    ThisSite,
    #[error("it is a configured peer of this site, which speaks for itself")]
    APeer,
    #[error("it is configured behind peer {0}")]
    ConfiguredBehind(Name),
    #[error("it was learned behind peer {0}, which carried its first message")]
    /// (the peer, as the table of learned routes names it)
    LearnedBehind(String),
}

/// Whether `peer` may carry forward-path messages whose source is
/// `component`: [`Forged`] when it may not. A component never seen before
/// may be claimed by the first peer that carries it, which it is then
/// learned behind.
pub fn may_speak_for(
    peer: &Name,
    component: &Name,
    config: &Config,
    learned: &Learned,
) -> Result<(), Forged> {
    let refuse = |why: NotItsOwn| {
        Err(Forged::NotFor {
            peer: peer.clone(),
            component: component.clone(),
            why,
        })
    };
    if component == peer {
        return Ok(());
    }
    if *component == config.component {
        return refuse(NotItsOwn::ThisSite);
    }
    // What one of a failover group may carry, its twins may.
    let group = config.failover_group(peer.as_str());
    if group
        .iter()
        .filter_map(|m| config.peer(m.as_str()))
        .any(|p| p.components.contains(component))
    {
        return Ok(());
    }
    if config.peer(component.as_str()).is_some() {
        return refuse(NotItsOwn::APeer);
    }
    if let Some(q) = config
        .peers
        .iter()
        .find(|q| q.components.contains(component))
    {
        return refuse(NotItsOwn::ConfiguredBehind(q.id.clone()));
    }
    match learned.peer_for(component.as_str()) {
        Some(q) if !config.twins(q, peer.as_str()) => {
            refuse(NotItsOwn::LearnedBehind(q.to_string()))
        }
        _ => Ok(()),
    }
}

/// The component that made a message, as far as its header says: its
/// source on the forward path; on the back-channel the first routing
/// element (the component that made it stamps it as it sends), else the
/// peer that carried it.
pub fn originator<'a>(h: &'a Header, carrier: &'a Name) -> &'a Name {
    h.origin().unwrap_or(carrier)
}

/// Whether `peer` is this site's upstream peer, or a twin of it in its
/// failover group: where the provider's messages come down from.
pub fn is_upstream(peer: &Name, config: &Config) -> bool {
    config
        .upstream()
        .is_some_and(|u| config.twins(u.id.as_str(), peer.as_str()))
}

/// Whether `peer` may carry a message with header `h` (see SPEC.md
/// section 13a, "who may say what"): on the forward path, for a source it
/// may speak for ([`may_speak_for`]); on the back-channel, down from the
/// upstream peer anything this site did not make itself, and from any other
/// peer only what a component it may speak for made. [`Forged`] when it
/// may not.
pub fn may_carry(
    peer: &Name,
    h: &Header,
    config: &Config,
    learned: &Learned,
) -> Result<(), Forged> {
    match &h.locator {
        Locator::Source(s) => may_speak_for(peer, &s.component, config, learned),
        Locator::Destination(_) => {
            let made_by = originator(h, peer);
            if is_upstream(peer, config) {
                if *made_by == config.component {
                    return Err(Forged::ThisSite {
                        peer: peer.clone(),
                        component: made_by.clone(),
                    });
                }
                return Ok(());
            }
            may_speak_for(peer, made_by, config, learned)
        }
    }
}

/// The way to one component, without falling back to upstream.
pub fn toward(component: &Name, config: &Config, learned: &Learned) -> Option<NextHop> {
    if *component == config.component {
        return Some(NextHop::Local);
    }
    if let Some(p) = config
        .peers
        .iter()
        .find(|p| p.id == *component || p.components.contains(component))
    {
        return Some(NextHop::Peer(p.id.clone()));
    }
    learned
        .peer_for(component.as_str())
        .and_then(|p| config.peer(p))
        .map(|p| NextHop::Peer(p.id.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{Destination, MessageId, Persistence, Precedence, Qos, Source};

    fn config(extra: &str) -> Config {
        Config::parse(&format!("site='b'\ncomponent='b.relay'\n{extra}")).unwrap()
    }

    fn header(locator: Locator) -> Header {
        Header {
            id: MessageId::parse("m").unwrap(),
            created: Timestamp::EPOCH,
            class: Name::new("c", "c").unwrap(),
            subclass: Name::new("s", "s").unwrap(),
            locator,
            in_reply_to: None,
            origin_key: None,
            epoch: None,
            routing: vec![],
        }
    }

    fn qos() -> Qos {
        Qos {
            expiry: None,
            precedence: Precedence::Normal,
            persistence: Persistence::Normal,
        }
    }

    fn to(c: &str) -> Header {
        header(Locator::Destination(Destination {
            targets: vec![Target::Component(Name::new("t", c).unwrap())],
            qos: qos(),
        }))
    }

    fn name(s: &str) -> Name {
        Name::new("n", s).unwrap()
    }

    #[test]
    fn forward_messages_go_upstream_or_stay() {
        let fwd = header(Locator::Source(Source {
            component: name("a.host"),
            component_type: name("t"),
            version: name("1"),
            qos: qos(),
        }));
        let relay = config("[[peer]]\nid='c.hub'\nupstream=true\n[[peer]]\nid='a.host'\n");
        assert_eq!(
            next_hop(&fwd, &relay, &Learned::default()),
            NextHop::Peer(name("c.hub"))
        );
        let top = config("[[peer]]\nid='a.host'\n");
        assert_eq!(next_hop(&fwd, &top, &Learned::default()), NextHop::Local);
    }

    #[test]
    fn a_peer_speaks_for_itself_its_components_and_what_it_carried_first() {
        let c = config("[[peer]]\nid='a.host'\ncomponents=['a.sensor']\n[[peer]]\nid='c.host'\n");
        let mut learned = Learned::default();
        learned.learn(&name("x.far"), &name("c.host"));
        let check = |peer: &str, component: &str, ok: bool| {
            let r = may_speak_for(&name(peer), &name(component), &c, &learned);
            assert_eq!(r.is_ok(), ok, "{peer} for {component}: {r:?}");
        };
        check("a.host", "a.host", true);
        check("a.host", "a.sensor", true);
        check("a.host", "y.new", true);
        check("c.host", "x.far", true);
        check("a.host", "b.relay", false);
        check("a.host", "c.host", false);
        check("c.host", "a.sensor", false);
        check("a.host", "x.far", false);

        // Redundant relays: either carries what the other carried first.
        let c = config("[[peer]]\nid='r1'\nbackup='r2'\ncomponents=['s.fixed']\n[[peer]]\nid='r2'\n[[peer]]\nid='q'\n");
        learned.learn(&name("s.one"), &name("r1"));
        for (peer, component, ok) in [
            ("r2", "s.one", true),
            ("r2", "s.fixed", true),
            ("q", "s.one", false),
            ("q", "s.fixed", false),
        ] {
            let r = may_speak_for(&name(peer), &name(component), &c, &learned);
            assert_eq!(r.is_ok(), ok, "{peer} for {component}: {r:?}");
        }
    }

    #[test]
    fn a_forged_message_is_refused_with_whose_component_it_is_and_the_remedy() {
        let c = config("[[peer]]\nid='a.host'\ncomponents=['a.sensor']\n[[peer]]\nid='c.host'\n");
        let mut learned = Learned::default();
        learned.learn(&name("x.far"), &name("c.host"));
        let why = |peer: &str, component: &str| {
            may_speak_for(&name(peer), &name(component), &c, &learned)
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            why("c.host", "a.sensor"),
            "c.host may not speak for a.sensor: it is configured behind peer a.host (list a.sensor in the `components` of peer c.host in config.toml if c.host may carry its messages)"
        );
        assert!(why("a.host", "x.far")
            .contains(": it was learned behind peer c.host, which carried its first message ("));
        assert!(why("a.host", "c.host")
            .contains(": it is a configured peer of this site, which speaks for itself ("));
        assert!(why("a.host", "b.relay")
            .starts_with("a.host may not speak for b.relay: it is this site's own component ID ("));
        assert_eq!(
            Forged::ThisSite {
                peer: name("up"),
                component: name("b.relay")
            }
            .to_string(),
            "up may not speak for b.relay: it is this site's own component ID"
        );
    }

    #[test]
    fn destinations_follow_peers_configuration_learning_then_upstream() {
        let c = config("[[peer]]\nid='c.hub'\nupstream=true\n[[peer]]\nid='a.host'\ncomponents=['a.sensor']\n[[peer]]\nid='d.relay'\n");
        let mut learned = Learned::default();
        learned.learn(&name("d.far"), &name("d.relay"));
        learned.learn(&name("d.far"), &name("a.host"));
        let check = |dest: &str, expected: NextHop| {
            assert_eq!(next_hop(&to(dest), &c, &learned), expected, "{dest}")
        };
        check("b.relay", NextHop::Local);
        check("a.host", NextHop::Peer(name("a.host")));
        check("a.sensor", NextHop::Peer(name("a.host")));
        check("d.far", NextHop::Peer(name("d.relay")));
        check("x.unknown", NextHop::Peer(name("c.hub")));
        let top = config("[[peer]]\nid='a.host'\n");
        assert!(matches!(
            next_hop(&to("x.unknown"), &top, &Learned::default()),
            NextHop::Unknown(_)
        ));
    }
}
