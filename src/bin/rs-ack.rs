//! rs-ack: acknowledgements and message status.
#[path = "../glue/openpgp.rs"]
mod openpgp;

fn main() {
    rs::reconfig::enable_http();
    openpgp::install();
    let args: rs::cli::ack::AckArgs = rs::cli::parse_or_exit();
    rs::output::exit_with("rs-ack", rs::commands::ack::run(args))
}
