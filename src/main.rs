fn main() -> std::process::ExitCode {
    wkube::cli::main()
}
