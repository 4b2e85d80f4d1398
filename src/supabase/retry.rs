//! When and how long to wait before trying a request again: which failures are worth
//! retrying, jittered exponential backoff, and `Retry-After` (seconds or HTTP-date).
//! Pure functions; the client's request loop applies them.

use std::time::{Duration, SystemTime};

use time::OffsetDateTime;
use time::format_description::well_known::Rfc2822;

/// How reads and ban/restore writes are retried. Creates are never retried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Tries in all, the first included (the contract: 5).
    pub max_tries: u32,
    /// The first backoff is drawn from `[base_delay/2, base_delay]`.
    pub base_delay: Duration,
    /// No backoff is longer than this.
    pub max_delay: Duration,
    /// A server's `Retry-After` is honoured up to this (the contract: 60 s).
    pub retry_after_cap: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_tries: 5,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(10),
            retry_after_cap: Duration::from_secs(60),
        }
    }
}

/// Statuses the contract retries: rate limited, and the gateway/edge failures that say
/// nothing was done (502, 503, 504, Cloudflare's 520).
pub(crate) fn is_retryable_status(status: u16) -> bool {
    matches!(status, 429 | 502 | 503 | 504 | 520)
}

/// The bounds of the backoff before retry number `retry` (0 for the first retry):
/// `[d/2, d]` with `d = min(base·2^retry, max_delay)`.
pub(crate) fn backoff_bounds(policy: &RetryPolicy, retry: u32) -> (Duration, Duration) {
    // 2^20 × any sane base is already far past any sane cap; avoid overflow beyond it.
    let factor = 1u32 << retry.min(20);
    let upper = policy
        .base_delay
        .checked_mul(factor)
        .unwrap_or(policy.max_delay)
        .min(policy.max_delay);
    (upper / 2, upper)
}

/// A jittered delay within `backoff_bounds` (jitter spreads retries of concurrent
/// requests so they do not hit the server again in lockstep).
pub(crate) fn backoff(policy: &RetryPolicy, retry: u32) -> Duration {
    let (lo, hi) = backoff_bounds(policy, retry);
    let (lo_us, hi_us) = (lo.as_micros() as u64, hi.as_micros() as u64);
    if hi_us <= lo_us {
        return hi;
    }
    Duration::from_micros(rand::random_range(lo_us..=hi_us))
}

/// Parse a `Retry-After` value: delta-seconds, or an HTTP-date (relative to `now`; a
/// date in the past means "now"). `None` when it is neither.
pub(crate) fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // Absurdly long digit strings saturate instead of failing.
        return Some(Duration::from_secs(
            value.parse::<u64>().unwrap_or(u64::MAX),
        ));
    }
    // IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT") is a subset of RFC 2822.
    let at = OffsetDateTime::parse(value, &Rfc2822).ok()?;
    let now = OffsetDateTime::from(now);
    let delta = at - now;
    if delta.is_negative() {
        return Some(Duration::ZERO);
    }
    Some(Duration::try_from(delta).unwrap_or(Duration::ZERO))
}

/// How long to wait before the next try: the server's `Retry-After` when it gave one
/// (capped), otherwise our own backoff.
pub(crate) fn delay_before_retry(
    policy: &RetryPolicy,
    retry: u32,
    retry_after: Option<Duration>,
) -> Duration {
    match retry_after {
        Some(d) => d.min(policy.retry_after_cap),
        None => backoff(policy, retry),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_tries: 5,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(1),
            retry_after_cap: Duration::from_secs(60),
        }
    }

    #[test]
    fn retryable_statuses_are_the_contracts() {
        for s in [429, 502, 503, 504, 520] {
            assert!(is_retryable_status(s), "{s}");
        }
        for s in [200, 400, 401, 403, 404, 406, 409, 416, 422, 500, 501, 521] {
            assert!(!is_retryable_status(s), "{s}");
        }
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let p = policy();
        let ms = |d: Duration| d.as_millis();
        let b: Vec<_> = (0..6)
            .map(|n| backoff_bounds(&p, n))
            .map(|(lo, hi)| (ms(lo), ms(hi)))
            .collect();
        assert_eq!(
            b,
            vec![
                (100, 200),
                (200, 400),
                (400, 800),
                (500, 1000),
                (500, 1000),
                (500, 1000)
            ]
        );
        // Huge retry counts neither overflow nor exceed the cap.
        assert_eq!(backoff_bounds(&p, u32::MAX).1, Duration::from_secs(1));
    }

    #[test]
    fn jittered_backoff_stays_within_bounds() {
        let p = policy();
        for n in 0..8 {
            let (lo, hi) = backoff_bounds(&p, n);
            for _ in 0..200 {
                let d = backoff(&p, n);
                assert!(
                    d >= lo && d <= hi,
                    "retry {n}: {d:?} not in [{lo:?}, {hi:?}]"
                );
            }
        }
        let zero = RetryPolicy {
            base_delay: Duration::ZERO,
            ..policy()
        };
        assert_eq!(backoff(&zero, 3), Duration::ZERO);
    }

    #[test]
    fn retry_after_seconds() {
        let now = SystemTime::now();
        assert_eq!(parse_retry_after("3", now), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("99999999999999999999999", now),
            Some(Duration::from_secs(u64::MAX))
        );
        assert_eq!(parse_retry_after("", now), None);
        assert_eq!(parse_retry_after("-1", now), None);
        assert_eq!(parse_retry_after("1.5", now), None);
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn retry_after_http_date() {
        // 1994-11-06 08:49:37 UTC
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777);
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:47 GMT", now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now),
            Some(Duration::ZERO),
            "a date in the past means retry now"
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 25:00:00 GMT", now),
            None
        );
    }

    #[test]
    fn retry_after_is_capped() {
        let p = policy();
        assert_eq!(
            delay_before_retry(&p, 0, Some(Duration::from_secs(3600))),
            Duration::from_secs(60)
        );
        assert_eq!(
            delay_before_retry(&p, 0, Some(Duration::from_secs(2))),
            Duration::from_secs(2)
        );
        let d = delay_before_retry(&p, 1, None);
        assert!(d >= Duration::from_millis(200) && d <= Duration::from_millis(400));
    }
}
