//! Workshop operations against a real `comfyrs serve`: the disk-space guard refuses prompts
//! with ComfyUI's error shape, and `comfyrs status` reports the server's health (text and
//! `--json`), and `comfyrs export` pauses, drains, archives every user's outputs and writes the
//! workshop report; docs/deployment.md and the Grafana dashboard match the binary.

mod common;

use common::cli::{comfyrs, comfyrs_with, workshop_users};
use common::{Server, ServerOptions};
use serde_json::Value;

fn workshop(extra: &[&str]) -> Server {
    Server::start(ServerOptions {
        users: workshop_users(),
        dev_nodes: true,
        args: extra.iter().map(|s| s.to_string()).collect(),
        ..ServerOptions::default()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_new_prompts() {
    // A threshold no real disk reaches (a million TB): the output disk counts as full.
    let server = workshop(&["--min-free-disk-gb", "1e9"]);
    let api = server.http_as("user001");
    let prompt = common::empty_image_prompt(8, 8, 0, "full");
    let reply = api
        .post("/user001/prompt", &serde_json::json!({"prompt": prompt}))
        .await;
    assert_eq!(reply.status, 503, "{}", reply.json);
    let error = &reply.json["error"];
    assert_eq!(error["type"], "disk_full");
    assert_eq!(error["message"], "The output disk is nearly full");
    let details = error["details"].as_str().expect("details");
    assert!(details.contains("--min-free-disk-gb"), "{details}");
    assert!(error["extra_info"]["free_bytes"].as_u64().is_some());
    assert_eq!(reply.json["node_errors"], serde_json::json!({}));
    // Nothing was queued.
    let jobs = server.http_as("teacher").get("/api/admin/jobs").await;
    assert_eq!(jobs.json["jobs"], serde_json::json!([]));
    // /health says why.
    let health = server.http_as("teacher").get("/health").await;
    assert_eq!(health.json["status"], "degraded");
    assert_eq!(health.json["components"]["disk"]["ok"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guard_lets_prompts_through_when_space_is_left() {
    let server = workshop(&["--min-free-disk-gb", "0.000001"]);
    let api = server.http_as("user001");
    let prompt = common::empty_image_prompt(8, 8, 0, "fine");
    let id = api.queue("/user001", &prompt, None).await["prompt_id"]
        .as_str()
        .expect("id")
        .to_string();
    let entry = api.wait_history("/user001", &id).await;
    assert_eq!(entry["status"]["status_str"], "success");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_reports_every_component() {
    let server = workshop(&[]);
    let env = [
        ("COMFYRS_URL", server.url.as_str()),
        ("COMFYRS_ADMIN_USER", "teacher"),
        ("COMFYRS_ADMIN_PASSWORD", "pw-admin"),
    ];
    // Wait for the local worker's first heartbeat.
    let admin = server.http_as("teacher");
    for _ in 0..100 {
        if admin
            .get("/api/workers")
            .await
            .json
            .as_array()
            .is_some_and(|w| !w.is_empty())
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let out = comfyrs_with(&["status", "--json"], &env);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status: Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(status["ok"], true);
    assert_eq!(status["server"]["url"], server.url.as_str());
    assert_eq!(status["server"]["status"], "ok");
    assert_eq!(status["queue"]["backend"], "embedded");
    assert_eq!(status["queue"]["ok"], true);
    assert_eq!(status["queue"]["paused"], false);
    assert_eq!(status["queue"]["counts"]["pending"], 0);
    assert_eq!(status["workers"][0]["device"], "cpu");
    assert!(status["workers"][0]["memory_total"].as_u64().unwrap_or(0) > 0);
    let disk = &status["disk"];
    assert_eq!(disk["ok"], true);
    assert!(disk["free_bytes"].as_u64().unwrap() <= disk["total_bytes"].as_u64().unwrap());
    assert_eq!(disk["min_free_bytes"], 1_000_000_000u64);
    assert_eq!(status["gpus"], serde_json::json!([]));

    let out = comfyrs_with(&["status"], &env);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    for line in [
        "server ",
        "queue    embedded ok",
        "disk     ok",
        "workers  1",
        "  cpu ",
    ] {
        assert!(text.contains(line), "missing {line:?} in:\n{text}");
    }

    // A participant's credentials are refused; a wrong URL fails clearly.
    let out = comfyrs(&[
        "status",
        "--user",
        "user001",
        "--password",
        "pw-one",
        "--url",
        &server.url,
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not an admin"));
    let out = comfyrs(&["status", "--url", "http://127.0.0.1:1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach"));
}

/// The names of the files in a `tar.gz`.
fn tar_names(path: &std::path::Path) -> Vec<String> {
    let file = std::fs::File::open(path).expect("archive");
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let mut names: Vec<String> = tar
        .entries()
        .expect("entries")
        .map(|e| e.expect("entry"))
        .filter(|e| e.header().entry_type().is_file())
        .map(|e| e.path().expect("path").to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_drains_archives_and_reports() {
    let server = workshop(&[]);
    let one = server.http_as("user001");
    let two = server.http_as("user002");
    let mut ids = Vec::new();
    for (api, prefix, name) in [(&one, "/user001", "one/pic"), (&two, "/user002", "two/pic")] {
        let prompt = common::empty_image_prompt(8, 8, 0xff0000, name);
        let id = api.queue(prefix, &prompt, None).await["prompt_id"]
            .as_str()
            .unwrap()
            .to_string();
        api.wait_history(prefix, &id).await;
        ids.push(id);
    }
    // A slow job still running when the export starts: the export waits for it.
    let slow = serde_json::json!({
        "1": {"class_type": "DevWorkload", "inputs": {"ms": 1500, "steps": 15, "seed": 1}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "two/slow"}},
    });
    two.queue("/user002", &slow, None).await;

    let out = tempfile::tempdir().expect("temp");
    let data = server.data_dir();
    let run = comfyrs_with(
        &[
            "export",
            "--out",
            out.path().to_str().unwrap(),
            "--drain-timeout",
            "60",
            "--base-directory",
            data.to_str().unwrap(),
            "--title",
            "Test workshop",
        ],
        &[
            ("COMFYRS_URL", server.url.as_str()),
            ("COMFYRS_ADMIN_USER", "teacher"),
            ("COMFYRS_ADMIN_PASSWORD", "pw-admin"),
        ],
    );
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );

    // Submissions are paused.
    let prompt = common::empty_image_prompt(8, 8, 0, "late");
    let late = one
        .post("/user001/prompt", &serde_json::json!({"prompt": prompt}))
        .await;
    assert_eq!(late.status, 503, "{}", late.json);

    // One archive per user and one for all, holding exactly the users' output files.
    assert_eq!(
        tar_names(&out.path().join("outputs-user001.tar.gz")),
        vec!["user001/one/pic_00001_.png"]
    );
    assert_eq!(
        tar_names(&out.path().join("outputs-user002.tar.gz")),
        vec!["user002/two/pic_00001_.png", "user002/two/slow_00001_.png"]
    );
    assert_eq!(
        tar_names(&out.path().join("outputs-all.tar.gz")),
        vec![
            "user001/one/pic_00001_.png",
            "user002/two/pic_00001_.png",
            "user002/two/slow_00001_.png"
        ]
    );

    // The report counts every job, after the drain.
    let doc: Value =
        serde_json::from_slice(&std::fs::read(out.path().join("report.json")).unwrap()).unwrap();
    assert_eq!(doc["drained"], true);
    let report = &doc["report"];
    assert_eq!(report["total"]["submitted"], 3);
    assert_eq!(report["total"]["completed"], 3);
    assert_eq!(report["total"]["success_rate"], 1.0);
    assert_eq!(report["users"]["user001"]["completed"], 1);
    assert_eq!(report["users"]["user002"]["completed"], 2);
    assert!(report["total"]["longest_job_ms"].as_i64().unwrap() >= 1500);
    assert_eq!(report["workers"].as_array().unwrap().len(), 1);
    assert_eq!(report["errors"], serde_json::json!([]));
    let md = std::fs::read_to_string(out.path().join("report.md")).unwrap();
    assert!(md.starts_with("# Test workshop"), "{md}");
    assert!(md.contains("| user002 | 2 | 2 | 0 | 0 | 100.0 % |"), "{md}");
    assert!(md.contains("![queue-depth.svg](queue-depth.svg)"));
    for chart in ["queue-depth.svg", "throughput.svg"] {
        let svg = std::fs::read_to_string(out.path().join(chart)).unwrap();
        assert!(
            svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"),
            "{chart}"
        );
    }
}

/// Every `env = "..."` of the command line (src/) is documented in docs/deployment.md.
#[test]
fn every_environment_variable_is_documented() {
    fn sources(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                sources(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let root = common::repo_root();
    let doc = std::fs::read_to_string(root.join("docs/deployment.md")).unwrap();
    let mut files = Vec::new();
    sources(&root.join("src"), &mut files);
    let mut names = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for piece in text.split("env = \"").skip(1) {
            names.push(piece.split('"').next().unwrap().to_string());
        }
    }
    assert!(names.len() > 30, "found only {names:?}");
    let missing: Vec<&String> = names
        .iter()
        .filter(|n| !doc.contains(&format!("| `{n}` |")))
        .collect();
    assert!(missing.is_empty(), "not in docs/deployment.md: {missing:?}");
}

/// Every series the Grafana dashboard queries is one the server exports.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_grafana_dashboard_queries_real_series() {
    let dashboard =
        std::fs::read_to_string(common::repo_root().join("deploy/grafana/comfyrs.json")).unwrap();
    let json: Value = serde_json::from_str(&dashboard).expect("dashboard JSON");
    let server = workshop(&[]);
    // Some jobs and a worker heartbeat so every family has samples.
    server
        .http_as("user001")
        .queue("/user001", &common::empty_image_prompt(8, 8, 0, "m"), None)
        .await;
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let metrics = String::from_utf8(server.http_as("teacher").get("/metrics").await.bytes).unwrap();
    let mut checked = 0;
    for panel in json["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            for piece in expr.split("comfyrs_").skip(1) {
                let name: String = piece
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                let family = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| name.strip_suffix(s))
                    .unwrap_or(&name);
                assert!(
                    metrics.contains(&format!("# TYPE comfyrs_{family} ")),
                    "{expr}: comfyrs_{family} is not exported:\n{metrics}"
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 20, "only {checked} series checked");
}
