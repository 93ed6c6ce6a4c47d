//! How a job is stored in Redis: one hash per job. The parts that never change after submission
//! (prompt, outputs, extra data, client id) are one JSON field (`spec`); everything a state
//! transition touches is its own field, so the Lua scripts change state without decoding JSON.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::{Number, Value as Json};

use crate::error::{Error, Result};
use crate::job::{Job, JobResult, JobState, NewJob};

/// The immutable part of a job, stored as the `spec` field.
#[derive(Serialize)]
pub(super) struct SpecRef<'a> {
    pub client_id: &'a Option<String>,
    pub prompt: &'a Json,
    pub outputs: &'a [String],
    pub extra_data: &'a Json,
}

#[derive(Deserialize)]
struct Spec {
    client_id: Option<String>,
    prompt: Json,
    outputs: Vec<String>,
    extra_data: Json,
}

/// The `spec` JSON of a new job.
pub(super) fn spec_json(job: &NewJob) -> Result<String> {
    serde_json::to_string(&SpecRef {
        client_id: &job.client_id,
        prompt: &job.prompt,
        outputs: &job.outputs,
        extra_data: &job.extra_data,
    })
    .map_err(|e| Error::Redis(format!("encoding job {}: {e}", job.id)))
}

/// The name a state is stored under (the scripts use the same names).
pub(super) fn state_name(state: JobState) -> &'static str {
    match state {
        JobState::Pending => "pending",
        JobState::Running => "running",
        JobState::Completed => "completed",
        JobState::Failed => "failed",
        JobState::Cancelled => "cancelled",
    }
}

fn parse_state(name: &str) -> Option<JobState> {
    Some(match name {
        "pending" => JobState::Pending,
        "running" => JobState::Running,
        "completed" => JobState::Completed,
        "failed" => JobState::Failed,
        "cancelled" => JobState::Cancelled,
        _ => return None,
    })
}

/// Every state, in the order the per-state sets are counted.
pub(super) const STATES: [JobState; 5] = [
    JobState::Pending,
    JobState::Running,
    JobState::Completed,
    JobState::Failed,
    JobState::Cancelled,
];

/// A flat `[field, value, field, value, ...]` reply (HGETALL) as a map.
pub(super) fn pairs(flat: Vec<String>) -> HashMap<String, String> {
    let mut map = HashMap::with_capacity(flat.len() / 2);
    let mut it = flat.into_iter();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        map.insert(k, v);
    }
    map
}

struct Fields<'a> {
    key: &'a str,
    map: &'a HashMap<String, String>,
}

impl Fields<'_> {
    fn corrupt(&self, message: impl Into<String>) -> Error {
        Error::Corrupt {
            key: self.key.to_string(),
            message: message.into(),
        }
    }

    fn text(&self, name: &str) -> Result<&str> {
        self.map
            .get(name)
            .map(String::as_str)
            .ok_or_else(|| self.corrupt(format!("field {name} is missing")))
    }

    fn opt_text(&self, name: &str) -> Option<&str> {
        self.map
            .get(name)
            .map(String::as_str)
            .filter(|s| !s.is_empty())
    }

    fn int<T: std::str::FromStr>(&self, name: &str) -> Result<T> {
        let text = self.text(name)?;
        text.parse()
            .map_err(|_| self.corrupt(format!("field {name} is not a number: {text:?}")))
    }

    fn opt_int(&self, name: &str) -> Result<Option<i64>> {
        match self.opt_text(name) {
            None => Ok(None),
            Some(text) => text
                .parse()
                .map(Some)
                .map_err(|_| self.corrupt(format!("field {name} is not a number: {text:?}"))),
        }
    }

    fn json<T: serde::de::DeserializeOwned>(&self, name: &str, text: &str) -> Result<T> {
        serde_json::from_str(text).map_err(|e| self.corrupt(format!("field {name}: {e}")))
    }
}

/// Rebuilds a job from its hash (`key` names it in errors).
pub(super) fn job_from_fields(key: &str, map: &HashMap<String, String>) -> Result<Job> {
    let f = Fields { key, map };
    let spec: Spec = f.json("spec", f.text("spec")?)?;
    let number: Number = f.json("number", f.text("number")?)?;
    let state_text = f.text("state")?;
    let state = parse_state(state_text)
        .ok_or_else(|| f.corrupt(format!("unknown state {state_text:?}")))?;
    let result: Option<JobResult> = match f.opt_text("result") {
        Some(text) => Some(f.json("result", text)?),
        None => None,
    };
    Ok(Job {
        id: f.text("id")?.to_string(),
        seq: f.int("seq")?,
        number,
        priority: f.int("priority")?,
        user: f.text("user")?.to_string(),
        client_id: spec.client_id,
        prompt: spec.prompt,
        outputs: spec.outputs,
        extra_data: spec.extra_data,
        state,
        created_at: f.int("created_at")?,
        started_at: f.opt_int("started_at")?,
        finished_at: f.opt_int("finished_at")?,
        attempts: f.int("attempts")?,
        worker: f.opt_text("worker").map(str::to_string),
        lease_until: f.opt_int("lease_until")?,
        cancel_requested: f.opt_text("cancel") == Some("1"),
        result,
        reason: f.opt_text("reason").map(str::to_string),
    })
}

/// The job a script returned as a flat HGETALL reply (`None` for a nil reply).
pub(super) fn job_from_reply(key: &str, reply: Option<Vec<String>>) -> Result<Option<Job>> {
    match reply {
        Some(flat) if !flat.is_empty() => job_from_fields(key, &pairs(flat)).map(Some),
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_stored_job_round_trips() {
        let new = NewJob {
            id: "j1".into(),
            user: "ann".into(),
            client_id: Some("c".into()),
            prompt: json!({"1": {"class_type": "X", "inputs": {"b": 1, "a": 2}}}),
            outputs: vec!["1".into()],
            extra_data: json!({"create_time": 5}),
            number: None,
            front: false,
        };
        let result = JobResult {
            status_str: "success".into(),
            completed: true,
            ..Default::default()
        };
        let map: HashMap<String, String> = [
            ("id", "j1".to_string()),
            ("spec", spec_json(&new).unwrap()),
            ("user", "ann".into()),
            ("seq", "7".into()),
            ("number", "-2.5".into()),
            ("priority", "3".into()),
            ("state", "completed".into()),
            ("attempts", "2".into()),
            ("created_at", "100".into()),
            ("started_at", "150".into()),
            ("finished_at", "190".into()),
            ("worker", "w1".into()),
            ("cancel", "0".into()),
            ("result", serde_json::to_string(&result).unwrap()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let job = job_from_fields("job:j1", &map).unwrap();
        assert_eq!(job.seq, 7);
        assert_eq!(job.number.as_f64(), Some(-2.5));
        assert_eq!(job.state, JobState::Completed);
        assert_eq!(job.prompt, new.prompt);
        assert_eq!(
            serde_json::to_string(&job.prompt).unwrap(),
            serde_json::to_string(&new.prompt).unwrap(),
            "key order is kept"
        );
        assert_eq!(job.result, Some(result));
        assert_eq!(job.lease_until, None);
        assert!(!job.cancel_requested);
    }

    #[test]
    fn a_damaged_hash_names_the_field() {
        let map: HashMap<String, String> = [("id".to_string(), "j".to_string())].into();
        let err = job_from_fields("job:j", &map).unwrap_err().to_string();
        assert!(err.contains("job:j") && err.contains("spec"), "{err}");
    }
}
