//! rs-send: queue a message durably and print its ID.
fn main() {
    let args: rs::cli::send::SendArgs = rs::cli::parse_or_exit();
    rs::output::exit_with("rs-send", rs::commands::send::run(args))
}
