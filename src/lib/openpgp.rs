//! Connects the `rs-pgp` crate (Sequoia) to the OpenPGP seam of
//! `protect` ([`crate::protect::OpenPgp`]). `compose::install` installs it
//! on the spools of the programs that send or receive; `rs-send`, which
//! installs nothing, never links it and so never loads OpenSSL
//! (`tests/regression.rs` checks its binary).

use std::io::{Read, Write};
use std::path::Path;
use std::time::SystemTime;

use crate::protect::OpenPgpError;

struct Keys(rs_pgp::Keys);

impl crate::protect::OpenPgpKeys for Keys {
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
) -> Result<Box<dyn crate::protect::OpenPgpKeys>, OpenPgpError> {
    let keys = rs_pgp::Keys::load(our_key, peer_cert, passphrase)?;
    Ok(Box::new(Keys(keys)))
}

/// OpenPGP with `rs-pgp`, to install on a spool.
pub fn openpgp() -> crate::protect::OpenPgp {
    crate::protect::OpenPgp(load)
}
