//! The bodies of comfyrs' fuzz targets, shared by the libFuzzer entry points (`fuzz_targets/`,
//! run by `cargo fuzz`) and the stable runner (`src/bin/fuzz-stable.rs`).
//!
//! Each target takes arbitrary bytes and must neither panic nor allocate without bound; the
//! path targets also assert that every path they accept stays inside its folder.

pub mod json_mutate;

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};
use std::sync::OnceLock;

use engine::validate::{Limits, validate_prompt};
use nodes::{Env, Registry};
use serde_json::{Map, Value};

/// Largest input the JSON targets look at (the server's body limit is far larger, but bigger
/// inputs only slow the fuzzer down without reaching new code).
const MAX_JSON_INPUT: usize = 1 << 20;

/// A target: a name and its body.
pub struct Target {
    /// The name (`fuzz_targets/<name>.rs`, `corpus/<name>/`).
    pub name: &'static str,
    /// The body.
    pub run: fn(&[u8]),
}

/// Every target, in the order the stable runner runs them.
pub const TARGETS: &[Target] = &[
    Target {
        name: "prompt_validate",
        run: prompt_validate,
    },
    Target {
        name: "ui_workflow",
        run: ui_workflow,
    },
    Target {
        name: "safetensors_header",
        run: safetensors_header,
    },
    Target {
        name: "file_paths",
        run: file_paths,
    },
    Target {
        name: "upload_multipart",
        run: upload_multipart,
    },
    Target {
        name: "ws_message",
        run: ws_message,
    },
];

/// The builtin node registry, an environment whose folders live in a scratch directory, and
/// the registry's `/object_info` (built once per process).
struct Fixture {
    registry: Registry,
    env: Env,
    object_info: Map<String, Value>,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let base = std::env::temp_dir().join(format!("comfyrs-fuzz-{}", std::process::id()));
        let registry = nodes::builtin_registry();
        let env = Env::under(&base);
        let object_info = match registry.object_info(&env) {
            Value::Object(map) => map,
            _ => Map::new(),
        };
        Fixture {
            registry,
            env,
            object_info,
        }
    })
}

fn json(data: &[u8]) -> Option<Value> {
    if data.len() > MAX_JSON_INPUT {
        return None;
    }
    serde_json::from_slice(data).ok()
}

/// The API prompt of a `/prompt` body (`{"prompt": {...}}`) or a bare prompt.
fn prompt_of(doc: &Value) -> &Value {
    match doc.get("prompt") {
        Some(prompt) if prompt.is_object() => prompt,
        _ => doc,
    }
}

/// API prompt parsing and validation against the builtin registry (what `POST /prompt` does),
/// whole and restricted to the first node as a partial-execution target.
pub fn prompt_validate(data: &[u8]) {
    let Some(doc) = json(data) else {
        return;
    };
    let fx = fixture();
    let prompt = prompt_of(&doc);
    let limits = Limits::default();
    if let Ok(validated) = validate_prompt(&fx.registry, &fx.env, prompt, None, &limits) {
        assert!(validated.prompt.ids().len() <= limits.max_nodes);
        for output in &validated.outputs {
            assert!(
                validated.prompt.node(output).is_some(),
                "output {output} is not a node of the validated prompt"
            );
        }
    }
    if let Some(first) = prompt.as_object().and_then(|m| m.keys().next()) {
        let partial = [first.clone()];
        let _ = validate_prompt(&fx.registry, &fx.env, prompt, Some(&partial), &limits);
    }
}

/// UI-workflow-to-API conversion with the builtin registry's definitions, then validation of
/// the converted prompt.
pub fn ui_workflow(data: &[u8]) {
    let Some(doc) = json(data) else {
        return;
    };
    if !engine::ui_workflow::is_ui_workflow(&doc) {
        return;
    }
    let fx = fixture();
    let mut chooser = engine::ui_workflow::SeededChooser::new(0);
    let Some(now) = chrono::TimeZone::timestamp_opt(&chrono::Local, 1_767_000_000, 0).single()
    else {
        return;
    };
    let options = engine::ui_workflow::Options {
        chooser: &mut chooser,
        now,
    };
    if let Ok(prompt) = engine::ui_workflow::to_api_prompt(&doc, &fx.object_info, options) {
        let prompt = Value::Object(prompt);
        let _ = validate_prompt(&fx.registry, &fx.env, &prompt, None, &Limits::default());
    }
}

