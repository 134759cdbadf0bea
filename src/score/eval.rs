//! Detection metrics for labelled data. "Positive" means manipulated (fake).
//!
//! Definitions follow scikit-learn so figures are comparable with papers and notebooks:
//! ROC-AUC is the Mann-Whitney statistic with ties counted as half; average precision is
//! `sum_n (R_n - R_{n-1}) P_n` over the distinct score thresholds, highest first; the equal
//! error rate is taken at the ROC point where the false positive and false negative rates are
//! closest, as their mean.

use serde::Serialize;

#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Confusion {
    pub tp: u64,
    pub fp: u64,
    pub tn: u64,
    #[serde(rename = "fn")]
    pub fn_: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub threshold: f32,
    pub count: usize,
    pub fake: usize,
    pub real: usize,
    pub confusion: Confusion,
    pub accuracy: f64,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    /// Null when only one class is present.
    pub roc_auc: Option<f64>,
    pub average_precision: Option<f64>,
    pub eer: Option<f64>,
    pub eer_threshold: Option<f32>,
}

/// One ROC point per distinct threshold, from "nothing flagged" to "everything flagged".
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct RocPoint {
    pub threshold: f32,
    pub fpr: f64,
    pub tpr: f64,
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

/// `samples`: (score, is_fake).
pub fn summarize(samples: &[(f32, bool)], threshold: f32) -> Summary {
    let mut c = Confusion::default();
    for &(s, fake) in samples {
        match (s >= threshold, fake) {
            (true, true) => c.tp += 1,
            (true, false) => c.fp += 1,
            (false, false) => c.tn += 1,
            (false, true) => c.fn_ += 1,
        }
    }
    let fake = samples.iter().filter(|s| s.1).count();
    let real = samples.len() - fake;
    let precision = ratio(c.tp, c.tp + c.fp);
    let recall = ratio(c.tp, c.tp + c.fn_);
    let f1 = if precision + recall == 0.0 { 0.0 } else { 2.0 * precision * recall / (precision + recall) };
    let both = fake > 0 && real > 0;
    let (eer, eer_threshold) = if both { equal_error_rate(&roc_curve(samples)) } else { (None, None) };
    Summary {
        threshold,
        count: samples.len(),
        fake,
        real,
        confusion: c,
        accuracy: ratio(c.tp + c.tn, samples.len() as u64),
        precision,
        recall,
        f1,
        roc_auc: both.then(|| roc_auc(samples)),
        average_precision: (fake > 0).then(|| average_precision(samples)),
        eer,
        eer_threshold,
    }
}

/// Mann-Whitney U / (n_fake * n_real), ties between a fake and a real score count 1/2.
pub fn roc_auc(samples: &[(f32, bool)]) -> f64 {
    let mut sorted: Vec<(f32, bool)> = samples.to_vec();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
    // Average ranks over tied groups.
    let mut rank_sum_fake = 0.0;
    let mut i = 0;
    while i < sorted.len() {
        let mut j = i;
        while j + 1 < sorted.len() && sorted[j + 1].0 == sorted[i].0 {
            j += 1;
        }
        let avg_rank = (i + j) as f64 / 2.0 + 1.0;
        rank_sum_fake += avg_rank * sorted[i..=j].iter().filter(|s| s.1).count() as f64;
        i = j + 1;
    }
    let n_fake = samples.iter().filter(|s| s.1).count() as f64;
    let n_real = samples.len() as f64 - n_fake;
    (rank_sum_fake - n_fake * (n_fake + 1.0) / 2.0) / (n_fake * n_real)
}

/// Groups by distinct score, highest first: (score, fakes, reals) per group.
fn groups(samples: &[(f32, bool)]) -> Vec<(f32, u64, u64)> {
    let mut sorted: Vec<(f32, bool)> = samples.to_vec();
    sorted.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut out: Vec<(f32, u64, u64)> = Vec::new();
    for (s, fake) in sorted {
        match out.last_mut() {
            Some(g) if g.0 == s => {
                if fake {
                    g.1 += 1
                } else {
                    g.2 += 1
                }
            }
            _ => out.push((s, fake as u64, (!fake) as u64)),
        }
    }
    out
}

pub fn average_precision(samples: &[(f32, bool)]) -> f64 {
    let total_fake = samples.iter().filter(|s| s.1).count() as u64;
    let (mut tp, mut fp, mut prev_recall, mut ap) = (0u64, 0u64, 0.0, 0.0);
    for (_, f, r) in groups(samples) {
        tp += f;
        fp += r;
        let recall = ratio(tp, total_fake);
        ap += (recall - prev_recall) * ratio(tp, tp + fp);
        prev_recall = recall;
    }
    ap
}

pub fn roc_curve(samples: &[(f32, bool)]) -> Vec<RocPoint> {
    let n_fake = samples.iter().filter(|s| s.1).count() as u64;
    let n_real = samples.len() as u64 - n_fake;
    let mut points = vec![RocPoint { threshold: f32::INFINITY, fpr: 0.0, tpr: 0.0 }];
    let (mut tp, mut fp) = (0u64, 0u64);
    for (s, f, r) in groups(samples) {
        tp += f;
        fp += r;
        points.push(RocPoint { threshold: s, fpr: ratio(fp, n_real), tpr: ratio(tp, n_fake) });
    }
    points
}

fn equal_error_rate(roc: &[RocPoint]) -> (Option<f64>, Option<f32>) {
    roc.iter()
        .filter(|p| p.threshold.is_finite())
        .min_by(|a, b| ((a.fpr - (1.0 - a.tpr)).abs()).total_cmp(&(b.fpr - (1.0 - b.tpr)).abs()))
        .map(|p| (Some((p.fpr + (1.0 - p.tpr)) / 2.0), Some(p.threshold)))
        .unwrap_or((None, None))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Values checked by hand (and against scikit-learn 1.x by the Python tests).
    const S: [(f32, bool); 6] = [(0.9, true), (0.8, false), (0.7, true), (0.4, true), (0.3, false), (0.1, false)];

    #[test]
    fn auc_counts_ordered_pairs() {
        // Fake>real pairs: 0.9 beats 3, 0.7 beats 2, 0.4 beats 2 -> 7 of 9.
        assert!((roc_auc(&S) - 7.0 / 9.0).abs() < 1e-12);
        // A tie counts half.
        assert!((roc_auc(&[(0.5, true), (0.5, false)]) - 0.5).abs() < 1e-12);
        assert_eq!(roc_auc(&[(0.9, true), (0.1, false)]), 1.0);
    }

    #[test]
    fn average_precision_by_hand() {
        // Thresholds 0.9: P=1 R=1/3; 0.8: -; 0.7: P=2/3 R=2/3; 0.4: P=3/4 R=1.
        let want = (1.0 / 3.0) * 1.0 + (1.0 / 3.0) * (2.0 / 3.0) + (1.0 / 3.0) * 0.75;
        assert!((average_precision(&S) - want).abs() < 1e-12);
    }

    #[test]
    fn threshold_metrics_and_eer() {
        let s = summarize(&S, 0.5);
        assert_eq!(s.confusion, Confusion { tp: 2, fp: 1, tn: 2, fn_: 1 });
        assert!((s.accuracy - 4.0 / 6.0).abs() < 1e-12);
        assert!((s.precision - 2.0 / 3.0).abs() < 1e-12 && (s.recall - 2.0 / 3.0).abs() < 1e-12);
        assert!((s.f1 - 2.0 / 3.0).abs() < 1e-12);
        // At threshold 0.7: FPR 1/3, FNR 1/3.
        assert!((s.eer.unwrap() - 1.0 / 3.0).abs() < 1e-12, "{:?}", s.eer);
        assert_eq!(s.eer_threshold, Some(0.7));
        let one_class = summarize(&[(0.2, false)], 0.5);
        assert_eq!(one_class.roc_auc, None);
        assert_eq!(one_class.eer, None);
    }
}
