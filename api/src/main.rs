//! `reelq-api`: serve the HTTP API, or administer tenants and keys.

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use secrecy::ExposeSecret as _;
use tokio_util::sync::CancellationToken;

use reelq_api::{Application, Settings};
use reelq_shared::db::{self, tenants};

#[derive(Parser)]
#[command(version, about = "reelq HTTP API")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API (the default).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Print the OpenAPI document.
    Openapi,
    /// Manage tenants.
    Tenant {
        #[command(subcommand)]
        command: TenantCommand,
    },
    /// Manage API keys.
    Key {
        #[command(subcommand)]
        command: KeyCommand,
    },
}

#[derive(Subcommand)]
enum TenantCommand {
    /// Create a tenant (or update its cap if it exists).
    Create {
        name: String,
        /// Jobs of this tenant that may run at once.
        #[arg(long)]
        max_running_jobs: Option<i32>,
    },
}

#[derive(Subcommand)]
enum KeyCommand {
    /// Create a key for a tenant and print it (it is shown only once).
    Create {
        tenant: String,
        #[arg(long, default_value = "")]
        label: String,
        /// Allow the key to operate the scheduler (`/v1/admin/*`).
        #[arg(long)]
        admin: bool,
    },
    /// Revoke a key by its prefix.
    Revoke { tenant: String, prefix: String },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings: Settings = reelq_shared::config::load().context("loading configuration")?;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            let _telemetry = reelq_shared::telemetry::init("reelq-api", &settings.telemetry);
            let app = Application::build(settings).await?;
            let shutdown = CancellationToken::new();
            let token = shutdown.clone();
            reelq_shared::telemetry::spawn_named("signals", async move {
                reelq_shared::telemetry::shutdown_signal().await;
                token.cancel();
            });
            app.run_until_stopped(shutdown).await?;
        }
        Command::Migrate => {
            let pool = db::connect(&settings.database)?;
            db::migrate(&pool).await?;
            println!("migrations applied");
        }
        Command::Openapi => {
            println!("{}", reelq_api::routes::openapi().to_pretty_json()?);
        }
        Command::Tenant { command: TenantCommand::Create { name, max_running_jobs } } => {
            let pool = db::connect(&settings.database)?;
            let t = tenants::upsert(&pool, &name, max_running_jobs).await?;
            println!("tenant {} ({})", t.name, t.id);
        }
        Command::Key { command: KeyCommand::Create { tenant, label, admin } } => {
            let pool = db::connect(&settings.database)?;
            let t = tenants::by_name(&pool, &tenant).await?.with_context(|| format!("no tenant named {tenant}"))?;
            let key = tenants::create_key(&pool, t.id, &label).await?;
            if admin {
                db::admin::set_admin(&pool, &key.hash, true).await?;
            }
            println!("{}", key.key.expose_secret());
        }
        Command::Key { command: KeyCommand::Revoke { tenant, prefix } } => {
            let pool = db::connect(&settings.database)?;
            let t = tenants::by_name(&pool, &tenant).await?.with_context(|| format!("no tenant named {tenant}"))?;
            anyhow::ensure!(tenants::revoke_key(&pool, t.id, &prefix).await?, "no active key with prefix {prefix}");
            println!("revoked");
        }
    }
    Ok(())
}