/// Safetensors headers: our checkpoint-header reader (and the component configs it carries),
/// and the `safetensors` crate's reader the weight loaders use.
pub fn safetensors_header(data: &[u8]) {
    let path = Path::new("fuzz.safetensors");
    if let Ok(header) = models::checkpoint::CheckpointHeader::from_bytes(path, data) {
        let _ = header.config();
        for section in ["transformer", "vae", "audio_vae", "vocoder"] {
            let _ = header.config_section::<Value>(section);
        }
        for name in header.tensors.keys() {
            let _ = header.shape(name);
        }
        let _ = header.has_prefix("model.diffusion_model.");
    }
    if let Ok(tensors) = safetensors::SafeTensors::deserialize(data) {
        for (_, view) in tensors.tensors() {
            let _ = view.data().len();
        }
    }
}

/// Whether `path` is `base` or lies inside it, lexically (no `..`, no root after `base`).
fn inside(base: &Path, path: &Path) -> bool {
    path.strip_prefix(base)
        .is_ok_and(|rest| rest.components().all(|c| matches!(c, Component::Normal(_))))
}

/// The folders the path target resolves against (never touched: the functions are pure).
struct Folders {
    dirs: nodes::env::Dirs,
    userdata: PathBuf,
}

fn folders() -> &'static Folders {
    static FOLDERS: OnceLock<Folders> = OnceLock::new();
    FOLDERS.get_or_init(|| Folders {
        dirs: nodes::env::Dirs::under(Path::new("/srv/comfyrs/users/alice")),
        userdata: PathBuf::from("/srv/comfyrs/users/alice/user"),
    })
}

/// `/view`, upload, annotated input and `/userdata` path resolution. The input is up to four
/// lines: filename, type, subfolder, userdata path; a line `-` leaves its parameter out.
pub fn file_paths(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.split('\n');
    let mut field = || lines.next().filter(|l| *l != "-").map(str::to_string);
    let (filename, kind, subfolder, userdata) = (field(), field(), field(), field());
    let f = folders();
    let roots = [&f.dirs.input, &f.dirs.output, &f.dirs.temp];

    let mut params = HashMap::new();
    for (key, value) in [
        ("filename", &filename),
        ("type", &kind),
        ("subfolder", &subfolder),
    ] {
        if let Some(v) = value {
            params.insert(key.to_string(), v.clone());
        }
    }
    if let Ok((path, name)) = server::routes::files::view_target(&f.dirs, &params) {
        assert!(
            roots.iter().any(|r| inside(r, &path)),
            "/view resolved {params:?} to {path:?}, outside the user's folders"
        );
        assert!(!name.contains('/'), "/view file name {name:?} has a path");
    }

    let name = filename.unwrap_or_default();
    let sub = subfolder.unwrap_or_default();
    if let Ok((folder, file)) = server::routes::files::upload_target(&f.dirs.input, &sub, &name) {
        let path = folder.join(&file);
        assert!(
            inside(&f.dirs.input, &path) && path != f.dirs.input,
            "upload {sub:?}/{name:?} resolved to {path:?}"
        );
    }
    let env_dirs = &f.dirs;
    let annotated = nodes::env::split_annotation(&name);
    if let Some(base) = env_dirs.for_type(annotated.1.unwrap_or("input"))
        && let Some(path) = nodes::env::safe_join(base, annotated.0)
    {
        assert!(inside(base, &path), "input {name:?} resolved to {path:?}");
    }
    if let Some(rel) = userdata
        && let Some(path) = nodes::env::safe_join(&f.userdata, &rel)
    {
        assert!(
            inside(&f.userdata, &path),
            "userdata {rel:?} resolved to {path:?}"
        );
    }
}

/// The multipart boundary of the upload corpus.
pub const UPLOAD_BOUNDARY: &str = "comfyrsfuzzboundary";

/// `/upload/image` form parsing (multipart), then the checks on where it would be stored.
pub fn upload_multipart(data: &[u8]) {
    thread_local! {
        static RUNTIME: Option<tokio::runtime::Runtime> =
            tokio::runtime::Builder::new_current_thread().build().ok();
    }
    let content_type = format!("multipart/form-data; boundary={UPLOAD_BOUNDARY}");
    let body = bytes::Bytes::copy_from_slice(data);
    let parsed = RUNTIME.with(|rt| {
        rt.as_ref().map(|rt| {
            rt.block_on(server::routes::files::parse_upload(
                &content_type,
                body,
                "image",
            ))
        })
    });
    let Some(Ok(upload)) = parsed else {
        return;
    };
    assert!(upload.bytes.len() <= data.len());
    let base = &folders().dirs.input;
    if let Ok((folder, name)) =
        server::routes::files::upload_target(base, &upload.subfolder, &upload.file_name)
    {
        assert!(inside(base, &folder.join(&name)));
    }
}

/// A WebSocket client's text message (the `feature_flags` handshake).
pub fn ws_message(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = server::routes::ws::feature_flags_request(text, true);
    assert_eq!(
        server::routes::ws::feature_flags_request(text, false),
        None,
        "only the first message is read"
    );
}
