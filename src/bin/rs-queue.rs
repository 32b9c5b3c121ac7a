//! rs-queue: look at and manage the outbound queue.
use clap::Parser;

fn main() {
    let args = rs::cli::queue::QueueArgs::parse();
    rs::output::exit_with("rs-queue", rs::commands::queue::run(args))
}
