//! `comfyrs`: a native, ComfyUI-compatible inference engine and multi-user serving platform.

mod device;
mod models;
mod queue_args;
mod run;
mod serve;
mod settings;
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
    /// Run jobs from the shared Redis queue on one device (`--redis URL --device cuda:0`).
    Worker(Box<worker::WorkerArgs>),
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
