//! `comfyrs run` end to end: real workflows through the binary, outputs on disk, ComfyUI error
//! JSON and exit codes on failure.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::{Value, json};

fn run(base: &Path, workflow: &Value, extra: &[&str]) -> Output {
    let file = base.join("workflow.json");
    std::fs::write(&file, serde_json::to_vec(workflow).unwrap()).unwrap();
    Command::new(env!("CARGO_BIN_EXE_comfyrs"))
        .arg("run")
        .arg(&file)
        .arg("--base-directory")
        .arg(base)
        .args(extra)
        .output()
        .expect("the comfyrs binary runs")
}

fn text_chunks(png: &Path) -> Vec<(String, String)> {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(png).unwrap()));
    let reader = decoder.read_info().unwrap();
    reader
        .info()
        .uncompressed_latin1_text
        .iter()
        .map(|t| (t.keyword.clone(), t.text.clone()))
        .collect()
}

#[test]
fn runs_a_workflow_and_prints_its_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let workflow = json!({
        "prompt": {
            "1": {"class_type": "EmptyImage", "inputs": {"width": 48, "height": 32, "batch_size": 2, "color": 0x3366ff}},
            "2": {"class_type": "ImageScaleBy", "inputs": {"image": ["1", 0], "upscale_method": "bilinear", "scale_by": 0.5}},
            "3": {"class_type": "ImageInvert", "inputs": {"image": ["2", 0]}},
            "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "cli/run"}}
        },
        "extra_data": {"extra_pnginfo": {"workflow": {"id": "wf-1", "nodes": []}}}
    });
    let out = run(dir.path(), &workflow, &[]);
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let files: Vec<&str> = stdout.lines().collect();
    assert_eq!(files.len(), 2, "one file per image: {stdout}");
    let first = Path::new(files[0]);
    assert!(
        first.ends_with("output/cli/run_00001_.png"),
        "{}",
        first.display()
    );
    let img = image::open(first).unwrap().to_rgb8();
    assert_eq!(img.dimensions(), (24, 16));
    assert_eq!(
        img.get_pixel(0, 0).0,
        [255 - 0x33, 255 - 0x66, 0],
        "inverted colour"
    );
    let chunks = text_chunks(first);
    let prompt: Value =
        serde_json::from_str(&chunks.iter().find(|(k, _)| k == "prompt").unwrap().1).unwrap();
    assert_eq!(prompt["2"]["class_type"], "ImageScaleBy");
    let workflow: Value =
        serde_json::from_str(&chunks.iter().find(|(k, _)| k == "workflow").unwrap().1).unwrap();
    assert_eq!(workflow["id"], "wf-1");

    // A second run numbers its files after the first ones.
    let out = run(dir.path(), &workflow_with_prefix("cli/run"), &[]);
    assert!(out.status.success());
    assert!(
        String::from_utf8(out.stdout)
            .unwrap()
            .contains("run_00003_.png")
    );
}

fn workflow_with_prefix(prefix: &str) -> Value {
    json!({
        "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": prefix}}
    })
}

#[test]
fn json_output_carries_the_history_material() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(
        dir.path(),
        &workflow_with_prefix("j"),
        &["--json", "--disable-metadata"],
    );
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    let start = stdout.find('{').unwrap();
    let end = stdout.rfind('}').unwrap();
    let result: Value = serde_json::from_str(&stdout[start..=end]).unwrap();
    assert_eq!(
        result["outputs"]["2"]["images"][0]["filename"],
        "j_00001_.png"
    );
    let kinds: Vec<&str> = result["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m[0].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["execution_start", "execution_cached", "execution_success"]
    );
    assert!(
        text_chunks(&dir.path().join("output/j_00001_.png")).is_empty(),
        "--disable-metadata"
    );
}

#[test]
fn rejected_prompts_print_comfyui_error_json_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let bad = json!({
        "1": {"class_type": "EmptyImage", "inputs": {"width": 0, "height": 8, "batch_size": 1, "color": 0}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "x"}}
    });
    let out = run(dir.path(), &bad, &[]);
    assert_eq!(out.status.code(), Some(2));
    let error: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(error["error"]["type"], "prompt_outputs_failed_validation");
    assert_eq!(
        error["node_errors"]["1"]["errors"][0]["type"],
        "value_smaller_than_min"
    );

    let unknown = json!({"1": {"class_type": "NotANode", "inputs": {}}});
    let out = run(dir.path(), &unknown, &[]);
    assert_eq!(out.status.code(), Some(2));
    let error: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(error["error"]["type"], "missing_node_type");
}

#[test]
fn node_failures_print_the_execution_error_and_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("input")).unwrap();
    std::fs::write(dir.path().join("input/broken.png"), b"this is not a png").unwrap();
    let workflow = json!({
        "1": {"class_type": "LoadImage", "inputs": {"image": "broken.png"}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "x"}}
    });
    let out = run(dir.path(), &workflow, &[]);
    assert_eq!(out.status.code(), Some(1));
    let error: Value = serde_json::from_slice(&out.stdout).unwrap();
    let error = &error["execution_error"];
    assert_eq!(error["node_id"], "1");
    assert_eq!(error["node_type"], "LoadImage");
    assert!(
        error["exception_message"]
            .as_str()
            .unwrap()
            .contains("broken.png")
    );
}

#[test]
fn unreadable_files_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-json.json");
    std::fs::write(&file, b"{nope").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_comfyrs"))
        .arg("run")
        .arg(&file)
        .arg("--base-directory")
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not JSON"));
}
