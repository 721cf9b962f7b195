//! The `tidemark` binary: everything happens in [`tidemark::cli`].

/// mimalloc rather than the system allocator: DataFusion's planning and execution allocate
/// many small strings, vectors and arrays (README, Benchmarks).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    tidemark::cli::main()
}
