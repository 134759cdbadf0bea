//! What every HTTP handler shares: the detect layer, the core, and access control.

use std::sync::Arc;

use crate::auth::KeyStore;
use crate::core::InferCore;
use crate::decisions::Decisions;
use crate::detect::Detector;

#[derive(Clone)]
pub struct AppState {
    /// The detect layer, for endpoints that score uploads.
    pub detector: Arc<Detector>,
    /// The inference core under it, for everything else (models, readiness, metrics, KServe).
    pub core: Arc<InferCore>,
    /// API keys; `None` when access control is off.
    pub keys: Option<Arc<KeyStore>>,
    /// Serve /metrics without a key even when keys are required.
    pub public_metrics: bool,
    /// Reviewers' decisions; `None` when the server keeps none (tests, embedders).
    pub decisions: Option<Arc<Decisions>>,
    /// The request-body budget shared with gRPC.
    pub bodies: crate::api::body::BodyBudget,
    /// The data dir's database, for readiness details; `None` without one.
    pub storage: Option<Arc<crate::datastore::DataStore>>,
    /// `--max-body-bytes`, for handlers that read their body themselves.
    pub max_body_bytes: usize,
}
