//! rs-relay: receive messages from any transport.
fn main() {
    // OpenPGP is linked here, never in rs-send (crates/openpgp).
    let linked = rs::commands::Linked {
        openpgp: Some(rs_openpgp::openpgp()),
    };
    let args: rs::cli::relay::RelayArgs = rs::cli::parse_or_exit();
    rs::output::exit_with("rs-relay", rs::commands::relay::run(args, linked))
}
