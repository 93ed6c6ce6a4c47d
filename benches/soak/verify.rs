//! The verification pass after the soak: every submitted id is accounted for (in its owner's
//! `/api/jobs`, or by `/api/jobs/{id}` for a job cancelled before it ran, which the list leaves
//! out as ComfyUI keeps no history for it), final or still pending/running (listed), every
//! completed job is in its owner's history with outputs, and every output downloads via `/view`
//! with the size of the file on disk (`data/users/<name>/<type>/<subfolder>/<file>`).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde_json::Value;

use crate::client::{Body, Http};
use crate::user::{Submitted, output_files, view_path};

/// What the pass found.
#[derive(Default)]
pub struct Verification {
    /// Final status counts over submitted ids (`completed`, `failed`, `cancelled`, `pending`,
    /// `in_progress`, `lost`).
    pub statuses: BTreeMap<String, usize>,
    /// Waits (submit -> start, ms) of the jobs that started, per user.
    pub waits: BTreeMap<String, Vec<f64>>,
    /// Jobs run more than once (a worker died under them).
    pub retried: usize,
    /// Output files checked.
    pub files_checked: usize,
    /// Bytes of those files.
    pub bytes_checked: u64,
    /// Ids still pending or running at the end (`user id status`).
    pub unfinished: Vec<String>,
    /// Failed jobs with their error (reported; not a check failure by itself).
    pub failed: Vec<String>,
    /// Completed jobs whose end the WebSocket never reported to their owner.
    pub ws_missed: Vec<String>,
    /// The job running on the SIGKILLed worker: (id, final status, attempts).
    pub killed_job: Option<(String, String, u64)>,
    /// Check failures: lost jobs, missing history or outputs, wrong sizes.
    pub problems: Vec<String>,
}

/// Checks every submitted job of `users`.
/// `killed`: the job that was running on the SIGKILLed worker; it must end completed (run
/// again by another worker) or cancelled by its owner.
pub async fn verify(
    users: &[Http],
    submitted: &[Submitted],
    data: &Path,
    killed: Option<&str>,
) -> Verification {
    let mut v = Verification::default();
    let by_user: HashMap<&str, &Http> = users.iter().map(|u| (u.user.name.as_str(), u)).collect();
    let mut listed: HashMap<String, HashMap<String, Value>> = HashMap::new();
    for user in users {
        let items = match user.get_json("/api/jobs?limit=100000").await {
            Some(reply) => reply["jobs"].as_array().cloned().unwrap_or_default(),
            None => {
                v.problems
                    .push(format!("{}: /api/jobs did not answer", user.user.name));
                Vec::new()
            }
        };
        let map = items
            .into_iter()
            .filter_map(|j| Some((j["id"].as_str()?.to_string(), j)))
            .collect();
        listed.insert(user.user.name.clone(), map);
    }
    for job in submitted {
        let user = by_user[job.user.as_str()];
        // A job cancelled before it ran is left out of the owner's list (as ComfyUI has no
        // history for it) but still answers by id.
        let item = match listed.get(&job.user).and_then(|m| m.get(&job.id)) {
            Some(item) => Some(item.clone()),
            None => user.get_json(&format!("/api/jobs/{}", job.id)).await,
        };
        let Some(item) = item else {
            *v.statuses.entry("lost".into()).or_default() += 1;
            v.problems.push(format!(
                "lost: {} {} ({}, re-queue {}, cancel {:?}, owner saw {:?}) is in neither the \
                 owner's /api/jobs nor /api/jobs/{{id}}",
                job.user,
                job.id,
                job.kind.name(),
                job.requeue,
                job.cancel,
                job.seen,
            ));
            continue;
        };
        let status = item["status"].as_str().unwrap_or("?").to_string();
        *v.statuses.entry(status.clone()).or_default() += 1;
        let attempts = item["attempts"].as_u64().unwrap_or(0);
        if attempts > 1 {
            v.retried += 1;
        }
        if killed == Some(job.id.as_str()) {
            v.killed_job = Some((job.id.clone(), status.clone(), attempts));
            let cancelled = status == "cancelled" && job.cancel.is_some();
            if status != "completed" && !cancelled {
                v.problems.push(format!(
                    "{} {}: the job under the killed worker ended {status} after {attempts} attempt(s)",
                    job.user, job.id
                ));
            }
        }
        if item.get("execution_start_time").is_some()
            && let Some(wait) = item["wait_ms"].as_f64()
        {
            v.waits.entry(job.user.clone()).or_default().push(wait);
        }
        match status.as_str() {
            "completed" => {
                if !job.ws_done && job.seen.is_some() {
                    v.ws_missed.push(format!("{} {}", job.user, job.id));
                }
                check_outputs(&mut v, user, &job.id, data).await;
            }
            "failed" => v.failed.push(format!(
                "{} {} ({}): {}",
                job.user,
                job.id,
                job.kind.name(),
                item["execution_error"]["exception_message"]
                    .as_str()
                    .unwrap_or("no error message")
            )),
            "cancelled" => {}
            other => v
                .unfinished
                .push(format!("{} {} {other}", job.user, job.id)),
        }
    }
    v
}

/// The completed job `id` is in the owner's history with outputs, and each downloads whole.
async fn check_outputs(v: &mut Verification, user: &Http, id: &str, data: &Path) {
    let name = &user.user.name;
    let Some(history) = user.get_json(&format!("/history/{id}")).await else {
        v.problems
            .push(format!("{name} {id}: /history/{{id}} failed"));
        return;
    };
    let files = output_files(&history[id]["outputs"]);
    if files.is_empty() {
        v.problems.push(format!(
            "{name} {id}: completed but its history entry has no output files: {}",
            history.get(id).map_or("missing".into(), |e| e.to_string())
        ));
        return;
    }
    for file in files {
        let (file_name, subfolder, kind) = &file;
        let disk = data
            .join("users")
            .join(name)
            .join(kind)
            .join(subfolder)
            .join(file_name);
        let expected = std::fs::metadata(&disk).map(|m| m.len()).ok();
        let answer = user.call("GET", &view_path(&file), Body::None).await;
        match (answer, expected) {
            (Some(a), Some(size)) if a.ok() && a.bytes.len() as u64 == size && size > 0 => {
                v.files_checked += 1;
                v.bytes_checked += size;
            }
            (answer, expected) => v.problems.push(format!(
                "{name} {id}: output {subfolder}/{file_name}: /view gave {:?}, disk size {expected:?}",
                answer.map(|a| (a.status, a.bytes.len()))
            )),
        }
    }
}
