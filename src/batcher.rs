//! Dynamic batching: one bounded queue per model, drained by worker threads that each own a
//! [`Backend`] (an ORT session).
//!
//! A worker blocks for the first entry, then keeps taking entries until the batch holds
//! `max_batch_size` or `max_queue_delay` has passed since that first entry, whichever comes
//! first. Entries whose caller has gone (the HTTP client disconnected, so the reply receiver was
//! dropped) or whose deadline has passed are dropped before the model sees them. The queue is
//! bounded: `submit` fails at once with `QueueFull` rather than letting latency grow without
//! limit. Workers are OS threads, not tokio tasks, because `Session::run` blocks for the whole
//! inference.
//!
//! On CPU the best layout depends on load. Under load, one single-threaded session per core
//! wins: small models like MesoNet parallelise poorly inside one run, and an intra-op thread
//! that loses its core to image decoding stalls its partner at every op. Alone, a request is
//! fastest on one session that spreads each op over all cores. So a batcher may also hold one
//! *solo* session with more threads: a worker takes it only when its batch is a single entry,
//! nothing else is queued and no other worker is running, i.e. when the cores would otherwise
//! sit idle. Any worker may take it, so it costs one extra session per model, not one per worker.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TryRecvError, TrySendError};
use tokio::sync::oneshot;

use crate::error::CoreError;
use crate::metrics::Metrics;
use crate::runtime::Backend;
use crate::stats::ModelStats;

#[derive(Debug, Clone)]
pub struct BatcherConfig {
    pub max_batch_size: usize,
    pub max_queue_delay: Duration,
    pub max_queue_size: usize,
}

/// What one entry gets back: its own row of every output, plus where its time went.
#[derive(Debug)]
pub struct EntryOutput {
    /// One row per model output, in the order the backend returns them.
    pub rows: Vec<Vec<f32>>,
    /// Time from submission until its batch started running.
    pub queue: Duration,
    /// Duration of the batch's model run.
    pub inference: Duration,
    pub batch_size: usize,
}

struct Entry {
    input: Vec<f32>,
    enqueued: Instant,
    deadline: Instant,
    reply: oneshot::Sender<Result<EntryOutput, CoreError>>,
    /// Open from enqueueing until a worker takes the entry: the trace's `queue_wait`.
    queue_span: tracing::Span,
}

/// Handle to one model's queue. Cheap to clone; workers stop once every handle is dropped.
#[derive(Clone)]
pub struct Batcher {
    model: Arc<str>,
    tx: Sender<Entry>,
    item_len: usize,
    stats: Arc<ModelStats>,
}

impl Batcher {
    /// Starts one worker thread per backend. `item_shape` is one batch row's shape.
    /// `solo`, when given, is the session a lone entry runs on while every other worker is idle
    /// (see the module docs).
    pub fn spawn<B: Backend>(
        model: &str,
        backends: Vec<B>,
        solo: Option<B>,
        item_shape: Vec<usize>,
        config: BatcherConfig,
        metrics: Arc<Metrics>,
    ) -> Batcher {
        let (tx, rx) = crossbeam_channel::bounded::<Entry>(config.max_queue_size.max(1));
        let item_len = item_shape.iter().product();
        let stats = Arc::new(ModelStats::default());
        let solo = solo.map(|b| Arc::new(Mutex::new(b)));
        let running = Arc::new(AtomicUsize::new(0));
        for (i, backend) in backends.into_iter().enumerate() {
            let worker = Worker {
                model: model.to_string(),
                rx: rx.clone(),
                backend,
                solo: solo.clone(),
                running: running.clone(),
                item_shape: item_shape.clone(),
                config: config.clone(),
                metrics: metrics.clone(),
                stats: stats.clone(),
            };
            std::thread::Builder::new()
                .name(format!("dfserve-{model}-{i}"))
                .spawn(move || worker.run())
                .expect("spawning a batcher worker thread");
        }
        Batcher { model: model.into(), tx, item_len, stats }
    }

    /// Cumulative counters for the statistics extension.
    pub fn stats(&self) -> &ModelStats {
        &self.stats
    }

    /// Number of f32 values one entry must hold.
    pub fn item_len(&self) -> usize {
        self.item_len
    }

    /// Entries waiting in the queue now.
    pub fn queue_depth(&self) -> usize {
        self.tx.len()
    }

    /// Fails with `QueueFull` when the queue is full now. Callers check this before costly
    /// preprocessing, so overload is refused before the CPU is spent on work that would be
    /// refused anyway (the queue itself still enforces the bound on `infer`).
    pub fn check_capacity(&self) -> Result<(), CoreError> {
        if self.tx.is_full() {
            Err(CoreError::QueueFull(self.model.to_string()))
        } else {
            Ok(())
        }
    }

