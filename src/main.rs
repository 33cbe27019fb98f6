//! Thin: parse arguments and hand over to the library.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    eshop::main().await
}
