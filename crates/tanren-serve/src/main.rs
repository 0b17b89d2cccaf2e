//! `tanren-serve`: the flags and start-up live in `tanren_serve::cli`; this is only the entry point.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tanren_serve::cli::main().await
}
