//! `comfyrs export`: the post-workshop export. Pauses new submissions on the running server,
//! waits for the queue to drain (with a timeout), archives every user's outputs (one `tar.gz`
//! per user and one for all) from the data directory, and writes the workshop report
//! (`report.md`, `report.json`, `queue-depth.svg`, `throughput.svg`) from the job history.

pub mod archive;
pub mod charts;
pub mod markdown;
pub mod report;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use serde_json::{Value, json};

use crate::client::{AdminClient, ClientArgs};
use report::JobRecord;

/// `comfyrs export` arguments.
#[derive(Debug, Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// The server's data directory (its --base-directory), holding `users/<name>/output/`.
    #[arg(long, env = "COMFYRS_BASE_DIR", default_value = "data")]
    pub base_directory: PathBuf,
    /// Folder to write the archives and the report into (created).
    #[arg(long, short, default_value = "workshop-export")]
    pub out: PathBuf,
    /// Seconds to wait for pending and running jobs to finish.
    #[arg(long, default_value_t = 600)]
    pub drain_timeout: u64,
    /// Leave submissions open (do not pause the queue).
    #[arg(long)]
    pub no_pause: bool,
    /// Resume submissions once the export is written.
    #[arg(long)]
    pub resume: bool,
    /// The report's title.
    #[arg(long, default_value = "Workshop report")]
    pub title: String,
}

/// Runs the export.
pub async fn run(args: ExportArgs) -> anyhow::Result<()> {
    let client = AdminClient::new(&args.client)?;
    if !args.no_pause {
        client.post("/api/queue/pause").await?;
        eprintln!("new submissions paused");
    }
    let drained = drain(&client, Duration::from_secs(args.drain_timeout)).await?;
    let history = client.get("/api/admin/jobs").await?;
    let jobs: Vec<JobRecord> = serde_json::from_value(history["jobs"].clone())
        .context("reading the job history from /api/admin/jobs")?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let archives = write_archives(&args.base_directory, &args.out)?;
    let report = report::compute(&jobs);
    write_report(&args, &report, drained, &archives)?;
    if args.resume {
        client.post("/api/queue/resume").await?;
        eprintln!("submissions resumed");
    }
    eprintln!(
        "exported {} jobs and {} archives to {}",
        jobs.len(),
        archives.len(),
        args.out.display()
    );
    Ok(())
}

/// Polls the overview until nothing is pending or running; false when `timeout` passed first.
async fn drain(client: &AdminClient, timeout: Duration) -> anyhow::Result<bool> {
    let deadline = Instant::now() + timeout;
    loop {
        let overview = client.get("/api/admin/overview").await?;
        let active = overview["counts"]["pending"].as_u64().unwrap_or(0)
            + overview["counts"]["running"].as_u64().unwrap_or(0);
        if active == 0 {
            return Ok(true);
        }
        if Instant::now() >= deadline {
            eprintln!("warning: {active} jobs still pending or running after the drain timeout");
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Writes `outputs-<user>.tar.gz` for each user and `outputs-all.tar.gz`; returns
/// `(file name, user, files)` of each.
fn write_archives(base: &Path, out: &Path) -> anyhow::Result<Vec<Value>> {
    let users = archive::user_outputs(base)?;
    let mut written = Vec::new();
    for u in &users {
        let name = format!("outputs-{}.tar.gz", u.user);
        let files = archive::write_tar_gz(&out.join(&name), &[(&u.user, &u.dir)])?;
        written.push(json!({"file": name, "user": u.user, "files": files}));
    }
    let all: Vec<(&str, &Path)> = users
        .iter()
        .map(|u| (u.user.as_str(), u.dir.as_path()))
        .collect();
    let files = archive::write_tar_gz(&out.join("outputs-all.tar.gz"), &all)?;
    written.push(json!({"file": "outputs-all.tar.gz", "user": null, "files": files}));
    Ok(written)
}

fn write_report(
    args: &ExportArgs,
    report: &report::Report,
    drained: bool,
    archives: &[Value],
) -> anyhow::Result<()> {
    let charts = ["queue-depth.svg", "throughput.svg"];
    std::fs::write(args.out.join(charts[0]), charts::queue_depth(report))?;
    std::fs::write(args.out.join(charts[1]), charts::throughput(report))?;
    let mut md = markdown::render(report, &args.title, &charts);
    md.push_str("\n## Archives\n\n");
    for a in archives {
        md.push_str(&format!(
            "- `{}`: {} files\n",
            a["file"].as_str().unwrap_or("?"),
            a["files"]
        ));
    }
    if !drained {
        md.push_str("\n**The queue had not drained when the export was taken.**\n");
    }
    std::fs::write(args.out.join("report.md"), md)?;
    let document = json!({
        "title": args.title,
        "drained": drained,
        "archives": archives,
        "report": report,
    });
    std::fs::write(
        args.out.join("report.json"),
        serde_json::to_string_pretty(&document)?,
    )?;
    Ok(())
}
