//! The document of a registration, heartbeat, registration answer or
//! control message (from a peer): reading it never panics and stays
//! within its bounds.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = rs::infra::read_document(data);
});
