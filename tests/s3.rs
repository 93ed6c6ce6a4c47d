//! Backups and exports in S3-compatible object storage, against a real S3 server (moto's
//! server from PyPI, in `COMFYRS_TEST_PYTHON`; scripts/test.sh installs it): a server's data is
//! backed up to `s3://…` (a multipart upload: the data holds an incompressible file larger than
//! one part), verified and restored from there into an empty directory, where a server shows
//! every user's history and outputs; `comfyrs export` uploads every archive, report and chart
//! under an S3 prefix; a missing object or bucket, missing credentials, a bad URL and an
//! unreachable endpoint fail naming the URL and the reason. A models mirror is pushed to a
//! prefix and pulled from it onto an empty folder (resuming a partial download, detecting a
//! tampered object).

mod common;

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::cli::{comfyrs_with, one_output_each, workshop_users};
use common::{Server, ServerOptions};
use futures_util::TryStreamExt;
use object_store::ObjectStore;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjectPath;

const BUCKET: &str = "workshop";
const KEY_ID: &str = "test-key";
const SECRET: &str = "test-secret";

/// A moto S3 server on a loopback port, killed on drop.
struct Moto {
    child: Child,
    endpoint: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn python() -> String {
    std::env::var("COMFYRS_TEST_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// Starts moto's server with an empty bucket [`BUCKET`]; `None` (skipped) when moto is missing
/// outside scripts/test.sh.
async fn moto() -> Option<Moto> {
    let present = Command::new(python())
        .args(["-c", "import moto.server"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !common::e2e_ready("Python with moto[server] (COMFYRS_TEST_PYTHON)", present) {
        return None;
    }
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(python())
        .args([
            "-m",
            "moto.server",
            "-H",
            "127.0.0.1",
            "-p",
            &port.to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start moto.server");
    let moto = Moto {
        child,
        endpoint: format!("http://127.0.0.1:{port}"),
    };
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let created = http.put(format!("{}/{BUCKET}", moto.endpoint)).send().await;
        if created.as_ref().is_ok_and(|r| r.status().is_success()) {
            return Some(moto);
        }
        assert!(
            Instant::now() < deadline,
            "moto did not come up: {created:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

impl Moto {
    /// The environment `comfyrs` reads the store's settings from.
    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_ALLOW_HTTP", "true".into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ACCESS_KEY_ID", KEY_ID.into()),
            ("AWS_SECRET_ACCESS_KEY", SECRET.into()),
        ]
    }

    /// A client of the bucket, to look at what was uploaded.
    fn store(&self) -> AmazonS3 {
        AmazonS3Builder::new()
            .with_endpoint(&self.endpoint)
            .with_allow_http(true)
            .with_region("us-east-1")
            .with_access_key_id(KEY_ID)
            .with_secret_access_key(SECRET)
            .with_bucket_name(BUCKET)
            .build()
            .unwrap()
    }

    /// `(key, size)` of every object under `prefix`, sorted.
    async fn list(&self, prefix: &str) -> Vec<(String, u64)> {
        let store = self.store();
        let mut found: Vec<(String, u64)> = store
            .list(Some(&ObjectPath::from(prefix)))
            .map_ok(|m| (m.location.to_string(), m.size))
            .try_collect()
            .await
            .unwrap();
        found.sort();
        found
    }
}

fn succeeded(out: &std::process::Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    stderr
}

/// `n` bytes that gzip cannot shrink (xorshift), so the archive needs a multipart upload.
fn incompressible(n: usize) -> Vec<u8> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_verify_restore_and_export_through_s3() {
    let Some(moto) = moto().await else {
        return;
    };
    let env = moto.env();
    let mut server = Server::start(ServerOptions {
        users: workshop_users(),
        ..ServerOptions::default()
    });
    let made = one_output_each(&server, 0x0000ff).await;
    let data = server.data_dir();
    let big = incompressible(12 * 1024 * 1024);
    std::fs::create_dir_all(data.join("users/user001/input")).unwrap();
    std::fs::write(data.join("users/user001/input/big.bin"), &big).unwrap();

    // The export uploads every archive, the report and the charts under the prefix.
    let export = comfyrs_with(
        &[
            "export",
            "--out",
            &format!("s3://{BUCKET}/exports/"),
            "--no-pause",
            "--base-directory",
            data.to_str().unwrap(),
        ],
        &[
            env.clone(),
            vec![
                ("COMFYRS_URL", server.url.clone()),
                ("COMFYRS_ADMIN_USER", "teacher".into()),
                ("COMFYRS_ADMIN_PASSWORD", "pw-admin".into()),
            ],
        ]
        .concat(),
    );
    succeeded(&export);
    let exported: Vec<String> = moto
        .list("exports")
        .await
        .into_iter()
        .map(|(k, size)| {
            assert!(size > 0, "{k} is empty");
            k
        })
        .collect();
    assert_eq!(
        exported,
        [
            "outputs-all.tar.gz",
            "outputs-user001.tar.gz",
            "outputs-user002.tar.gz",
            "queue-depth.svg",
            "report.json",
            "report.md",
            "throughput.svg",
        ]
        .map(|n| format!("exports/{n}"))
    );
    let report = moto
        .store()
        .get(&ObjectPath::from("exports/report.json"))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&report).unwrap();
    assert_eq!(report["report"]["total"]["completed"], 2);

    // Back up to the bucket (with the server stopped: the embedded store).
    let mut originals = Vec::new();
    for (user, _, sub, file) in &made {
        let view = format!("/{user}/view?filename={file}&subfolder={sub}&type=output");
        originals.push(server.http_as(user).get(&view).await.bytes);
    }
    server.stop();
    let url = format!("s3://{BUCKET}/backups/x.tar.gz");
    let backup = comfyrs_with(
        &[
            "backup",
            "--out",
            &url,
            "--base-directory",
            data.to_str().unwrap(),
            "--users",
            server.users_file().to_str().unwrap(),
        ],
        &env,
    );
    assert!(succeeded(&backup).contains(&url));
    let stored = moto.list("backups").await;
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!(stored[0].0, "backups/x.tar.gz");
    assert!(stored[0].1 > 12 * 1024 * 1024, "{stored:?}");

    for args in [
        vec!["verify", url.as_str()],
        vec!["backup", "--verify", "--out", url.as_str()],
    ] {
        let v = comfyrs_with(&args, &env);
        succeeded(&v);
        let stdout = String::from_utf8_lossy(&v.stdout);
        assert!(
            stdout.starts_with("ok: ") && stdout.contains(&url),
            "{stdout}"
        );
    }

    let work = tempfile::tempdir().unwrap();
    let restored = work.path().join("restored");
    let restore = comfyrs_with(
        &[
            "restore",
            &url,
            "--base-directory",
            restored.to_str().unwrap(),
        ],
        &env,
    );
    succeeded(&restore);
    assert_eq!(
        std::fs::read(restored.join("users/user001/input/big.bin")).unwrap(),
        big
    );
    assert_eq!(
        std::fs::read(restored.join("config/users.toml")).unwrap(),
        std::fs::read(server.users_file()).unwrap()
    );

    // A server on the restored directory has every user's history and outputs.
    let server = Server::start(ServerOptions {
        users: workshop_users(),
        data_dir: Some(restored),
        ..ServerOptions::default()
    });
    for ((user, id, sub, file), original) in made.iter().zip(&originals) {
        let api = server.http_as(user);
        let history = api.get(&format!("/{user}/history")).await;
        let ids: Vec<&String> = history.json.as_object().unwrap().keys().collect();
        assert_eq!(ids, vec![id], "{user}'s history");
        let view = format!("/{user}/view?filename={file}&subfolder={sub}&type=output");
        let reply = api.get(&view).await;
        assert_eq!(reply.status, 200, "{view}");
        assert_eq!(&reply.bytes, original);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_failures_name_the_url_and_the_reason() {
    let Some(moto) = moto().await else {
        return;
    };
    let env = moto.env();
    let fail = |args: &[&str], env: &[(&str, String)]| {
        let out = comfyrs_with(args, env);
        assert!(!out.status.success(), "{args:?} succeeded");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };

    let missing = format!("s3://{BUCKET}/backups/none.tar.gz");
    let err = fail(&["verify", &missing], &env);
    assert!(
        err.contains(&missing) && err.contains("no such object"),
        "{err}"
    );

    let no_bucket = "s3://no-such-bucket/x.tar.gz";
    let err = fail(&["verify", no_bucket], &env);
    assert!(
        err.contains(no_bucket) && err.contains("bucket does not exist"),
        "{err}"
    );

    let no_keys: Vec<_> = env
        .iter()
        .filter(|(k, _)| !k.contains("ACCESS_KEY"))
        .cloned()
        .collect();
    let err = fail(&["verify", &missing], &no_keys);
    assert!(
        err.contains(&missing) && err.contains("missing credentials"),
        "{err}"
    );

    let err = fail(&["verify", "s3://Bad_Bucket/x"], &env);
    assert!(
        err.contains("s3://Bad_Bucket/x") && err.contains("bad S3 URL"),
        "{err}"
    );

    // Nothing listens on port 1: a network error (after the client's quick retries).
    let unreachable: Vec<_> = env
        .iter()
        .map(|(k, v)| match *k {
            "AWS_ENDPOINT_URL" => (*k, "http://127.0.0.1:1".to_string()),
            _ => (*k, v.clone()),
        })
        .collect();
    let err = fail(&["verify", &missing], &unreachable);
    assert!(
        err.contains(&missing) && err.contains("error sending request"),
        "{err}"
    );
}

/// A manifest of two files (one larger than a multipart part) and a models folder holding them.
fn models_folder(dir: &std::path::Path) -> (String, Vec<(&'static str, Vec<u8>)>) {
    let files = vec![
        (
            "checkpoints/ltx-2-tiny.safetensors",
            incompressible(9 << 20),
        ),
        ("loras/camera.safetensors", b"a small lora".to_vec()),
    ];
    let mut manifest = String::new();
    for (path, bytes) in &files {
        let (folder, name) = path.split_once('/').unwrap();
        std::fs::create_dir_all(dir.join("models").join(folder)).unwrap();
        std::fs::write(dir.join("models").join(path), bytes).unwrap();
        let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(bytes));
        manifest += &format!(
            "[[file]]\nrepo = \"org/models\"\nfile = \"{name}\"\nfolder = \"{folder}\"\n\
             sha256 = \"{sha}\"\n\n"
        );
    }
    let manifest_path = dir.join("manifest.toml");
    std::fs::write(&manifest_path, manifest).unwrap();
    (manifest_path.display().to_string(), files)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_models_mirror_is_pushed_to_and_pulled_from_s3() {
    let Some(moto) = moto().await else {
        return;
    };
    let env = moto.env();
    let source = tempfile::tempdir().unwrap();
    let (manifest, files) = models_folder(source.path());
    let mirror = format!("s3://{BUCKET}/mirror");
    // `comfyrs models <command> --manifest M --models-dir <dir>/models <flag> <place>`
    let models = |command: &str, dir: &tempfile::TempDir, flag: &str, place: &str| {
        let folder = dir.path().join("models").display().to_string();
        let args = [
            "models",
            command,
            "--manifest",
            &manifest,
            "--models-dir",
            &folder,
            flag,
            place,
        ];
        comfyrs_with(&args, &env)
    };

    let out = models("push", &source, "--to", &mirror);
    succeeded(&out);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout)
            .matches("uploaded")
            .count(),
        2
    );
    let listed = moto.list("mirror").await;
    let big = files[0].1.len() as u64;
    assert!(
        listed.contains(&("mirror/checkpoints/ltx-2-tiny.safetensors".into(), big)),
        "{listed:?}"
    );
    assert!(
        listed
            .iter()
            .any(|(k, _)| k == "mirror/loras/camera.safetensors.sha256"),
        "{listed:?}"
    );
    // Pushing again uploads nothing.
    let out = models("push", &source, "--to", &mirror);
    succeeded(&out);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout)
            .matches("up to date")
            .count(),
        2
    );

    // A fresh box pulls everything, one file resuming from an interrupted download.
    let fresh = tempfile::tempdir().unwrap();
    let checkpoints = fresh.path().join("models/checkpoints");
    std::fs::create_dir_all(&checkpoints).unwrap();
    std::fs::write(
        checkpoints.join("ltx-2-tiny.safetensors.partial"),
        &files[0].1[..3 << 20],
    )
    .unwrap();
    let pull = |dir: &tempfile::TempDir| models("pull", dir, "--from", &mirror);
    succeeded(&pull(&fresh));
    for (path, bytes) in &files {
        assert_eq!(
            &std::fs::read(fresh.path().join("models").join(path)).unwrap(),
            bytes,
            "{path}"
        );
    }
    assert!(!checkpoints.join("ltx-2-tiny.safetensors.partial").exists());

    // A mirror object that does not match its sha256 is detected and not put in place.
    let store = moto.store();
    store
        .put(
            &ObjectPath::from("mirror/loras/camera.safetensors"),
            b"a tampered lora".to_vec().into(),
        )
        .await
        .unwrap();
    let other = tempfile::tempdir().unwrap();
    let out = pull(&other);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("camera.safetensors") && err.contains("sha256 mismatch"),
        "{err}"
    );
    assert!(
        !other
            .path()
            .join("models/loras/camera.safetensors")
            .exists()
    );

    // A missing mirror object and a corrupt local file are named with the reason.
    let out = models(
        "pull",
        &other,
        "--from",
        &format!("s3://{BUCKET}/elsewhere"),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && err.contains("s3://workshop/elsewhere/loras/camera.safetensors")
            && err.contains("no such object"),
        "{err}"
    );
    std::fs::write(
        source.path().join("models/loras/camera.safetensors"),
        b"corrupted",
    )
    .unwrap();
    let out = models("push", &source, "--to", &mirror);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("camera.safetensors") && err.contains("not uploaded"),
        "{err}"
    );
}