    /// Queues one row and waits for its result. Fails at once with `QueueFull` when the queue
    /// is at capacity. Dropping the returned future withdraws the entry: the worker sees the
    /// closed reply channel and skips it.
    pub async fn infer(&self, input: Vec<f32>, deadline: Instant) -> Result<EntryOutput, CoreError> {
        if input.len() != self.item_len {
            return Err(CoreError::BadRequest(format!(
                "model '{}' expects {} values per item, got {}",
                self.model,
                self.item_len,
                input.len()
            )));
        }
        let (reply, rx) = oneshot::channel();
        let enqueued = Instant::now();
        let queue_span = tracing::info_span!("queue_wait", model = %self.model);
        let entry = Entry { input, enqueued, deadline, reply, queue_span };
        match self.tx.try_send(entry) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => return Err(CoreError::QueueFull(self.model.to_string())),
            Err(TrySendError::Disconnected(_)) => {
                return Err(CoreError::Unavailable(format!("model '{}' has no running workers", self.model)))
            }
        }
        let result = rx
            .await
            .unwrap_or_else(|_| Err(CoreError::Inference(format!("worker for model '{}' stopped", self.model))));
        self.stats.record_request(result.is_ok(), enqueued.elapsed());
        result
    }
}

struct Worker<B> {
    model: String,
    rx: Receiver<Entry>,
    backend: B,
    solo: Option<Arc<Mutex<B>>>,
    /// Workers of this model inside a model run now.
    running: Arc<AtomicUsize>,
    item_shape: Vec<usize>,
    config: BatcherConfig,
    metrics: Arc<Metrics>,
    stats: Arc<ModelStats>,
}

impl<B: Backend> Worker<B> {
    fn run(mut self) {
        let mut input = Vec::new();
        let mut batch = Vec::with_capacity(self.config.max_batch_size);
        while let Some(()) = self.collect(&mut batch) {
            self.metrics.queue_depth.with_label_values(&[&self.model]).set(self.rx.len() as i64);
            let now = Instant::now();
            batch.retain(|e: &Entry| {
                if e.reply.is_closed() {
                    self.metrics.dropped_entries.with_label_values(&[&self.model, "cancelled"]).inc();
                    false
                } else {
                    true
                }
            });
            let (live, expired): (Vec<Entry>, Vec<Entry>) = batch.drain(..).partition(|e| e.deadline > now);
            for e in expired {
                self.metrics.dropped_entries.with_label_values(&[&self.model, "deadline"]).inc();
                let _ = e.reply.send(Err(CoreError::DeadlineExceeded(now - e.enqueued)));
            }
            if live.is_empty() {
                continue;
            }
            self.run_batch(live, &mut input);
        }
    }

    /// Blocks for the first entry, then fills the batch. Returns `None` once the queue is closed.
    fn collect(&self, batch: &mut Vec<Entry>) -> Option<()> {
        let first = self.rx.recv().ok()?;
        let close_at = Instant::now() + self.config.max_queue_delay;
        batch.push(first);
        while batch.len() < self.config.max_batch_size {
            match self.rx.try_recv() {
                Ok(e) => batch.push(e),
                Err(TryRecvError::Disconnected) => break,
                Err(TryRecvError::Empty) => match self.rx.recv_deadline(close_at) {
                    Ok(e) => batch.push(e),
                    Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => break,
                },
            }
        }
        Some(())
    }

