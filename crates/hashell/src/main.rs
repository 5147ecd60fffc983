//! `hashell`: the daemon and CLI.

fn main() -> std::process::ExitCode {
    hashell::cli::main()
}
