//! `agentry serve | migrate | user … | key …`, `agentry --version`.

use std::ops::ControlFlow;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use agentry::cli::{KeyCommand, UserCommand};
use agentry::{Application, config::Config, open_database, telemetry};
use agentry_heap_trim::Trimmer;
use clap::{Parser, Subcommand};

/// Agentry: define LLM agents once; serve, test, watch and improve them.
#[derive(Debug, Parser)]
#[command(name = "agentry", version, about)]
struct Cli {
    /// A TOML config file (also `AGENTRY_CONFIG`).
    #[arg(long, short, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the API (the default).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Manage users: add, passwd, list.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage API keys: create, list, revoke.
    #[command(subcommand)]
    Key(KeyCommand),
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("agentry: {e}");
            return ExitCode::from(2);
        }
    };
    telemetry::init(config.log_format, &config.log);
    let result = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(config).await,
        Command::Migrate => migrate(&config).await,
        Command::User(cmd) => print(agentry::cli::user(&config, cmd).await),
        Command::Key(cmd) => print(agentry::cli::key(&config, cmd).await),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "agentry stopped");
            eprintln!("agentry: {e}");
            ExitCode::FAILURE
        }
    }
}

fn print(out: Result<String, agentry::cli::CliError>) -> Result<(), Box<dyn std::error::Error>> {
    println!("{}", out?);
    Ok(())
}

async fn serve(config: Config) -> Result<(), Box<dyn std::error::Error>> {
    if config.memory_trim_secs > 0 {
        let every = Duration::from_secs(config.memory_trim_secs);
        let started = Trimmer::spawn(every, |trim| {
            let took_us = u64::try_from(trim.took.as_micros()).unwrap_or(u64::MAX);
            tracing::trace!(
                released = trim.released,
                took_us,
                "freed heap memory returned"
            );
            ControlFlow::Continue(())
        });
        if let Err(e) = started {
            tracing::warn!(error = %e, "cannot start the memory trimmer; freed memory stays resident");
        }
    }
    let app = Application::build(config).await?;
    app.run_until_stopped().await?;
    tracing::info!("Agentry stopped");
    Ok(())
}

async fn migrate(config: &Config) -> Result<(), Box<dyn std::error::Error>> {
    let (db, applied) = open_database(config).await?;
    if applied.is_empty() {
        println!("database ({}) is up to date", db.backend().as_str());
    } else {
        for m in &applied {
            println!("applied {m}");
        }
    }
    Ok(())
}
