//! rs-relay: receive messages from any transport.
#[path = "../glue/openpgp.rs"]
mod openpgp;

fn main() {
    rs::reconfig::enable_http();
    openpgp::install();
    let args: rs::cli::relay::RelayArgs = rs::cli::parse_or_exit();
    rs::output::exit_with("rs-relay", rs::commands::relay::run(args))
}
