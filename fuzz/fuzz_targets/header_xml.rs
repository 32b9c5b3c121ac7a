//! A message header's XML: parsing never panics; what parses round-trips.
#![no_main]
use libfuzzer_sys::fuzz_target;
use rs::message::xml;

fuzz_target!(|data: &[u8]| {
    if let Ok(h) = xml::header_from_xml(data) {
        let again = xml::header_from_xml(xml::header_to_xml(&h).as_bytes())
            .expect("a written header parses");
        assert_eq!(h, again, "parse(write(x)) = x");
    }
});
