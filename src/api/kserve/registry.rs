//! The models the protocol can address: every loaded ONNX model as a tensor model, plus the
//! pipeline model, with their versions.

use crate::core::{InferCore, LoadedModel};
use crate::error::CoreError;

/// Name of the whole-pipeline model (encoded images in, scores out).
pub const PIPELINE_MODEL: &str = "dfserve";
pub const PIPELINE_INPUT: &str = "IMAGE";
pub const SERVER_NAME: &str = "dfserve";
/// Extensions advertised in server metadata.
pub const EXTENSIONS: [&str; 3] = ["binary_tensor_data", "model_configuration", "statistics"];

/// A model the protocol can address.
pub enum Target<'a> {
    Tensor(&'a LoadedModel),
    Pipeline,
}

const PIPELINE_VERSION: &str = "1";

pub fn resolve<'a>(core: &'a InferCore, name: &str, version: Option<&str>) -> Result<(Target<'a>, String), CoreError> {
    let (target, have) = if name == PIPELINE_MODEL {
        (Target::Pipeline, PIPELINE_VERSION.to_string())
    } else {
        let m = core.model(name).ok_or_else(|| CoreError::ModelNotFound(format!("'{name}'")))?;
        (Target::Tensor(m), m.config.version.clone())
    };
    match version {
        Some(v) if !v.is_empty() && v != have => {
            Err(CoreError::ModelNotFound(format!("'{name}' version '{v}' (loaded: version {have})")))
        }
        _ => Ok((target, have)),
    }
}

/// NOT_FOUND unless the model (and version, if given) is served; front ends check this before
/// parsing tensors, so an unknown model is reported as such whatever the body holds.
pub fn check_model(core: &InferCore, name: &str, version: Option<&str>) -> Result<(), CoreError> {
    resolve(core, name, version).map(|_| ())
}

/// Names of every model the protocol serves: each loaded ONNX model, then the pipeline.
pub fn model_names(core: &InferCore) -> Vec<String> {
    core.loaded_models().map(|m| m.config.name.clone()).chain([PIPELINE_MODEL.to_string()]).collect()
}

/// Whether the model exists (and the version matches) and the server is ready.
pub fn model_ready(core: &InferCore, name: &str, version: Option<&str>) -> Result<bool, CoreError> {
    resolve(core, name, version)?;
    Ok(core.is_ready())
}
