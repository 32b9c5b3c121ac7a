//! A message content's XML (alarm, event, message-response, bulk, data):
//! parsing never panics; what parses round-trips.
#![no_main]
use libfuzzer_sys::fuzz_target;
use rs::message::xml;

fuzz_target!(|data: &[u8]| {
    if let Ok(c) = xml::content_from_xml(data) {
        let again = xml::content_from_xml(xml::content_to_xml(&c).as_bytes())
            .expect("a written content parses");
        assert_eq!(c, again, "parse(write(x)) = x");
    }
});
