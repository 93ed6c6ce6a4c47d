//! `comfyrs`: a native, ComfyUI-compatible inference engine and multi-user serving platform.

mod backup;
mod client;
mod device;
mod export;
mod models;
mod push;
mod queue_args;
mod run;
mod serve;
mod settings;
mod status;
mod storage;
mod worker;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// comfyrs command line.
#[derive(Debug, Parser)]
#[command(
    name = "comfyrs",
    version,
    about = "A native, ComfyUI-compatible inference engine and serving platform"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log more (repeat for more detail); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Execute a workflow (API or UI format) locally and write its outputs.
    Run(Box<run::RunArgs>),
    /// Serve ComfyUI's HTTP/WebSocket API and frontend, with the embedded queue and local workers.
    Serve(Box<serve::ServeArgs>),
    /// Run jobs from the shared Redis queue on one device (`--redis URL --device cuda:0`), or
    /// jobs pushed over HTTP one per request (`--http ADDR`, serverless platforms).
    Worker(Box<worker::WorkerArgs>),
    /// Health of a running server: queue backend, workers, disk, GPU memory (`--json`).
    Status(Box<status::StatusArgs>),
    /// After the workshop: pause submissions, drain the queue, archive every user's outputs
    /// and write the workshop report (Markdown, JSON, SVG charts).
    Export(Box<export::ExportArgs>),
    /// Back up all state (queue/history store, users' data, config) into one archive with a
    /// manifest of sha256s (`--verify` checks an archive).
    Backup(Box<backup::BackupArgs>),
    /// Check a backup archive against its manifest.
    Verify(backup::VerifyArgs),
    /// Restore a backup into an empty data directory.
    Restore(Box<backup::RestoreArgs>),
    /// Download a model set (`pull`) or show what is present (`list`).
    Models(models::ModelsArgs),
    /// Print an argon2 hash of a password for the users file (reads the password from stdin).
    HashPassword,
}

fn hash_password() -> anyhow::Result<ExitCode> {
    let mut password = String::new();
    std::io::stdin().read_line(&mut password)?;
    let password = password.trim_end_matches(['\n', '\r']);
    anyhow::ensure!(!password.is_empty(), "empty password");
    println!(
        "{}",
        server::auth::hash_password(password).map_err(anyhow::Error::msg)?
    );
    Ok(ExitCode::SUCCESS)
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn,comfyrs=info,server=info,queue=info",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    let result = match cli.command {
        Command::Run(args) => run::run(*args),
        Command::Serve(args) => {
            runtime().and_then(|rt| rt.block_on(serve::run(*args)).map(|()| ExitCode::SUCCESS))
        }
        Command::Worker(args) => {
            runtime().and_then(|rt| rt.block_on(worker::run(*args)).map(|()| ExitCode::SUCCESS))
        }
        Command::Status(args) => runtime().and_then(|rt| rt.block_on(status::run(*args))),
        Command::Export(args) => {
            runtime().and_then(|rt| rt.block_on(export::run(*args)).map(|()| ExitCode::SUCCESS))
        }
        Command::Backup(args) => runtime().and_then(|rt| {
            rt.block_on(backup::backup(*args))
                .map(|()| ExitCode::SUCCESS)
        }),
        Command::Verify(args) => runtime().and_then(|rt| {
            rt.block_on(backup::verify(args))
                .map(|()| ExitCode::SUCCESS)
        }),
        Command::Restore(args) => runtime().and_then(|rt| {
            rt.block_on(backup::restore(*args))
                .map(|()| ExitCode::SUCCESS)
        }),
        Command::Models(args) => runtime().and_then(|rt| rt.block_on(models::run(args))),
        Command::HashPassword => hash_password(),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
