//! rs-queue: look at and manage the outbound queue.
#[path = "../glue/openpgp.rs"]
mod openpgp;

fn main() {
    rs::reconfig::enable_http();
    openpgp::install();
    let args: rs::cli::queue::QueueArgs = rs::cli::parse_or_exit();
    rs::output::exit_with("rs-queue", rs::commands::queue::run(args))
}
