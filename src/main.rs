//! `comfyrs`: a native, ComfyUI-compatible inference engine and multi-user serving platform.

mod run;
mod settings;

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
    Run(run::RunArgs),
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    let result = match cli.command {
        Command::Run(args) => run::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
