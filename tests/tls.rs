//! HTTPS directly in `comfyrs serve` (`--tls-cert`/`--tls-key`): a self-signed certificate made
//! here, a real HTTPS request trusting only it, the WebSocket-free API over TLS, `comfyrs
//! status --ca`, and plain HTTP refused on the TLS port.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{Server, ServerOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_https_with_a_self_signed_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let made = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
        .expect("certificate");
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    std::fs::write(&cert, made.cert.pem()).unwrap();
    std::fs::write(&key, made.key_pair.serialize_pem()).unwrap();
    let server = Server::start(ServerOptions {
        args: vec![
            "--tls-cert".into(),
            cert.to_str().unwrap().into(),
            "--tls-key".into(),
            key.to_str().unwrap().into(),
        ],
        ..ServerOptions::default()
    });
    assert!(
        server.log().contains("listening on https://"),
        "{}",
        server.log()
    );
    let https = format!("https://127.0.0.1:{}", server.port);
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(made.cert.pem().as_bytes()).unwrap())
        .tls_built_in_root_certs(false)
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let reply = client
        .get(format!("{https}/api/features"))
        .send()
        .await
        .expect("HTTPS request");
    assert_eq!(reply.status(), 200);
    let features: serde_json::Value = reply.json().await.unwrap();
    assert!(features["max_upload_size"].as_u64().is_some());

    // A prompt over HTTPS runs.
    let prompt = common::empty_image_prompt(8, 8, 0, "tls");
    let reply = client
        .post(format!("{https}/prompt"))
        .json(&serde_json::json!({"prompt": prompt}))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 200);

    // A client that does not trust the certificate is refused; so is plain HTTP.
    let untrusting = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    assert!(
        untrusting
            .get(format!("{https}/api/features"))
            .send()
            .await
            .is_err()
    );
    let plain = untrusting
        .get(format!("{}/api/features", server.url))
        .send()
        .await;
    assert!(plain.is_err(), "plain HTTP answered on the TLS port");

    // `comfyrs status` trusts the certificate with --ca.
    let out = Command::new(env!("CARGO_BIN_EXE_comfyrs"))
        .args([
            "status",
            "--json",
            "--url",
            &https,
            "--ca",
            cert.to_str().unwrap(),
        ])
        .env_remove("COMFYRS_ADMIN_USER")
        .env_remove("COMFYRS_ADMIN_PASSWORD")
        .output()
        .unwrap();
    let status: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(status["server"]["status"], "ok");
    assert_eq!(status["queue"]["backend"], "embedded");
}
