//! `/v1/decisions` and `/v1/whoami`: what reviewers decide on the page (`/ui`), over HTTP.
//!
//! Recording a decision needs the usual key (when keys are on); the decision is stored under
//! that key's id, so one reviewer cannot overwrite another's. Adding the item to a hash list
//! with its decision needs an admin key and the media itself: the server hashes the bytes
//! (SHA-256, and PDQ or vPDQ) rather than trusting hashes a page sends, and refuses bytes whose
//! SHA-256 is not the decision's.

use std::sync::Arc;

use axum::extract::{FromRequest, Multipart, Path, Query, Request, State};
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::{body_error, ApiError};
use super::hashlists::{lists, require_admin};
use super::state::AppState;
use crate::auth::KeyId;
use crate::decisions::{check_sha256, now_rfc3339, to_csv, Call, Decision, Decisions, Shown};
use crate::error::CoreError;
use crate::hashlists::{check_list_name, Entry, HashKind};

/// A decision body is small: what was shown, not the media.
const MAX_DECISION_BYTES: usize = 256 * 1024;

/// A decision as the page sends it; the server adds the reviewer and the time.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DecisionIn {
    sha256: String,
    decision: Call,
    #[serde(default)]
    filename: Option<String>,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    note: Option<String>,
    #[serde(default)]
    shown: Shown,
    /// Also add the item to this hash list (admin keys only; the media must be sent too).
    #[serde(default)]
    add_to_list: Option<String>,
}

fn decisions(state: &AppState) -> Result<Arc<Decisions>, CoreError> {
    state.decisions.clone().ok_or_else(|| CoreError::Unavailable("decisions are not enabled on this server".into()))
}

fn storage(e: anyhow::Error) -> CoreError {
    CoreError::Inference(format!("decision storage failed: {e:#}"))
}

fn join_error(e: tokio::task::JoinError) -> CoreError {
    CoreError::Inference(e.to_string())
}

/// `GET /v1/whoami`: the presented key's id and role, so the page can say who is deciding
/// and offer list changes only to admins.
pub async fn whoami(State(state): State<AppState>, key: Option<Extension<KeyId>>) -> Json<Value> {
    let key = key.map(|Extension(k)| k);
    Json(json!({
        "key_id": key.map(|k| k.to_string()),
        "admin": key.is_some_and(|k| k.admin),
        "keys_required": state.keys.is_some(),
        "decisions": state.decisions.is_some(),
        "hash_lists": state.detector.hashlists().is_some(),
    }))
}

/// `POST /v1/decisions`: a JSON decision, or multipart/form-data with a `decision` part (that
/// JSON) and a `media` part (the file) when it also adds the item to a hash list.
pub async fn record(
    State(state): State<AppState>,
    key: Option<Extension<KeyId>>,
    req: Request,
) -> Result<Json<Value>, ApiError> {
    let content_type = req.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_ascii_lowercase();
    let (body, media) = if content_type.starts_with("multipart/form-data") {
        read_parts(req, &state).await?
    } else if content_type.starts_with("application/json") {
        let body = axum::body::to_bytes(req.into_body(), MAX_DECISION_BYTES).await.map_err(|e| {
            CoreError::BadRequest(format!("bad decision body (at most {MAX_DECISION_BYTES} bytes of JSON): {e}"))
        })?;
        (body, None)
    } else {
        return Err(CoreError::BadRequest(
            "send the decision as application/json, or multipart/form-data with `decision` and `media` parts".into(),
        )
        .into());
    };
    let input: DecisionIn =
        serde_json::from_slice(&body).map_err(|e| CoreError::BadRequest(format!("bad decision: {e}")))?;
    let reviewer = key.as_ref().map_or_else(|| "anonymous".to_string(), |Extension(k)| k.to_string());
    let list = input.add_to_list;
    let decision = Decision {
        sha256: input.sha256,
        decision: input.decision,
        reviewer,
        decided_at: now_rfc3339(),
        filename: input.filename,
        kind: input.kind,
        note: input.note.filter(|n| !n.trim().is_empty()),
        shown: input.shown,
        added_to_list: None,
    };
    let mut decision = decision.validate().map_err(|e| CoreError::BadRequest(format!("bad decision: {e:#}")))?;
    let store = decisions(&state)?;
    if let Some(list) = list {
        require_admin(&state, key)?;
        check_list_name(&list).map_err(|e| CoreError::BadRequest(e.to_string()))?;
        let media = media.ok_or_else(|| {
            CoreError::BadRequest("adding to a hash list needs the media: send multipart with a `media` part".into())
        })?;
        let added = add_to_list(&state, &list, &decision, media).await?;
        tracing::info!(list = %list, added, sha256 = %decision.sha256, "hash list changed by a decision");
        decision.added_to_list = Some(list);
    }
    let stored = decision.clone();
    // A durable commit (fsync): off the async workers.
    tokio::task::spawn_blocking(move || store.record(&stored)).await.map_err(join_error)?.map_err(storage)?;
    tracing::info!(sha256 = %decision.sha256, decision = decision.decision.as_str(), reviewer = %decision.reviewer, "decision recorded");
    Ok(Json(json!({ "decision": decision })))
}

