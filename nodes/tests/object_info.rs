//! Our `/object_info` entries against the real ComfyUI's (`shared/reference/comfyui-object_info.json`).
//!
//! Allowed differences, each for a documented reason:
//! - `python_module`: the reference came from the pip-packaged ComfyUI, which reports `"."` for
//!   every V3 node; upstream reports the module path (`comfy_extras.nodes_primitive`), as we do.
//! - Combo option lists that come from folders (files, models): the reference server had none.
//! - [`ALLOWED`]: single fields where we follow a newer ComfyUI than the reference, each with
//!   its reason. An entry must name a field that exists on both sides and differs.

use std::path::{Path, PathBuf};

use nodes::Env;
use serde_json::Value;

fn reference() -> Value {
    let start = Path::new(env!("CARGO_MANIFEST_DIR"));
    let path: PathBuf = start
        .ancestors()
        .map(|d| d.join("shared/reference/comfyui-object_info.json"))
        .find(|p| p.is_file())
        .expect("shared/reference/comfyui-object_info.json beside the workspace");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// `(node, JSON pointer into its object_info, reason)` of deliberate differences.
const ALLOWED: &[(&str, &str, &str)] = &[(
    "LTXVEmptyLatentAudio",
    "/input/required/frame_rate",
    "newest ComfyUI declares frame_rate as a FLOAT,INT MultiType (FLOAT widget, default 25.0, \
     step 0.01); the official LTX-2 templates link a PrimitiveFloat (FLOAT) into it, which the \
     older INT input would reject with return_type_mismatch",
)];

/// Replaces the allowed fields of `name` on both sides by the same marker.
fn apply_allow_list(name: &str, got: &mut Value, want: &mut Value) {
    for (node, pointer, reason) in ALLOWED.iter().filter(|(n, _, _)| *n == name) {
        let (Some(ours), Some(theirs)) = (got.pointer_mut(pointer), want.pointer_mut(pointer))
        else {
            panic!("allow-list entry {node}{pointer} names a field that does not exist");
        };
        assert_ne!(
            ours, theirs,
            "allow-list entry {node}{pointer} is stale: the field now matches"
        );
        *ours = Value::from(format!("<allowed: {reason}>"));
        *theirs = ours.clone();
    }
}

fn normalise(mut v: Value) -> Value {
    let module = v["python_module"].as_str().unwrap_or_default();
    if module == "." || module.starts_with("comfy_extras.") {
        v["python_module"] = Value::from("<v3 module>");
    }
    v
}

#[test]
fn every_builtin_node_matches_the_reference_exactly() {
    let reference = reference();
    let dir = tempfile::tempdir().unwrap();
    let env = Env::under(dir.path());
    let ours = nodes::builtin_registry().object_info(&env);
    let mut compared = 0;
    for (name, info) in ours.as_object().unwrap() {
        let Some(expected) = reference.get(name) else {
            panic!(
                "{name} is not in the reference object_info; a new node needs its own schema test"
            );
        };
        let (mut got, mut want) = (normalise(info.clone()), normalise(expected.clone()));
        apply_allow_list(name, &mut got, &mut want);
        assert_eq!(
            got, want,
            "object_info of {name} differs:\n ours: {got}\n real: {want}"
        );
        let got_keys: Vec<&String> = info.as_object().unwrap().keys().collect();
        let want_keys: Vec<&String> = expected.as_object().unwrap().keys().collect();
        assert_eq!(got_keys, want_keys, "key order of {name}");
        compared += 1;
    }
    assert!(compared >= 17, "only {compared} nodes compared");
}
