//! `dfserve providers`: which execution providers the loaded ONNX Runtime library has, whether
//! this build of dfserve can use them, and whether a model actually loads on each.
//!
//! Why the last step: ONNX Runtime lists a provider as available when the library was compiled
//! with it, even if the CUDA or cuDNN libraries it needs are missing. Loading a real model is
//! the only check that exercises those libraries. On a machine without a GPU, a complete CUDA
//! image fails at the device ("no CUDA-capable device"); one missing a library fails sooner, and
//! the error names the file (`libcublasLt.so.13: cannot open shared object file`). Container
//! tests tell the two apart without a GPU.

use std::path::Path;

use serde::Serialize;

use super::{init_environment, Device, OrtBackend, SessionOptions};

/// One provider, as `dfserve providers` prints it (one JSON line each).
#[derive(Debug, Serialize)]
pub struct ProviderStatus {
    /// ONNX Runtime's name for it.
    pub provider: &'static str,
    /// The `--device` value that selects it.
    pub device: String,
    /// The ONNX Runtime library was built with it.
    pub in_library: bool,
    /// This binary was built with the cargo feature that registers it.
    pub in_build: bool,
    /// Whether the model loaded on it; absent when it was not tried (not in the library or the
    /// build).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loads: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Checks CPU, CUDA and TensorRT in turn, loading `model` from `model_dir` on each provider
/// that both the library and this build have (`opts` but its device apply).
pub fn check(
    ort_lib: &Path,
    model_dir: &Path,
    model: &str,
    opts: &SessionOptions,
) -> anyhow::Result<Vec<ProviderStatus>> {
    let env = init_environment(ort_lib)?;
    let configs = crate::models::load_dir(model_dir)?;
    let cfg = configs
        .get(model)
        .ok_or_else(|| anyhow::anyhow!("no config for model '{model}' in {}", model_dir.display()))?;
    let path = model_dir.join(&cfg.file);
    let library = library_providers()?;
    let candidates = [
        ("CPUExecutionProvider", Device::Cpu, true),
        ("CUDAExecutionProvider", Device::Cuda(0), cfg!(feature = "cuda")),
        ("TensorrtExecutionProvider", Device::TensorRt(0), cfg!(feature = "tensorrt")),
    ];
    let mut out = Vec::new();
    for (provider, device, in_build) in candidates {
        let in_library = library.iter().any(|p| p == provider);
        let mut status =
            ProviderStatus { provider, device: device.to_string(), in_library, in_build, loads: None, error: None };
        if in_library && in_build {
            let opts = SessionOptions { device, ..opts.clone() };
            match OrtBackend::load(&env, &path, cfg, &opts) {
                Ok(_) => status.loads = Some(true),
                Err(e) => {
                    status.loads = Some(false);
                    status.error = Some(format!("{e:#}"));
                }
            }
        }
        out.push(status);
    }
    Ok(out)
}

/// The providers the loaded ONNX Runtime library was compiled with (`GetAvailableProviders`).
/// `ort` asks the same question only for providers whose cargo feature is on, and this must
/// also answer for a CPU build looking at a GPU library.
pub fn library_providers() -> anyhow::Result<Vec<String>> {
    let api = ort::api();
    let mut names: *mut *mut std::ffi::c_char = std::ptr::null_mut();
    let mut count: std::ffi::c_int = 0;
    // SAFETY: ONNX Runtime fills `names` with `count` NUL-terminated strings that stay valid
    // until ReleaseAvailableProviders, which is called once they are copied.
    unsafe {
        let status = (api.GetAvailableProviders)(&mut names, &mut count);
        if !status.0.is_null() {
            (api.ReleaseStatus)(status.0);
            anyhow::bail!("ONNX Runtime could not list its execution providers");
        }
        if names.is_null() {
            return Ok(Vec::new());
        }
        let list = (0..count as usize)
            .map(|i| std::ffi::CStr::from_ptr(*names.add(i)).to_string_lossy().into_owned())
            .collect();
        let status = (api.ReleaseAvailableProviders)(names, count);
        if !status.0.is_null() {
            (api.ReleaseStatus)(status.0);
        }
        Ok(list)
    }
}
