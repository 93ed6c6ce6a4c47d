//! Participant LoRA uploads (`POST /api/upload/lora`, `serve --allow-lora-upload`): a valid
//! LoRA lands in the user's own `models/loras/` and only their LoRA loader lists it; bad
//! headers, pickle / zip files, other extensions and oversized files are refused with the reason;
//! a server without the flag refuses uploads.

mod common;

use common::api::{Api, Reply};
use common::server::{Server, ServerOptions, TestUser};
use serde_json::Value;

/// A small LoRA in safetensors layout (`diffusion_model.<module>.lora_A/B.weight`, F32), padded
/// with a metadata entry to about `pad` bytes.
fn lora_file(pad: usize) -> Vec<u8> {
    let a = 2 * 4 * 4;
    let b = 4 * 2 * 4;
    let filler = "x".repeat(pad);
    let header = format!(
        r#"{{"__metadata__":{{"pad":"{filler}"}},"diffusion_model.blocks.0.attn.to_q.lora_A.weight":{{"dtype":"F32","shape":[2,4],"data_offsets":[0,{a}]}},"diffusion_model.blocks.0.attn.to_q.lora_B.weight":{{"dtype":"F32","shape":[4,2],"data_offsets":[{a},{}]}}}}"#,
        a + b
    );
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    out.extend(std::iter::repeat_n(0u8, a + b));
    out
}

async fn upload(api: &Api, prefix: &str, name: &str, bytes: Vec<u8>) -> Reply {
    let form = reqwest::multipart::Form::new().part(
        "lora",
        reqwest::multipart::Part::bytes(bytes).file_name(name.to_string()),
    );
    api.send(
        api.request(reqwest::Method::POST, &format!("{prefix}/api/upload/lora"))
            .multipart(form),
    )
    .await
}

async fn lora_options(api: &Api, prefix: &str) -> Vec<String> {
    let reply = api
        .get(&format!("{prefix}/api/object_info/LoraLoaderModelOnly"))
        .await;
    assert_eq!(reply.status, 200);
    let list = &reply.json["LoraLoaderModelOnly"]["input"]["required"]["lora_name"][0];
    list.as_array()
        .unwrap_or_else(|| panic!("lora_name options: {}", reply.json))
        .iter()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect()
}

fn message(reply: &Reply) -> String {
    String::from_utf8_lossy(&reply.bytes).to_string()
}

#[tokio::test]
async fn uploads_are_validated_and_private_to_their_owner() {
    let server = Server::start(ServerOptions {
        args: vec![
            "--allow-lora-upload".into(),
            "--max-lora-upload-size".into(),
            "0.25".into(),
        ],
        ..ServerOptions::workshop(vec![
            TestUser::participant("alice", "pw-a"),
            TestUser::participant("bob", "pw-b"),
        ])
    });
    let alice = server.http_as("alice");
    let bob = server.http_as("bob");

    let reply = upload(&alice, "/alice", "mine.safetensors", lora_file(100)).await;
    assert_eq!(reply.status, 200, "{}", message(&reply));
    assert_eq!(reply.json["name"], "mine.safetensors");
    assert_eq!(reply.json["tensors"], 2);
    let folder = server.data_dir().join("users/alice/models/loras");
    assert!(folder.join("mine.safetensors").is_file());
    assert!(
        lora_options(&alice, "/alice")
            .await
            .contains(&"mine.safetensors".to_string())
    );
    assert!(
        !lora_options(&bob, "/bob")
            .await
            .contains(&"mine.safetensors".to_string())
    );

    // The same name again needs overwrite; a different user may use the same name.
    let reply = upload(&alice, "/alice", "mine.safetensors", lora_file(10)).await;
    assert_eq!(reply.status, 409, "{}", message(&reply));
    let reply = upload(&bob, "/bob", "mine.safetensors", lora_file(10)).await;
    assert_eq!(reply.status, 200, "{}", message(&reply));

    let mut bad_header = lora_file(0);
    bad_header[8] = b'[';
    let mut bad_offsets = lora_file(0);
    let len = bad_offsets.len();
    bad_offsets.truncate(len - 4);
    let mut zip = b"PK\x03\x04\x14\x00\x00\x00".to_vec();
    zip.extend_from_slice(b"archive/data.pklPK");
    let pickle = b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\nq\x00".to_vec();
    let no_lora = {
        let header = r#"{"model.diffusion_model.x.weight":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#;
        let mut out = (header.len() as u64).to_le_bytes().to_vec();
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(&[0; 4]);
        out
    };
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        (
            "header.safetensors",
            bad_header,
            400,
            "invalid safetensors header",
        ),
        (
            "offsets.safetensors",
            bad_offsets,
            400,
            "invalid safetensors header",
        ),
        ("zip.safetensors", zip, 400, "zip archive"),
        ("pickle.safetensors", pickle, 400, "Python pickle"),
        ("model.pt", lora_file(0), 400, "only .safetensors"),
        ("checkpoint.safetensors", no_lora, 400, "no LoRA tensors"),
        (
            "../escape.safetensors",
            lora_file(0),
            400,
            "invalid file name",
        ),
        // Just past the limit: read, refused by the handler with the reason.
        (
            "big.safetensors",
            lora_file(256 * 1024 + 100),
            413,
            "larger than the LoRA upload limit",
        ),
    ];
    for (name, bytes, status, reason) in cases {
        let reply = upload(&alice, "/alice", name, bytes).await;
        assert_eq!(reply.status, status, "{name}: {}", message(&reply));
        assert!(
            message(&reply).contains(reason),
            "{name}: {}",
            message(&reply)
        );
    }
    // Far past the limit: refused from the declared length before the body is read.
    // (Only the head is sent: a client sending the whole body may see the early answer as a reset.)
    let answer =
        announce_upload(server.port, "/alice/api/upload/lora", "alice:pw-a", 2 << 20).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");

    let mut left: Vec<String> = std::fs::read_dir(&folder)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    left.sort();
    assert_eq!(
        left,
        vec!["mine.safetensors".to_string()],
        "refused uploads leave nothing"
    );
}

#[tokio::test]
async fn uploads_are_refused_unless_the_admin_enabled_them() {
    let server = Server::start(ServerOptions::workshop(vec![TestUser::participant(
        "alice", "pw-a",
    )]));
    let alice = server.http_as("alice");
    let reply = upload(&alice, "/alice", "mine.safetensors", lora_file(0)).await;
    assert_eq!(reply.status, 403, "{}", message(&reply));
    assert!(
        message(&reply).contains("--allow-lora-upload"),
        "{}",
        message(&reply)
    );
    assert!(
        !server
            .data_dir()
            .join("users/alice/models/loras/mine.safetensors")
            .exists()
    );
}

/// Sends only the head of a multipart POST declaring `length` body bytes (with
/// `Expect: 100-continue`) and returns the head of the server's answer.
async fn announce_upload(port: u16, path: &str, credentials: &str, length: usize) -> String {
    use base64::Engine;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let auth = base64::engine::general_purpose::STANDARD.encode(credentials);
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Basic {auth}\r\nContent-Type: multipart/form-data; boundary=x\r\nContent-Length: {length}\r\nExpect: 100-continue\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.expect("write head");
    let mut answer = vec![0u8; 4096];
    let n = tokio::time::timeout(std::time::Duration::from_secs(30), stream.read(&mut answer))
        .await
        .expect("an answer before the body")
        .expect("read");
    String::from_utf8_lossy(&answer[..n]).to_string()
}
