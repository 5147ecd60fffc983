//! hashell itself, built inside the e2e package (see Cargo.toml).

fn main() -> std::process::ExitCode {
    hashell::cli::main()
}
