//! `comfyrs models pull` / `list` against a Hugging Face compatible hub on loopback (axum): LFS
//! files redirected to a "CDN" path with `X-Linked-Size` / `X-Linked-Etag`, a download cut off the
//! first time that must resume with a Range request, a partial file left by an earlier run, a
//! corrupted file caught by sha256, a gated repo that needs HF_TOKEN.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::Response;
use sha2::{Digest, Sha256};

/// One file the fake hub serves.
struct Served {
    bytes: Vec<u8>,
    /// Served through a redirect with X-Linked-* headers, like an LFS file.
    lfs: bool,
    /// Needs `Authorization: Bearer <TOKEN>`.
    gated: bool,
}

#[derive(Default)]
struct Hub {
    /// `repo/resolve/revision/file` -> content.
    files: HashMap<String, Served>,
    /// Keys whose first full GET is cut off half way.
    cut_once: Mutex<HashSet<String>>,
    /// (method, key, Range header) of every request.
    log: Mutex<Vec<(String, String, Option<String>)>>,
}

const TOKEN: &str = "hf_test_token";

fn sha(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn content(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

async fn serve(
    State(hub): State<Arc<Hub>>,
    method: Method,
    headers: HeaderMap,
    UrlPath(path): UrlPath<String>,
) -> Response {
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let (via_cdn, key) = match path.strip_prefix("cdn/") {
        Some(key) => (true, key.to_string()),
        None => (false, path.clone()),
    };
    hub.log
        .lock()
        .unwrap()
        .push((method.to_string(), path.clone(), range.clone()));
    let Some(file) = hub.files.get(&key) else {
        return status(StatusCode::NOT_FOUND);
    };
    if file.gated && !via_cdn {
        let auth = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        if auth != Some(&format!("Bearer {TOKEN}")) {
            return status(StatusCode::UNAUTHORIZED);
        }
    }
    if file.lfs && !via_cdn {
        return Response::builder()
            .status(StatusCode::FOUND)
            .header(header::LOCATION, format!("/cdn/{key}"))
            .header("x-linked-size", file.bytes.len())
            .header("x-linked-etag", format!("\"{}\"", sha(&file.bytes)))
            .body(Body::empty())
            .unwrap();
    }
    let total = file.bytes.len();
    let start = range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.trim_end_matches('-').parse::<usize>().ok());
    let builder = Response::builder().header(header::ACCEPT_RANGES, "bytes");
    if method == Method::HEAD {
        return builder
            .header(header::CONTENT_LENGTH, total)
            .body(Body::empty())
            .unwrap();
    }
    if let Some(start) = start {
        if start >= total {
            return status(StatusCode::RANGE_NOT_SATISFIABLE);
        }
        return builder
            .status(StatusCode::PARTIAL_CONTENT)
            .header(header::CONTENT_LENGTH, total - start)
            .header(
                header::CONTENT_RANGE,
                format!("bytes {start}-{}/{total}", total - 1),
            )
            .body(Body::from(file.bytes[start..].to_vec()))
            .unwrap();
    }
    if hub.cut_once.lock().unwrap().remove(&key) {
        // Announce the whole file, send half, then break the connection.
        // The pause lets the first half reach the client before the connection breaks.
        let half = file.bytes[..total / 2].to_vec();
        let chunks = futures_util::stream::unfold(Some(half), |half| async move {
            match half {
                Some(half) => Some((Ok(half), None)),
                None => {
                    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
                    Some((
                        Err(std::io::Error::other("connection cut by the test")),
                        None,
                    ))
                }
            }
        });
        return builder
            .header(header::CONTENT_LENGTH, total)
            .body(Body::from_stream(chunks))
            .unwrap();
    }
    builder
        .header(header::CONTENT_LENGTH, total)
        .body(Body::from(file.bytes.clone()))
        .unwrap()
}

fn status(code: StatusCode) -> Response {
    Response::builder()
        .status(code)
        .body(Body::empty())
        .unwrap()
}

/// Starts the hub on a background thread; returns its endpoint.
fn start(hub: Arc<Hub>) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let app = axum::Router::new()
                .route("/{*path}", axum::routing::get(serve).head(serve))
                .with_state(hub);
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
    format!("http://{addr}")
}

/// `comfyrs models <command> --manifest <manifest> --models-dir <models>` without a token.
fn models_command(command: &str, endpoint: &str, manifest: &str, models: &str) -> Output {
    comfyrs(
        endpoint,
        None,
        &[
            "models",
            command,
            "--manifest",
            manifest,
            "--models-dir",
            models,
        ],
    )
}

