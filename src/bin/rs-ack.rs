//! rs-ack: acknowledgements and message status.
use clap::Parser;

fn main() {
    let args = rs::cli::ack::AckArgs::parse();
    rs::output::exit_with("rs-ack", rs::commands::ack::run(args))
}
