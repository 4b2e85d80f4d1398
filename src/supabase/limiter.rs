//! The one concurrency limiter every request of a `Client` goes through: never more than
//! the configured number of requests in flight, and an adaptive (AIMD) effective limit
//! that halves when the server says it is overloaded (429/503) and creeps back up.
//! It knows nothing about HTTP; the caller reports each request's outcome.

use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

/// What a finished request tells the limiter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// A 2xx answer: counts toward raising the limit again.
    Success,
    /// 429 or 503: the server wants fewer requests.
    Overloaded,
    /// Anything else (other errors, network failures): no signal either way.
    Neutral,
}

#[derive(Debug)]
struct State {
    /// The configured ceiling (`--concurrency`), never exceeded.
    max: usize,
    /// The effective limit, in `1..=max`.
    allowed: usize,
    in_flight: usize,
    peak: usize,
    /// Successes since the limit last changed.
    successes: usize,
    /// Bumped on every decrease, so that one burst of 429s (all sent under the same
    /// limit) halves the limit once, not once per request.
    epoch: u64,
}

#[derive(Debug)]
struct Inner {
    state: Mutex<State>,
    released: Notify,
}

/// Cheap to clone; clones share the same limit.
#[derive(Debug, Clone)]
pub(crate) struct Limiter {
    inner: Arc<Inner>,
}

/// Held while a request is in flight; dropping it frees the slot.
#[derive(Debug)]
pub(crate) struct Permit {
    inner: Arc<Inner>,
    epoch: u64,
    outcome: Outcome,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the counters half-updated in a
        // way that matters more than stopping would, so recover the guard.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Limiter {
    pub(crate) fn new(max: usize) -> Limiter {
        let max = max.max(1);
        Limiter {
            inner: Arc::new(Inner {
                state: Mutex::new(State {
                    max,
                    allowed: max,
                    in_flight: 0,
                    peak: 0,
                    successes: 0,
                    epoch: 0,
                }),
                released: Notify::new(),
            }),
        }
    }

    /// Wait for a free slot under the current effective limit.
    pub(crate) async fn acquire(&self) -> Permit {
        loop {
            // Register interest before checking, so a release between the check and
            // the await still wakes us (`notify_waiters` reaches created futures).
            let released = self.inner.released.notified();
            {
                let mut s = self.inner.lock();
                if s.in_flight < s.allowed {
                    s.in_flight += 1;
                    s.peak = s.peak.max(s.in_flight);
                    return Permit {
                        inner: Arc::clone(&self.inner),
                        epoch: s.epoch,
                        outcome: Outcome::Neutral,
                    };
                }
            }
            released.await;
        }
    }

    /// Highest number of permits ever held at once.
    pub(crate) fn peak(&self) -> usize {
        self.inner.lock().peak
    }

    /// The current effective limit.
    #[cfg(test)]
    pub(crate) fn allowed(&self) -> usize {
        self.inner.lock().allowed
    }
}

impl Permit {
    /// Record how the request went; applied when the permit is dropped.
    pub(crate) fn record(&mut self, outcome: Outcome) {
        self.outcome = outcome;
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        {
            let mut s = self.inner.lock();
            s.in_flight = s.in_flight.saturating_sub(1);
            match self.outcome {
                Outcome::Overloaded => {
                    if self.epoch == s.epoch {
                        s.allowed = (s.allowed / 2).max(1);
                        s.successes = 0;
                        s.epoch += 1;
                    }
                }
                Outcome::Success => {
                    s.successes += 1;
                    // One full window of successes at the current limit earns one more slot.
                    if s.successes >= s.allowed && s.allowed < s.max {
                        s.allowed += 1;
                        s.successes = 0;
                    }
                }
                Outcome::Neutral => {}
            }
        }
        self.inner.released.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[tokio::test]
    async fn limit_is_never_exceeded() {
        let limiter = Limiter::new(3);
        let current = Arc::new(AtomicUsize::new(0));
        let seen_max = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..40)
            .map(|_| {
                let limiter = limiter.clone();
                let current = Arc::clone(&current);
                let seen_max = Arc::clone(&seen_max);
                tokio::spawn(async move {
                    let mut permit = limiter.acquire().await;
                    let now = current.fetch_add(1, Ordering::SeqCst) + 1;
                    seen_max.fetch_max(now, Ordering::SeqCst);
                    tokio::task::yield_now().await;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    current.fetch_sub(1, Ordering::SeqCst);
                    permit.record(Outcome::Success);
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        assert!(seen_max.load(Ordering::SeqCst) <= 3);
        assert_eq!(limiter.peak(), 3);
    }

    #[tokio::test]
    async fn zero_is_treated_as_one() {
        let limiter = Limiter::new(0);
        let _p = limiter.acquire().await;
        assert_eq!(limiter.allowed(), 1);
    }

    #[tokio::test]
    async fn overload_halves_once_per_burst_and_success_recovers() {
        let limiter = Limiter::new(8);
        // Eight requests sent under the same limit all come back 429.
        let mut permits = Vec::new();
        for _ in 0..8 {
            permits.push(limiter.acquire().await);
        }
        for mut p in permits {
            p.record(Outcome::Overloaded);
        }
        assert_eq!(limiter.allowed(), 4, "one burst halves the limit once");

        // A request sent after the decrease that is overloaded again halves again.
        let mut p = limiter.acquire().await;
        p.record(Outcome::Overloaded);
        drop(p);
        assert_eq!(limiter.allowed(), 2);
        for _ in 0..5 {
            let mut p = limiter.acquire().await;
            p.record(Outcome::Overloaded);
        }
        assert_eq!(limiter.allowed(), 1, "never below one");

        // Successes raise it by one per window, up to the ceiling and no further.
        for _ in 0..200 {
            let mut p = limiter.acquire().await;
            p.record(Outcome::Success);
        }
        assert_eq!(limiter.allowed(), 8);
    }

    #[tokio::test]
    async fn shrunk_limit_holds_back_new_requests() {
        let limiter = Limiter::new(4);
        let mut a = limiter.acquire().await;
        let b = limiter.acquire().await;
        a.record(Outcome::Overloaded);
        drop(a);
        assert_eq!(limiter.allowed(), 2);
        let _c = limiter.acquire().await; // 2 in flight: b and c
        let blocked = tokio::time::timeout(Duration::from_millis(20), limiter.acquire()).await;
        assert!(blocked.is_err(), "a third request must wait");
        drop(b);
        let _d = tokio::time::timeout(Duration::from_secs(5), limiter.acquire())
            .await
            .unwrap();
    }
}
