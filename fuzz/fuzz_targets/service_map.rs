//! The service point map (fetched from a provider): parsing never panics;
//! what parses round-trips, and resolving and exporting it never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use rs::spm::{resolve, xml, zone, Client, ServiceId};
use rs::time::Timestamp;

fuzz_target!(|data: &[u8]| {
    let Ok(map) = xml::map_from_xml(data) else {
        return;
    };
    let again = xml::map_from_xml(xml::map_to_xml(&map).as_bytes()).expect("a written map parses");
    assert_eq!(map.entries, again.entries, "parse(write(x)) = x");
    let now = Timestamp::from_secs(1_800_000_000);
    for e in &map.entries {
        let id = ServiceId::new(e.key.service.as_str()).expect("checked");
        let q = resolve::Query {
            service: &id,
            version: None,
            sphere: None,
        };
        let _ = resolve::resolve(&map, &q, &Client::default(), now);
    }
    let ns = [std::net::IpAddr::from([192, 0, 2, 53])];
    let x = zone::Export {
        zone: "provider.example",
        ns: None,
        ns_addresses: &ns,
        ttl: 300,
    };
    let _ = zone::export(&map, &Client::default(), &x, now);
});
