//! Shared helpers of the integration tests: start the real `comfyrs serve` binary on a loopback
//! port with a temporary base directory (single-user or workshop mode), talk to it over HTTP and
//! WebSocket, load the captured answers of the real ComfyUI (`tests/fixtures/comfy_peer/`) and
//! compare JSON modulo volatile keys and unordered lists.
//!
//! Each test binary includes this module (`mod common;`) and uses only part of it.
#![allow(dead_code, unused_imports)]

pub mod api;
pub mod browser;
pub mod cli;
pub mod compare;
pub mod models;
pub mod server;
pub mod ws;

use std::path::PathBuf;

use serde_json::Value;

pub use api::{Api, Reply, empty_image_prompt};
pub use browser::e2e_ready;
pub use compare::{Rules, assert_json_matches, normalize};
pub use server::{Server, ServerOptions, TestUser, hash_password, installed_frontend};
pub use ws::{Frame, WsClient};

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A fixture file of `tests/fixtures/comfy_peer/` parsed as JSON.
pub fn fixture(name: &str) -> Value {
    let path = repo_root().join("tests/fixtures/comfy_peer").join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read fixture {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("bad fixture {}: {e}", path.display()))
}

/// The case named `name` of a fixture file.
pub fn case<'a>(fixture: &'a Value, name: &str) -> &'a Value {
    fixture["cases"]
        .as_array()
        .and_then(|cases| cases.iter().find(|c| c["case"] == name))
        .unwrap_or_else(|| panic!("fixture has no case {name:?}"))
}
