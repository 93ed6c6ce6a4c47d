//! Browser sessions: a participant logs in once through `/login` and gets a session cookie,
//! instead of the browser re-sending basic credentials with every request. A session ends at
//! logout, after its lifetime (`--session-ttl-hours`) and after a time without requests
//! (`--session-idle-minutes`), and when the user's password changes or the user is removed.
//!
//! Sessions live in the server's memory (a restart logs everyone out); the cookie holds a random
//! token whose sha256 is the key, so the table holds no usable token.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use sha2::{Digest, Sha256};

/// The session cookie's name.
pub const COOKIE: &str = "comfyrs_session";

/// How long sessions last.
#[derive(Debug, Clone, Copy)]
pub struct SessionPolicy {
    /// Longest life of a session, from login.
    pub ttl: Duration,
    /// Longest time without a request.
    pub idle: Duration,
    /// Mark the cookie `Secure` (the server speaks HTTPS).
    pub secure: bool,
}

impl Default for SessionPolicy {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(12 * 3600),
            idle: Duration::from_secs(2 * 3600),
            secure: false,
        }
    }
}

/// One logged-in browser.
#[derive(Debug, Clone)]
struct Session {
    user: String,
    /// The user's password hash at login: a changed password ends the session.
    password_hash: String,
    created: Instant,
    last_seen: Instant,
}

/// The live sessions.
pub struct Sessions {
    policy: SessionPolicy,
    live: Mutex<HashMap<[u8; 32], Session>>,
}

fn key(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// A new random token: 64 hex digits from the OS's random source (via uuid v4, 2 x 122 bits).
fn new_token() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

impl Sessions {
    /// An empty table with `policy`.
    pub fn new(policy: SessionPolicy) -> Self {
        Self {
            policy,
            live: Mutex::new(HashMap::new()),
        }
    }

    /// The policy.
    pub fn policy(&self) -> SessionPolicy {
        self.policy
    }

    /// Starts a session for `user` (whose current password hash is `password_hash`) and
    /// returns its token.
    pub fn create(&self, user: &str, password_hash: &str) -> String {
        let token = new_token();
        let now = Instant::now();
        let mut live = self.live.lock();
        self.prune(&mut live, now);
        live.insert(
            key(&token),
            Session {
                user: user.to_string(),
                password_hash: password_hash.to_string(),
                created: now,
                last_seen: now,
            },
        );
        token
    }

    /// The user of a live session, refreshing its idle timer. `current_hash` gives a user's
    /// password hash now (`None`: the user is gone); a session whose user is gone or whose
    /// password changed is ended.
    pub fn user_for(
        &self,
        token: &str,
        current_hash: impl Fn(&str) -> Option<String>,
    ) -> Option<String> {
        let now = Instant::now();
        let mut live = self.live.lock();
        let k = key(token);
        let session = live.get_mut(&k)?;
        let valid = self.alive(session, now)
            && current_hash(&session.user).as_deref() == Some(session.password_hash.as_str());
        if !valid {
            live.remove(&k);
            return None;
        }
        session.last_seen = now;
        Some(session.user.clone())
    }

    /// Ends the session of `token` (logout).
    pub fn end(&self, token: &str) {
        self.live.lock().remove(&key(token));
    }

    /// Number of live sessions (expired ones are dropped first).
    pub fn len(&self) -> usize {
        let mut live = self.live.lock();
        self.prune(&mut live, Instant::now());
        live.len()
    }

    /// Whether no session is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn alive(&self, session: &Session, now: Instant) -> bool {
        now.duration_since(session.created) < self.policy.ttl
            && now.duration_since(session.last_seen) < self.policy.idle
    }

    fn prune(&self, live: &mut HashMap<[u8; 32], Session>, now: Instant) {
        live.retain(|_, s| self.alive(s, now));
    }

    /// The `Set-Cookie` value that stores `token` for the session's lifetime.
    pub fn cookie(&self, token: &str) -> String {
        format!(
            "{COOKIE}={token}; Path=/; HttpOnly; SameSite=Lax; Max-Age={}{}",
            self.policy.ttl.as_secs().max(1),
            if self.policy.secure { "; Secure" } else { "" }
        )
    }

    /// The `Set-Cookie` value that removes the cookie.
    pub fn clear_cookie(&self) -> String {
        format!(
            "{COOKIE}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0{}",
            if self.policy.secure { "; Secure" } else { "" }
        )
    }
}

