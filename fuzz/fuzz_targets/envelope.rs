//! The MIME envelope (what media, mail and HTTP carry): parsing never
//! panics, and what parses writes back to bytes that parse to the same
//! messages.
#![no_main]
use libfuzzer_sys::fuzz_target;
use rs::message::envelope;

fuzz_target!(|data: &[u8]| {
    if let Ok(messages) = envelope::parse(data) {
        let again =
            envelope::parse(&envelope::to_bytes(&messages)).expect("a written envelope parses");
        assert_eq!(messages, again, "parse(write(x)) = x");
        for m in &messages {
            let _ = rs::ack::is_ack(m);
        }
    }
    let _ = envelope::parse_headers(data);
    let _ = envelope::first_header(data);
});
