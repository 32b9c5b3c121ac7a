//! Protects or unprotects one file as a peer's configuration says, to
//! measure protection alone (scripts/bench.sh protect), beside gpg and
//! openssl cms on the same file.
//!
//!   protect   SPOOL PEER IN OUT    sign and encrypt for PEER
//!   unprotect SPOOL PEER IN OUT    decrypt and verify what PEER sent
use std::io::{BufReader, BufWriter, Write};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [mode, spool, peer, input, output] = args.as_slice() else {
        return Err("usage: protect protect|unprotect SPOOL PEER IN OUT".into());
    };
    let spool = rs::spool::Spool::open(std::path::Path::new(spool))?;
    let peer = spool.config().peer(peer).ok_or("no such peer")?;
    let protector = rs::protect::Protector::for_peer(peer, Some(rs_openpgp::openpgp().0))?
        .ok_or("the peer has no protection configured")?;
    let mut input = BufReader::with_capacity(256 * 1024, std::fs::File::open(input)?);
    let mut out = BufWriter::with_capacity(256 * 1024, std::fs::File::create(output)?);
    let now = rs::time::system_now();
    match mode.as_str() {
        "protect" => protector.protect(&mut input, &mut out, now)?,
        "unprotect" => {
            if !protector.unprotect(&mut input, &mut out, now)? {
                eprintln!("protect: the message was not signed");
            }
        }
        other => return Err(format!("unknown mode {other}").into()),
    }
    out.flush()?;
    Ok(())
}
