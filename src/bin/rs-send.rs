//! rs-send: queue a message durably and print its ID.
use clap::Parser;

fn main() {
    let args = rs::cli::send::SendArgs::parse();
    rs::output::exit_with("rs-send", rs::commands::send::run(args))
}
