//! Detect options: as a client sent them ([`DetectParams`], filled by each front end from its
//! wire format) and as the detect layer uses them ([`DetectOptions`], checked and resolved).
//!
//! Validation happens here and only here, so HTTP `/v1`, the dfserve gRPC API, the KServe
//! pipeline model and `dfserve score` accept and refuse exactly the same option sets, with the
//! same messages.

use crate::core::{ImageOptions, InferCore, Mode};
use crate::error::CoreError;
use crate::video::{Aggregation, Sampling};

/// Options as received, before any check. `None` means "not given: use the default".
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DetectParams {
    /// Classifier name; the server's default when `None`.
    pub model: Option<String>,
    /// Decision threshold in [0, 1]; the classifier's own when `None`.
    pub threshold: Option<f32>,
    /// `faces` (default) or `whole`.
    pub mode: Option<String>,
    /// Videos: frames to sample, spread evenly (at least 1).
    pub frames: Option<usize>,
    /// Videos: frames to sample per second of video (positive; not together with `frames`).
    pub fps: Option<f64>,
    /// Videos: `max`, `mean` or `confident` (default).
    pub aggregation: Option<String>,
    /// Attach an audit record (see `detect::audit`) to each result.
    pub audit: bool,
}

/// Validated options: the classifier resolved, every value in range.
#[derive(Clone)]
pub struct DetectOptions {
    pub image: ImageOptions,
    /// Videos: which frames to sample; the server's default count when `None`.
    pub sampling: Option<Sampling>,
    pub aggregation: Aggregation,
    pub audit: bool,
}

impl DetectOptions {
    /// Name and version of the classifier that scores this request.
    pub fn model(&self) -> (&str, &str) {
        (self.image.classifier.name(), self.image.classifier.version())
    }
}

impl DetectParams {
    /// Checks every option and resolves the classifier. Fails on the first bad option, before
    /// any work is done, so a bad option fails the whole request rather than each item in it.
    pub fn validate(&self, core: &InferCore) -> Result<DetectOptions, CoreError> {
        let bad = |m: String| Err(CoreError::BadRequest(m));
        let classifier = core.classifier(self.model.as_deref())?;
        let threshold = match self.threshold {
            None => classifier.threshold,
            Some(t) if (0.0..=1.0).contains(&t) => t,
            Some(t) => return bad(format!("threshold must be in [0, 1], got {t}")),
        };
        let mode = match self.mode.as_deref() {
            None => Mode::default(),
            Some(m) => m.parse().map_err(CoreError::BadRequest)?,
        };
        let sampling = match (self.frames, self.fps) {
            (Some(_), Some(_)) => return bad("give either frames or fps, not both".into()),
            (Some(0), None) => return bad("frames must be at least 1".into()),
            (Some(n), None) => Some(Sampling::Count(n)),
            (None, Some(r)) if r > 0.0 && r.is_finite() => Some(Sampling::Rate(r)),
            (None, Some(r)) => return bad(format!("fps must be positive, got {r}")),
            (None, None) => None,
        };
        let aggregation = match self.aggregation.as_deref() {
            None => Aggregation::default(),
            Some(a) => a.parse().map_err(CoreError::BadRequest)?,
        };
        Ok(DetectOptions {
            image: ImageOptions { classifier, threshold, mode, keep_pixels: false },
            sampling,
            aggregation,
            audit: self.audit,
        })
    }
}
