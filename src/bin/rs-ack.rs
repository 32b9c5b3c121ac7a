//! rs-ack: acknowledgements and message status.
fn main() {
    let args: rs::cli::ack::AckArgs = rs::cli::parse_or_exit();
    rs::output::exit_with("rs-ack", rs::commands::ack::run(args))
}
