//! `comfyrs serve`: an axum server speaking ComfyUI's HTTP and WebSocket API so the real ComfyUI
//! frontend and existing API clients work unchanged, with per-user workspaces (`/<user>/`) for
//! workshops. Routes are thin layers over the queue and the engine's validation.

pub mod auth;
pub mod disk;
pub mod error;
pub mod eta;
pub mod hub;
pub mod limits;
pub mod logs;
pub mod metrics;
pub mod routes;
pub mod sessions;
pub mod state;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::serve::ListenerExt;

use queue::{Filter, JobState, Notice};
use tokio::sync::broadcast::error::RecvError;

pub use state::{AppState, ServerConfig};

/// Errors starting the server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Binding a listening socket failed.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The error.
        source: std::io::Error,
    },
    /// Serving failed.
    #[error("server error: {0}")]
    Serve(std::io::Error),
}

/// Relays queue notices to sockets: job events to their owners, status counts to everyone.
pub fn spawn_dispatcher(state: Arc<AppState>) -> tokio::task::JoinHandle<()> {
    let mut rx = state.config.backend.subscribe();
    tokio::spawn(async move {
        loop {
            match rx.recv().await {
                Ok(Notice::Event(event)) => state.hub.route(&event),
                Ok(Notice::QueueChanged) => {
                    state.queue_view.invalidate();
                    // Coalesce bursts of changes into one status round.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    while let Ok(Notice::Event(event)) = rx.try_recv().map_err(|_| ()) {
                        state.hub.route(&event);
                    }
                    eta::send_status(&state).await;
                }
                Err(RecvError::Lagged(n)) => {
                    tracing::warn!(
                        missed = n,
                        "the event relay fell behind; clients will refresh from /api/jobs"
                    );
                    broadcast_status(&state).await;
                }
                Err(RecvError::Closed) => break,
            }
        }
    })
}

/// Sends every socket a `status` message with its workspace's queue count.
pub(crate) async fn broadcast_status(state: &AppState) {
    let sockets = state.hub.sockets();
    if sockets.is_empty() {
        return;
    }
    let active = match state
        .config
        .backend
        .list(&Filter {
            user: None,
            states: vec![JobState::Pending, JobState::Running],
        })
        .await
    {
        Ok(jobs) => jobs,
        Err(e) => {
            tracing::warn!("cannot count the queue: {e}");
            return;
        }
    };
    for socket in sockets {
        let count = active
            .iter()
            .filter(|j| socket.admin || j.user == socket.user)
            .count();
        let _ = socket.tx.try_send(hub::status_message(count, None));
    }
}

/// Serves until `shutdown` resolves: plain HTTP, or HTTPS with `tls`.
pub async fn serve(
    state: Arc<AppState>,
    addrs: &[SocketAddr],
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let dispatcher = spawn_dispatcher(state.clone());
    let app = routes::router(state);
    let (stop_tx, _) = tokio::sync::broadcast::channel::<()>(1);
    let mut servers = Vec::new();
    for addr in addrs {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| ServerError::Bind {
                addr: *addr,
                source,
            })?;
        // The bound address (the port is the OS's choice when 0 was asked for).
        let bound = listener.local_addr().unwrap_or(*addr);
        let mut stop = stop_tx.subscribe();
        let stopped = async move {
            let _ = stop.recv().await;
        };
        let service = app
            .clone()
            .into_make_service_with_connect_info::<SocketAddr>();
        servers.push(match &tls {
            None => {
                tracing::info!("listening on http://{bound}");
                tokio::spawn(async move {
                    axum::serve(listener, service)
                        .with_graceful_shutdown(stopped)
                        .await
                })
            }
            Some(config) => {
                tracing::info!("listening on https://{bound}");
                // `tap_io` gives the connections the remote address as connect info.
                let listener = tls::TlsListener::new(listener, config.clone())
                    .map_err(ServerError::Serve)?
                    .tap_io(|_| {});
                tokio::spawn(async move {
                    axum::serve(listener, service)
                        .with_graceful_shutdown(stopped)
                        .await
                })
            }
        });
    }
    shutdown.await;
    let _ = stop_tx.send(());
    for server in servers {
        if let Ok(Err(e)) = server.await {
            return Err(ServerError::Serve(e));
        }
    }
    dispatcher.abort();
    Ok(())
}
