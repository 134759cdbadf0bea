//! The models the protocol can address: every loaded ONNX model as a tensor model, every
//! ensemble as a tensor model over its members' shared input, plus the pipeline model, with
//! their versions.

use std::sync::Arc;

use crate::core::{Classifier, InferCore, LoadedModel};
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
    /// An ensemble classifier: face crops in, combined (and member) scores out.
    Ensemble(Arc<Classifier>),
    Pipeline,
}

fn ensemble(core: &InferCore, name: &str) -> Option<Arc<Classifier>> {
    core.classifier(Some(name)).ok().filter(|c| c.kind == "ensemble")
}

const PIPELINE_VERSION: &str = "1";

pub fn resolve<'a>(core: &'a InferCore, name: &str, version: Option<&str>) -> Result<(Target<'a>, String), CoreError> {
    let (target, have) = if name == PIPELINE_MODEL {
        (Target::Pipeline, PIPELINE_VERSION.to_string())
    } else if let Some(m) = core.model(name) {
        (Target::Tensor(m), m.config.version.clone())
    } else {
        let c = ensemble(core, name).ok_or_else(|| CoreError::ModelNotFound(format!("'{name}'")))?;
        let version = c.version().to_string();
        (Target::Ensemble(c), version)
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

/// Names of every model the protocol serves: each loaded ONNX model, each ensemble, then the
/// pipeline.
pub fn model_names(core: &InferCore) -> Vec<String> {
    let ensembles = core.classifiers().filter(|c| c.kind == "ensemble").map(|c| c.name().to_string());
    core.loaded_models().map(|m| m.config.name.clone()).chain(ensembles).chain([PIPELINE_MODEL.to_string()]).collect()
}

/// Output names of an ensemble model: `SCORE`, then `SCORE_<member>` for each member.
pub fn ensemble_outputs(c: &Classifier) -> Vec<String> {
    std::iter::once("SCORE".to_string()).chain(c.models().map(|m| format!("SCORE_{}", m.config.name))).collect()
}

/// Whether the model exists (and the version matches) and the server is ready.
pub fn model_ready(core: &InferCore, name: &str, version: Option<&str>) -> Result<bool, CoreError> {
    resolve(core, name, version)?;
    Ok(core.is_ready())
}