    fn run_batch(&mut self, mut live: Vec<Entry>, input: &mut Vec<f32>) {
        let n = live.len();
        for e in &mut live {
            e.queue_span = tracing::Span::none();
        }
        // A batch of one runs straight from the entry's own row. Larger batches need one
        // contiguous tensor, so their rows are copied into the worker's reused buffer.
        let input: &[f32] = if n == 1 {
            &live[0].input
        } else {
            input.clear();
            for e in &live {
                input.extend_from_slice(&e.input);
            }
            input
        };
        let started = Instant::now();
        let others_running = self.running.fetch_add(1, Ordering::SeqCst);
        // The solo session, only when this entry is all the work there is (module docs). A
        // worker that starts meanwhile shares the cores for the rest of this one run.
        let solo = match &self.solo {
            Some(solo) if n == 1 && others_running == 0 && self.rx.is_empty() => solo.try_lock().ok(),
            _ => None,
        };
        let result = match solo {
            Some(mut solo) => {
                self.metrics.solo_runs.with_label_values(&[&self.model]).inc();
                solo.run(input, n, &self.item_shape)
            }
            None => self.backend.run(input, n, &self.item_shape),
        };
        self.running.fetch_sub(1, Ordering::SeqCst);
        let inference = started.elapsed();
        let m = &self.metrics;
        m.batch_size.with_label_values(&[&self.model]).observe(n as f64);
        m.inference_seconds.with_label_values(&[&self.model]).observe(inference.as_secs_f64());
        self.stats.record_execution(n, inference);
        match result {
            Ok(outputs) => {
                if let Some(bad) = outputs.iter().find(|o| o.shape.first() != Some(&n)) {
                    let msg = format!(
                        "model '{}' returned an output of shape {:?} for a batch of {n}",
                        self.model, bad.shape
                    );
                    tracing::error!(model = %self.model, "{msg}");
                    for e in live {
                        let _ = e.reply.send(Err(CoreError::Inference(msg.clone())));
                    }
                    return;
                }
                for (i, e) in live.into_iter().enumerate() {
                    let queue = started.saturating_duration_since(e.enqueued);
                    m.queue_seconds.with_label_values(&[&self.model]).observe(queue.as_secs_f64());
                    self.stats.record_queue(queue);
                    let rows = outputs
                        .iter()
                        .map(|o| {
                            let len = o.row_len();
                            o.data[i * len..(i + 1) * len].to_vec()
                        })
                        .collect();
                    let _ = e.reply.send(Ok(EntryOutput { rows, queue, inference, batch_size: n }));
                }
            }
            Err(err) => {
                tracing::error!(model = %self.model, batch = n, error = %format!("{err:#}"), "inference failed");
                m.inference_errors.with_label_values(&[&self.model]).inc();
                for e in live {
                    let _ = e.reply.send(Err(CoreError::Inference(format!("{err:#}"))));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::OutputTensor;
    use std::sync::Mutex;

    /// Doubles every value and records the batch sizes it was given; optionally slow, and
    /// optionally failing, so queueing and error paths can be observed.
    struct Doubler {
        sizes: Arc<Mutex<Vec<usize>>>,
        delay: Duration,
        fail: bool,
    }

    impl Backend for Doubler {
        fn run(&mut self, input: &[f32], batch: usize, _item: &[usize]) -> anyhow::Result<Vec<OutputTensor>> {
            std::thread::sleep(self.delay);
            self.sizes.lock().unwrap().push(batch);
            if self.fail {
                anyhow::bail!("boom");
            }
            Ok(vec![OutputTensor {
                shape: vec![batch, input.len() / batch],
                data: input.iter().map(|v| v * 2.0).collect(),
            }])
        }
    }

    fn spawn(
        delay_ms: u64,
        queue_delay_ms: u64,
        max_batch: usize,
        queue: usize,
        fail: bool,
    ) -> (Batcher, Arc<Mutex<Vec<usize>>>) {
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let backend = Doubler { sizes: sizes.clone(), delay: Duration::from_millis(delay_ms), fail };
        let cfg = BatcherConfig {
            max_batch_size: max_batch,
            max_queue_delay: Duration::from_millis(queue_delay_ms),
            max_queue_size: queue,
        };
        (Batcher::spawn("t", vec![backend], None, vec![2], cfg, Arc::new(Metrics::new())), sizes)
    }

    fn far() -> Instant {
        Instant::now() + Duration::from_secs(30)
    }

    #[tokio::test]
    async fn concurrent_entries_share_a_batch_and_get_their_own_rows() {
        let (b, sizes) = spawn(0, 200, 8, 64, false);
        let futs = (0..5).map(|i| b.infer(vec![i as f32, 10.0 + i as f32], far()));
        let outs = futures::future::join_all(futs).await;
        for (i, o) in outs.into_iter().enumerate() {
            let o = o.unwrap();
            assert_eq!(o.rows, vec![vec![2.0 * i as f32, 2.0 * (10.0 + i as f32)]]);
        }
        assert_eq!(*sizes.lock().unwrap(), vec![5], "all five should run as one batch within the delay");
    }

    #[tokio::test]
    async fn batch_closes_at_max_batch_size() {
        let (b, sizes) = spawn(0, 500, 4, 64, false);
        let futs = (0..10).map(|i| b.infer(vec![i as f32, 0.0], far()));
        let outs = futures::future::join_all(futs).await;
        assert!(outs.iter().all(|o| o.is_ok()));
        let sizes = sizes.lock().unwrap().clone();
        assert!(sizes.iter().all(|s| *s <= 4), "{sizes:?}");
        assert_eq!(sizes.iter().sum::<usize>(), 10);
        assert_eq!(sizes[0], 4, "{sizes:?}");
    }

    #[tokio::test]
    async fn zero_delay_does_not_wait_for_more() {
        let (b, sizes) = spawn(0, 0, 8, 64, false);
        b.infer(vec![1.0, 2.0], far()).await.unwrap();
        b.infer(vec![1.0, 2.0], far()).await.unwrap();
        assert_eq!(*sizes.lock().unwrap(), vec![1, 1]);
    }

    #[tokio::test]
    async fn full_queue_rejects_at_once() {
        // One slow worker and a queue of 2: the first entry is taken by the worker, two wait,
        // and the rest must be refused immediately.
        let (b, _) = spawn(300, 0, 1, 2, false);
        let started = Instant::now();
        let futs: Vec<_> = (0..8)
            .map(|_| {
                let b = b.clone();
                tokio::spawn(async move { b.infer(vec![0.0, 0.0], far()).await })
            })
            .collect();
        let mut full = 0;
        let mut ok = 0;
        for f in futs {
            match f.await.unwrap() {
                Ok(_) => ok += 1,
                Err(CoreError::QueueFull(_)) => full += 1,
                Err(e) => panic!("unexpected {e}"),
            }
        }
        assert!(full >= 4, "ok={ok} full={full}");
        assert!(ok >= 2, "ok={ok} full={full}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn expired_and_cancelled_entries_never_reach_the_model() {
        let (b, sizes) = spawn(200, 0, 1, 16, false);
        // Occupy the worker.
        let busy = tokio::spawn({
            let b = b.clone();
            async move { b.infer(vec![0.0, 0.0], far()).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        // This one expires while queued.
        let expired = b.infer(vec![1.0, 1.0], Instant::now() + Duration::from_millis(10));
        // This one is abandoned by its caller.
        let cancelled = tokio::time::timeout(Duration::from_millis(10), b.infer(vec![2.0, 2.0], far()));
        let (e, c) = tokio::join!(expired, cancelled);
        assert!(matches!(e, Err(CoreError::DeadlineExceeded(_))), "{e:?}");
        assert!(c.is_err(), "the timeout should have fired");
        busy.await.unwrap().unwrap();
        b.infer(vec![3.0, 3.0], far()).await.unwrap();
        assert_eq!(*sizes.lock().unwrap(), vec![1, 1], "only the busy and the last entry may run");
    }

    #[tokio::test]
    async fn backend_error_fails_only_that_batch() {
        let (b, _) = spawn(0, 0, 4, 16, true);
        let err = b.infer(vec![0.0, 0.0], far()).await.unwrap_err();
        assert!(matches!(err, CoreError::Inference(ref m) if m.contains("boom")), "{err}");
        // The worker is still alive.
        assert!(b.infer(vec![0.0, 0.0], far()).await.is_err());
    }

    /// Records which session ran each batch.
    struct Tagged {
        tag: &'static str,
        log: Arc<Mutex<Vec<&'static str>>>,
        delay: Duration,
    }

    impl Backend for Tagged {
        fn run(&mut self, input: &[f32], batch: usize, _item: &[usize]) -> anyhow::Result<Vec<OutputTensor>> {
            std::thread::sleep(self.delay);
            self.log.lock().unwrap().push(self.tag);
            Ok(vec![OutputTensor { shape: vec![batch, input.len() / batch], data: input.to_vec() }])
        }
    }

    #[tokio::test]
    async fn solo_session_runs_lone_entries_and_workers_share_load() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let tagged = |tag| Tagged { tag, log: log.clone(), delay: Duration::from_millis(30) };
        let cfg = BatcherConfig { max_batch_size: 1, max_queue_delay: Duration::ZERO, max_queue_size: 64 };
        let b = Batcher::spawn(
            "t",
            vec![tagged("worker"), tagged("worker")],
            Some(tagged("solo")),
            vec![2],
            cfg,
            Arc::new(Metrics::new()),
        );
        // One request at a time: every run takes the solo session.
        for _ in 0..3 {
            b.infer(vec![1.0, 2.0], far()).await.unwrap();
        }
        assert_eq!(*log.lock().unwrap(), vec!["solo"; 3]);
        log.lock().unwrap().clear();
        // Eight at once: the queue is never empty until the last, so the workers' own
        // single-thread sessions take (nearly) all of them, two at a time.
        let started = Instant::now();
        let outs = futures::future::join_all((0..8).map(|i| b.infer(vec![i as f32, 0.0], far()))).await;
        for (i, o) in outs.into_iter().enumerate() {
            assert_eq!(o.unwrap().rows[0], vec![i as f32, 0.0]);
        }
        let log = log.lock().unwrap().clone();
        assert_eq!(log.len(), 8);
        assert!(log.iter().filter(|t| **t == "worker").count() >= 6, "{log:?}");
        assert!(
            started.elapsed() < Duration::from_millis(8 * 30),
            "two workers should overlap: {:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn wrong_input_length_is_a_bad_request() {
        let (b, _) = spawn(0, 0, 4, 16, false);
        assert!(matches!(b.infer(vec![0.0], far()).await, Err(CoreError::BadRequest(_))));
    }
}
