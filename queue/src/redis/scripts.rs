//! The Lua scripts that make every state transition atomic. Each is the shared prelude
//! (`lua/prelude.lua`: key names, the Redis clock, index upkeep) followed by its body; the
//! `redis` crate runs them with EVALSHA and reloads them after a Redis restart.

use redis::Script;

const PRELUDE: &str = include_str!("lua/prelude.lua");

fn script(body: &str) -> Script {
    Script::new(&format!("{PRELUDE}\n{body}"))
}

/// Every script of the backend, compiled once.
pub(super) struct Scripts {
    pub submit: Script,
    pub snapshot: Script,
    pub claim: Script,
    pub heartbeat: Script,
    pub complete: Script,
    pub expired: Script,
    pub lose: Script,
    pub cancel: Script,
    pub clear: Script,
    pub delete: Script,
    pub set_priority: Script,
    pub prioritize: Script,
}

impl Scripts {
    pub fn new() -> Self {
        Self {
            submit: script(include_str!("lua/submit.lua")),
            snapshot: script(include_str!("lua/snapshot.lua")),
            claim: script(include_str!("lua/claim.lua")),
            heartbeat: script(include_str!("lua/heartbeat.lua")),
            complete: script(include_str!("lua/complete.lua")),
            expired: script(include_str!("lua/expired.lua")),
            lose: script(include_str!("lua/lose.lua")),
            cancel: script(include_str!("lua/cancel.lua")),
            clear: script(include_str!("lua/clear.lua")),
            delete: script(include_str!("lua/delete.lua")),
            set_priority: script(include_str!("lua/set_priority.lua")),
            prioritize: script(include_str!("lua/prioritize.lua")),
        }
    }
}
