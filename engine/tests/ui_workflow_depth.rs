//! Regression (a crafted input, found while fuzzing the converter): a chain of bypassed nodes is resolved
//! recursively, and 20 000 of them overflowed the stack of `comfyrs run`. Conversion now runs
//! on a large stack of its own and refuses workflows over `MAX_NODES` nodes.

use engine::ui_workflow::{MAX_NODES, Options, SeededChooser, UiWorkflowError, to_api_prompt};
use serde_json::{Map, Value, json};

/// `EmptyImage -> ImageInvert (bypassed) x (n - 2) -> PreviewImage` as a UI workflow.
fn bypass_chain(n: usize) -> Value {
    let node = |id: usize, kind: &str, mode: u32, inputs: Value, outputs: Value| {
        json!({"id": id, "type": kind, "pos": [0, 0], "size": [100, 100], "flags": {}, "order": id,
               "mode": mode, "inputs": inputs, "outputs": outputs, "properties": {}, "widgets_values": []})
    };
    let mut nodes = vec![node(
        1,
        "EmptyImage",
        0,
        json!([]),
        json!([{"name": "IMAGE", "type": "IMAGE", "links": [1]}]),
    )];
    nodes[0]["widgets_values"] = json!([8, 8, 1, 0]);
    let mut links = Vec::new();
    for i in 2..n {
        links.push(json!([i - 1, i - 1, 0, i, 0, "IMAGE"]));
        nodes.push(node(
            i,
            "ImageInvert",
            4,
            json!([{"name": "image", "type": "IMAGE", "link": i - 1}]),
            json!([{"name": "IMAGE", "type": "IMAGE", "links": [i]}]),
        ));
    }
    links.push(json!([n - 1, n - 1, 0, n, 0, "IMAGE"]));
    nodes.push(node(
        n,
        "PreviewImage",
        0,
        json!([{"name": "images", "type": "IMAGE", "link": n - 1}]),
        json!([]),
    ));
    json!({"id": "chain", "revision": 0, "last_node_id": n, "last_link_id": n, "nodes": nodes,
           "links": links, "groups": [], "config": {}, "extra": {}, "version": 0.4})
}

fn convert(
    workflow: &Value,
    info: &Map<String, Value>,
) -> Result<Map<String, Value>, UiWorkflowError> {
    let mut chooser = SeededChooser::new(0);
    let now = chrono::TimeZone::timestamp_opt(&chrono::Local, 1_767_000_000, 0).unwrap();
    to_api_prompt(
        workflow,
        info,
        Options {
            chooser: &mut chooser,
            now,
        },
    )
}

#[test]
fn the_longest_bypass_chain_converts_on_a_small_stack() {
    let dir = tempfile::tempdir().unwrap();
    let env = nodes::Env::under(dir.path());
    let info = match nodes::builtin_registry().object_info(&env) {
        Value::Object(map) => map,
        _ => panic!("object_info is not an object"),
    };
    let worker = std::thread::Builder::new()
        .stack_size(1 << 20)
        .spawn(move || {
            let prompt = convert(&bypass_chain(MAX_NODES), &info).expect("converts");
            // Bypassed nodes vanish: the preview reads the empty image directly.
            assert_eq!(prompt.len(), 2, "{prompt:?}");
            assert_eq!(
                prompt[&MAX_NODES.to_string()]["inputs"]["images"],
                json!(["1", 0])
            );
            convert(&bypass_chain(MAX_NODES + 1), &info).expect_err("over the node limit")
        })
        .unwrap();
    let err = worker.join().expect("conversion did not crash");
    assert!(err.to_string().contains("at most"), "{err}");
}
