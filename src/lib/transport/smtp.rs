//! The mail route: envelopes sent as emails through an SMTP relay (lettre).
//!
//! The email is the spool file itself, with `From:`, `To:` and `X-Rs-From:`
//! (this component's ID) put in front and line ends made CRLF: what sits in
//! the spool is what goes on the wire. With `batch=N` up to N messages share
//! one email (one envelope holding them all).
//!
//! Outcomes: 2xx → handed over; 5xx → refused with the relay's reply (the
//! message goes to dead/); 4xx, timeouts and connection failures → deferred,
//! and the rest of the batch is deferred at once, so a flush over a dead
//! link ends within one timeout.

use std::path::Path;

use lettre::address::Envelope;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::transport::smtp::PoolConfig;
use lettre::{Address, Transport as _};

use super::{Exchanged, Outcome, Outgoing, Transport};
use crate::config::{SmtpRoute, SmtpTls};
use crate::message::{envelope, Name};
use crate::protect::Protector;

pub struct SmtpTransport {
    route: SmtpRoute,
    me: Name,
    protector: Option<std::sync::Arc<Protector>>,
    now: crate::time::Timestamp,
    client: lettre::SmtpTransport,
    envelope: Envelope,
    /// Whether Nagle's algorithm is off on the pooled connection.
    nodelay: bool,
}

/// Why a route cannot be used at all (a configuration problem).
#[derive(Debug, thiserror::Error)]
#[error("route smtp://{host}:{port}: {reason}")]
pub struct SetupError {
    host: String,
    port: u16,
    reason: String,
}

impl SmtpTransport {
    pub fn new(
        route: &SmtpRoute,
        me: &Name,
        protector: Option<std::sync::Arc<Protector>>,
        now: crate::time::Timestamp,
    ) -> Result<SmtpTransport, SetupError> {
        let fail = |reason: String| SetupError {
            host: route.host.clone(),
            port: route.port,
            reason,
        };
        let from: Address = route
            .from
            .parse()
            .map_err(|e| fail(format!("from={}: {e}", route.from)))?;
        let to: Address = route
            .to
            .parse()
            .map_err(|e| fail(format!("to={}: {e}", route.to)))?;
        let envelope = Envelope::new(Some(from), vec![to]).map_err(|e| fail(e.to_string()))?;
        let tls = match route.tls {
            SmtpTls::None => Tls::None,
            mode => {
                let mut params = TlsParameters::builder(route.host.clone());
                if let Some(ca) = &route.ca {
                    let pem =
                        std::fs::read(ca).map_err(|e| fail(format!("ca={}: {e}", ca.display())))?;
                    let cert = Certificate::from_pem(&pem)
                        .map_err(|e| fail(format!("ca={}: {e}", ca.display())))?;
                    params = params.add_root_certificate(cert);
                }
                let params = params.build().map_err(|e| fail(e.to_string()))?;
                if mode == SmtpTls::Implicit {
                    Tls::Wrapper(params)
                } else {
                    Tls::Required(params)
                }
            }
        };
        let mut builder = lettre::SmtpTransport::builder_dangerous(route.host.clone())
            .port(route.port)
            .tls(tls)
            .timeout(Some(route.timeout))
            .pool_config(PoolConfig::new().max_size(1));
        if let Some(auth) = &route.auth {
            builder = builder.credentials(read_credentials(auth).map_err(fail)?);
        }
        Ok(SmtpTransport {
            route: route.clone(),
            me: me.clone(),
            protector,
            now,
            client: builder.build(),
            envelope,
            nodelay: false,
        })
    }

