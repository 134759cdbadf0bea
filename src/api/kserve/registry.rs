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
    /// A classifier that is not one ONNX model (an ensemble, or a probe head on an encoder):
    /// face crops in, its (combined, calibrated) score and each member's out.
    Ensemble(Arc<Classifier>),
    Pipeline,
}

/// Whether a classifier is a tensor model of its own: not a plain ONNX model (that one is served
/// as itself), and with one input spec for all members.
fn has_tensor_form(c: &Classifier) -> bool {
    c.kind != "model" && c.single_input().is_some()
}

fn no_tensor_form(name: &str) -> CoreError {
    CoreError::ModelNotFound(format!(
        "'{name}' as a tensor model: it combines models that take different inputs; send encoded images to the pipeline model '{PIPELINE_MODEL}' with parameter model=\"{name}\""
    ))
}

const PIPELINE_VERSION: &str = "1";

pub fn resolve<'a>(core: &'a InferCore, name: &str, version: Option<&str>) -> Result<(Target<'a>, String), CoreError> {
    let (target, have) = if name == PIPELINE_MODEL {
        (Target::Pipeline, PIPELINE_VERSION.to_string())
    } else if let Some(m) = core.model(name) {
        (Target::Tensor(m), m.config.version.clone())
    } else {
        let c = match core.classifier(Some(name)) {
            Ok(c) if has_tensor_form(&c) => c,
            Ok(_) => return Err(no_tensor_form(name)),
            Err(_) => return Err(CoreError::ModelNotFound(format!("'{name}'"))),
        };
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
    let ensembles = core.classifiers().filter(|c| has_tensor_form(c)).map(|c| c.name().to_string());
    core.loaded_models().map(|m| m.config.name.clone()).chain(ensembles).chain([PIPELINE_MODEL.to_string()]).collect()
}

/// Output names of an ensemble or probe model: `SCORE`, then (ensembles) `SCORE_<member>` for
/// each member.
pub fn ensemble_outputs(c: &Classifier) -> Vec<String> {
    let members = c.members();
    let per_member = members.iter().filter(|_| members.len() > 1).map(|m| format!("SCORE_{}", m.name()));
    std::iter::once("SCORE".to_string()).chain(per_member).collect()
}

/// The one input tensor of a classifier's tensor form, or why it has none.
pub fn classifier_input(c: &Classifier) -> Result<&crate::models::InputConfig, CoreError> {
    c.single_input().ok_or_else(|| no_tensor_form(c.name()))
}

/// Whether the model exists (and the version matches) and the server is ready.
pub fn model_ready(core: &InferCore, name: &str, version: Option<&str>) -> Result<bool, CoreError> {
    resolve(core, name, version)?;
    Ok(core.is_ready())
}
