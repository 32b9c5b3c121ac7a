//! rs-ack: acknowledgements and message status.
fn main() {
    // OpenPGP is linked here, never in rs-send (crates/openpgp).
    let linked = rs::commands::Linked {
        openpgp: Some(rs_openpgp::openpgp()),
    };
    let args: rs::cli::ack::AckArgs = rs::cli::parse_or_exit();
    rs::output::exit_with("rs-ack", rs::commands::ack::run(args, linked))
}
