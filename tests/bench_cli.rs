//! The in-process baselines the benchmark suite compares against: `bench-model` and
//! `bench-pipeline` must run and report sane figures.

mod common;

use std::process::Command;

use common::{root, samples};
use serde_json::Value;

fn run(args: &[&str]) -> Vec<Value> {
    let out = Command::new(env!("CARGO_BIN_EXE_dfserve")).current_dir(root()).args(args).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn bench_model_runs_sessions_side_by_side() {
    let rows = run(&["bench-model", "--instances", "2", "--batch-sizes", "1,2", "--seconds", "0.2", "--json"]);
    assert_eq!(rows.len(), 2);
    for (row, bs) in rows.iter().zip([1, 2]) {
        assert_eq!(row["instances"], 2);
        assert_eq!(row["batch_size"], bs);
        assert!(row["runs"].as_u64().unwrap() >= 6, "{row}");
        assert!(row["images_per_s"].as_f64().unwrap() > 0.0, "{row}");
    }
}

#[test]
fn bench_pipeline_times_every_stage() {
    let s = samples().join("mesonet");
    let images = ["df/df00204.jpg", "real/real00240.jpg"].map(|p| s.join(p).display().to_string()).join(",");
    let whole = &run(&["bench-pipeline", "--mode", "whole", "--images", &images, "--seconds", "0.2", "--json"])[0];
    assert_eq!(whole["faces_per_image"], 1.0);
    assert!(whole["runs"].as_u64().unwrap() >= 2);
    let stages = whole["stages_ms"].as_object().unwrap();
    assert_eq!(stages.keys().collect::<Vec<_>>(), ["classify", "crop", "decode"]);
    assert!(stages.values().all(|v| v.as_f64().unwrap() > 0.0), "{whole}");
    assert!(whole["p50_ms"].as_f64().unwrap() >= stages.values().map(|v| v.as_f64().unwrap()).sum::<f64>() * 0.5);
    let faces = &run(&["bench-pipeline", "--mode", "faces", "--images", &images, "--seconds", "0.2", "--json"])[0];
    assert!(faces["stages_ms"]["detect"].as_f64().unwrap() > 0.0, "{faces}");
}