    /// The email for a group of files: headers naming sender, recipient and
    /// this component, then the envelope, with CRLF line ends.
    fn email(&self, files: &[&Outgoing]) -> Result<Vec<u8>, String> {
        let body = if let [one] = files {
            let mut bytes = Vec::new();
            one.leaving(&self.me, self.now)
                .and_then(|mut r| std::io::Read::read_to_end(&mut r, &mut bytes))
                .map_err(|e| format!("cannot read {}: {e}", one.path.display()))?;
            bytes
        } else {
            let mut messages = Vec::new();
            for f in files {
                messages.extend(f.leaving_messages(&self.me, self.now)?);
            }
            envelope::to_bytes(&messages)
        };
        let body = match &self.protector {
            None => body,
            Some(p) => {
                let mut protected = Vec::with_capacity(body.len() * 4 / 3 + 4096);
                p.protect(&mut &body[..], &mut protected, self.now)
                    .map_err(|e| e.to_string())?;
                protected
            }
        };
        let mut email = format!(
            "From: {}\nTo: {}\nX-Rs-From: {}\n",
            self.route.from, self.route.to, self.me
        )
        .into_bytes();
        email.extend_from_slice(&body);
        Ok(envelope::to_crlf(&email))
    }
}

/// Reads `user` and `password` from the first two lines of `path`.
fn read_credentials(path: &Path) -> Result<Credentials, String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("auth={}: {e}", path.display()))?;
    let mut lines = text.lines();
    match (lines.next(), lines.next()) {
        (Some(user), Some(password)) if !user.is_empty() => {
            Ok(Credentials::new(user.to_string(), password.to_string()))
        }
        _ => Err(format!(
            "auth={}: expected the user name on the first line, the password on the second",
            path.display()
        )),
    }
}

/// Turns Nagle's algorithm off on this process's TCP sockets.
///
/// lettre writes a message's body and its final `.` in two writes and
/// offers no way to set `TCP_NODELAY`; with Nagle on, the final dot waits
/// for the relay's delayed acknowledgement (40 ms on Linux), capping a flush
/// near 25 messages a second. The only TCP socket a flushing process holds is
/// the pooled SMTP connection, so setting the option on every socket
/// descriptor is precise enough (on other descriptors the call fails and
/// changes nothing).
fn set_nodelay_on_tcp_sockets() {
    let one: libc::c_int = 1;
    for fd in 3..1024 {
        // SAFETY: setsockopt only reads `one`; on a descriptor that is not a
        // TCP socket (or not open) it fails with an error we ignore.
        unsafe {
            libc::setsockopt(
                fd,
                libc::IPPROTO_TCP,
                libc::TCP_NODELAY,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    }
}

impl Transport for SmtpTransport {
    fn chunk_size(&self) -> usize {
        // About 25 messages between records of progress, in whole emails.
        let per_email = self.route.batch.max(1);
        per_email * 25usize.div_ceil(per_email)
    }

    fn describe(&self) -> String {
        format!(
            "smtp://{}:{} to {}",
            self.route.host, self.route.port, self.route.to
        )
    }

    fn exchange(&mut self, batch: &[Outgoing]) -> Exchanged {
        let mut outcomes = Vec::with_capacity(batch.len());
        let mut link_down: Option<String> = None;
        let per_email = self.route.batch.max(1);
        let items: Vec<&Outgoing> = batch.iter().collect();
        for group in items.chunks(per_email) {
            if let Some(why) = &link_down {
                outcomes.extend(group.iter().map(|_| Outcome::Deferred(why.clone())));
                continue;
            }
            let outcome = match self.email(group) {
                Err(why) => Outcome::Deferred(why),
                Ok(email) => match self.client.send_raw(&self.envelope, &email) {
                    Ok(_) => {
                        if !self.nodelay {
                            set_nodelay_on_tcp_sockets();
                            self.nodelay = true;
                        }
                        Outcome::Handed
                    }
                    Err(e) if e.is_permanent() => {
                        Outcome::Refused(format!("{} answered: {e}", self.route.host))
                    }
                    Err(e) => {
                        let why = format!("{}:{}: {e}", self.route.host, self.route.port);
                        link_down = Some(why.clone());
                        Outcome::Deferred(why)
                    }
                },
            };
            outcomes.extend(group.iter().map(|_| outcome.clone()));
        }
        Exchanged {
            outcomes,
            returned: Vec::new(),
            failure: None,
            trouble: None,
        }
    }
}

impl Drop for SmtpTransport {
    fn drop(&mut self) {
        // QUIT the pooled connection.
        self.client.shutdown();
    }
}
