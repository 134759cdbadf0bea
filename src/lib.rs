//! dfserve: a self-hosted deepfake (face-manipulation) detection server.
//!
//! Where things live, lowest layer first (each module uses only the ones above it):
//! - [`error`]: the core error enum; [`verdict`]: labels, statuses and the decision rule.
//! - [`config`]: command-line and environment settings.
//! - [`runtime`]: ONNX Runtime environment, execution providers, sessions (`Backend`).
//! - [`models`]: per-model config files and their validation.
//! - [`batcher`]: per-model bounded queues and the workers that batch them.
//! - [`pipeline`]: decode, resize/normalise, detector decoding + NMS, crops, aggregation.
//! - [`core`]: loaded models and their roles, readiness, admission, the image pipeline.
//! - [`video`]: FFmpeg probing/decoding, frame sampling, face tracks (no models).
//! - [`detect`]: the detect layer every media-scoring front end calls: validated options,
//!   image/video dispatch, one result type.
//! - [`api`]: protocol front ends (HTTP: /v1 and KServe v2 REST; gRPC: KServe and dfserve.v1).
//! - [`server`]: `dfserve serve`, the server lifecycle; [`score`]: `dfserve score`;
//!   [`bench`]: `dfserve bench-model` and `bench-pipeline`.
//! - [`datastore`]: the data dir's embedded database; [`hashlists`] and [`decisions`] (what
//!   reviewers decided on the `/ui` page) keep their tables in it.
//! - [`auth`]: optional API keys; [`metrics`]: the Prometheus registry; [`stats`]: per-model
//!   totals for the KServe/Triton statistics extension.

pub mod api;
pub mod auth;
pub mod batcher;
pub mod bench;
pub mod config;
pub mod core;
pub mod datastore;
pub mod decisions;
pub mod detect;
pub mod error;
pub mod hashing;
pub mod hashlists;
pub mod healthcheck;
pub mod layout;
pub mod metrics;
pub mod models;
pub mod pgstore;
pub mod pipeline;
pub mod provenance;
pub mod runtime;
pub mod score;
pub mod server;
pub mod stats;
pub mod store;
pub mod telemetry;
pub mod verdict;
pub mod video;