async fn read_parts(req: Request, state: &AppState) -> Result<(Bytes, Option<Bytes>), ApiError> {
    let mut mp = Multipart::from_request(req, state)
        .await
        .map_err(|e| CoreError::BadRequest(format!("bad multipart request: {}", e.body_text())))?;
    let part_error =
        |e: axum::extract::multipart::MultipartError| body_error(e.status(), "multipart request", e.body_text());
    let (mut decision, mut media) = (None, None);
    while let Some(field) = mp.next_field().await.map_err(part_error)? {
        match field.name() {
            Some("decision") => {
                // Refused at the first chunk past the cap, not after buffering the whole part.
                let mut buf = Vec::new();
                let mut field = field;
                while let Some(chunk) = field.chunk().await.map_err(part_error)? {
                    if buf.len() + chunk.len() > MAX_DECISION_BYTES {
                        return Err(CoreError::BadRequest(format!(
                            "the decision part is over {MAX_DECISION_BYTES} bytes"
                        ))
                        .into());
                    }
                    buf.extend_from_slice(&chunk);
                }
                decision = Some(Bytes::from(buf));
            }
            Some("media") => media = Some(field.bytes().await.map_err(part_error)?),
            other => {
                return Err(CoreError::BadRequest(format!(
                    "unexpected part {other:?}: send `decision` (JSON) and `media` (the file)"
                ))
                .into())
            }
        }
    }
    let decision =
        decision.ok_or_else(|| CoreError::BadRequest("the multipart request has no `decision` part".into()))?;
    Ok((decision, media))
}

/// Hashes the media and adds it to `list`: its SHA-256 always, and its PDQ (image) or vPDQ
/// (video). Entry ids are `review-<first 16 hex digits of the SHA-256>-<kind>`.
async fn add_to_list(state: &AppState, list: &str, d: &Decision, media: Bytes) -> Result<usize, CoreError> {
    let lists = lists(state)?;
    let h = state.detector.hashes(media).await?;
    if h.sha256 != d.sha256 {
        return Err(CoreError::BadRequest(format!(
            "the media's SHA-256 is {}, not the decision's {}: send the file that was reviewed",
            h.sha256, d.sha256
        )));
    }
    let label = Some(format!("reviewed {}", d.decision.as_str()));
    let source = Some(format!("review by {} at {}", d.reviewer, d.decided_at));
    let entry = |kind: HashKind, hash: String| Entry {
        kind,
        hash,
        id: format!("review-{}-{}", &d.sha256[..16], kind.as_str()),
        label: label.clone(),
        source: source.clone(),
    };
    let mut entries = vec![entry(HashKind::Sha256, h.sha256.clone())];
    if let Some(pdq) = h.pdq {
        entries.push(entry(HashKind::Pdq, pdq));
    }
    if let Some(frames) = h.vpdq.filter(|f| !f.is_empty()) {
        entries.push(entry(
            HashKind::Vpdq,
            serde_json::to_string(&frames).map_err(|e| CoreError::Inference(e.to_string()))?,
        ));
    }
    let name = list.to_string();
    tokio::task::spawn_blocking(move || lists.import(&name, entries))
        .await
        .map_err(join_error)?
        .map_err(|e| CoreError::Inference(format!("hash-list storage failed: {e:#}")))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportQuery {
    /// `json` (default) or `csv`.
    format: Option<String>,
}

/// `GET /v1/decisions`: every decision, oldest first, as JSON or (`?format=csv`) as the CSV
/// that `dfserve score --labels` reads.
pub async fn export(
    State(state): State<AppState>,
    query: Result<Query<ExportQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(|e| CoreError::BadRequest(format!("bad query string: {}", e.body_text())))?;
    let csv = match q.format.as_deref() {
        None | Some("json") => false,
        Some("csv") => true,
        Some(other) => return Err(CoreError::BadRequest(format!("format must be json or csv, got '{other}'")).into()),
    };
    let store = decisions(&state)?;
    let all = tokio::task::spawn_blocking(move || store.all()).await.map_err(join_error)?.map_err(storage)?;
    if csv {
        let body = to_csv(&all).map_err(|e| CoreError::Inference(format!("CSV export failed: {e:#}")))?;
        let disposition = "attachment; filename=\"dfserve-decisions.csv\"";
        return Ok(
            ([(CONTENT_TYPE, "text/csv; charset=utf-8"), (CONTENT_DISPOSITION, disposition)], body).into_response()
        );
    }
    Ok(Json(json!({ "decisions": all })).into_response())
}

/// `GET /v1/decisions/summary`: how many decisions, of which kind, on how many items, by how
/// many reviewers (the page's running tally).
pub async fn summary(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let store = decisions(&state)?;
    let sum = tokio::task::spawn_blocking(move || store.summary()).await.map_err(join_error)?.map_err(storage)?;
    Ok(Json(json!(sum)))
}

/// `GET /v1/decisions/{sha256}`: every reviewer's decision on one item (none is an empty list).
pub async fn of_item(State(state): State<AppState>, Path(sha256): Path<String>) -> Result<Json<Value>, ApiError> {
    let sha = check_sha256(&sha256).map_err(|e| CoreError::BadRequest(e.to_string()))?;
    let store = decisions(&state)?;
    let found = tokio::task::spawn_blocking(move || store.of(&sha)).await.map_err(join_error)?.map_err(storage)?;
    Ok(Json(json!({ "decisions": found })))
}
