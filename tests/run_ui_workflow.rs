//! `comfyrs run` on a UI-format workflow: the workflow is converted as the frontend would
//! (subgraph, bypassed node, reroute, legacy primitive node, note) and executed.

use std::process::Command;

use serde_json::{Value, json};

fn ui_workflow() -> Value {
    let sub = "0b6f3c2e-8f0a-4d51-9a3c-7e2d1f4b5a60";
    json!({
        "last_node_id": 20, "last_link_id": 20, "version": 0.4,
        "nodes": [
            {"id": 1, "type": "EmptyImage", "mode": 0,
             "inputs": [{"name": "width", "type": "INT", "widget": {"name": "width"}, "link": 1}],
             "outputs": [{"name": "IMAGE", "type": "IMAGE", "links": [2]}],
             "widgets_values": [64, 24, 1, 16711680]},
            {"id": 2, "type": "PrimitiveNode", "mode": 0, "inputs": [],
             "outputs": [{"name": "INT", "type": "INT", "widget": {"name": "width"}, "links": [1]}],
             "widgets_values": [40, "fixed"]},
            {"id": 3, "type": sub, "mode": 0,
             "inputs": [{"name": "image", "type": "IMAGE", "link": 2}],
             "outputs": [{"name": "IMAGE", "type": "IMAGE", "links": [3]}],
             "widgets_values": ["converted/ui"]},
            {"id": 4, "type": "Reroute", "mode": 0,
             "inputs": [{"name": "", "type": "*", "link": 3}],
             "outputs": [{"name": "", "type": "IMAGE", "links": [4]}]},
            {"id": 5, "type": "ImageInvert", "mode": 4,
             "inputs": [{"name": "image", "type": "IMAGE", "link": 4}],
             "outputs": [{"name": "IMAGE", "type": "IMAGE", "links": [5]}]},
            {"id": 6, "type": "SaveImage", "mode": 0,
             "inputs": [{"name": "images", "type": "IMAGE", "link": 5}],
             "widgets_values": ["converted/after_bypass"]},
            {"id": 7, "type": "MarkdownNote", "mode": 0, "widgets_values": ["# notes are dropped"]}
        ],
        "links": [[1, 2, 0, 1, 0, "INT"], [2, 1, 0, 3, 0, "IMAGE"], [3, 3, 0, 4, 0, "*"],
                  [4, 4, 0, 5, 0, "IMAGE"], [5, 5, 0, 6, 0, "IMAGE"]],
        "definitions": {"subgraphs": [{
            "id": sub, "name": "invert and save",
            "inputNode": {"id": -10}, "outputNode": {"id": -20},
            "inputs": [{"name": "image", "type": "IMAGE", "linkIds": [10]},
                       {"name": "filename_prefix", "type": "STRING", "linkIds": [12]}],
            "outputs": [{"name": "IMAGE", "type": "IMAGE", "linkIds": [13]}],
            "nodes": [
                {"id": 11, "type": "ImageInvert", "mode": 0,
                 "inputs": [{"name": "image", "type": "IMAGE", "link": 10}],
                 "outputs": [{"name": "IMAGE", "type": "IMAGE", "links": [11, 13]}]},
                {"id": 12, "type": "SaveImage", "mode": 0,
                 "inputs": [{"name": "images", "type": "IMAGE", "link": 11},
                            {"name": "filename_prefix", "type": "STRING",
                             "widget": {"name": "filename_prefix"}, "link": 12}],
                 "widgets_values": ["inner_default"]}
            ],
            "links": [
                {"id": 10, "origin_id": -10, "origin_slot": 0, "target_id": 11, "target_slot": 0, "type": "IMAGE"},
                {"id": 11, "origin_id": 11, "origin_slot": 0, "target_id": 12, "target_slot": 0, "type": "IMAGE"},
                {"id": 12, "origin_id": -10, "origin_slot": 1, "target_id": 12, "target_slot": 1, "type": "STRING"},
                {"id": 13, "origin_id": 11, "origin_slot": 0, "target_id": -20, "target_slot": 0, "type": "IMAGE"}
            ]
        }]}
    })
}

fn run(workflow: &Value, base: &std::path::Path) -> (std::process::ExitStatus, String, String) {
    let file = base.join("workflow.json");
    std::fs::write(&file, serde_json::to_string(workflow).unwrap()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_comfyrs"))
        .args(["run", "--json", "--base-directory"])
        .arg(base)
        .arg(&file)
        .output()
        .unwrap();
    (
        out.status,
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

fn png_size(path: &std::path::Path) -> (u32, u32) {
    let bytes = std::fs::read(path).unwrap();
    let be = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());
    (be(16), be(20))
}

#[test]
fn a_ui_workflow_is_converted_and_run() {
    let dir = tempfile::tempdir().unwrap();
    let (status, stdout, stderr) = run(&ui_workflow(), dir.path());
    assert!(status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    let output = dir.path().join("output/converted");
    let inner = output.join("ui_00001_.png");
    let after_bypass = output.join("after_bypass_00001_.png");
    // The primitive node's 40 replaced EmptyImage's saved width of 64.
    assert_eq!(png_size(&inner), (40, 24));
    assert_eq!(png_size(&after_bypass), (40, 24));
    // `--json` prints the result, then the saved files' paths.
    let result: Value = serde_json::Deserializer::from_str(&stdout)
        .into_iter()
        .next()
        .unwrap()
        .unwrap();
    let mut nodes: Vec<&String> = result["outputs"].as_object().unwrap().keys().collect();
    nodes.sort();
    assert_eq!(nodes, ["3:12", "6"], "{result}");
}

#[test]
fn an_unknown_node_type_is_rejected() {
    let mut wf = ui_workflow();
    wf["nodes"][4]["type"] = json!("NoSuchNode");
    wf["nodes"][4]["mode"] = json!(0);
    let dir = tempfile::tempdir().unwrap();
    let (status, _, stderr) = run(&wf, dir.path());
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("NoSuchNode"), "{stderr}");
}
