use std::process::ExitCode;

fn main() -> ExitCode {
    labelloop::cli::main()
}
