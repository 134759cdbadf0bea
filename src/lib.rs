//! dfserve: a self-hosted deepfake (face-manipulation) detection server.
//!
//! Where things live:
//! - [`config`]: command-line and environment settings.
//! - [`runtime`]: ONNX Runtime environment, execution providers, sessions (`Backend`).
//! - [`models`]: per-model config files and their validation.
//! - [`batcher`]: per-model bounded queues and the workers that batch them.
//! - [`pipeline`]: decode, resize/normalise, detector decoding + NMS, crops, aggregation.
//! - [`core`]: the inference core that ties the pipeline to the batchers; every front end calls it.
//! - [`api`]: protocol front ends (HTTP: /v1 and KServe v2 REST; gRPC: KServe and dfserve.v1).
//! - [`auth`]: optional API keys.
//! - [`metrics`]: the Prometheus registry.
//! - [`score`]: `dfserve score`, dataset scoring and evaluation.
//! - [`video`]: video probing/decoding with FFmpeg, frame sampling, face tracks, aggregation.
//! - [`error`]: the core error enum.
//! - [`stats`]: per-model totals for the KServe/Triton statistics extension.

pub mod api;
pub mod auth;
pub mod batcher;
pub mod bench;
pub mod config;
pub mod core;
pub mod error;
pub mod metrics;
pub mod models;
pub mod pipeline;
pub mod runtime;
pub mod score;
pub mod stats;
pub mod video;
