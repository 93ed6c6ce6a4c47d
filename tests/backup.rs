//! Backup, verify and restore against real servers: a server with history for two users is
//! backed up (embedded store: with the server stopped; Redis: live, with real redis-servers),
//! the archive is verified (and a corrupted one is not), restored into an empty data directory
//! (and Redis), and a server started there shows every user's history and outputs.

mod common;

use std::process::Command;

use common::cli::{comfyrs, one_output_each, workshop_users};
use common::{Server, ServerOptions};

fn workshop(extra: &[&str]) -> Server {
    Server::start(ServerOptions {
        users: workshop_users(),
        args: extra.iter().map(|s| s.to_string()).collect(),
        ..ServerOptions::default()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_verify_and_restore_into_an_empty_directory() {
    let mut server = workshop(&[]);
    let made = one_output_each(&server, 0x00ff00).await;
    let mut originals = Vec::new();
    for (user, _, sub, file) in &made {
        let view = format!("/{user}/view?filename={file}&subfolder={sub}&type=output");
        let reply = server.http_as(user).get(&view).await;
        assert_eq!(reply.status, 200);
        originals.push(reply.bytes);
    }
    let work = tempfile::tempdir().unwrap();
    let archive = work.path().join("backup.tar.gz");
    let archive_s = archive.to_str().unwrap();
    let data = server.data_dir();
    let users_file = server.users_file();
    let backup_args = [
        "backup",
        "--out",
        archive_s,
        "--base-directory",
        data.to_str().unwrap(),
        "--users",
        users_file.to_str().unwrap(),
    ];

    // The running server holds the embedded store: the backup refuses to copy it.
    let busy = comfyrs(&backup_args);
    assert!(!busy.status.success());
    assert!(String::from_utf8_lossy(&busy.stderr).contains("in use by a running server"));

    server.stop();
    let done = comfyrs(&backup_args);
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    for args in [
        vec!["verify", archive_s],
        vec!["backup", "--verify", "--out", archive_s],
    ] {
        let v = comfyrs(&args);
        assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stderr));
        assert!(String::from_utf8_lossy(&v.stdout).starts_with("ok: "));
    }

    // A corrupted archive fails verification.
    let mut bytes = std::fs::read(&archive).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    let broken = work.path().join("broken.tar.gz");
    std::fs::write(&broken, bytes).unwrap();
    assert!(
        !comfyrs(&["verify", broken.to_str().unwrap()])
            .status
            .success()
    );

    // Restore into an empty directory (and not over existing data).
    let restored = work.path().join("restored");
    let restore = comfyrs(&[
        "restore",
        archive_s,
        "--base-directory",
        restored.to_str().unwrap(),
    ]);
    assert!(
        restore.status.success(),
        "{}",
        String::from_utf8_lossy(&restore.stderr)
    );
    let again = comfyrs(&[
        "restore",
        archive_s,
        "--base-directory",
        restored.to_str().unwrap(),
    ]);
    assert!(String::from_utf8_lossy(&again.stderr).contains("not empty"));
    assert_eq!(
        std::fs::read(restored.join("config/users.toml")).unwrap(),
        std::fs::read(&users_file).unwrap()
    );

    // A server on the restored directory has every user's history and outputs.
    let server = Server::start(ServerOptions {
        users: workshop_users(),
        data_dir: Some(restored.clone()),
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
    let jobs = server.http_as("teacher").get("/api/admin/jobs").await;
    assert_eq!(jobs.json["jobs"].as_array().unwrap().len(), 2);
}

fn redis_ready() -> bool {
    let binary = std::env::var("COMFYRS_REDIS_SERVER").unwrap_or_else(|_| "redis-server".into());
    common::e2e_ready(
        "redis-server",
        Command::new(binary)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success()),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_and_restore_with_the_redis_queue() {
    if !redis_ready() {
        return;
    }
    use queue::redis::testing::RedisServer;
    let redis = RedisServer::start().expect("redis-server");
    let server = workshop(&["--redis", &redis.url()]);
    let made = one_output_each(&server, 0x00ff00).await;
    let work = tempfile::tempdir().unwrap();
    let archive = work.path().join("backup.tar.gz");
    let archive_s = archive.to_str().unwrap();
    let data = server.data_dir();
    // With Redis the server keeps running during the backup.
    let done = comfyrs(&[
        "backup",
        "--out",
        archive_s,
        "--base-directory",
        data.to_str().unwrap(),
        "--redis",
        &redis.url(),
    ]);
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    assert!(String::from_utf8_lossy(&done.stderr).contains("Redis queue: "));
    drop(server);

    // An empty Redis and an empty data directory.
    let fresh = RedisServer::start().expect("redis-server");
    let restored = work.path().join("restored");
    let restore = comfyrs(&[
        "restore",
        archive_s,
        "--base-directory",
        restored.to_str().unwrap(),
        "--redis",
        &fresh.url(),
    ]);
    assert!(
        restore.status.success(),
        "{}",
        String::from_utf8_lossy(&restore.stderr)
    );
    // Loading it twice would mix two queues: refused without --force.
    let again = comfyrs(&[
        "restore",
        archive_s,
        "--base-directory",
        work.path().join("other").to_str().unwrap(),
        "--redis",
        &fresh.url(),
    ]);
    assert!(String::from_utf8_lossy(&again.stderr).contains("already holds"));

    let server = Server::start(ServerOptions {
        users: workshop_users(),
        data_dir: Some(restored),
        args: vec!["--redis".into(), fresh.url()],
        ..ServerOptions::default()
    });
    for (user, id, sub, file) in &made {
        let api = server.http_as(user);
        let history = api.get(&format!("/{user}/history")).await;
        let ids: Vec<&String> = history.json.as_object().unwrap().keys().collect();
        assert_eq!(ids, vec![id], "{user}'s history");
        let view = format!("/{user}/view?filename={file}&subfolder={sub}&type=output");
        assert_eq!(api.get(&view).await.status, 200, "{view}");
    }
}
