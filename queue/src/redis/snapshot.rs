//! A snapshot of one queue's keys (every key under its prefix) for backups: `DUMP` and `PTTL`
//! of each key read in one `MULTI`/`EXEC`, so the snapshot is consistent, and `RESTORE` to load
//! it into another (empty) Redis. Values travel in Redis' own serialisation format, so a
//! restore needs a Redis of the same or a newer version.

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::{RedisOptions, client, redact, redis_err};
use crate::error::{Error, Result};

/// One key of the snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyDump {
    /// The key.
    pub key: String,
    /// Milliseconds to live (0: no expiry).
    pub ttl_ms: i64,
    /// `DUMP`'s payload, base64.
    pub payload: String,
}

async fn connect(options: &RedisOptions) -> Result<redis::aio::MultiplexedConnection> {
    client(options)?
        .get_multiplexed_async_connection()
        .await
        .map_err(|e| Error::Redis(format!("connecting to {}: {e}", redact(&options.url))))
}

async fn keys(conn: &mut redis::aio::MultiplexedConnection, prefix: &str) -> Result<Vec<String>> {
    let pattern = format!("{prefix}:*");
    let mut cursor: u64 = 0;
    let mut keys = Vec::new();
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(conn)
            .await
            .map_err(redis_err)?;
        keys.extend(batch);
        if next == 0 {
            break;
        }
        cursor = next;
    }
    keys.sort();
    keys.dedup();
    Ok(keys)
}

/// Every key of the queue at `options.prefix`, read atomically.
pub async fn dump(options: &RedisOptions) -> Result<Vec<KeyDump>> {
    let mut conn = connect(options).await?;
    let keys = keys(&mut conn, &options.prefix).await?;
    let mut pipe = redis::pipe();
    pipe.atomic();
    for key in &keys {
        pipe.cmd("DUMP").arg(key).cmd("PTTL").arg(key);
    }
    let replies: Vec<(Option<Vec<u8>>, i64)> = if keys.is_empty() {
        Vec::new()
    } else {
        let flat: Vec<redis::Value> = pipe.query_async(&mut conn).await.map_err(redis_err)?;
        let parse = |e: redis::ParsingError| Error::Redis(format!("DUMP reply: {e}"));
        let mut values = flat.into_iter();
        let mut pairs = Vec::with_capacity(keys.len());
        while let (Some(payload), Some(ttl)) = (values.next(), values.next()) {
            let payload: Option<Vec<u8>> = redis::from_redis_value(payload).map_err(parse)?;
            let ttl: i64 = redis::from_redis_value(ttl).map_err(parse)?;
            pairs.push((payload, ttl));
        }
        pairs
    };
    let b64 = base64::engine::general_purpose::STANDARD;
    Ok(keys
        .into_iter()
        .zip(replies)
        // A key deleted between the scan and the dump has no payload.
        .filter_map(|(key, (payload, ttl))| {
            Some(KeyDump {
                key,
                ttl_ms: ttl.max(0),
                payload: b64.encode(payload?),
            })
        })
        .collect())
}

/// Loads `dumps` into the Redis at `options.url`. Refuses when the queue's prefix already has
/// keys there, unless `replace`.
pub async fn restore(options: &RedisOptions, dumps: &[KeyDump], replace: bool) -> Result<usize> {
    let mut conn = connect(options).await?;
    let existing = keys(&mut conn, &options.prefix).await?;
    if !replace && !existing.is_empty() {
        return Err(Error::Redis(format!(
            "{} already holds {} keys under {:?}",
            redact(&options.url),
            existing.len(),
            options.prefix
        )));
    }
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut pipe = redis::pipe();
    pipe.atomic();
    for d in dumps {
        let payload = b64
            .decode(&d.payload)
            .map_err(|e| Error::Redis(format!("bad payload of {}: {e}", d.key)))?;
        let mut cmd = redis::cmd("RESTORE");
        cmd.arg(&d.key).arg(d.ttl_ms).arg(payload);
        if replace {
            cmd.arg("REPLACE");
        }
        pipe.add_command(cmd).ignore();
    }
    if !dumps.is_empty() {
        let () = pipe.query_async(&mut conn).await.map_err(redis_err)?;
    }
    Ok(dumps.len())
}
