//! Calibration: Platt scaling fitted on a labelled set, and the measures of how well scores
//! match frequencies (reliability bins, expected calibration error, Brier score).
//!
//! Why Platt on the logit of the raw score: two parameters (a slope and a shift) are all a few
//! hundred labelled faces can pin down. Temperature scaling has only the slope and cannot move
//! the decision point, which MesoNet needs (the mean ensemble puts most fakes below 0.5).
//! Isotonic regression fits any increasing step function: with 160 items it overfits and its
//! flat steps tie scores that ranked apart before. The fit uses Platt's smoothed targets
//! (`(N+ + 1) / (N+ + 2)` and `1 / (N- + 2)`), so a separable set still gives finite values.

use std::io::Write;
use std::path::Path;

use anyhow::{bail, Context};
use serde::Serialize;

use crate::models::scoring::{logit, sigmoid, Calibration, CalibrationMethod};

/// Fits `p = sigmoid(a * logit(raw) + b)` to `(raw score, is_fake)` pairs by Newton's method
/// with a backtracking line search. Returns `(a, b)`.
pub fn fit_platt(samples: &[(f32, bool)]) -> (f64, f64) {
    let pos = samples.iter().filter(|(_, y)| *y).count() as f64;
    let neg = samples.len() as f64 - pos;
    let (hi, lo) = ((pos + 1.0) / (pos + 2.0), 1.0 / (neg + 2.0));
    let data: Vec<(f64, f64)> = samples.iter().map(|(s, y)| (logit(*s as f64), if *y { hi } else { lo })).collect();
    let loss = |a: f64, b: f64| -> f64 {
        data.iter()
            .map(|(x, t)| {
                let z = a * x + b;
                // log(1 + e^z) - t z, computed without overflow.
                let softplus = if z > 0.0 { z + (-z).exp().ln_1p() } else { z.exp().ln_1p() };
                softplus - t * z
            })
            .sum()
    };
    let (mut a, mut b) = (1.0, 0.0);
    let mut current = loss(a, b);
    for _ in 0..200 {
        let (mut ga, mut gb, mut haa, mut hab, mut hbb) = (0.0, 0.0, 1e-12, 0.0, 1e-12);
        for (x, t) in &data {
            let p = sigmoid(a * x + b);
            let (d, w) = (p - t, p * (1.0 - p));
            ga += d * x;
            gb += d;
            haa += w * x * x;
            hab += w * x;
            hbb += w;
        }
        if ga.abs() < 1e-10 && gb.abs() < 1e-10 {
            break;
        }
        let det = haa * hbb - hab * hab;
        let (da, db) =
            if det.abs() > 1e-300 { (-(hbb * ga - hab * gb) / det, -(haa * gb - hab * ga) / det) } else { (-ga, -gb) };
        let mut step = 1.0;
        loop {
            let (na, nb) = (a + step * da, b + step * db);
            let l = loss(na, nb);
            if l <= current + 1e-4 * step * (ga * da + gb * db) {
                (a, b, current) = (na, nb, l);
                break;
            }
            step /= 2.0;
            if step < 1e-10 {
                return (a, b);
            }
        }
    }
    (a, b)
}

/// One bin of a reliability diagram.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Bin {
    pub lower: f64,
    pub upper: f64,
    pub count: usize,
    /// Mean predicted probability in the bin.
    pub mean_predicted: f64,
    /// Fraction of fakes in the bin.
    pub fraction_fake: f64,
}

/// How well probabilities match frequencies.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Quality {
    pub brier: f64,
    /// Expected calibration error over the bins: sum of `count / n * |fraction_fake -
    /// mean_predicted|`.
    pub ece: f64,
    /// Non-empty bins of 10 equal-width bins on [0, 1] (the same binning as scikit-learn's
    /// `calibration_curve(strategy="uniform")`).
    pub bins: Vec<Bin>,
}

pub fn quality(samples: &[(f32, bool)]) -> Quality {
    const BINS: usize = 10;
    let n = samples.len().max(1) as f64;
    let brier = samples.iter().map(|(p, y)| (*p as f64 - if *y { 1.0 } else { 0.0 }).powi(2)).sum::<f64>() / n;
    let mut sums = [(0usize, 0.0f64, 0.0f64); BINS];
    for (p, y) in samples {
        let p = *p as f64;
        // Inner edges k/10 for k = 1..9; a value on an edge goes to the lower bin.
        let bin = (1..BINS).filter(|k| (*k as f64) * 0.1 < p).count();
        let s = &mut sums[bin];
        s.0 += 1;
        s.1 += p;
        s.2 += if *y { 1.0 } else { 0.0 };
    }
    let bins: Vec<Bin> = sums
        .iter()
        .enumerate()
        .filter(|(_, s)| s.0 > 0)
        .map(|(i, s)| Bin {
            lower: i as f64 / BINS as f64,
            upper: (i + 1) as f64 / BINS as f64,
            count: s.0,
            mean_predicted: s.1 / s.0 as f64,
            fraction_fake: s.2 / s.0 as f64,
        })
        .collect();
    let ece = bins.iter().map(|b| b.count as f64 / n * (b.fraction_fake - b.mean_predicted).abs()).sum();
    Quality { brier, ece, bins }
}

