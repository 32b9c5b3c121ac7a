//! Connects the `rs-pgp` crate (Sequoia) to the library's OpenPGP seam.
//! Included by the binaries that send or receive; `rs-send` does not, so
//! it never loads OpenSSL (see `rs_pgp`'s documentation).

use std::io::{Read, Write};
use std::path::Path;
use std::time::SystemTime;

use rs::protect::OpenPgpError;

struct Keys(rs_pgp::Keys);

impl rs::protect::OpenPgpKeys for Keys {
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
) -> Result<Box<dyn rs::protect::OpenPgpKeys>, OpenPgpError> {
    let keys = rs_pgp::Keys::load(our_key, peer_cert, passphrase)?;
    Ok(Box::new(Keys(keys)))
}

/// Makes OpenPGP protection available to this process.
pub fn install() {
    rs::protect::install_openpgp(load);
}
