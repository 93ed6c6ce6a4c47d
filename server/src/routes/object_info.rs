//! `/object_info`: node definitions rendered from the registry (choice lists per user).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::{Extension, Json};
use serde_json::{Value, json};

use crate::auth::Scope;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// `GET /object_info`.
pub async fn all(
    State(state): State<Arc<AppState>>,
    Extension(scope): Extension<Scope>,
) -> ApiResult<Json<Value>> {
    let env = state.env(&scope);
    let registry = state.config.registry.clone();
    let info = tokio::task::spawn_blocking(move || registry.object_info(&env))
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(info))
}

/// `GET /object_info/{class}` (`{}` when unknown).
pub async fn one(
    State(state): State<Arc<AppState>>,
    Extension(scope): Extension<Scope>,
    Path(class): Path<String>,
) -> ApiResult<Json<Value>> {
    let env = state.env(&scope);
    Ok(Json(match state.config.registry.get(&class) {
        Some(def) => json!({ class: def.schema.to_object_info(&env) }),
        None => json!({}),
    }))
}
