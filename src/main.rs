fn main() -> std::process::ExitCode {
    mcp_token_sync::cli::main()
}
