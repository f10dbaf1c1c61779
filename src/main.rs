use std::process::ExitCode;

/// mimalloc instead of glibc's malloc: buffers are allocated on the thread
/// that decodes a request and freed on the one that answers it, and glibc
/// then takes the other thread's arena lock on every free.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    labelloop::cli::main()
}
