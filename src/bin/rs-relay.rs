//! rs-relay: receive messages from any transport.
use clap::Parser;

fn main() {
    let args = rs::cli::relay::RelayArgs::parse();
    rs::output::exit_with("rs-relay", rs::commands::relay::run(args))
}