/// A fitted calibration and what it changes.
#[derive(Debug, Clone, Serialize)]
pub struct Fit {
    pub model: String,
    pub calibration: Calibration,
    pub fakes: usize,
    pub reals: usize,
    pub before: Quality,
    pub after: Quality,
}

/// Fits a calibration for `model` on `(uncalibrated score, is_fake)` pairs.
pub fn fit(model: &str, samples: &[(f32, bool)], fitted_on: &str) -> anyhow::Result<Fit> {
    let fakes = samples.iter().filter(|(_, y)| *y).count();
    let reals = samples.len() - fakes;
    if fakes < 2 || reals < 2 {
        bail!("calibrating '{model}' needs labelled fakes and reals with scores; have {fakes} fakes and {reals} reals");
    }
    let (a, b) = fit_platt(samples);
    let calibration =
        Calibration { method: CalibrationMethod::Platt, a, b, samples: samples.len(), fitted_on: fitted_on.into() };
    let after: Vec<(f32, bool)> = samples.iter().map(|(s, y)| (calibration.apply(*s), *y)).collect();
    Ok(Fit { model: model.into(), fakes, reals, before: quality(samples), after: quality(&after), calibration })
}

pub fn print(out: &mut dyn Write, fit: &Fit) -> std::io::Result<()> {
    let c = &fit.calibration;
    writeln!(out, "== calibration of {} on {} fakes and {} reals", fit.model, fit.fakes, fit.reals)?;
    writeln!(out, "   Platt: p = sigmoid({:.6} * logit(score) + {:.6})", c.a, c.b)?;
    writeln!(
        out,
        "   Brier {:.4} -> {:.4}   ECE {:.4} -> {:.4}",
        fit.before.brier, fit.after.brier, fit.before.ece, fit.after.ece
    )?;
    writeln!(out, "   reliability (after): bin, count, mean predicted, fraction fake")?;
    for b in &fit.after.bins {
        writeln!(
            out,
            "     [{:.1}, {:.1}]  {:>6}  {:.3}  {:.3}",
            b.lower, b.upper, b.count, b.mean_predicted, b.fraction_fake
        )?;
    }
    Ok(())
}

/// Writes the calibration into the config of its model (or ensemble) in `model_dir`.
pub fn write(model_dir: &Path, fit: &Fit) -> anyhow::Result<std::path::PathBuf> {
    let dir = crate::models::read_dir(model_dir)?;
    let path = match (dir.models.get(&fit.model), dir.ensembles.get(&fit.model)) {
        (Some(m), _) => m.config_path.clone(),
        (None, Some(e)) => e.config_path.clone(),
        (None, None) => bail!("no config for '{}' in {}", fit.model, model_dir.display()),
    };
    crate::models::scoring::write_calibration(&path, &fit.calibration)
        .with_context(|| format!("writing the calibration of '{}'", fit.model))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic generator (xorshift), so the test needs no RNG crate.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> f64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 >> 11) as f64 / (1u64 << 53) as f64
        }
    }

    #[test]
    fn platt_recovers_known_parameters() {
        // Scores whose true probability of being fake is sigmoid(2.0 * logit(s) - 1.0).
        let (a, b) = (2.0, -1.0);
        let mut rng = Rng(0x9e3779b97f4a7c15);
        let samples: Vec<(f32, bool)> = (0..50_000)
            .map(|_| {
                let s = (0.02 + 0.96 * rng.next()) as f32;
                let p = sigmoid(a * logit(s as f64) + b);
                (s, rng.next() < p)
            })
            .collect();
        let (fa, fb) = fit_platt(&samples);
        assert!((fa - a).abs() < 0.05 && (fb - b).abs() < 0.05, "fitted a={fa} b={fb}");
        let fit = fit("m", &samples, "synthetic").unwrap();
        assert!(fit.after.ece < fit.before.ece, "{} vs {}", fit.after.ece, fit.before.ece);
        assert!(fit.after.ece < 0.01);
    }

    #[test]
    fn brier_ece_and_bins_by_hand() {
        let q = quality(&[(0.05, false), (0.15, true), (0.15, false), (0.95, true)]);
        // Brier: (0.0025 + 0.7225 + 0.0225 + 0.0025) / 4
        assert!((q.brier - 0.1875).abs() < 1e-6);
        assert_eq!(q.bins.len(), 3);
        assert_eq!((q.bins[1].count, q.bins[1].fraction_fake), (2, 0.5));
        // ECE: 1/4 * 0.05 + 2/4 * 0.35 + 1/4 * 0.05
        assert!((q.ece - 0.2).abs() < 1e-6, "{}", q.ece);
    }

    #[test]
    fn too_few_labels_is_an_error_that_says_so() {
        let err = fit("m", &[(0.3, true), (0.4, false)], "x").unwrap_err();
        assert!(err.to_string().contains("1 fakes and 1 reals"));
    }
}
