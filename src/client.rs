//! The admin HTTP client of the operations commands (`status`, `export`): the server's URL and
//! the instructor's basic-auth credentials, from flags or the environment.

use std::time::Duration;

use anyhow::Context;
use clap::Args;
use serde_json::Value;

/// Where the running server is and how to log in as the instructor.
#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    /// The server's URL (as the participants reach it, or the local one).
    #[arg(long, env = "COMFYRS_URL", default_value = "http://127.0.0.1:8188")]
    pub url: String,
    /// Admin user name (workshop mode; not needed in single-user mode).
    #[arg(long, env = "COMFYRS_ADMIN_USER")]
    pub user: Option<String>,
    /// Admin password.
    #[arg(long, env = "COMFYRS_ADMIN_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
    /// A CA certificate (PEM) to trust for `https://` besides the system's roots (e.g. the
    /// self-signed certificate given to `comfyrs serve --tls-cert`).
    #[arg(long, env = "COMFYRS_CA")]
    pub ca: Option<std::path::PathBuf>,
    /// Seconds to wait for each request.
    #[arg(long, default_value_t = 30)]
    pub request_timeout: u64,
}

/// An HTTP client acting as the instructor.
pub struct AdminClient {
    http: reqwest::Client,
    base: String,
    auth: Option<(String, String)>,
}

impl AdminClient {
    /// A client for `args`.
    pub fn new(args: &ClientArgs) -> anyhow::Result<Self> {
        let mut builder = reqwest::Client::builder()
            .timeout(Duration::from_secs(args.request_timeout.max(1)))
            .redirect(reqwest::redirect::Policy::none());
        if let Some(ca) = &args.ca {
            let pem = std::fs::read(ca).with_context(|| format!("reading {}", ca.display()))?;
            builder = builder.add_root_certificate(
                reqwest::Certificate::from_pem(&pem)
                    .with_context(|| format!("{} is not a PEM certificate", ca.display()))?,
            );
        }
        let auth = match (&args.user, &args.password) {
            (Some(u), Some(p)) => Some((u.clone(), p.clone())),
            (Some(_), None) => anyhow::bail!("--user needs --password (or COMFYRS_ADMIN_PASSWORD)"),
            _ => None,
        };
        Ok(Self {
            http: builder.build()?,
            base: args.url.trim_end_matches('/').to_string(),
            auth,
        })
    }

    /// The server's URL.
    pub fn url(&self) -> &str {
        &self.base
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let mut builder = self.http.request(method, format!("{}{path}", self.base));
        if let Some((user, password)) = &self.auth {
            builder = builder.basic_auth(user, Some(password));
        }
        builder
    }

    async fn send(&self, builder: reqwest::RequestBuilder, what: &str) -> anyhow::Result<Value> {
        let response = builder
            .send()
            .await
            .with_context(|| format!("{what}: cannot reach {}", self.base))?;
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        match status.as_u16() {
            200..=299 => serde_json::from_str(&body)
                .with_context(|| format!("{what}: the answer is not JSON")),
            401 => anyhow::bail!(
                "{what}: authentication required (--user/--password or COMFYRS_ADMIN_USER/COMFYRS_ADMIN_PASSWORD)"
            ),
            403 => anyhow::bail!("{what}: the user is not an admin"),
            code => anyhow::bail!("{what}: HTTP {code}: {body}"),
        }
    }

    /// `GET path` as JSON.
    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.send(
            self.request(reqwest::Method::GET, path),
            &format!("GET {path}"),
        )
        .await
    }

    /// `POST path` (empty body) as JSON.
    pub async fn post(&self, path: &str) -> anyhow::Result<Value> {
        self.send(
            self.request(reqwest::Method::POST, path),
            &format!("POST {path}"),
        )
        .await
    }
}
