//! rs-queue: look at and manage the outbound queue.
fn main() {
    // OpenPGP is linked here, never in rs-send (crates/openpgp).
    let linked = rs::commands::Linked {
        openpgp: Some(rs_openpgp::openpgp()),
    };
    let args: rs::cli::queue::QueueArgs = rs::cli::parse_or_exit();
    rs::output::exit_with("rs-queue", rs::commands::queue::run(args, linked))
}
