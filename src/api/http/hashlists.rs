//! `/v1/hashlists`: the known-content lists, over HTTP. Reading needs the usual key (when keys
//! are on); changing a list needs an admin key (`admin:` in the key file), and without a key
//! file changes are refused outright: an open server must not let anyone rewrite what it
//! blocks.

use std::sync::Arc;

use axum::extract::{Path, Request, State};
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::{json, Value};

use super::error::{body_error, ApiError};
use super::state::AppState;
use crate::auth::KeyId;
use crate::error::CoreError;
use crate::hashlists::{check_list_name, HashLists};

pub(super) fn lists(state: &AppState) -> Result<Arc<HashLists>, CoreError> {
    state
        .detector
        .hashlists()
        .cloned()
        .ok_or_else(|| CoreError::Unavailable("hash lists are not enabled on this server".into()))
}

pub(super) fn require_admin(state: &AppState, key: Option<Extension<KeyId>>) -> Result<(), CoreError> {
    if state.keys.is_none() {
        return Err(CoreError::Forbidden(
            "changing hash lists needs an admin key: start the server with --api-key-file holding an `admin:<key>` line".into(),
        ));
    }
    match key {
        Some(Extension(k)) if k.admin => Ok(()),
        _ => {
            Err(CoreError::Forbidden("changing hash lists needs an admin key; this key may only score and read".into()))
        }
    }
}

fn join_error(e: tokio::task::JoinError) -> CoreError {
    CoreError::Inference(e.to_string())
}

/// `GET /v1/hashlists`: every list with its entry counts.
pub async fn summaries(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!({ "lists": lists(&state)?.summaries() })))
}

/// `GET /v1/hashlists/{list}`: the list's entries as JSON Lines.
pub async fn export(State(state): State<AppState>, Path(list): Path<String>) -> Result<Response, ApiError> {
    let store = lists(&state)?;
    let name = list.clone();
    // A large list is read from the database: off the async workers.
    let entries = tokio::task::spawn_blocking(move || store.export(&name))
        .await
        .map_err(join_error)?
        .map_err(CoreError::from)?
        .ok_or_else(|| CoreError::NotFound(format!("no hash list '{list}'")))?;
    let mut body = Vec::new();
    for e in entries {
        serde_json::to_writer(&mut body, &e).map_err(|e| CoreError::Inference(e.to_string()))?;
        body.push(b'\n');
    }
    Ok(([(CONTENT_TYPE, "application/x-ndjson")], body).into_response())
}

/// `POST /v1/hashlists/{list}`: adds the entries in the body (JSON Lines, or CSV with a header
/// `kind,hash,id[,label,source]`); the list is created if new. All or nothing. The key's role
/// and the import's memory are checked before the body is read.
pub async fn import(
    State(state): State<AppState>,
    key: Option<Extension<KeyId>>,
    Path(list): Path<String>,
    req: Request,
) -> Result<Json<Value>, ApiError> {
    require_admin(&state, key)?;
    check_list_name(&list).map_err(|e| CoreError::BadRequest(e.to_string()))?;
    let lists = lists(&state)?;
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok())
        .unwrap_or(state.max_body_bytes)
        .min(state.max_body_bytes);
    let permit = lists.admit_import(declared)?;
    let body = axum::body::to_bytes(req.into_body(), state.max_body_bytes)
        .await
        .map_err(|e| body_error(super::error::status_of_body(&e), "hash-list import", e.to_string()))?;
    // Parsing and committing up to --max-body-bytes of entries: off the async workers.
    let report = tokio::task::spawn_blocking(move || {
        let text = std::str::from_utf8(&body)
            .map_err(|e| CoreError::BadRequest(format!("the body is not UTF-8 text: {e}")))?;
        let report = lists.import_text(&list, text);
        drop(body);
        drop(permit);
        crate::datastore::release_freed_memory();
        report.map_err(CoreError::from)
    })
    .await
    .map_err(join_error)??;
    tracing::info!(list = %report.list, added = report.added, replaced = report.replaced, duplicates = report.duplicates, entries = report.entries, "hash list changed");
    Ok(Json(json!(report)))
}

/// `DELETE /v1/hashlists/{list}`.
pub async fn delete_list(
    State(state): State<AppState>,
    key: Option<Extension<KeyId>>,
    Path(list): Path<String>,
) -> Result<Json<Value>, ApiError> {
    require_admin(&state, key)?;
    let lists = lists(&state)?;
    let name = list.clone();
    let deleted = tokio::task::spawn_blocking(move || lists.delete_list(&name))
        .await
        .map_err(join_error)?
        .map_err(CoreError::from)?;
    if deleted == 0 {
        return Err(CoreError::NotFound(format!("no hash list '{list}'")).into());
    }
    tracing::info!(list = %list, deleted, "hash list deleted");
    Ok(Json(json!({ "list": list, "deleted": deleted })))
}

/// `DELETE /v1/hashlists/{list}/entries/{id}`.
pub async fn delete_entry(
    State(state): State<AppState>,
    key: Option<Extension<KeyId>>,
    Path((list, id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    require_admin(&state, key)?;
    let lists = lists(&state)?;
    let (l, i) = (list.clone(), id.clone());
    let found = tokio::task::spawn_blocking(move || lists.delete(&l, &i))
        .await
        .map_err(join_error)?
        .map_err(CoreError::from)?;
    if !found {
        return Err(CoreError::NotFound(format!("no entry '{id}' in hash list '{list}'")).into());
    }
    tracing::info!(list = %list, id = %id, "hash list entry deleted");
    Ok(Json(json!({ "list": list, "deleted": id })))
}
