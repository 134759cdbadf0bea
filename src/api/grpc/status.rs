//! The one place core errors become gRPC statuses, for every gRPC service.

use tonic::{Code, Status};

use crate::error::CoreError;

/// The one place core errors become gRPC status codes.
pub fn status_of(err: &CoreError) -> Code {
    match err {
        CoreError::BadRequest(_)
        | CoreError::UnsupportedMediaType(_)
        | CoreError::UndecodableImage(_)
        | CoreError::ImageTooLarge { .. }
        | CoreError::UndecodableVideo(_)
        | CoreError::VideoTooLong(_)
        | CoreError::VideoTooLarge(_) => Code::InvalidArgument,
        CoreError::PayloadTooLarge(_) | CoreError::TooManyItems(_) | CoreError::QueueFull(_) | CoreError::Busy(_) => {
            Code::ResourceExhausted
        }
        CoreError::ModelNotFound(_) | CoreError::NotFound(_) => Code::NotFound,
        CoreError::Forbidden(_) => Code::PermissionDenied,
        CoreError::DeadlineExceeded(_) | CoreError::BodyTimeout(_) => Code::DeadlineExceeded,
        CoreError::Unavailable(_) | CoreError::Storage(_) => Code::Unavailable,
        CoreError::Inference(_) => Code::Internal,
    }
}

/// The gRPC status for a core error. Its stable code (the HTTP API's `code`) travels in the
/// `dfserve-error-code` metadata entry, so clients of either protocol can branch on the same
/// words.
pub fn to_status(err: CoreError) -> Status {
    let mut status = Status::new(status_of(&err), err.to_string());
    status.metadata_mut().insert(ERROR_CODE_KEY, tonic::metadata::MetadataValue::from_static(err.code()));
    status
}

/// Metadata key of the stable error code in every error status dfserve returns.
pub const ERROR_CODE_KEY: &str = "dfserve-error-code";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_errors_map_to_grpc_codes() {
        let cases = [
            (CoreError::BadRequest("x".into()), Code::InvalidArgument),
            (CoreError::UndecodableImage("x".into()), Code::InvalidArgument),
            (CoreError::ModelNotFound("m".into()), Code::NotFound),
            (CoreError::QueueFull("m".into()), Code::ResourceExhausted),
            (CoreError::Busy("ffmpeg".into()), Code::ResourceExhausted),
            (CoreError::UndecodableVideo("x".into()), Code::InvalidArgument),
            (CoreError::PayloadTooLarge("x".into()), Code::ResourceExhausted),
            (CoreError::DeadlineExceeded(std::time::Duration::from_secs(1)), Code::DeadlineExceeded),
            (CoreError::BodyTimeout(std::time::Duration::from_secs(1)), Code::DeadlineExceeded),
            (CoreError::Unavailable("x".into()), Code::Unavailable),
            (CoreError::Inference("x".into()), Code::Internal),
        ];
        for (e, code) in cases {
            assert_eq!(status_of(&e), code, "{e:?}");
            let status = to_status(e.clone());
            assert_eq!(status.metadata().get(ERROR_CODE_KEY).unwrap(), e.code());
        }
    }
}
