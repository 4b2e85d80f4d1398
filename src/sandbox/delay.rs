//! The injected latency, to a fraction of a millisecond. tokio's timer works in whole
//! millisecond ticks and rounds every sleep up, so a 10 ms latency lands anywhere from
//! 10 to 11.5 ms: at benchmark scale a tenth of the time under test, charged to the
//! client. One thread per process waits on a condition variable for the earliest
//! deadline and wakes the requests due; the server's runtime is never blocked.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Instant;

use tokio::sync::oneshot;

/// Wait until `at`, without blocking the runtime.
pub(crate) async fn sleep_until(at: Instant) {
    match timer() {
        // A dropped sender (the timer thread gone) only ends the wait early.
        Some(timer) => {
            let _ = timer.add(at).await;
        }
        None => tokio::time::sleep_until(at.into()).await,
    }
}

struct Sleeper {
    at: Instant,
    seq: u64,
    wake: oneshot::Sender<()>,
}

impl PartialEq for Sleeper {
    fn eq(&self, other: &Sleeper) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl Eq for Sleeper {}

impl PartialOrd for Sleeper {
    fn partial_cmp(&self, other: &Sleeper) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Sleeper {
    fn cmp(&self, other: &Sleeper) -> Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

struct Queue {
    due: BinaryHeap<Reverse<Sleeper>>,
    next_seq: u64,
}

struct Timer {
    queue: Mutex<Queue>,
    changed: Condvar,
}

static TIMER: Timer = Timer {
    queue: Mutex::new(Queue {
        due: BinaryHeap::new(),
        next_seq: 0,
    }),
    changed: Condvar::new(),
};

/// The process's timer, its thread started on first use (`None` if it cannot be).
fn timer() -> Option<&'static Timer> {
    static STARTED: OnceLock<bool> = OnceLock::new();
    let started = *STARTED.get_or_init(|| {
        std::thread::Builder::new()
            .name("sandbox-latency".into())
            .spawn(|| TIMER.run())
            .is_ok()
    });
    started.then_some(&TIMER)
}

impl Timer {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn add(&self, at: Instant) -> oneshot::Receiver<()> {
        let (wake, woken) = oneshot::channel();
        let mut q = self.lock();
        let seq = q.next_seq;
        q.next_seq += 1;
        q.due.push(Reverse(Sleeper { at, seq, wake }));
        drop(q);
        self.changed.notify_one();
        woken
    }

    /// The timer thread: wake whatever is due, then wait for the next deadline or a new
    /// sleeper. It lives as long as the process and idles on the condition variable.
    fn run(&self) {
        let mut q = self.lock();
        loop {
            let now = Instant::now();
            while q.due.peek().is_some_and(|Reverse(s)| s.at <= now) {
                if let Some(Reverse(s)) = q.due.pop() {
                    // The request may be gone (the client hung up): nothing to wake.
                    let _ = s.wake.send(());
                }
            }
            let next = q
                .due
                .peek()
                .map(|Reverse(s)| s.at.saturating_duration_since(now));
            q = match next {
                Some(wait) => {
                    self.changed
                        .wait_timeout(q, wait)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
                None => self.changed.wait(q).unwrap_or_else(PoisonError::into_inner),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn wakes_each_at_its_deadline_in_order() {
        let start = Instant::now();
        let ms = |n| start + Duration::from_millis(n);
        let (a, b, c) = tokio::join!(
            async {
                sleep_until(ms(30)).await;
                Instant::now()
            },
            async {
                sleep_until(ms(10)).await;
                Instant::now()
            },
            async {
                sleep_until(ms(20)).await;
                Instant::now()
            },
        );
        assert!(b >= ms(10) && c >= ms(20) && a >= ms(30));
        assert!(b <= c && c <= a);
        // A deadline already past returns at once.
        let t = Instant::now();
        sleep_until(start).await;
        assert!(t.elapsed() < Duration::from_secs(1));
    }
}
