//! A mail as an MTA hands it to rs-relay receive: finding its sender never
//! panics; the protection wrapper's kind is told from any prefix.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn config() -> &'static rs::config::Config {
    static C: OnceLock<rs::config::Config> = OnceLock::new();
    C.get_or_init(|| {
        rs::config::Config::parse(
            "site = \"p\"\ncomponent = \"p.hub\"\n[[peer]]\nid = \"a.host\"\nroutes = [\"smtp://mx?from=p@x.test&to=a@y.test\"]\n",
        )
        .expect("the fixed configuration parses")
    })
}

fuzz_target!(|data: &[u8]| {
    let _ = rs::receive::mail::sender(config(), data);
    let _ = rs::protect::wire(data);
});
