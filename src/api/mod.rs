//! Protocol front ends. Each one only parses requests, calls `core::InferCore`, and renders the
//! result or maps the `CoreError` to its protocol's status in one place.

pub mod body;
pub mod grpc;
pub mod http;
pub mod kserve;
