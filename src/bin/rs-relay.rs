//! rs-relay: receive messages from any transport.
fn main() {
    let args: rs::cli::relay::RelayArgs = rs::cli::parse_or_exit();
    rs::output::exit_with("rs-relay", rs::commands::relay::run(args))
}
