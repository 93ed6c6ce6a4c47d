//! The `comfyrs` binary as the operations tests run it (status, export, backup, restore) and the
//! workshop state they work on.

use std::ffi::OsStr;
use std::process::{Command, Output};

use super::{Server, TestUser, empty_image_prompt};

/// Runs `comfyrs <args>` with every `COMFYRS_*` and `AWS_*` variable of the test's environment
/// removed, plus `env`.
pub fn comfyrs_with<V: AsRef<OsStr>>(args: &[&str], env: &[(&str, V)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_comfyrs"));
    cmd.args(args);
    for (key, _) in std::env::vars() {
        if key.starts_with("AWS_") || key.starts_with("COMFYRS_") {
            cmd.env_remove(key);
        }
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run comfyrs")
}

/// Runs `comfyrs <args>` (see [`comfyrs_with`]).
pub fn comfyrs(args: &[&str]) -> Output {
    comfyrs_with::<&str>(args, &[])
}

/// Two participants (`user001`, `user002`) and an admin (`teacher`).
pub fn workshop_users() -> Vec<TestUser> {
    vec![
        TestUser::participant("user001", "pw-one"),
        TestUser::participant("user002", "pw-two"),
        TestUser::admin("teacher", "pw-admin"),
    ]
}

/// Queues an 8x8 image of `color` for each participant; returns `(user, prompt id, subfolder,
/// file name)`.
pub async fn one_output_each(server: &Server, color: u32) -> Vec<(String, String, String, String)> {
    let mut made = Vec::new();
    for user in ["user001", "user002"] {
        let api = server.http_as(user);
        let prefix = format!("/{user}");
        let prompt = empty_image_prompt(8, 8, color, &format!("{user}-dir/img"));
        let id = api.queue(&prefix, &prompt, None).await["prompt_id"]
            .as_str()
            .unwrap()
            .to_string();
        let entry = api.wait_history(&prefix, &id).await;
        let image = &entry["outputs"]["2"]["images"][0];
        made.push((
            user.to_string(),
            id,
            image["subfolder"].as_str().unwrap().to_string(),
            image["filename"].as_str().unwrap().to_string(),
        ));
    }
    made
}
