//! Spool and wire file names (a stick's names are hostile): parsing never
//! panics; a parsed queue name writes back to itself.
#![no_main]
use libfuzzer_sys::fuzz_target;
use rs::queue::entry::{parse_sent, sent_file_name, EntryName};

fuzz_target!(|data: &[u8]| {
    let Ok(name) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(e) = EntryName::parse(name) {
        let again = EntryName::parse(&e.to_string()).expect("a written name parses");
        assert_eq!(e, again, "parse(write(x)) = x");
    }
    if let Some((e, info)) = parse_sent(name) {
        let again = parse_sent(&sent_file_name(&e, &info)).expect("a written name parses");
        assert_eq!((e, info), again);
    }
    let _ = rs::transport::dir::message_id_of(name);
    let _ = rs::transport::dir::is_ack_file(name);
});
