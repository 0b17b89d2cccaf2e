//! The real worker entry point, built inside this package so tests can run it as a process and kill it.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tanren_worker::cli::main().await
}
