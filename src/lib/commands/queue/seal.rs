//! `rs-queue seal` (internal, for `rs-send`): bulk data from standard
//! input sealed for the `[bulk] encrypt_to` recipients.

use std::fs;

use serde_json::json;

use crate::error::{Error, ExitCode};
use crate::output::Out;
use crate::spool::durable;

/// `rs-queue seal`: bulk data from standard input sealed into `path`
/// (durable on return), for `rs-send` (which links no cryptography).
pub(super) fn run(path: &std::path::Path, to: &[String]) -> Result<ExitCode, Error> {
    use std::io::Write;
    let recipients = crate::bulk::seal::Recipient::from_config(to).map_err(|e| {
        crate::spool::Error::Sealing {
            reason: e.to_string(),
        }
    })?;
    let file = fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)
        .map_err(|e| crate::spool::Error::io("open", path, e))?;
    let mut w = durable::Flowing::new(std::io::BufWriter::with_capacity(1 << 20, &file), &file)
        .map_err(|e| crate::spool::Error::io("open", path, e))?;
    let stdin = std::io::stdin();
    let sealed =
        crate::bulk::seal::seal_stream(&recipients, &mut stdin.lock(), &mut w, &mut |_| {})
            .and_then(|s| w.flush().map(|_| s))
            .map_err(|e| crate::spool::Error::io("seal the data into", path, e))?;
    drop(w);
    durable::sync_all(&file, path).map_err(|e| crate::spool::Error::io("fsync", path, e))?;
    let mut out = Out::new();
    out.json(&json!({
        "size": sealed.size,
        "digest": sealed.digest.to_string(),
        "header": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &sealed.header),
    }))?;
    Ok(ExitCode::Ok)
}
