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

use super::{Error, Exchanged, Outcome, Outgoing, Transport};
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
    reason: Setup,
}

/// What in an SMTP route's settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum Setup {
    /// `from` or `to` (`key`) is not a mail address.
    #[error("{key}={value}: {source}")]
    Address {
        key: &'static str,
        value: String,
        source: lettre::address::AddressError,
    },
    #[error("{0}")]
    Envelope(lettre::error::Error),
    /// The `ca` file cannot be read.
    #[error("ca={}: {source}", path.display())]
    ReadCa {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    /// The `ca` file holds no usable certificate, or TLS cannot be set up.
    #[error("{}{source}", ca.as_ref().map(|p| format!("ca={}: ", p.display())).unwrap_or_default())]
    Tls {
        ca: Option<std::path::PathBuf>,
        source: lettre::transport::smtp::Error,
    },
    /// The `auth` file cannot be read.
    #[error("auth={}: {source}", path.display())]
    ReadAuth {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    /// The `auth` file does not hold a user name and a password.
    #[error(
        "auth={}: expected the user name on the first line, the password on the second",
        path.display()
    )]
    Auth { path: std::path::PathBuf },
}

impl SmtpTransport {
    pub fn new(
        route: &SmtpRoute,
        me: &Name,
        protector: Option<std::sync::Arc<Protector>>,
        now: crate::time::Timestamp,
    ) -> Result<SmtpTransport, SetupError> {
        let fail = |reason: Setup| SetupError {
            host: route.host.clone(),
            port: route.port,
            reason,
        };
        let address = |key: &'static str, value: &str| {
            value.parse::<Address>().map_err(|source| {
                fail(Setup::Address {
                    key,
                    value: value.to_string(),
                    source,
                })
            })
        };
        let from = address("from", &route.from)?;
        let to = address("to", &route.to)?;
        let envelope = Envelope::new(Some(from), vec![to]).map_err(|e| fail(Setup::Envelope(e)))?;
        let tls = match route.tls {
            SmtpTls::None => Tls::None,
            mode => {
                let mut params = TlsParameters::builder(route.host.clone());
                if let Some(ca) = &route.ca {
                    let pem = std::fs::read(ca).map_err(|source| {
                        fail(Setup::ReadCa {
                            path: ca.clone(),
                            source,
                        })
                    })?;
                    let cert = Certificate::from_pem(&pem).map_err(|source| {
                        fail(Setup::Tls {
                            ca: Some(ca.clone()),
                            source,
                        })
                    })?;
                    params = params.add_root_certificate(cert);
                }
                let params = params
                    .build()
                    .map_err(|source| fail(Setup::Tls { ca: None, source }))?;
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
    fn email(&self, files: &[&Outgoing]) -> Result<Vec<u8>, Error> {
        let body = if let [one] = files {
            let mut bytes = Vec::new();
            one.leaving(&self.me, self.now)
                .and_then(|mut r| std::io::Read::read_to_end(&mut r, &mut bytes))
                .map_err(|source| Error::Read {
                    path: one.path.clone(),
                    source,
                })?;
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
                p.protect(&mut &body[..], &mut protected, self.now)?;
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

impl SmtpTransport {
    /// Hands `email` to the relay: refused for good on a 5xx, else (a 4xx,
    /// a timeout, no connection) the link is down.
    fn send(&mut self, email: &[u8]) -> Result<(), Error> {
        match self.client.send_raw(&self.envelope, email) {
            Ok(_) => {
                if !self.nodelay {
                    set_nodelay_on_tcp_sockets();
                    self.nodelay = true;
                }
                Ok(())
            }
            Err(source) if source.is_permanent() => Err(Error::Refused {
                host: self.route.host.clone(),
                source,
            }),
            Err(source) => Err(Error::Relay {
                host: self.route.host.clone(),
                port: self.route.port,
                source,
            }),
        }
    }
}

/// Reads `user` and `password` from the first two lines of `path`.
fn read_credentials(path: &Path) -> Result<Credentials, Setup> {
    let text = std::fs::read_to_string(path).map_err(|source| Setup::ReadAuth {
        path: path.to_path_buf(),
        source,
    })?;
    let mut lines = text.lines();
    match (lines.next(), lines.next()) {
        (Some(user), Some(password)) if !user.is_empty() => {
            Ok(Credentials::new(user.to_string(), password.to_string()))
        }
        _ => Err(Setup::Auth {
            path: path.to_path_buf(),
        }),
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
            let outcome = match self.email(group).and_then(|email| self.send(&email)) {
                Ok(()) => Outcome::Handed,
                Err(why) => {
                    if let Error::Relay { .. } = why {
                        link_down = Some(why.to_string());
                    }
                    why.outcome()
                }
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
