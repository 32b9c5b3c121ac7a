//! rs-spm: the service point map.

fn main() {
    let args: rs::cli::spm::SpmArgs = rs::cli::parse_or_exit();
    rs::output::exit_with(
        "rs-spm",
        rs::commands::spm::run(args, rs::commands::Linked::default()),
    )
}
