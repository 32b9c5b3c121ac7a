//! The server's TLS: the acceptor made from `[http] cert`, `key` and
//! `client_ca`, and what a finished handshake proved of the caller. A
//! client certificate that fails verification still completes the
//! handshake (the request is then refused 403, saying why).

use openssl::ssl::{SslAcceptor, SslFiletype, SslMethod, SslVerifyMode};

use super::Error;
use crate::config::HttpSettings;
use crate::session::Identity;

/// The TLS acceptor for `[http]`, if cert and key are configured.
pub(super) fn acceptor(http: &HttpSettings, config: &str) -> Result<Option<SslAcceptor>, Error> {
    let (Some(cert), Some(key)) = (&http.cert, &http.key) else {
        return Ok(None);
    };
    let fail = |what: &str, source: openssl::error::ErrorStack| Error::Tls {
        config: config.to_string(),
        what: what.to_string(),
        source: source.into(),
    };
    let mut b = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server())
        .map_err(|e| fail("TLS", e))?;
    b.set_certificate_chain_file(cert)
        .map_err(|e| fail(&format!("cert {}", cert.display()), e))?;
    b.set_private_key_file(key, SslFiletype::PEM)
        .map_err(|e| fail(&format!("key {}", key.display()), e))?;
    b.check_private_key()
        .map_err(|e| fail("the key does not match the certificate", e))?;
    if let Some(ca) = &http.client_ca {
        b.set_ca_file(ca)
            .map_err(|e| fail(&format!("client_ca {}", ca.display()), e))?;
        let names = openssl::x509::X509::stack_from_pem(&std::fs::read(ca).unwrap_or_default())
            .map_err(|e| fail(&format!("client_ca {}", ca.display()), e))?;
        let mut list = openssl::stack::Stack::new().map_err(|e| fail("TLS", e))?;
        for c in names {
            list.push(c.subject_name().to_owned().map_err(|e| fail("TLS", e))?)
                .map_err(|e| fail("TLS", e))?;
        }
        b.set_client_ca_list(list);
        // Ask for a certificate, and finish the handshake whatever it is:
        // the handler says 403, and why, to one that did not verify.
        b.set_verify_callback(SslVerifyMode::PEER, |_, _| true);
    }
    Ok(Some(b.build()))
}

/// What the handshake proved of the caller.
pub(super) fn identity_of(ssl: &openssl::ssl::SslRef) -> Identity {
    let Some(cert) = ssl.peer_certificate() else {
        return Identity::None;
    };
    let result = ssl.verify_result();
    if result != openssl::x509::X509VerifyResult::OK {
        return Identity::Failed(result.error_string().to_string());
    }
    match cert.to_der() {
        Ok(der) => Identity::Verified(der),
        Err(e) => Identity::Failed(e.to_string()),
    }
}
