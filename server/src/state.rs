//! What every handler shares: the queue, the node registry, the file layout, the users and the
//! WebSocket hub.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use nodes::{Env, Registry};
use queue::{Backend, Layout};

use crate::auth::{Scope, Users};
use crate::hub::Hub;
use crate::limits::{Guards, UserLimits};

/// Everything `comfyrs serve` is configured with.
pub struct ServerConfig {
    /// The job queue.
    pub backend: Arc<dyn Backend>,
    /// Nodes (for `/object_info` and validation).
    pub registry: Arc<Registry>,
    /// Folder layout (the default user's env and per-user folders).
    pub layout: Arc<Layout>,
    /// Workshop users (`None`: single-user mode, no authentication).
    pub users: Option<Arc<Users>>,
    /// The ComfyUI frontend's static folder (`comfyui_frontend_package/static`).
    pub frontend_root: Option<PathBuf>,
    /// The workflow templates folder (`comfyui_workflow_templates*/templates`).
    pub templates_root: Option<PathBuf>,
    /// Workflows pre-loaded into every user's workflow list (read-only).
    pub workshop_workflows: Option<PathBuf>,
    /// Folder of the single user's userdata (`<base>/user`).
    pub user_root: PathBuf,
    /// Largest upload accepted (bytes).
    pub max_upload_bytes: usize,
    /// Largest participant LoRA upload (bytes); `None`: LoRA uploads are disabled.
    pub lora_upload_bytes: Option<u64>,
    /// Largest request body for JSON routes (bytes).
    pub max_body_bytes: usize,
    /// `--enable-cors-header` origin, if set.
    pub cors_origin: Option<String>,
    /// Prompt size limits.
    pub limits: engine::Limits,
    /// Per-user limits (they bind participants; admins and single-user mode are exempt).
    pub user_limits: UserLimits,
    /// The command line, reported by `/system_stats`.
    pub argv: Vec<String>,
    /// Device names for `/system_stats`.
    pub devices: Vec<String>,
    /// New prompts are refused while the output disk has fewer free bytes (0 = no guard).
    pub min_free_disk_bytes: u64,
    /// How long browser sessions last.
    pub session_policy: crate::sessions::SessionPolicy,
}

/// The shared state of a running server.
pub struct AppState {
    /// Configuration.
    pub config: ServerConfig,
    /// Connected WebSockets.
    pub hub: Hub,
    /// Start time.
    pub started: Instant,
    /// Recent run times for job ETAs.
    pub eta_history: crate::eta::HistoryCache,
    /// Rate counters for the per-user limits.
    pub guards: Guards,
    /// Browser sessions (`/login`).
    pub sessions: crate::sessions::Sessions,
    /// The queue view shared by the jobs and queue routes.
    pub queue_view: crate::eta::ViewCache,
}

impl AppState {
    /// State for a configuration.
    pub fn new(config: ServerConfig) -> Arc<Self> {
        Arc::new(Self {
            guards: Guards::new(&config.user_limits),
            sessions: crate::sessions::Sessions::new(config.session_policy),
            queue_view: Default::default(),
            config,
            hub: Hub::default(),
            started: Instant::now(),
            eta_history: Default::default(),
        })
    }

    /// The environment (folders, models) of a scope's user, creating its folders.
    pub fn env(&self, scope: &Scope) -> Env {
        match self.config.layout.ensure_user(&scope.user) {
            Ok(env) => env,
            Err(e) => {
                tracing::error!(user = %scope.user, "cannot create the user's folders: {e}");
                self.config.layout.env_for(&scope.user)
            }
        }
    }

    /// The output folder whose disk the guard watches (the default user's; users' folders
    /// live beside it under the same data directory).
    pub fn output_dir(&self) -> PathBuf {
        self.config.layout.base.dirs.output.clone()
    }

    /// The folder holding a scope's userdata (settings, workflows, ...).
    pub fn userdata_dir(&self, scope: &Scope) -> PathBuf {
        match self.config.layout.user_dir(&scope.user) {
            Some(dir) => dir.join("user"),
            None => self.config.user_root.join("default"),
        }
    }
}
