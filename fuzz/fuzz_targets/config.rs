//! config.toml (including one served over the network): parsing and
//! validation never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(c) = rs::config::Config::parse(text) {
            let _ = c.exposed_secrets();
        }
    }
});
