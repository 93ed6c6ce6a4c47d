//! An official LTX-2 template through `comfyrs serve`, on the tiny fixture models linked under
//! the template's file names: the committed API prompt of `video_ltx2_t2v_distilled` (sizes and
//! length lowered) queued over HTTP, its MP4 fetched back through `/view` and decoded; and the
//! unmodified UI workflow opened in the real ComfyUI frontend in headless Chromium
//! (`tests/browser/template.mjs`), queued with the Run button, until the SaveVideo node's
//! `<video>` element plays the result.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::models::{fixture_models, link_template_models};
use common::{Api, Server, ServerOptions, e2e_ready, installed_frontend, repo_root};
use models::checkpoint::CheckpointHeader;
use models::ltx2::upsampler::UpsamplerConfig;
use serde_json::{Value, json};

const TEMPLATE: &str = "video_ltx2_t2v_distilled";
/// The SaveVideo node.
const SAVE: &str = "104";
/// Inside the template's subgraph (instance 177): the EmptyImage that sets the size (131) and
/// the frame count (113), as the API prompt names them.
const SIZE_NODE: &str = "177:131";
const LENGTH_NODE: &str = "177:113";
/// In the UI workflow they are inputs of the subgraph, shown as widgets of its instance node:
/// `width`, `height` and `value_1` (labelled "frame_count").
const SUBGRAPH_NODE: &str = "177";
const WIDTH: usize = 128;
const HEIGHT: usize = 64;
const FRAMES: usize = 9;
/// A CPU run of the tiny models takes seconds; a loaded CI machine gets ample room.
const RUN_DEADLINE: Duration = Duration::from_secs(600);

/// The output size: stage 1 at half the requested size (multiples of the VAE's 32), times the
/// fixture upsampler's spatial scale.
fn output_size() -> (usize, usize) {
    let header =
        CheckpointHeader::read(&fixture_models().join("ltx2-tiny-upscaler.safetensors")).unwrap();
    let config: UpsamplerConfig = serde_json::from_value(header.config().unwrap()).unwrap();
    let scale = config.spatial_scale as usize;
    (WIDTH / 2 / 32 * 32 * scale, HEIGHT / 2 / 32 * 32 * scale)
}

fn server(frontend: bool) -> Server {
    let server = Server::start(ServerOptions {
        frontend,
        ..ServerOptions::default()
    });
    link_template_models(&server.data_dir().join("models"));
    server
}

fn lowered_prompt() -> Value {
    let path = repo_root().join(format!("tests/workflows/api/{TEMPLATE}.json"));
    let mut prompt: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    prompt[SIZE_NODE]["inputs"]["width"] = json!(WIDTH);
    prompt[SIZE_NODE]["inputs"]["height"] = json!(HEIGHT);
    prompt[LENGTH_NODE]["inputs"]["value"] = json!(FRAMES);
    prompt
}

async fn wait_done(api: &Api, prompt_id: &str) -> Value {
    let deadline = Instant::now() + RUN_DEADLINE;
    loop {
        let reply = api.get(&format!("/history/{prompt_id}")).await;
        if let Some(entry) = reply.json.get(prompt_id) {
            return entry.clone();
        }
        assert!(Instant::now() < deadline, "the template did not finish");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_t2v_template_runs_through_the_http_api() {
    let server = server(false);
    let api = server.api();
    let prompt_id = "0b1e6a4c-7d2f-4f63-9a55-2f8d1c3e4b10";
    let reply = api
        .post(
            "/prompt",
            &json!({"prompt": lowered_prompt(), "prompt_id": prompt_id, "client_id": "t"}),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.json);
    let entry = wait_done(&api, prompt_id).await;
    assert_eq!(
        entry["status"]["status_str"],
        "success",
        "{entry}\n{}",
        server.log()
    );
    let file = &entry["outputs"][SAVE]["images"][0];
    assert_eq!(entry["outputs"][SAVE]["animated"], json!([true]), "{entry}");
    let name = file["filename"].as_str().expect("filename");
    assert!(name.ends_with(".mp4"), "{file}");
    let url = format!(
        "/view?filename={name}&subfolder={}&type=output",
        file["subfolder"].as_str().unwrap_or("")
    );
    let bytes = server
        .http()
        .get(server.at(&url))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("fetched.mp4");
    std::fs::write(&copy, &bytes).unwrap();
    let decoded = nodes::video::decode::decode_file(&copy, &|| Ok(())).unwrap();
    let (width, height) = output_size();
    assert_eq!(decoded.images.dims(), &[FRAMES, height, width, 3]);
    let audio = decoded.audio.expect("the MP4 has a soundtrack");
    assert!(audio.waveform.dim(2).unwrap() > 0);
}

fn chromium() -> PathBuf {
    std::env::var_os("COMFYRS_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

/// Runs `node template.mjs` with a deadline, returning (success, combined output).
fn run_node(args: &[String], deadline: Duration) -> (bool, String) {
    let dir = repo_root().join("tests/browser");
    let log = std::env::temp_dir().join(format!("comfyrs-template-{}.log", std::process::id()));
    let out = std::fs::File::create(&log).expect("log file");
    let mut child = Command::new("node")
        .arg("template.mjs")
        .args(args)
        .current_dir(&dir)
        .stdout(out.try_clone().expect("clone"))
        .stderr(out)
        .spawn()
        .expect("run node");
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break Some(status);
        }
        if start.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_file(&log);
    match status {
        Some(s) => (s.success(), text),
        None => (false, format!("{text}\n(timed out after {deadline:?})")),
    }
}

fn browser_ready() -> bool {
    let node = Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    e2e_ready("Debian's chromium", chromium().is_file())
        && e2e_ready("node", node)
        && e2e_ready(
            "tests/browser/node_modules (npm install)",
            repo_root()
                .join("tests/browser/node_modules/playwright-core")
                .is_dir(),
        )
        && e2e_ready(
            "the ComfyUI frontend (data/frontend)",
            installed_frontend().is_some(),
        )
}

#[test]
fn the_frontend_runs_the_t2v_template_and_shows_the_video() {
    if !browser_ready() {
        return;
    }
    let server = server(true);
    let screenshot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("browser/t2v-template.png");
    let _ = std::fs::remove_file(&screenshot);
    let workflow = repo_root().join(format!("tests/workflows/templates/{TEMPLATE}.json"));
    let mut args: Vec<String> = vec![
        "--url".into(),
        server.url.clone(),
        "--workflow".into(),
        workflow.display().to_string(),
        "--save-node".into(),
        SAVE.into(),
        "--screenshot".into(),
        screenshot.display().to_string(),
        "--chromium".into(),
        chromium().display().to_string(),
        "--timeout-s".into(),
        RUN_DEADLINE.as_secs().to_string(),
    ];
    for set in [
        format!("{SUBGRAPH_NODE}.width={WIDTH}"),
        format!("{SUBGRAPH_NODE}.height={HEIGHT}"),
        format!("{SUBGRAPH_NODE}.value_1={FRAMES}"),
    ] {
        args.extend(["--set".to_string(), set]);
    }
    let (ok, output) = run_node(&args, RUN_DEADLINE + Duration::from_secs(180));
    println!("{output}");
    assert!(
        ok,
        "the template browser test failed:\n{output}\n{}",
        server.log()
    );
    let (width, height) = output_size();
    assert!(
        output.contains(&format!("video-size {width}x{height}")),
        "the video element's size is not {width}x{height}:\n{output}"
    );
    println!("screenshot artifact: {}", screenshot.display());
}
