//! `/view`, `/upload/image`, `/internal/files`, the start-up catalogue routes and `/userdata`
//! against the real ComfyUI: every case of `tests/fixtures/comfy_peer/files.json` is replayed in
//! the captured order and its status, interesting headers and body compared, modulo documented
//! differences. Plus the safety rules: traversal and absolute paths refused, upload size limit.

mod common;

use std::time::Duration;

use common::ws::is_done;
use common::{
    Api, Reply, Rules, Server, ServerOptions, assert_json_matches, case, fixture, repo_root,
};
use serde_json::{Value, json};

/// The bytes of a file in `tests/fixtures/comfy_peer/`.
fn fixture_bytes(name: &str) -> Vec<u8> {
    std::fs::read(repo_root().join("tests/fixtures/comfy_peer").join(name)).expect("fixture file")
}

/// Two different contents standing in for the capture's two `up.png` versions (73 and 72
/// bytes there): the server only compares contents, so any two distinct files do.
fn upload_content(length: u64) -> Vec<u8> {
    if length == 73 {
        fixture_bytes("test13x9.png")
    } else {
        fixture_bytes("test13x9_rgba.png")
    }
}

async fn send_upload(api: &Api, request: &Value) -> Reply {
    let mut form = reqwest::multipart::Form::new();
    for (k, v) in request["form"].as_object().expect("form") {
        form = form.text(k.clone(), v.as_str().expect("field").to_string());
    }
    if let Some(file) = request["file"].as_object() {
        let bytes = upload_content(file["length"].as_u64().expect("length"));
        let part = reqwest::multipart::Part::bytes(bytes)
            .file_name(file["filename"].as_str().expect("filename").to_string());
        form = form.part(file["field"].as_str().expect("field").to_string(), part);
    }
    let path = request["path"].as_str().expect("path");
    api.send(api.request(reqwest::Method::POST, path).multipart(form))
        .await
}

async fn send(api: &Api, request: &Value) -> Reply {
    let path = request["path"].as_str().expect("path");
    match request["method"].as_str().expect("method") {
        "GET" => api.get(path).await,
        "DELETE" => api.delete(path).await,
        "POST" if request.get("form").is_some() => send_upload(api, request).await,
        "POST" if request.get("body_text").is_some() => {
            let body = request["body_text"].as_str().expect("body").to_string();
            api.post_raw(path, body).await
        }
        "POST" if request.get("json").is_some() => api.post(path, &request["json"]).await,
        "POST" => api.post_raw(path, "").await,
        other => panic!("method {other}"),
    }
}

/// Headers the capture kept, compared where they are ours to match.
fn check_headers(name: &str, reply: &Reply, expected: &Value) {
    for key in ["content-type", "content-disposition"] {
        let Some(want) = expected[key].as_str() else {
            continue;
        };
        let got = reply.header(key).unwrap_or("");
        // aiohttp adds `; charset=utf-8` to text; ours is equivalent without it.
        let got_type = got.split(';').next().unwrap_or("");
        let want_type = want.split(';').next().unwrap_or("");
        assert_eq!(got_type, want_type, "{name}: {key}");
    }
}

