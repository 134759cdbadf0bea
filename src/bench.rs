//! `dfserve bench-model`: raw ONNX Runtime throughput of one model, the ceiling every serving
//! path is compared against. Random input, no image work, no queue: just `Session::run`.

use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;

use crate::config::BenchModelArgs;
use crate::runtime::{Backend, OrtBackend};

#[derive(Debug, Serialize)]
pub struct BenchRow {
    pub model: String,
    pub batch_size: usize,
    pub runs: usize,
    pub images_per_s: f64,
    pub p50_ms_per_batch: f64,
    pub p99_ms_per_batch: f64,
}

pub fn run(args: &BenchModelArgs) -> anyhow::Result<Vec<BenchRow>> {
    let env = crate::runtime::init_environment(&args.runtime.ort_lib)?;
    let configs = crate::models::load_dir(&args.runtime.model_dir)?;
    let cfg = configs
        .get(&args.model)
        .with_context(|| format!("no config for model '{}' in {}", args.model, args.runtime.model_dir.display()))?;
    let path = args.runtime.model_dir.join(&cfg.file);
    let mut backend = OrtBackend::load(&env, &path, cfg, &args.runtime.session())?;
    let item_shape = cfg.input.item_shape();
    let item_len = cfg.input.item_len();
    let mut rows = Vec::new();
    // A fixed pseudo-random fill, so runs are comparable.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let max_batch = args.batch_sizes.iter().copied().max().unwrap_or(1);
    let input: Vec<f32> = (0..item_len * max_batch)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 24) as f32
        })
        .collect();
    for &bs in &args.batch_sizes {
        let data = &input[..item_len * bs];
        backend.run(data, bs, &item_shape)?; // warm-up
        let mut times = Vec::new();
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs_f64(args.seconds) || times.len() < 3 {
            let t = Instant::now();
            backend.run(data, bs, &item_shape)?;
            times.push(t.elapsed().as_secs_f64());
        }
        let total: f64 = times.iter().sum();
        times.sort_by(f64::total_cmp);
        let pct = |p: f64| times[((times.len() - 1) as f64 * p).round() as usize] * 1e3;
        rows.push(BenchRow {
            model: args.model.clone(),
            batch_size: bs,
            runs: times.len(),
            images_per_s: (bs * times.len()) as f64 / total,
            p50_ms_per_batch: pct(0.5),
            p99_ms_per_batch: pct(0.99),
        });
    }
    Ok(rows)
}
