//! Writes the man pages of every command (and subcommand) into the directory
//! given as the only argument. Run through scripts/man.sh.
use clap::CommandFactory;

fn main() -> std::io::Result<()> {
    let out = std::env::args_os()
        .nth(1)
        .ok_or_else(|| std::io::Error::other("usage: mangen OUT_DIR"))?;
    for cmd in [
        rs::cli::send::SendArgs::command(),
        rs::cli::queue::QueueArgs::command(),
        rs::cli::relay::RelayArgs::command(),
        rs::cli::ack::AckArgs::command(),
        rs::cli::spm::SpmArgs::command(),
    ] {
        clap_mangen::generate_to(cmd, &out)?;
    }
    Ok(())
}
