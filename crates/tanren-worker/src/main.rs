//! `tanren-worker`: the flags and start-up live in `tanren_worker::cli`; this is only the entry point.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tanren_worker::cli::main().await
}
