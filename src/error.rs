//! The inference core's error type.
//!
//! Every layer below the protocol front ends reports failures as a [`CoreError`]. Each front end
//! maps it to its own status code in exactly one place (`api::http::error` for HTTP), so the
//! same failure means the same thing whichever protocol the caller speaks.

use std::time::Duration;

#[derive(Debug, Clone, thiserror::Error)]
pub enum CoreError {
    /// The request itself is malformed (bad option, empty body, bad multipart).
    #[error("{0}")]
    BadRequest(String),
    /// The body is not something dfserve accepts (e.g. `application/json` on an image endpoint).
    #[error("unsupported media type '{0}': send image bytes (JPEG, PNG, WebP, BMP, GIF) or multipart/form-data")]
    UnsupportedMediaType(String),
    /// The body is larger than `--max-body-bytes`.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// The request carries more items (files, rows) than `--max-client-batch-size`.
    #[error("{0}")]
    TooManyItems(String),
    /// The bytes are not a decodable image of a supported format.
    #[error("cannot decode image: {0}")]
    UndecodableImage(String),
    /// The image declares more pixels than `--max-image-pixels`; rejected before decoding.
    #[error("image is {width}x{height} = {pixels} pixels, over the limit of {max_pixels} (--max-image-pixels)")]
    ImageTooLarge { width: u32, height: u32, pixels: u64, max_pixels: u64 },
    /// The upload looks like a video but cannot be decoded, or is a manifest or playlist.
    #[error("cannot decode video: {0}")]
    UndecodableVideo(String),
    /// The video lasts longer than `--max-video-duration`.
    #[error("{0}")]
    VideoTooLong(String),
    /// The video's frames are larger than `--max-video-pixels`.
    #[error("{0}")]
    VideoTooLarge(String),
    /// A server-wide budget (FFmpeg runs) is spent: the caller should back off and retry.
    #[error("{0}")]
    Busy(String),
    /// A request body was still arriving after `--body-timeout`.
    #[error("request body was not received within {0:?} (--body-timeout); send it faster or in smaller requests")]
    BodyTimeout(Duration),
    /// No such resource (a hash list or entry).
    #[error("{0}")]
    NotFound(String),
    /// The caller may not do this (e.g. change hash lists without an admin key).
    #[error("{0}")]
    Forbidden(String),
    /// No model of that name (or version, or it is not of the kind needed). The payload names
    /// what was asked for, e.g. `'nope'` or `'meso4_df' version '7'`.
    #[error("unknown model {0}; GET /v1/models lists the loaded models")]
    ModelNotFound(String),
    /// The model's queue is full: the caller should back off and retry.
    #[error("queue for model '{0}' is full; retry later")]
    QueueFull(String),
    /// The request did not finish within its deadline (`--request-timeout`).
    #[error("request did not complete within {0:?} (--request-timeout)")]
    DeadlineExceeded(Duration),
    /// Models are still loading or warming up, or the server is draining for shutdown.
    #[error("{0}")]
    Unavailable(String),
    /// The data dir's database (or another store) failed; nothing was changed, and the caller
    /// should retry later. Detection does not depend on it.
    #[error("{0}")]
    Storage(String),
    /// ONNX Runtime failed on a batch; only the requests in that batch fail.
    #[error("inference failed: {0}")]
    Inference(String),
}

impl CoreError {
    /// Errors about the server's state rather than one item (overload, deadline, draining):
    /// a request of several items fails as a whole on these, so its client backs off.
    pub fn fails_whole_request(&self) -> bool {
        matches!(
            self,
            CoreError::QueueFull(_)
                | CoreError::Busy(_)
                | CoreError::DeadlineExceeded(_)
                | CoreError::Unavailable(_)
                | CoreError::Storage(_)
        )
    }

    /// A stable machine-readable code for clients, the same across protocols.
    pub fn code(&self) -> &'static str {
        match self {
            CoreError::BadRequest(_) => "bad_request",
            CoreError::UnsupportedMediaType(_) => "unsupported_media_type",
            CoreError::PayloadTooLarge(_) => "payload_too_large",
            CoreError::TooManyItems(_) => "too_many_items",
            CoreError::UndecodableImage(_) => "undecodable_image",
            CoreError::ImageTooLarge { .. } => "image_too_large",
            CoreError::UndecodableVideo(_) => "undecodable_video",
            CoreError::VideoTooLong(_) => "video_too_long",
            CoreError::VideoTooLarge(_) => "video_too_large",
            CoreError::Busy(_) => "busy",
            CoreError::BodyTimeout(_) => "body_timeout",
            CoreError::Forbidden(_) => "forbidden",
            CoreError::NotFound(_) => "not_found",
            CoreError::ModelNotFound(_) => "model_not_found",
            CoreError::QueueFull(_) => "queue_full",
            CoreError::DeadlineExceeded(_) => "deadline_exceeded",
            CoreError::Unavailable(_) => "unavailable",
            CoreError::Storage(_) => "storage_unavailable",
            CoreError::Inference(_) => "inference_failed",
        }
    }
}

impl From<crate::datastore::StorageError> for CoreError {
    fn from(e: crate::datastore::StorageError) -> CoreError {
        CoreError::Storage(format!("{e}; nothing was changed, retry later"))
    }
}
