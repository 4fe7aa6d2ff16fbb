//! `reelq-dev-s3`: an S3-compatible server over a folder, for running reelq locally without
//! MinIO. Not for production: it has one key pair and no durability guarantees beyond the disk.

use std::path::PathBuf;

use clap::Parser;

#[derive(Debug, Parser)]
#[command(version, about = "S3-compatible server over a folder, for local reelq development")]
struct Opt {
    /// Address to listen on.
    #[arg(long, env = "REELQ_DEV_S3_ADDR", default_value = "127.0.0.1:9000")]
    addr: String,
    /// Access key id clients must sign with.
    #[arg(long, env = "REELQ_DEV_S3_ACCESS_KEY", default_value = "reelq")]
    access_key: String,
    /// Secret key clients must sign with.
    #[arg(long, env = "REELQ_DEV_S3_SECRET_KEY", default_value = "reelq-dev-secret", hide_env_values = true)]
    secret_key: String,
    /// Folder holding the buckets.
    #[arg(default_value = ".data/s3")]
    root: PathBuf,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).init();
    let opt = Opt::parse();
    let listener = std::net::TcpListener::bind(&opt.addr)?;
    let server = reelq_devs3::DevS3::start(listener, opt.root.clone(), &opt.access_key, &opt.secret_key)?;
    println!("reelq-dev-s3 serving {} at {}", opt.root.display(), server.endpoint());
    tokio::signal::ctrl_c().await?;
    server.stop().await;
    Ok(())
}
