//! Workshop users: a config file of users with argon2 password hashes and roles, HTTP basic
//! authentication, and the [`Scope`] every request runs in. Identity comes from the path prefix
//! (`/user001/...`) and the authenticated user, never from a header the client sets.

use std::collections::HashMap;
use std::path::Path;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine;
use parking_lot::Mutex;
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// A user's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A workshop participant: sees only their own workspace.
    #[default]
    Participant,
    /// The instructor: admin routes, every workspace.
    Admin,
}

/// One configured user.
#[derive(Debug, Clone, Deserialize)]
pub struct User {
    /// Login name, also the workspace path (`/<name>/`).
    pub name: String,
    /// argon2 PHC string (`$argon2id$...`).
    pub password_hash: String,
    /// Role.
    #[serde(default)]
    pub role: Role,
    /// Display name for the frontend's user list.
    #[serde(default)]
    pub display_name: Option<String>,
}

#[derive(Debug, Deserialize)]
struct UsersFile {
    #[serde(default, rename = "user")]
    users: Vec<User>,
}

/// Names that cannot be users because they are route prefixes.
const RESERVED: &[&str] = &[
    "api",
    "ws",
    "assets",
    "extensions",
    "templates",
    "internal",
    "admin",
    "view",
    "prompt",
    "queue",
    "history",
    "interrupt",
    "free",
    "object_info",
    "upload",
    "system_stats",
    "features",
    "users",
    "settings",
    "userdata",
    "v2",
    "i18n",
    "embeddings",
    "models",
    "experiment",
    "health",
    "metrics",
    "fonts",
    "cursor",
    "scripts",
    "docs",
    "jobs",
    "global_subgraphs",
    "node_replacements",
    "workflow_templates",
    "view_metadata",
    "index.html",
    "login",
    "logout",
    "user.css",
];

/// Errors loading the users file.
#[derive(Debug, thiserror::Error)]
pub enum UsersError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// File.
        path: String,
        /// Error.
        source: std::io::Error,
    },
    /// The file is not valid TOML of the expected shape.
    #[error("{path}: {message}")]
    Parse {
        /// File.
        path: String,
        /// Error.
        message: String,
    },
    /// A user entry is unusable.
    #[error("{path}: user {name:?}: {message}")]
    BadUser {
        /// File.
        path: String,
        /// The user.
        name: String,
        /// What is wrong.
        message: String,
    },
}

/// The configured users and a cache of verified credentials (argon2 is deliberately slow; a
/// browser re-sends basic auth on every request).
pub struct Users {
    users: HashMap<String, User>,
    verified: Mutex<HashMap<String, [u8; 32]>>,
}

impl Users {
    /// Loads a TOML file of `[[user]]` tables (`name`, `password_hash`, `role`).
    pub fn load(path: &Path) -> Result<Self, UsersError> {
        let p = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| UsersError::Io {
            path: p.clone(),
            source,
        })?;
        let file: UsersFile = toml::from_str(&text).map_err(|e| UsersError::Parse {
            path: p.clone(),
            message: e.to_string(),
        })?;
        let mut users = HashMap::new();
        for user in file.users {
            let bad = |message: &str| UsersError::BadUser {
                path: p.clone(),
                name: user.name.clone(),
                message: message.into(),
            };
            if !valid_name(&user.name) {
                return Err(bad(
                    "names use letters, digits, '-' and '_' and must not be a route name",
                ));
            }
            if PasswordHash::new(&user.password_hash).is_err() {
                return Err(bad(
                    "password_hash is not an argon2 PHC string (use `comfyrs hash-password`)",
                ));
            }
            if users.contains_key(&user.name) {
                return Err(bad("listed twice"));
            }
            users.insert(user.name.clone(), user);
        }
        Ok(Self {
            users,
            verified: Mutex::new(HashMap::new()),
        })
    }

    /// Users from a list (tests).
    pub fn from_list(list: Vec<User>) -> Self {
        Self {
            users: list.into_iter().map(|u| (u.name.clone(), u)).collect(),
            verified: Mutex::new(HashMap::new()),
        }
    }

    /// The user named `name`.
    pub fn get(&self, name: &str) -> Option<&User> {
        self.users.get(name)
    }

    /// All users, sorted by name.
    pub fn all(&self) -> Vec<&User> {
        let mut v: Vec<&User> = self.users.values().collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// Checks a name and password; returns the user when they match.
    pub fn verify(&self, name: &str, password: &str) -> Option<&User> {
        let user = self.users.get(name)?;
        let fingerprint: [u8; 32] =
            Sha256::digest(format!("{}\0{}\0{password}", user.password_hash, name).as_bytes())
                .into();
        if self.verified.lock().get(name) == Some(&fingerprint) {
            return Some(user);
        }
        let hash = PasswordHash::new(&user.password_hash).ok()?;
        Argon2::default()
            .verify_password(password.as_bytes(), &hash)
            .ok()?;
        self.verified.lock().insert(name.to_string(), fingerprint);
        Some(user)
    }
}

