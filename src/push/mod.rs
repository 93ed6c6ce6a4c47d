//! Push mode over HTTP: `comfyrs worker --http ADDR` ([`endpoint`]) runs one job per request,
//! and `comfyrs serve --dispatch-http URL` ([`dispatch`]) claims jobs from the queue and sends
//! them to such endpoints, with the same leases, retries and cancellation as pulled jobs. Both
//! sides hold the same shared secret (`--http-secret` / `COMFYRS_HTTP_SECRET`), sent as a
//! bearer token. The wire format is `queue::push`.

pub mod dispatch;
pub mod endpoint;

use sha2::{Digest, Sha256};

/// Checks a configured secret: present and not blank.
pub fn require_secret(secret: Option<&str>, flag: &str) -> anyhow::Result<String> {
    match secret.map(str::trim) {
        Some(s) if !s.is_empty() => Ok(s.to_string()),
        _ => anyhow::bail!(
            "{flag} needs a shared secret: --http-secret or COMFYRS_HTTP_SECRET (the same on the server and the workers)"
        ),
    }
}

/// Whether `given` equals `secret`, in time independent of where they differ (both are hashed
/// first, so the comparison also hides the secret's length).
pub fn secret_matches(given: &str, secret: &str) -> bool {
    let a = Sha256::digest(given.as_bytes());
    let b = Sha256::digest(secret.as_bytes());
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_exactly() {
        assert!(secret_matches("s3cret", "s3cret"));
        assert!(!secret_matches("s3cret ", "s3cret"));
        assert!(!secret_matches("", "s3cret"));
        assert!(require_secret(Some("  "), "--http").is_err());
        assert!(require_secret(None, "--http").is_err());
        assert_eq!(require_secret(Some(" x "), "--http").unwrap(), "x");
    }
}
