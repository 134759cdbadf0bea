//! Model runtime: the ONNX Runtime environment, execution providers, and one session per
//! worker behind the narrow [`Backend`] trait the batcher drives.
//!
//! `ort`'s `Session::run` takes `&mut self`, so sessions are never shared: each batcher worker
//! owns one `OrtBackend`. The trait exists so the batcher can be exercised in unit tests without
//! a model file, and so other runtimes could be added without touching the batcher.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use anyhow::{anyhow, bail, Context};
use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;
use ort::value::{TensorRef, ValueType};

use crate::models::{Layout, ModelConfig, ModelKind};

pub mod providers;

/// A batch's worth of one output tensor: `shape[0]` is the batch size.
#[derive(Debug, Clone)]
pub struct OutputTensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl OutputTensor {
    /// Number of values in one batch row.
    pub fn row_len(&self) -> usize {
        self.shape.iter().skip(1).product()
    }
}

/// Runs one batch through a model. `input` holds `batch` rows of `item_shape` laid end to end.
pub trait Backend: Send + 'static {
    fn run(&mut self, input: &[f32], batch: usize, item_shape: &[usize]) -> anyhow::Result<Vec<OutputTensor>>;
}

/// Where inference runs. GPU providers need the `cuda` / `tensorrt` cargo features and the
/// onnxruntime-gpu library; a provider that fails to register is an error, never a silent
/// fall-back to CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Device {
    Cpu,
    Cuda(i32),
    TensorRt(i32),
}

impl FromStr for Device {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (kind, id) = match s.split_once(':') {
            Some((k, n)) => (k, n.parse::<i32>().map_err(|_| format!("bad device index in '{s}'"))?),
            None => (s, 0),
        };
        match kind {
            "cpu" if !s.contains(':') => Ok(Device::Cpu),
            "cuda" => Ok(Device::Cuda(id)),
            "tensorrt" => Ok(Device::TensorRt(id)),
            _ => Err(format!("unknown device '{s}' (expected cpu, cuda[:N] or tensorrt[:N])")),
        }
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Cpu => write!(f, "cpu"),
            Device::Cuda(i) => write!(f, "cuda:{i}"),
            Device::TensorRt(i) => write!(f, "tensorrt:{i}"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct SessionOptions {
    pub device: Device,
    pub intra_threads: usize,
    /// ORT worker threads busy-wait between ops by default; with several sessions on few cores
    /// that spinning steals the cores other sessions need, so it is configurable.
    pub spinning: bool,
}

/// Loads the ONNX Runtime shared library and creates the process-wide environment.
pub fn init_environment(lib: &Path) -> anyhow::Result<ort::environment::Environment> {
    if !lib.is_file() {
        bail!(
            "ONNX Runtime library not found at {}; run scripts/setup.sh (a checkout) or scripts/install.sh PREFIX, set DFSERVE_HOME to the install prefix, or point --ort-lib / DFSERVE_ORT_LIB / ORT_DYLIB_PATH at libonnxruntime.so.1.31.1",
            lib.display()
        );
    }
    let builder = ort::init_from(lib).map_err(|e| anyhow!("loading ONNX Runtime from {}: {e}", lib.display()))?;
    builder.with_name("dfserve").build().map_err(|e| anyhow!("creating the ONNX Runtime environment: {e}"))
}

/// Name and shape (`-1` for dynamic dimensions, batch first) of a model output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorSpec {
    pub name: String,
    pub shape: Vec<i64>,
}

/// One ORT session. It feeds the input the config names and returns every float32 output of
/// the model, in the model's order (see [`OrtBackend::outputs`]).
pub struct OrtBackend {
    session: Session,
    input_name: String,
    outputs: Vec<TensorSpec>,
}

impl OrtBackend {
    pub fn load(
        env: &ort::environment::Environment,
        model_path: &Path,
        cfg: &ModelConfig,
        opts: &SessionOptions,
    ) -> anyhow::Result<OrtBackend> {
        let mut builder = Session::builder(env)
            .map_err(|e| anyhow!("{e}"))?
            .with_optimization_level(GraphOptimizationLevel::All)
            .map_err(|e| anyhow!("{e}"))?
            .with_intra_threads(opts.intra_threads)
            .map_err(|e| anyhow!("{e}"))?
            .with_intra_op_spinning(opts.spinning)
            .map_err(|e| anyhow!("{e}"))?;
        builder = register_device(builder, opts.device)?;
        let session =
            builder.commit_from_file(model_path).map_err(|e| anyhow!("loading {}: {e}", model_path.display()))?;
        check_io(&session, cfg)?;
        // An encoder's other outputs (CLIP's token states: 150 K floats a crop) are not copied
        // out of the run: only the embedding its config names.
        let wanted = cfg.output_names();
        let outputs = session
            .outputs()
            .iter()
            .filter(|o| cfg.kind != ModelKind::Encoder || wanted.iter().any(|w| w == o.name()))
            .filter_map(|o| match o.dtype() {
                ValueType::Tensor { ty: ort::value::TensorElementType::Float32, shape, .. } => {
                    Some(TensorSpec { name: o.name().to_string(), shape: shape.to_vec() })
                }
                _ => None,
            })
            .collect();
        Ok(OrtBackend { session, input_name: cfg.input.name.clone(), outputs })
    }

