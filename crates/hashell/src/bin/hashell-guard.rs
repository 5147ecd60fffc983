//! `hashell-guard`: the fencing guard alone (see `hashell::guard`). The daemon starts it
//! when it is installed next to `hashell`; it is the code `hashell guard` runs, in a binary
//! that holds little else, so the guard that runs beside every PostgreSQL costs little
//! memory.

fn main() -> std::process::ExitCode {
    hashell::guard::main_with_args(std::env::args_os().skip(1))
}
