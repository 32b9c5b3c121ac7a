//! rs-queue: look at and manage the outbound queue.
fn main() {
    let args: rs::cli::queue::QueueArgs = rs::cli::parse_or_exit();
    rs::output::exit_with("rs-queue", rs::commands::queue::run(args))
}
