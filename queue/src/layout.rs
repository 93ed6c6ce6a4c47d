//! Where each user's files live. In single-user mode everything is in the base folders
//! (`input/`, `output/`, `temp/`); in workshop mode each user gets `users/<name>/{input,output,
//! temp}` and their own `users/<name>/models/loras/` on top of the shared models.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use nodes::Env;
use nodes::env::{Dirs, ModelFolders, safe_join};

/// The folder layout shared by the server and the workers (on a shared filesystem).
#[derive(Clone)]
pub struct Layout {
    /// The environment of the default (single) user; its models, device and services are
    /// shared by every user.
    pub base: Env,
    /// Folder holding per-user folders (`<data>/users`).
    pub users_root: PathBuf,
}

impl Layout {
    /// A layout around the default environment, with per-user folders under `users_root`.
    pub fn new(base: Env, users_root: PathBuf) -> Self {
        Self { base, users_root }
    }

    /// The folder of `user` (`None` for names that cannot be folder names).
    pub fn user_dir(&self, user: &str) -> Option<PathBuf> {
        if user.is_empty() || user.starts_with('.') || user.contains(['/', '\\']) {
            return None;
        }
        safe_join(&self.users_root, user)
    }

    /// The environment a prompt of `user` runs in (`""`: the default user).
    pub fn env_for(&self, user: &str) -> Env {
        let Some(dir) = self.user_dir(user) else {
            return self.base.clone();
        };
        let mut models: ModelFolders = (*self.base.models).clone();
        models.add_path("loras", dir.join("models").join("loras"));
        Env {
            dirs: Dirs::under(&dir),
            models: Arc::new(models),
            scope: user.to_string(),
            save_metadata: self.base.save_metadata,
            device: self.base.device.clone(),
            services: self.base.services.clone(),
        }
    }

    /// Creates the folders of `user`.
    pub fn ensure_user(&self, user: &str) -> std::io::Result<Env> {
        let env = self.env_for(user);
        for dir in [&env.dirs.input, &env.dirs.output, &env.dirs.temp] {
            std::fs::create_dir_all(dir)?;
        }
        Ok(env)
    }
}

/// Whether `path` is inside `base` (both canonicalised when they exist).
pub fn is_within(base: &Path, path: &Path) -> bool {
    match (base.canonicalize(), path.canonicalize()) {
        (Ok(b), Ok(p)) => p.starts_with(b),
        _ => false,
    }
}