    /// The outputs `run` returns, in order.
    pub fn outputs(&self) -> &[TensorSpec] {
        &self.outputs
    }
}

fn register_device(
    builder: ort::session::builder::SessionBuilder,
    device: Device,
) -> anyhow::Result<ort::session::builder::SessionBuilder> {
    match device {
        Device::Cpu => Ok(builder),
        #[cfg(feature = "cuda")]
        Device::Cuda(id) => builder
            .with_execution_providers([ort::ep::CUDA::default().with_device_id(id).build().error_on_failure()])
            .map_err(|e| anyhow!("registering the CUDA execution provider on device {id}: {e}")),
        #[cfg(feature = "tensorrt")]
        Device::TensorRt(id) => builder
            .with_execution_providers([ort::ep::TensorRT::default().with_device_id(id).build().error_on_failure()])
            .map_err(|e| anyhow!("registering the TensorRT execution provider on device {id}: {e}")),
        #[allow(unreachable_patterns)]
        other => bail!(
            "device '{other}' needs a dfserve build with the matching cargo feature (--features cuda or tensorrt) and the onnxruntime-gpu library (scripts/setup.sh --gpu)"
        ),
    }
}

fn describe_outlets(outlets: &[ort::value::Outlet]) -> String {
    outlets
        .iter()
        .map(|o| match o.dtype() {
            ValueType::Tensor { ty, shape, .. } => format!("{} {:?} {}", o.name(), &shape[..], ty),
            other => format!("{} {other:?}", o.name()),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Holds the config against the session's real tensors: names, element type, rank and every
/// static dimension. The error names both sides so the fix is obvious.
pub fn check_io(session: &Session, cfg: &ModelConfig) -> anyhow::Result<()> {
    let inputs = session.inputs();
    let input = inputs.iter().find(|o| o.name() == cfg.input.name).with_context(|| {
        format!(
            "model '{}': config input '{}' is not in the ONNX file, whose inputs are: {}",
            cfg.name,
            cfg.input.name,
            describe_outlets(inputs)
        )
    })?;
    let want: Vec<i64> = std::iter::once(-1).chain(cfg.input.item_shape().iter().map(|d| *d as i64)).collect();
    match input.dtype() {
        ValueType::Tensor { ty, shape, .. } => {
            if *ty != ort::value::TensorElementType::Float32 {
                bail!(
                    "model '{}': input '{}' is {ty} in the ONNX file, the config expects float32",
                    cfg.name,
                    cfg.input.name
                );
            }
            let ok = shape.len() == want.len()
                && shape.iter().zip(&want).skip(1).all(|(have, want)| *have < 0 || have == want);
            if !ok {
                bail!(
                    "model '{}': input '{}' has shape {:?} in the ONNX file, but the config ({} {}x{}) implies {:?}",
                    cfg.name,
                    cfg.input.name,
                    &shape[..],
                    match cfg.input.layout {
                        Layout::NHWC => "NHWC",
                        Layout::NCHW => "NCHW",
                    },
                    cfg.input.width,
                    cfg.input.height,
                    want
                );
            }
        }
        other => bail!("model '{}': input '{}' is {other:?}, not a tensor", cfg.name, cfg.input.name),
    }
    let outputs = session.outputs();
    for name in cfg.output_names() {
        let out = outputs.iter().find(|o| o.name() == name).with_context(|| {
            format!(
                "model '{}': config output '{name}' is not in the ONNX file, whose outputs are: {}",
                cfg.name,
                describe_outlets(outputs)
            )
        })?;
        match out.dtype() {
            ValueType::Tensor { ty: ort::value::TensorElementType::Float32, .. } => {}
            other => bail!("model '{}': output '{name}' is {other:?}, the config expects a float32 tensor", cfg.name),
        }
    }
    Ok(())
}

impl Backend for OrtBackend {
    fn run(&mut self, input: &[f32], batch: usize, item_shape: &[usize]) -> anyhow::Result<Vec<OutputTensor>> {
        let shape: Vec<usize> = std::iter::once(batch).chain(item_shape.iter().copied()).collect();
        let tensor =
            TensorRef::from_array_view((shape, input)).map_err(|e| anyhow!("building the input tensor: {e}"))?;
        let outputs = self.session.run(ort::inputs![self.input_name.as_str() => tensor]).map_err(|e| anyhow!("{e}"))?;
        self.outputs
            .iter()
            .map(|TensorSpec { name, .. }| {
                let value = outputs.get(name).with_context(|| format!("output '{name}' missing from the run"))?;
                let (shape, data) = value.try_extract_tensor::<f32>().map_err(|e| anyhow!("output '{name}': {e}"))?;
                Ok(OutputTensor { shape: shape.iter().map(|d| *d as usize).collect(), data: data.to_vec() })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_devices() {
        assert_eq!("cpu".parse::<Device>(), Ok(Device::Cpu));
        assert_eq!("cuda".parse::<Device>(), Ok(Device::Cuda(0)));
        assert_eq!("cuda:1".parse::<Device>(), Ok(Device::Cuda(1)));
        assert_eq!("tensorrt:2".parse::<Device>(), Ok(Device::TensorRt(2)));
        assert!("cpu:1".parse::<Device>().is_err());
        assert!("gpu".parse::<Device>().is_err());
        assert!("cuda:x".parse::<Device>().is_err());
    }
}