/// Whether `name` can be a user (and workspace path) name.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && !RESERVED.contains(&name)
}

/// Hashes a password for the users file (argon2id, random salt).
pub fn hash_password(password: &str) -> Result<String, String> {
    let mut salt_bytes = [0u8; 16];
    let random = uuid::Uuid::new_v4();
    salt_bytes.copy_from_slice(random.as_bytes());
    let salt = SaltString::encode_b64(&salt_bytes).map_err(|e| e.to_string())?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// The `(name, password)` of an `Authorization: Basic ...` header value.
pub fn parse_basic(header: &str) -> Option<(String, String)> {
    let encoded = header
        .strip_prefix("Basic ")
        .or_else(|| header.strip_prefix("basic "))?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (name, password) = text.split_once(':')?;
    Some((name.to_string(), password.to_string()))
}

/// Who a request acts for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    /// The workspace (user) the request is scoped to; `""` in single-user mode.
    pub user: String,
    /// The path prefix of the workspace (`"/user001"`, or `""`), for redirects and links.
    pub prefix: String,
    /// Whether the authenticated actor is an admin (or the single-user owner).
    pub admin: bool,
}

impl Scope {
    /// The single-user scope (no authentication).
    pub fn single_user() -> Self {
        Self {
            user: String::new(),
            prefix: String::new(),
            admin: true,
        }
    }

    /// The user filter for queue listings: `None` for admins and the single user (they see
    /// every job), else the workspace's user.
    pub fn owner_filter(&self) -> Option<String> {
        (!self.admin).then(|| self.user.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_are_cached() {
        let hash = hash_password("secret").unwrap();
        let users = Users::from_list(vec![User {
            name: "user001".into(),
            password_hash: hash,
            role: Role::Participant,
            display_name: None,
        }]);
        assert!(users.verify("user001", "secret").is_some());
        assert!(
            users.verify("user001", "secret").is_some(),
            "second check served from the cache"
        );
        assert!(users.verify("user001", "wrong").is_none());
        assert!(users.verify("nobody", "secret").is_none());
    }

    #[test]
    fn basic_auth_header_parses() {
        let header = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("user001:p:w")
        );
        assert_eq!(parse_basic(&header), Some(("user001".into(), "p:w".into())));
        assert_eq!(parse_basic("Bearer x"), None);
    }

    #[test]
    fn reserved_and_odd_names_are_refused() {
        assert!(valid_name("user001"));
        assert!(!valid_name("api"));
        assert!(!valid_name("a/b"));
        assert!(!valid_name(".."));
        assert!(!valid_name(""));
    }

    #[test]
    fn users_file_parses_and_rejects_bad_entries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.toml");
        let hash = hash_password("pw").unwrap();
        std::fs::write(&path, format!("[[user]]\nname = \"teacher\"\npassword_hash = \"{hash}\"\nrole = \"admin\"\n\n[[user]]\nname = \"user001\"\npassword_hash = \"{hash}\"\n")).unwrap();
        let users = Users::load(&path).unwrap();
        assert_eq!(users.get("teacher").unwrap().role, Role::Admin);
        assert_eq!(users.get("user001").unwrap().role, Role::Participant);
        std::fs::write(&path, "[[user]]\nname = \"api\"\npassword_hash = \"x\"\n").unwrap();
        assert!(Users::load(&path).is_err());
        std::fs::write(
            &path,
            "[[user]]\nname = \"u\"\npassword_hash = \"plaintext\"\n",
        )
        .unwrap();
        assert!(Users::load(&path).is_err());
    }
}
