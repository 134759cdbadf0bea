//! Per-model counters in the shape of Triton's statistics extension (`/v2/models/{m}/stats`,
//! gRPC `ModelStatistics`), which load tools such as perf_analyzer read. Prometheus metrics
//! carry the same facts as histograms; these are plain cumulative totals.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

#[derive(Default)]
struct Total {
    count: AtomicU64,
    ns: AtomicU64,
}

impl Total {
    fn add(&self, d: Duration) {
        self.count.fetch_add(1, Ordering::Relaxed);
        self.ns.fetch_add(d.as_nanos() as u64, Ordering::Relaxed);
    }
    fn snapshot(&self) -> Duration2 {
        Duration2 { count: self.count.load(Ordering::Relaxed), ns: self.ns.load(Ordering::Relaxed) }
    }
}

/// Count and total nanoseconds, as Triton's `StatisticDuration`.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct Duration2 {
    pub count: u64,
    pub ns: u64,
}

#[derive(Default)]
pub struct ModelStats {
    inference_count: AtomicU64,
    execution_count: AtomicU64,
    last_inference_ms: AtomicU64,
    success: Total,
    fail: Total,
    queue: Total,
    compute_infer: Total,
    /// batch size -> (executions, total compute ns)
    batches: Mutex<BTreeMap<u64, (u64, u64)>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct BatchStats {
    pub batch_size: u64,
    pub compute_infer: Duration2,
}

#[derive(Debug, Clone, Serialize)]
pub struct StatsSnapshot {
    pub last_inference: u64,
    pub inference_count: u64,
    pub execution_count: u64,
    pub success: Duration2,
    pub fail: Duration2,
    pub queue: Duration2,
    pub compute_infer: Duration2,
    pub batch_stats: Vec<BatchStats>,
}

impl ModelStats {
    /// One model run of `batch` entries that took `compute`.
    pub fn record_execution(&self, batch: usize, compute: Duration) {
        self.execution_count.fetch_add(1, Ordering::Relaxed);
        self.inference_count.fetch_add(batch as u64, Ordering::Relaxed);
        self.compute_infer.add(compute);
        let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as u64;
        self.last_inference_ms.store(now_ms, Ordering::Relaxed);
        let mut b = self.batches.lock().unwrap_or_else(|e| e.into_inner());
        let e = b.entry(batch as u64).or_default();
        e.0 += 1;
        e.1 += compute.as_nanos() as u64;
    }

    pub fn record_queue(&self, waited: Duration) {
        self.queue.add(waited);
    }

    /// One request (or batch entry) finished, successfully or not, after `total`.
    pub fn record_request(&self, ok: bool, total: Duration) {
        if ok {
            self.success.add(total)
        } else {
            self.fail.add(total)
        }
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        let batches = self.batches.lock().unwrap_or_else(|e| e.into_inner());
        StatsSnapshot {
            last_inference: self.last_inference_ms.load(Ordering::Relaxed),
            inference_count: self.inference_count.load(Ordering::Relaxed),
            execution_count: self.execution_count.load(Ordering::Relaxed),
            success: self.success.snapshot(),
            fail: self.fail.snapshot(),
            queue: self.queue.snapshot(),
            compute_infer: self.compute_infer.snapshot(),
            batch_stats: batches
                .iter()
                .map(|(bs, (count, ns))| BatchStats {
                    batch_size: *bs,
                    compute_infer: Duration2 { count: *count, ns: *ns },
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_accumulate() {
        let s = ModelStats::default();
        s.record_execution(4, Duration::from_millis(2));
        s.record_execution(4, Duration::from_millis(4));
        s.record_execution(1, Duration::from_millis(1));
        s.record_request(true, Duration::from_millis(10));
        s.record_request(false, Duration::from_millis(5));
        let snap = s.snapshot();
        assert_eq!(snap.inference_count, 9);
        assert_eq!(snap.execution_count, 3);
        assert_eq!(snap.compute_infer, Duration2 { count: 3, ns: 7_000_000 });
        assert_eq!(snap.success.count, 1);
        assert_eq!(snap.fail, Duration2 { count: 1, ns: 5_000_000 });
        assert_eq!(snap.batch_stats.len(), 2);
        assert_eq!(snap.batch_stats[1].batch_size, 4);
        assert_eq!(snap.batch_stats[1].compute_infer, Duration2 { count: 2, ns: 6_000_000 });
        assert!(snap.last_inference > 0);
    }
}