/// The session token in a `Cookie` header value, if any.
pub fn token_in(cookie_header: &str) -> Option<&str> {
    cookie_header
        .split(';')
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim())
        .filter(|value| !value.is_empty())
}

/// Whether `next` is a safe place to send a browser after login: a path on this server (not
/// `//host`, not a URL, no backslashes or control characters).
pub fn safe_next(next: &str) -> bool {
    next.starts_with('/')
        && !next.starts_with("//")
        && !next.contains('\\')
        && !next.chars().any(|c| c.is_control())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(ttl_ms: u64, idle_ms: u64) -> SessionPolicy {
        SessionPolicy {
            ttl: Duration::from_millis(ttl_ms),
            idle: Duration::from_millis(idle_ms),
            secure: false,
        }
    }

    #[test]
    fn a_session_names_its_user_until_logout() {
        let sessions = Sessions::new(SessionPolicy::default());
        let token = sessions.create("ann", "h1");
        assert_eq!(token.len(), 64);
        let hash = |_: &str| Some("h1".to_string());
        assert_eq!(sessions.user_for(&token, hash).as_deref(), Some("ann"));
        assert_eq!(sessions.user_for("other", hash), None);
        sessions.end(&token);
        assert_eq!(sessions.user_for(&token, hash), None);
    }

    #[test]
    fn sessions_expire_by_age_and_by_idleness() {
        let hash = |_: &str| Some("h".to_string());
        let sessions = Sessions::new(policy(150, 10_000));
        let token = sessions.create("ann", "h");
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(sessions.user_for(&token, hash), None, "past its lifetime");

        let sessions = Sessions::new(policy(10_000, 150));
        let token = sessions.create("ann", "h");
        for _ in 0..3 {
            std::thread::sleep(Duration::from_millis(80));
            assert!(
                sessions.user_for(&token, hash).is_some(),
                "requests keep it alive"
            );
        }
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(sessions.user_for(&token, hash), None, "idle too long");
        assert!(sessions.is_empty());
    }

    #[test]
    fn a_changed_password_or_removed_user_ends_the_session() {
        let sessions = Sessions::new(SessionPolicy::default());
        let token = sessions.create("ann", "old");
        assert_eq!(sessions.user_for(&token, |_| Some("new".into())), None);
        let token = sessions.create("ann", "old");
        assert_eq!(sessions.user_for(&token, |_| None), None);
    }

    #[test]
    fn cookies_and_next_paths_are_read_carefully() {
        assert_eq!(token_in("a=1; comfyrs_session=abc; b=2"), Some("abc"));
        assert_eq!(token_in("comfyrs_session="), None);
        assert_eq!(token_in("xcomfyrs_session=abc"), None);
        assert!(safe_next("/ann/"));
        for bad in [
            "//evil.example/",
            "https://evil.example/",
            "/\\evil",
            "ann",
            "/a\nb",
        ] {
            assert!(!safe_next(bad), "{bad}");
        }
        let sessions = Sessions::new(SessionPolicy {
            secure: true,
            ..SessionPolicy::default()
        });
        let cookie = sessions.cookie("t");
        for part in [
            "comfyrs_session=t",
            "HttpOnly",
            "SameSite=Lax",
            "Max-Age=43200",
            "Secure",
        ] {
            assert!(cookie.contains(part), "{cookie}");
        }
    }
}
