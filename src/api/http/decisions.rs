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
use crate::decisions::{check_sha256, csv_rows, now_rfc3339, Call, Decision, Decisions, Shown};
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
    let cross_site = req.headers().get("sec-fetch-site").is_some_and(|v| v.as_bytes() == b"cross-site");
    if cross_site {
        return Err(CoreError::Forbidden("a decision cannot be recorded by another site's page".into()).into());
    }
    let (body, media) = if content_type.starts_with("multipart/form-data") {
        // Multipart carries media, which only an admin adding the item to a list sends. Checked
        // before the body is read, so a scoring key cannot make the server buffer an upload for
        // nothing; and without keys no multipart is taken at all, so a cross-site form (which
        // can send multipart but not JSON) cannot record a decision.
        require_admin(&state, key).map_err(|_| {
            CoreError::Forbidden(
                "multipart decisions carry media to add to a hash list, which needs an admin key; \
                 send the decision alone as application/json"
                    .into(),
            )
        })?;
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
    tokio::task::spawn_blocking(move || store.record(&stored)).await.map_err(join_error)?.map_err(CoreError::from)?;
    tracing::info!(sha256 = %decision.sha256, decision = decision.decision.as_str(), reviewer = %decision.reviewer, "decision recorded");
    Ok(Json(json!({ "decision": decision })))
}

/// The parts of a multipart decision (an admin's, checked by the caller).
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
    let report = tokio::task::spawn_blocking(move || lists.import(&name, entries)).await.map_err(join_error)??;
    Ok(report.added + report.replaced)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportQuery {
    /// `json` (default) or `csv`.
    format: Option<String>,
    /// Decisions per page (JSON: default 1000, at most 10,000). CSV without `limit` is the whole
    /// export, streamed.
    limit: Option<usize>,
    /// The `next` of the previous page.
    after: Option<String>,
}

/// Most decisions in one page of `GET /v1/decisions`.
const MAX_PAGE: usize = 10_000;

/// `GET /v1/decisions`: decisions, oldest first, a page at a time as JSON (`next` names the
/// following page), or (`?format=csv`) as the CSV that `dfserve score --labels` reads, streamed
/// from the database page by page, so neither answer holds every decision in memory.
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
    if q.limit.is_some_and(|n| n == 0 || n > MAX_PAGE) {
        return Err(CoreError::BadRequest(format!("limit must be 1 to {MAX_PAGE}")).into());
    }
    let store = decisions(&state)?;
    if csv && q.limit.is_none() {
        return Ok(csv_stream(store, q.after));
    }
    let limit = q.limit.unwrap_or(1000);
    let page = tokio::task::spawn_blocking(move || store.page(q.after.as_deref(), limit))
        .await
        .map_err(join_error)?
        .map_err(|e| match e.downcast::<crate::datastore::StorageError>() {
            Ok(s) => CoreError::from(s),
            Err(e) => CoreError::BadRequest(format!("bad `after`: {e:#}")),
        })?;
    if csv {
        let body =
            csv_rows(&page.decisions, true).map_err(|e| CoreError::Inference(format!("CSV export failed: {e:#}")))?;
        let mut resp = csv_response(axum::body::Body::from(body));
        if let Some(next) = page.next {
            resp.headers_mut().insert("x-next-page", next.parse().map_err(|_| CoreError::Inference("cursor".into()))?);
        }
        return Ok(resp);
    }
    Ok(Json(json!({ "decisions": page.decisions, "next": page.next })).into_response())
}

fn csv_response(body: axum::body::Body) -> Response {
    let disposition = "attachment; filename=\"dfserve-decisions.csv\"";
    ([(CONTENT_TYPE, "text/csv; charset=utf-8"), (CONTENT_DISPOSITION, disposition)], body).into_response()
}

/// The whole CSV export, read a page at a time on a blocking thread and sent as it is read. A
/// storage failure midway ends the body with an error (the client sees a cut-off download, not
/// a short file that looks whole).
fn csv_stream(store: Arc<Decisions>, after: Option<String>) -> Response {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    tokio::task::spawn_blocking(move || {
        let (mut after, mut header) = (after, true);
        loop {
            let chunk = store.page(after.as_deref(), 1000).and_then(|p| Ok((csv_rows(&p.decisions, header)?, p.next)));
            header = false;
            match chunk {
                Ok((bytes, next)) => {
                    if tx.blocking_send(Ok(Bytes::from(bytes))).is_err() {
                        return;
                    }
                    match next {
                        Some(n) => after = Some(n),
                        None => return,
                    }
                }
                Err(e) => {
                    tracing::error!(error = %format!("{e:#}"), "decisions CSV export failed midway");
                    let _ = tx.blocking_send(Err(std::io::Error::other(format!("{e:#}"))));
                    return;
                }
            }
        }
    });
    csv_response(axum::body::Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx)))
}

/// `GET /v1/decisions/summary`: how many decisions, of which kind, on how many items, by how
/// many reviewers (the page's running tally).
pub async fn summary(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let store = decisions(&state)?;
    let sum =
        tokio::task::spawn_blocking(move || store.summary()).await.map_err(join_error)?.map_err(CoreError::from)?;
    Ok(Json(json!(sum)))
}

/// `GET /v1/decisions/{sha256}`: every reviewer's decision on one item (none is an empty list).
pub async fn of_item(State(state): State<AppState>, Path(sha256): Path<String>) -> Result<Json<Value>, ApiError> {
    let sha = check_sha256(&sha256).map_err(|e| CoreError::BadRequest(e.to_string()))?;
    let store = decisions(&state)?;
    let found =
        tokio::task::spawn_blocking(move || store.of(&sha)).await.map_err(join_error)?.map_err(CoreError::from)?;
    Ok(Json(json!({ "decisions": found })))
}
