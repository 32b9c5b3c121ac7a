//! `rs-ack wait`: polls a message's status until it is acknowledged
//! (exit 0), dead (69), unknown (66), or the timeout passes (75).

use std::time::{Duration, Instant};

use crate::error::{Error, ExitCode};
use crate::output::Out;
use crate::spool::Spool;
use crate::time::parse_duration;

use super::status::status;
use crate::commands::Context;

pub(super) fn run(
    ctx: &Context,
    spool: &Spool,
    out: &mut Out,
    id: String,
    (timeout, interval): (&str, &str),
) -> Result<ExitCode, Error> {
    let timeout = parse_duration(timeout)?;
    let interval = parse_duration(interval)?.max(Duration::from_millis(10));
    let start = Instant::now();
    loop {
        let s = status(spool, &id, ctx.clock.now())?;
        match s["state"].as_str().unwrap_or_default() {
            "acknowledged" => {
                if ctx.json {
                    out.json(&s)?;
                }
                return Ok(ExitCode::Ok);
            }
            "dead" => {
                return Err(Error::Undeliverable {
                    id,
                    why: s["summary"].as_str().unwrap_or_default().to_string(),
                })
            }
            "unknown" => {
                return Err(Error::UnknownMessage {
                    id,
                    spool: spool.root().to_path_buf(),
                })
            }
            _ => {}
        }
        if start.elapsed() >= timeout {
            return Err(Error::NotAcknowledged {
                id,
                waited: crate::time::format_duration(timeout),
                status: s["summary"].as_str().unwrap_or_default().to_string(),
            });
        }
        std::thread::sleep(
            interval
                .min(timeout.saturating_sub(start.elapsed()))
                .max(Duration::from_millis(10)),
        );
    }
}
