//! Connects the `rs-pgp` crate (Sequoia) to the OpenPGP seam of `protect`
//! ([`rs_wire::protect::OpenPgp`]). The programs that send or receive
//! (rs-queue, rs-relay, rs-ack) name this crate in their `main` and hand
//! it to their commands, which install it on the spools they open; the rs
//! library does not depend on it, so `rs-send` never links it: Sequoia's
//! OpenSSL backend initialises OpenSSL from a static constructor, which
//! would load libssl and libcrypto into every rs-send run
//! (`tests/regression.rs` checks its binary).

use std::io::{Read, Write};
use std::path::Path;
use std::time::SystemTime;

use rs_wire::protect::OpenPgpError;

struct Keys(rs_pgp::Keys);

impl rs_wire::protect::OpenPgpKeys for Keys {
    fn protect(
        &self,
        input: &mut (dyn Read + Send + Sync),
        out: &mut (dyn Write + Send + Sync),
    ) -> Result<(), OpenPgpError> {
        Ok(self.0.protect(input, out)?)
    }

    fn unprotect(
        &self,
        input: &mut (dyn Read + Send + Sync),
        out: &mut (dyn Write + Send + Sync),
        require_signature: bool,
        now: SystemTime,
    ) -> Result<bool, OpenPgpError> {
        Ok(self.0.unprotect(input, out, require_signature, now)?)
    }
}

fn load(
    our_key: &Path,
    peer_cert: &Path,
    passphrase: Option<&Path>,
) -> Result<Box<dyn rs_wire::protect::OpenPgpKeys>, OpenPgpError> {
    let keys = rs_pgp::Keys::load(our_key, peer_cert, passphrase)?;
    Ok(Box::new(Keys(keys)))
}

/// OpenPGP with `rs-pgp`, to install on a spool.
pub fn openpgp() -> rs_wire::protect::OpenPgp {
    rs_wire::protect::OpenPgp(load)
}