fn comfyrs(endpoint: &str, token: Option<&str>, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_comfyrs"));
    cmd.args(args)
        .env("HF_ENDPOINT", endpoint)
        .env_remove("HF_TOKEN");
    if let Some(token) = token {
        cmd.env("HF_TOKEN", token);
    }
    cmd.output().expect("the comfyrs binary runs")
}

fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn entry(repo: &str, file: &str, folder: &str, sha256: Option<&str>) -> String {
    let mut s = format!(
        "[[file]]\nrepo = \"{repo}\"\nrevision = \"main\"\nfile = \"{file}\"\nfolder = \"{folder}\"\n"
    );
    if let Some(sha) = sha256 {
        s.push_str(&format!("sha256 = \"{sha}\"\n"));
    }
    s
}

fn write_manifest(dir: &Path, name: &str, entries: &[String]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, entries.join("\n")).unwrap();
    path.display().to_string()
}

fn gets(hub: &Hub, key_part: &str) -> Vec<Option<String>> {
    hub.log
        .lock()
        .unwrap()
        .iter()
        .filter(|(m, k, _)| m == "GET" && k.contains(key_part))
        .map(|(_, _, r)| r.clone())
        .collect()
}

#[test]
fn pull_resumes_verifies_skips_and_lists() {
    let big = content(300_000, 7);
    let lora = content(40_000, 3);
    let te = content(20_000, 11);
    let bad = content(10_000, 5);
    let mut hub = Hub::default();
    hub.files.insert(
        "org/model/resolve/main/big.safetensors".into(),
        Served {
            bytes: big.clone(),
            lfs: true,
            gated: false,
        },
    );
    hub.files.insert(
        "org/lora/resolve/main/lora.safetensors".into(),
        Served {
            bytes: lora.clone(),
            lfs: true,
            gated: false,
        },
    );
    hub.files.insert(
        "org/te/resolve/main/split_files/text_encoders/te.safetensors".into(),
        Served {
            bytes: te.clone(),
            lfs: false,
            gated: false,
        },
    );
    hub.files.insert(
        "org/vae/resolve/main/bad.safetensors".into(),
        Served {
            bytes: bad,
            lfs: false,
            gated: false,
        },
    );
    hub.cut_once
        .lock()
        .unwrap()
        .insert("org/model/resolve/main/big.safetensors".into());
    let hub = Arc::new(hub);
    let endpoint = start(hub.clone());
    let dir = tempfile::tempdir().unwrap();
    let models = dir.path().join("models");
    let models_arg = models.display().to_string();
    let good = [
        entry(
            "org/model",
            "big.safetensors",
            "checkpoints",
            Some(&sha(&big)),
        ),
        entry("org/lora", "lora.safetensors", "loras", None),
        entry(
            "org/te",
            "split_files/text_encoders/te.safetensors",
            "text_encoders",
            Some(&sha(&te)),
        ),
    ];
    let corrupt = entry(
        "org/vae",
        "bad.safetensors",
        "vae",
        Some(&sha(b"not what the hub serves")),
    );
    let mut all = good.to_vec();
    all.push(corrupt);
    let manifest = write_manifest(dir.path(), "all.toml", &all);

    let out = models_command("pull", &endpoint, &manifest, &models_arg);
    let log = text(&out);
    assert_eq!(out.status.code(), Some(1), "{log}");
    assert!(
        log.contains("org/vae/bad.safetensors@main: sha256 mismatch"),
        "{log}"
    );
    assert!(!models.join("vae/bad.safetensors").exists());
    assert!(!models.join("vae/bad.safetensors.partial").exists());
    assert_eq!(
        std::fs::read(models.join("checkpoints/big.safetensors")).unwrap(),
        big
    );
    assert_eq!(
        std::fs::read(models.join("loras/lora.safetensors")).unwrap(),
        lora
    );
    assert_eq!(
        std::fs::read(models.join("text_encoders/te.safetensors")).unwrap(),
        te
    );
    // The cut download resumed where it stopped.
    assert_eq!(
        gets(&hub, "big.safetensors"),
        vec![
            None,
            None,
            Some("bytes=150000-".into()),
            Some("bytes=150000-".into())
        ],
        "{log}"
    );

    let out = models_command("list", &endpoint, &manifest, &models_arg);
    let listing = text(&out);
    assert!(out.status.success(), "{listing}");
    assert!(listing.contains("checkpoints/big.safetensors"), "{listing}");
    let line = |name: &str| {
        listing
            .lines()
            .find(|l| l.contains(name))
            .unwrap_or_default()
            .to_string()
    };
    assert!(
        line("big.safetensors").contains("present (sha256 ok)"),
        "{listing}"
    );
    assert!(line("lora.safetensors").contains("present"), "{listing}");
    assert!(line("bad.safetensors").ends_with("missing"), "{listing}");
    assert!(listing.contains("3 of 4 files present"), "{listing}");

    // Damage one file on disk: list calls it corrupt, pull replaces only it.
    let mut damaged = big.clone();
    damaged[1234] ^= 0xff;
    std::fs::write(models.join("checkpoints/big.safetensors"), &damaged).unwrap();
    let out = models_command("list", &endpoint, &manifest, &models_arg);
    let listing = text(&out);
    assert!(listing.contains("corrupt (sha256"), "{listing}");
    let good_manifest = write_manifest(dir.path(), "good.toml", &good);
    let before_lora = gets(&hub, "lora.safetensors").len();
    let before_te = gets(&hub, "te.safetensors").len();
    let out = models_command("pull", &endpoint, &good_manifest, &models_arg);
    let log = text(&out);
    assert!(out.status.success(), "{log}");
    assert_eq!(
        std::fs::read(models.join("checkpoints/big.safetensors")).unwrap(),
        big
    );
    assert_eq!(gets(&hub, "lora.safetensors").len(), before_lora, "{log}");
    assert_eq!(gets(&hub, "te.safetensors").len(), before_te, "{log}");
}