/// Cases whose answer differs on purpose (we follow upstream or are stricter) or whose body
/// is specific to the captured machine; checked by their own rules.
fn special(name: &str, reply: &Reply, expected: &Value) -> bool {
    match name {
        // An unknown upload type crashes ComfyUI (500); we answer 400.
        "upload_type_bogus" => assert_eq!(reply.status, 400, "{name}"),
        // The annotated name's quirky headers (no type, the raw name) are not copied.
        "view_annotated_filename" => assert_eq!(reply.bytes.len(), 12, "{name}: the input file"),
        "system_stats" => {
            let system = &reply.json["system"];
            for key in ["os", "comfyui_version", "python_version", "pytorch_version"] {
                assert!(system[key].is_string(), "system.{key}");
            }
            assert!(system["ram_total"].is_u64() && system["ram_free"].is_u64());
            assert!(
                system["argv"]
                    .as_array()
                    .is_some_and(|a| a.iter().all(Value::is_string))
            );
            assert_eq!(system["embedded_python"], false);
            assert!(reply.json["devices"].is_array());
        }
        // Upstream adds `assets`/`node_replacements`; we support neither, nor the Manager.
        "features" => {
            let mut got = reply.json.clone();
            assert_eq!(got["assets"], false);
            assert_eq!(got["node_replacements"], false);
            got.as_object_mut().map(|m| {
                m.remove("assets");
                m.remove("node_replacements")
            });
            got["extension"]["manager"]["supports_v4"] = json!(true);
            assert_eq!(got, *expected, "{name}");
        }
        // Upstream lists the frontend's own core extensions, which the frontend skips.
        "extensions" => assert_eq!(reply.json, json!([]), "{name}"),
        // Our model folders are the ones comfyrs loads from.
        "models" => {
            let names: Vec<&str> = reply
                .json
                .as_array()
                .expect("list")
                .iter()
                .filter_map(Value::as_str)
                .collect();
            for folder in [
                "checkpoints",
                "loras",
                "vae",
                "text_encoders",
                "latent_upscale_models",
            ] {
                assert!(names.contains(&folder), "{name}: {folder}");
            }
        }
        "experiment_models" => {
            for entry in reply.json.as_array().expect("list") {
                assert!(
                    entry["name"].is_string() && entry["folders"].is_array(),
                    "{entry}"
                );
            }
        }
        _ => return false,
    }
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_routes_match_comfyui() {
    let server = Server::start(ServerOptions::default());
    let api = server.api();
    // What the capture did before: the `fresh` prompt (output/ws/fresh_00001_.png) and the
    // corrupt upload.
    let ws_file = fixture("ws_sequences.json");
    let fresh = &case(&ws_file, "fresh")["request"]["json"];
    let mut ws = api.ws("", fresh["client_id"].as_str()).await;
    api.post("/prompt", fresh).await;
    let id = fresh["prompt_id"].as_str().expect("id");
    ws.until(Duration::from_secs(60), |f| is_done(f, id)).await;
    api.upload(
        "/upload/image",
        "corrupt.png",
        b"not an image".to_vec(),
        &[],
    )
    .await;
    tokio::time::sleep(Duration::from_millis(20)).await;

    let file = fixture("files.json");
    let rules = Rules::from_fixture(&file);
    for case in file["cases"].as_array().expect("cases") {
        let name = case["case"].as_str().expect("name");
        let reply = send(&api, &case["request"]).await;
        let expected = &case["response"];
        if special(name, &reply, expected) {
            continue;
        }
        assert_eq!(
            reply.status,
            case["status"],
            "{name}: status ({})",
            String::from_utf8_lossy(&reply.bytes)
        );
        if let Some(headers) = case.get("headers") {
            check_headers(name, &reply, headers);
        }
        if expected.is_null() {
            // The capture records an empty body and a JSON `null` alike.
            let body = String::from_utf8_lossy(&reply.bytes);
            assert!(
                body.is_empty() || body == "null",
                "{name}: no body, got {body:?}"
            );
        } else if let Some(text) = expected.get("_text") {
            assert_eq!(
                String::from_utf8_lossy(&reply.bytes),
                text.as_str().expect("text"),
                "{name}"
            );
        } else if expected.get("_binary").is_some() {
            check_binary(name, &server, &reply);
        } else {
            assert_json_matches(name, &reply.json, expected, &rules);
        }
        // Tiny pause so upload modification times order like the capture's.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A served file: the bytes on disk, or a decodable re-encoding for `preview`/`channel`.
fn check_binary(name: &str, server: &Server, reply: &Reply) {
    let data = server.data_dir();
    match name {
        "view_output_image" | "view_output_image_api_prefix" => {
            assert_eq!(
                reply.bytes,
                std::fs::read(data.join("output/ws/fresh_00001_.png")).expect("output")
            );
        }
        "view_uploaded_in_subfolder" => {
            assert_eq!(
                reply.bytes,
                std::fs::read(data.join("input/sub/dir/up.png")).expect("upload")
            );
        }
        "view_preview_webp" | "view_channel_rgb" | "view_channel_a" => {
            let image = image::load_from_memory(&reply.bytes).expect("decodable image");
            assert_eq!((image.width(), image.height()), (32, 24), "{name}");
        }
        other => panic!("{other}: unexpected binary case"),
    }
}

#[tokio::test]
async fn traversal_and_absolute_paths_are_refused() {
    let server = Server::start(ServerOptions::default());
    let api = server.api();
    std::fs::write(server.data_dir().join("secret.txt"), "secret").expect("write");
    for (path, status) in [
        ("/view?filename=..%2Fsecret.txt&type=output", 400),
        ("/view?filename=%2Fetc%2Fpasswd", 400),
        (
            "/api/view?filename=secret.txt&subfolder=..&type=output",
            403,
        ),
        (
            "/view?filename=secret.txt&subfolder=%2Fetc&type=output",
            403,
        ),
        (
            "/view?filename=passwd&subfolder=..%2F..%2F..%2F..%2F..%2Fetc&type=input",
            403,
        ),
        ("/userdata/..%2F..%2Fsecret.txt", 403),
        ("/userdata/%2Fetc%2Fpasswd", 403),
        ("/api/userdata?dir=..%2F..", 403),
        ("/v2/userdata?path=..%2F..", 400),
    ] {
        let reply = api.get(path).await;
        assert_eq!(reply.status, status, "GET {path}");
        assert!(!String::from_utf8_lossy(&reply.bytes).contains("secret"));
    }
    for (file_name, subfolder) in [
        ("../evil.png", ""),
        ("/tmp/evil.png", ""),
        ("ok.png", "../.."),
        ("ok.png", "/tmp"),
    ] {
        let reply = api
            .upload(
                "/upload/image",
                file_name,
                b"x".to_vec(),
                &[("subfolder", subfolder)],
            )
            .await;
        assert_eq!(reply.status, 400, "upload {file_name} into {subfolder:?}");
    }
    assert!(!server.data_dir().join("evil.png").exists());
    assert!(
        !std::path::Path::new("/tmp/evil.png").exists()
            || std::fs::read("/tmp/evil.png")
                .map(|b| b != b"x")
                .unwrap_or(true)
    );
    let reply = api.post_raw("/userdata/..%2F..%2Fescape.json", "{}").await;
    assert_eq!(reply.status, 403);
    let reply = api
        .post_raw("/userdata/workflows%2Fa.json/move/..%2F..%2Fb.json", "")
        .await;
    assert_eq!(reply.status, 403);
}

#[tokio::test]
async fn uploads_over_the_limit_are_refused_with_413() {
    let server = Server::start(ServerOptions {
        args: vec!["--max-upload-size".into(), "1".into()],
        ..ServerOptions::default()
    });
    let api = server.api();
    let features = api.get("/api/features").await;
    assert_eq!(features.json["max_upload_size"], 1024 * 1024);
    let small = api
        .upload("/upload/image", "small.png", vec![1; 1000], &[])
        .await;
    assert_eq!(small.status, 200);
    // Announce a 2 MB body and wait for the answer before sending it (a client that sends the
    // whole body may see the connection reset after the early 413).
    let (status, _) = announce_body(server.port, "/upload/image", 2 * 1024 * 1024).await;
    assert_eq!(status, 413);
    let (status, _) = announce_body(server.port, "/api/upload/image", 2 * 1024 * 1024).await;
    assert_eq!(status, 413);
    assert!(!server.data_dir().join("input/big.png").exists());
}

/// Sends only the head of a multipart POST declaring `length` body bytes (with
/// `Expect: 100-continue`) and returns the status and head of the server's answer.
async fn announce_body(port: u16, path: &str, length: usize) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: multipart/form-data; boundary=x\r\nContent-Length: {length}\r\nExpect: 100-continue\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.expect("write head");
    let mut answer = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(30), stream.read(&mut answer))
        .await
        .expect("an answer before the body")
        .expect("read");
    let text = String::from_utf8_lossy(&answer[..n]).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad answer {text:?}"));
    (status, text)
}

#[tokio::test]
async fn unknown_routes_are_plain_404s() {
    let server = Server::start(ServerOptions::default());
    let api = server.api();
    // Routes the frontend may call that a local ComfyUI does not have (it degrades on 404).
    for path in [
        "/api/jobs/5ef9f085-c2db-583e-9e8a-66da0cd002b8/assets",
        "/api/assets?include_tags=models",
        "/api/no_such_route",
        "/no_such_route.js",
    ] {
        let reply = api.get(path).await;
        assert_eq!(reply.status, 404, "GET {path}");
        assert!(
            !String::from_utf8_lossy(&reply.bytes).contains("<html"),
            "GET {path}"
        );
    }
    let reply = api.post("/api/no_such_route", &json!({})).await;
    assert_eq!(reply.status, 404);
}
