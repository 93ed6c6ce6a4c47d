//! The Redis keys and channels of one queue, all under a prefix (default `comfyrs`), so several
//! queues can share a Redis. The Lua prelude builds the same names.
//!
//! | key | type | holds |
//! |---|---|---|
//! | `P:job:<id>` | hash | one job (see `codec`) |
//! | `P:jobs` | zset | every job id, scored by submission number (`seq`) |
//! | `P:byuser:<user>` | zset | a user's job ids by `seq` |
//! | `P:state:<state>` | zset | ids per state by `seq` (`pending`, `running`, `completed`, ...) |
//! | `P:upending:<user>` | zset | a user's pending ids (per-user limit) |
//! | `P:leases` | zset | running ids scored by lease deadline (ms, Redis clock) |
//! | `P:finished` | zset | finished ids by `seq` (history trimming) |
//! | `P:meta` | hash | `counter`, `seq`, `turn`, `policy`, `paused` |
//! | `P:served` | hash | user -> round-robin turn when last served |
//! | `P:workers` | hash | worker id -> `WorkerInfo` JSON |
//! | `P:events` | channel | `JobEvent` JSON from workers to servers |
//! | `P:notices` | channel | `changed` / `work` / `cancel` |

use crate::job::JobState;

use super::codec::state_name;

/// Key names under one prefix.
#[derive(Debug, Clone)]
pub(super) struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_string(),
        }
    }

    /// The prefix (ARGV[1] of every script).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn key(&self, parts: &[&str]) -> String {
        let mut key = self.prefix.clone();
        for part in parts {
            key.push(':');
            key.push_str(part);
        }
        key
    }

    pub fn job(&self, id: &str) -> String {
        self.key(&["job", id])
    }

    pub fn jobs(&self) -> String {
        self.key(&["jobs"])
    }

    pub fn by_user(&self, user: &str) -> String {
        self.key(&["byuser", user])
    }

    pub fn state(&self, state: JobState) -> String {
        self.key(&["state", state_name(state)])
    }

    pub fn meta(&self) -> String {
        self.key(&["meta"])
    }

    pub fn workers(&self) -> String {
        self.key(&["workers"])
    }

    pub fn events(&self) -> String {
        self.key(&["events"])
    }

    pub fn notices(&self) -> String {
        self.key(&["notices"])
    }
}
