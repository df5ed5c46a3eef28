//! `agentry serve | migrate | user … | key … | apply | get | delete | scale | eval run`,
//! `agentry --version`.

use std::ops::ControlFlow;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use agentry::cli::{KeyCommand, UserCommand};
use agentry::remote::{ClusterTarget, Kind, Output, Remote, RemoteArgs};
use agentry::{Application, config::Config, open_database, telemetry};
use agentry_heap_trim::Trimmer;
use clap::{Parser, Subcommand};

/// jemalloc keeps each size of block in runs of its own, so the pages that a burst of opening
/// streams used briefly empty whole and go back to the system; glibc's malloc leaves them
/// pinned by the streams' long-lived blocks (decision 132).
#[cfg(all(feature = "jemalloc", not(target_env = "msvc")))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

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
    /// Apply AgentCluster manifests to a running server: files, folders of .yaml/.yml/.json
    /// files, or `-` for standard input (several documents per file with `---`).
    Apply {
        /// A manifest file, a folder of them, or `-`; repeatable.
        #[arg(short = 'f', long = "filename", required = true)]
        files: Vec<String>,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// List clusters or agents on a running server, or show one.
    Get {
        /// `clusters` or `agents`.
        #[arg(value_enum)]
        kind: Kind,
        /// One cluster's or agent's name.
        name: Option<String>,
        /// Only this cluster's agents.
        #[arg(long)]
        cluster: Option<String>,
        /// `table` or `json`.
        #[arg(short, long, value_enum, default_value_t)]
        output: Output,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Delete a cluster on a running server (its agents are archived).
    Delete {
        #[command(subcommand)]
        target: ClusterTarget,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Set the instances of a cluster's agent on a running server.
    Scale {
        #[command(subcommand)]
        target: ClusterTarget,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Run a test set on a running server and gate on its pass rate (exit 0: every
    /// configuration reached `--min-pass-rate`; 1: one did not; 2: the run failed).
    #[command(subcommand)]
    Eval(agentry::eval_cli::EvalCommand),
}

/// Runs a cluster command against a server (no configuration needed); gives back the
/// other commands.
async fn remote_command(
    command: Command,
) -> Result<Result<String, agentry::cli::CliError>, Command> {
    let (remote, run): (RemoteArgs, RemoteRun) = match command {
        Command::Apply { files, remote } => (remote, RemoteRun::Apply(files)),
        Command::Get {
            kind,
            name,
            cluster,
            output,
            remote,
        } => (remote, RemoteRun::Get(kind, name, cluster, output)),
        Command::Delete { target, remote } => (remote, RemoteRun::Delete(target)),
        Command::Scale { target, remote } => (remote, RemoteRun::Scale(target)),
        other => return Err(other),
    };
    let client = match Remote::new(&remote) {
        Ok(c) => c,
        Err(e) => return Ok(Err(e)),
    };
    Ok(match run {
        RemoteRun::Apply(files) => agentry::remote::apply(&client, &files).await,
        RemoteRun::Get(kind, name, cluster, output) => {
            agentry::remote::get(&client, kind, name.as_deref(), cluster.as_deref(), output).await
        }
        RemoteRun::Delete(target) => agentry::remote::delete(&client, target).await,
        RemoteRun::Scale(target) => agentry::remote::scale(&client, target).await,
    })
}

/// A cluster command's own arguments.
enum RemoteRun {
    Apply(Vec<String>),
    Get(Kind, Option<String>, Option<String>, Output),
    Delete(ClusterTarget),
    Scale(ClusterTarget),
}

/// `agentry eval run`: 0 when every configuration reached the pass rate, 1 when one did
/// not, 2 when the run could not be made or did not complete.
async fn eval_run(args: agentry::eval_cli::EvalRunArgs) -> ExitCode {
    let client = match Remote::new(&args.remote) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("agentry: {e}");
            return ExitCode::from(2);
        }
    };
    match agentry::eval_cli::run(&client, args).await {
        Ok(report) => {
            println!("{}", report.text);
            if report.passed {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("agentry: {e}");
            ExitCode::from(2)
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Eval(agentry::eval_cli::EvalCommand::Run(args))) = cli.command {
        return eval_run(args).await;
    }
    let command = match remote_command(cli.command.unwrap_or(Command::Serve)).await {
        Ok(out) => {
            return match out {
                Ok(text) => {
                    println!("{text}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("agentry: {e}");
                    ExitCode::FAILURE
                }
            };
        }
        Err(command) => command,
    };
    let config = match Config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("agentry: {e}");
            return ExitCode::from(2);
        }
    };
    telemetry::init(config.log_format, &config.log);
    let result = match command {
        Command::Serve => serve(config).await,
        Command::Migrate => migrate(&config).await,
        Command::User(cmd) => print(agentry::cli::user(&config, cmd).await),
        Command::Key(cmd) => print(agentry::cli::key(&config, cmd).await),
        Command::Apply { .. }
        | Command::Get { .. }
        | Command::Delete { .. }
        | Command::Scale { .. }
        | Command::Eval(_) => Ok(()),
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