#[test]
fn a_partial_download_from_an_earlier_run_resumes() {
    let bytes = content(100_000, 9);
    let mut hub = Hub::default();
    hub.files.insert(
        "org/m/resolve/main/m.safetensors".into(),
        Served {
            bytes: bytes.clone(),
            lfs: true,
            gated: false,
        },
    );
    let hub = Arc::new(hub);
    let endpoint = start(hub.clone());
    let dir = tempfile::tempdir().unwrap();
    let models = dir.path().join("models");
    std::fs::create_dir_all(models.join("loras")).unwrap();
    std::fs::write(models.join("loras/m.safetensors.partial"), &bytes[..30_000]).unwrap();
    let manifest = write_manifest(
        dir.path(),
        "m.toml",
        &[entry("org/m", "m.safetensors", "loras", None)],
    );
    let models_arg = models.display().to_string();
    let out = models_command("list", &endpoint, &manifest, &models_arg);
    assert!(
        text(&out).contains("missing (30000 bytes downloaded)"),
        "{}",
        text(&out)
    );
    let out = models_command("pull", &endpoint, &manifest, &models_arg);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        std::fs::read(models.join("loras/m.safetensors")).unwrap(),
        bytes
    );
    assert_eq!(
        gets(&hub, "m.safetensors"),
        vec![Some("bytes=30000-".into()); 2]
    );
}

#[test]
fn a_gated_repo_needs_hf_token() {
    let bytes = content(5_000, 1);
    let mut hub = Hub::default();
    hub.files.insert(
        "org/gated/resolve/main/g.safetensors".into(),
        Served {
            bytes: bytes.clone(),
            lfs: true,
            gated: true,
        },
    );
    let endpoint = start(Arc::new(hub));
    let dir = tempfile::tempdir().unwrap();
    let models = dir.path().join("models").display().to_string();
    let manifest = write_manifest(
        dir.path(),
        "g.toml",
        &[entry("org/gated", "g.safetensors", "checkpoints", None)],
    );
    let args = [
        "models",
        "pull",
        "--manifest",
        &manifest,
        "--models-dir",
        &models,
    ];
    let out = comfyrs(&endpoint, None, &args);
    let log = text(&out);
    assert_eq!(out.status.code(), Some(1), "{log}");
    assert!(
        log.contains("org/gated/g.safetensors@main: the hub refused access (401 Unauthorized)"),
        "{log}"
    );
    assert!(log.contains("HF_TOKEN"), "{log}");
    let out = comfyrs(&endpoint, Some(TOKEN), &args);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        std::fs::read(dir.path().join("models/checkpoints/g.safetensors")).unwrap(),
        bytes
    );
}
