//! The `tidemark` binary: everything happens in [`tidemark::cli`].

fn main() -> std::process::ExitCode {
    tidemark::cli::main()
}
