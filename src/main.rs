//! The `rk3s` binary: everything is in the library; this only hands over to the CLI.

fn main() -> std::process::ExitCode {
    rk3s::cli::main()
}
