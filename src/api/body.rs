//! Request bodies within a budget, for both front ends: a server-wide cap on body bytes held in
//! memory, and a total deadline for receiving one body.
//!
//! Why: `--max-body-bytes` bounds one request, not a thousand of them. Every body is buffered
//! whole before work starts (images, videos, tensors), so without a shared cap the resident
//! memory grows with the number of clients uploading at once, and a client that trickles a
//! body in just fast enough to dodge the idle timeout holds its buffer for as long as it likes.
//! Here each data frame draws its size from one semaphore (`--max-inflight-body-bytes`); a
//! frame that does not fit fails the body, and the request is answered 429 `busy` with
//! `Retry-After` (gRPC: RESOURCE_EXHAUSTED). The bytes are given back when the request is
//! answered, since the handler holds the buffered body until then. A body still arriving after
//! `--body-timeout` fails with 408 `body_timeout` (gRPC: DEADLINE_EXCEEDED).

use std::future::Future as _;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Buf;
use http_body::{Body, Frame, SizeHint};
use tokio::sync::Semaphore;

use crate::error::CoreError;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The server-wide budget; cheap to clone.
#[derive(Clone)]
pub struct BodyBudget {
    bytes: Arc<Semaphore>,
    limit: usize,
    timeout: Duration,
}

impl BodyBudget {
    /// `limit` bytes of bodies in memory at once (raised to `max_body_bytes`, so one
    /// largest-allowed body always fits), each received within `timeout`.
    pub fn new(limit: usize, max_body_bytes: usize, timeout: Duration) -> BodyBudget {
        let limit = limit.max(max_body_bytes).min(Semaphore::MAX_PERMITS);
        BodyBudget { bytes: Arc::new(Semaphore::new(limit)), limit, timeout }
    }

    /// Body bytes held now.
    #[cfg(test)]
    pub fn in_flight(&self) -> usize {
        self.limit - self.bytes.available_permits()
    }

    /// Wraps one request's body. The [`Reservation`] gives the bytes back when both it and the
    /// body are dropped; the front end keeps it until the response is ready and asks it why a
    /// body failed. `to_error` turns a refusal into the body's error (gRPC needs a `Status`).
    pub fn wrap<B>(&self, body: B, to_error: fn(CoreError) -> BoxError) -> (BudgetedBody<B>, Arc<Reservation>) {
        let reservation =
            Arc::new(Reservation { budget: self.clone(), held: AtomicUsize::new(0), refusal: Mutex::new(None) });
        let body = BudgetedBody {
            inner: body,
            reservation: reservation.clone(),
            deadline: None,
            received_by: tokio::time::Instant::now() + self.timeout,
            timeout: self.timeout,
            to_error,
            failed: false,
        };
        (body, reservation)
    }
}

/// The bytes one request's body holds, and why the body was refused, if it was.
pub struct Reservation {
    budget: BodyBudget,
    held: AtomicUsize,
    refusal: Mutex<Option<CoreError>>,
}

impl Reservation {
    /// Why the body was cut off: over the shared budget (`Busy`) or too slow (`BodyTimeout`).
    pub fn refusal(&self) -> Option<CoreError> {
        self.refusal.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn refuse(&self, err: CoreError) {
        *self.refusal.lock().unwrap_or_else(|e| e.into_inner()) = Some(err);
    }

    fn draw(&self, n: usize) -> bool {
        let Ok(n32) = u32::try_from(n) else { return false };
        match self.budget.bytes.try_acquire_many(n32) {
            Ok(permit) => {
                permit.forget();
                self.held.fetch_add(n, Ordering::Relaxed);
                true
            }
            Err(_) => false,
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let held = *self.held.get_mut();
        if held > 0 {
            self.budget.bytes.add_permits(held);
        }
    }
}

pin_project_lite::pin_project! {
    /// A body whose frames draw on the budget and which fails past its deadline.
    pub struct BudgetedBody<B> {
        #[pin]
        inner: B,
        reservation: Arc<Reservation>,
        // The timer is made only once the body has to wait for data: most bodies arrive whole
        // in their first read and never need one.
        deadline: Option<Pin<Box<tokio::time::Sleep>>>,
        received_by: tokio::time::Instant,
        timeout: Duration,
        to_error: fn(CoreError) -> BoxError,
        failed: bool,
    }
}

impl<B> Body for BudgetedBody<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    type Data = B::Data;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<B::Data>, BoxError>>> {
        let this = self.project();
        if *this.failed {
            return Poll::Ready(None);
        }
        let refuse = |err: CoreError, this_failed: &mut bool| {
            *this_failed = true;
            this.reservation.refuse(err.clone());
            Poll::Ready(Some(Err((this.to_error)(err))))
        };
        let frame = match this.inner.poll_frame(cx) {
            Poll::Ready(frame) => frame,
            Poll::Pending => {
                let received_by = *this.received_by;
                let deadline = this.deadline.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(received_by)));
                if deadline.as_mut().poll(cx).is_ready() {
                    return refuse(CoreError::BodyTimeout(*this.timeout), this.failed);
                }
                return Poll::Pending;
            }
        };
        match frame {
            Some(Ok(frame)) => {
                let len = frame.data_ref().map_or(0, |d| d.remaining());
                if len > 0 && !this.reservation.draw(len) {
                    let limit = this.reservation.budget.limit;
                    return refuse(
                        CoreError::Busy(format!(
                            "request bodies being received are at the server's limit of {limit} bytes \
                             (--max-inflight-body-bytes); retry later"
                        )),
                        this.failed,
                    );
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Some(Err(e)) => Poll::Ready(Some(Err(e.into()))),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.failed || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Full, StreamBody};

    fn plain(err: CoreError) -> BoxError {
        Box::new(err)
    }

    #[tokio::test]
    async fn bodies_draw_on_one_budget_and_give_it_back_when_done() {
        let budget = BodyBudget::new(1000, 600, Duration::from_secs(5));
        let (a, ra) = budget.wrap(Full::new(bytes::Bytes::from(vec![0u8; 600])), plain);
        let a = a.collect().await.unwrap().to_bytes();
        assert_eq!(a.len(), 600);
        assert_eq!(budget.in_flight(), 600);
        // A second body that does not fit next to the first is refused as busy.
        let (b, rb) = budget.wrap(Full::new(bytes::Bytes::from(vec![0u8; 500])), plain);
        assert!(b.collect().await.is_err());
        assert!(matches!(rb.refusal(), Some(CoreError::Busy(_))));
        drop(ra);
        assert_eq!(budget.in_flight(), 0);
        let (c, _rc) = budget.wrap(Full::new(bytes::Bytes::from(vec![0u8; 500])), plain);
        assert_eq!(c.collect().await.unwrap().to_bytes().len(), 500);
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_still_arriving_at_its_deadline_fails() {
        let budget = BodyBudget::new(1 << 20, 0, Duration::from_secs(60));
        // One byte every 5 s: never idle for long, never finished in time.
        let trickle = futures::stream::unfold(0, |n| async move {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Some((Ok::<_, std::convert::Infallible>(Frame::data(bytes::Bytes::from_static(b"x"))), n + 1))
        });
        let (body, r) = budget.wrap(StreamBody::new(trickle), plain);
        let started = tokio::time::Instant::now();
        assert!(body.collect().await.is_err());
        assert!(started.elapsed() >= Duration::from_secs(60) && started.elapsed() < Duration::from_secs(66));
        assert!(matches!(r.refusal(), Some(CoreError::BodyTimeout(_))));
    }
}
