//! Fault injection and the request log: the knobs a test turns (latency, failures per
//! route, dropped connections, slow creates, lost bans, a max-rows override, inserts
//! during a scan) and the record of every non-control request. Decides *whether* a fault
//! fires; `server.rs` and the two servers carry it out.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::server::Shared;
use super::state::mix;

/// How an injected failure answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Failure {
    /// HTTP status (ignored when `drop_connection`).
    #[serde(default = "default_status")]
    pub status: u16,
    /// An error code for the body (GoTrue `error_code` / PostgREST `code`); the body takes
    /// the shape of the server the route belongs to. Without one, a bare gateway body.
    #[serde(default)]
    pub error_code: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
    /// A `Retry-After` header value (seconds or an HTTP date, sent as given).
    #[serde(default)]
    pub retry_after: Option<String>,
    /// Close the connection without answering.
    #[serde(default)]
    pub drop_connection: bool,
    /// Let the request take effect first, then fail it (a write that happened but whose
    /// answer was lost at the edge).
    #[serde(default)]
    pub after_commit: bool,
    /// Send this exact body (e.g. an HTML page from the edge) as `text/html`.
    #[serde(default)]
    pub raw_body: Option<String>,
}

fn default_status() -> u16 {
    503
}

impl Failure {
    /// Answer with `status` (and a body in the route's server's error shape).
    pub fn status(status: u16) -> Failure {
        Failure {
            status,
            error_code: None,
            message: None,
            retry_after: None,
            drop_connection: false,
            after_commit: false,
            raw_body: None,
        }
    }

    /// Close the connection without answering.
    pub fn drop_connection() -> Failure {
        Failure {
            drop_connection: true,
            ..Failure::status(0)
        }
    }

    pub fn code(mut self, code: &str) -> Failure {
        self.error_code = Some(code.to_string());
        self
    }

    pub fn message(mut self, message: &str) -> Failure {
        self.message = Some(message.to_string());
        self
    }

    pub fn retry_after(mut self, value: &str) -> Failure {
        self.retry_after = Some(value.to_string());
        self
    }

    pub fn after_commit(mut self) -> Failure {
        self.after_commit = true;
        self
    }

    pub fn raw_body(mut self, body: &str) -> Failure {
        self.raw_body = Some(body.to_string());
        self
    }
}

/// When a failure rule fires.
#[derive(Debug, Clone, PartialEq)]
pub enum Trigger {
    /// The next `n` matching requests.
    Next(usize),
    /// Each matching request with probability `rate`, drawn from a seeded sequence (the
    /// same seed fails the same requests in every run).
    Rate { rate: f64, state: u64 },
    /// Every matching request.
    Always,
}

/// A failure for the requests matching `route` (`"PUT /auth/v1/admin/users/*"`).
#[derive(Debug, Clone)]
pub struct Rule {
    pub route: String,
    pub failure: Failure,
    pub trigger: Trigger,
}

impl Rule {
    fn fires(&mut self, method: &str, path: &str) -> bool {
        if !route_matches(&self.route, method, path) {
            return false;
        }
        match &mut self.trigger {
            Trigger::Next(0) => false,
            Trigger::Next(n) => {
                *n -= 1;
                true
            }
            Trigger::Always => true,
            Trigger::Rate { rate, state } => {
                *state = mix(*state);
                ((*state >> 11) as f64 / (1u64 << 53) as f64) < *rate
            }
        }
    }
}

/// `"METHOD /path/with/*"`: `*` matches one path segment, `**` the rest (zero or more);
/// a method of `*` (or no method) matches any method.
pub fn route_matches(pattern: &str, method: &str, path: &str) -> bool {
    let (pm, pp) = match pattern.trim().split_once(char::is_whitespace) {
        Some((m, p)) => (m.trim(), p.trim()),
        None => ("*", pattern.trim()),
    };
    if pm != "*" && !pm.eq_ignore_ascii_case(method) {
        return false;
    }
    let pat: Vec<&str> = pp.trim_matches('/').split('/').collect();
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let mut i = 0;
    for (j, p) in pat.iter().enumerate() {
        if *p == "**" {
            return j == pat.len() - 1 || i <= segs.len();
        }
        match segs.get(i) {
            Some(s) if *p == "*" || p == s => i += 1,
            _ => return false,
        }
    }
    i == segs.len()
}

/// A knob that applies to the next `n` occurrences, or to all of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Times {
    Next(usize),
    Always,
}

impl Times {
    /// Use one occurrence; false when exhausted.
    pub fn take(slot: &mut Option<Times>) -> bool {
        match slot {
            None => false,
            Some(Times::Always) => true,
            Some(Times::Next(n)) => {
                if *n == 0 {
                    *slot = None;
                    return false;
                }
                *n -= 1;
                if *n == 0 {
                    *slot = None;
                }
                true
            }
        }
    }
}

/// Every knob, in one place (inside the sandbox's one lock).
#[derive(Debug, Clone, Default)]
pub struct FaultState {
    pub latency: Duration,
    pub rules: Vec<Rule>,
    /// Commit a create, then answer only after this delay.
    pub create_delay: Option<(Duration, Times)>,
    /// Answer a ban (a PUT whose `ban_duration` sets `banned_until`) as if stored, but
    /// leave the user unchanged.
    pub lose_bans: Option<Times>,
    /// The same for unbans (`ban_duration` `none` or `0s`).
    pub lose_unbans: Option<Times>,
    /// Overrides the configured PostgREST max-rows (`Some(None)`: no cap).
    pub max_rows: Option<Option<usize>>,
    /// Insert `users` new users at the moment page `page` of a user listing is served.
    pub insert_during_page: Option<(u64, usize)>,
    /// Claim this total in every listing's count (`X-Total-Count` of user listings, the
    /// total of PostgREST's `Content-Range`), whatever the pages hold: a lying server.
    pub claimed_total: Option<u64>,
    /// Answer requests matching this route with 200 and a body that never ends.
    pub endless_body: Option<String>,
    /// At each user listing after the first `skip` ones, end this user's (by email, any
    /// case) ban just before the read: at the later of 300 ms ago and 1 µs after the
    /// start of the current second, where a clock cut to whole seconds still sees it in
    /// force. `(email, skip)`.
    pub ban_ends_at_read: Option<(String, u64)>,
}

impl FaultState {
    /// The failure for this request, if a rule fires (the first matching rule that fires).
    pub fn failure_for(&mut self, method: &str, path: &str) -> Option<Failure> {
        for rule in &mut self.rules {
            if rule.fires(method, path) {
                return Some(rule.failure.clone());
            }
        }
        None
    }
}

/// One request as the sandbox saw it. Credentials are never stored: only whether the
/// `apikey` and `Authorization` headers were present.
#[derive(Debug, Clone)]
pub struct LoggedRequest {
    /// Arrival order, from 1.
    pub seq: u64,
    pub method: String,
    /// The full path, e.g. `/auth/v1/admin/users/…`.
    pub path: String,
    /// The raw query string, if any.
    pub query: Option<String>,
    /// Selected request headers (lower-case names): content-type, user-agent,
    /// x-client-info, x-supabase-api-version, accept, accept-profile, content-profile,
    /// prefer, range, x-retry-count, x-jwt-aud.
    pub headers: BTreeMap<String, String>,
    pub has_apikey: bool,
    pub has_authorization: bool,
    /// The request body as text (bodies here are JSON; the tool never sends passwords).
    pub body: Option<String>,
    /// The status sent; 0 while unanswered, or when the connection was dropped or the
    /// client went away.
    pub status: u16,
    /// The sandbox closed the connection on purpose (a dropped-connection fault).
    pub dropped: bool,
    /// An injected failure answered (or dropped) this request.
    pub faulted: bool,
    pub started: Instant,
    /// When the answer was sent (or the request ended); `None` while in flight.
    pub finished: Option<Instant>,
    /// Requests in flight when this one started, itself included.
    pub in_flight_at_start: usize,
}

/// The request headers worth keeping in the log.
pub const LOGGED_HEADERS: &[&str] = &[
    "content-type",
    "user-agent",
    "x-client-info",
    "x-supabase-api-version",
    "accept",
    "accept-profile",
    "content-profile",
    "prefer",
    "range",
    "x-retry-count",
    "x-jwt-aud",
];

impl LoggedRequest {
    /// The first value of a query parameter, decoded.
    pub fn query_param(&self, name: &str) -> Option<String> {
        let q = super::wire::parse_query(self.query.as_deref());
        super::wire::first(&q, name).map(str::to_string)
    }

    /// The body parsed as JSON, if it is JSON.
    pub fn body_json(&self) -> Option<serde_json::Value> {
        serde_json::from_str(self.body.as_deref()?).ok()
    }

    /// Anything but GET, HEAD and OPTIONS.
    pub fn is_write(&self) -> bool {
        !matches!(self.method.as_str(), "GET" | "HEAD" | "OPTIONS")
    }

    /// How long the request took, if it finished.
    pub fn duration(&self) -> Option<Duration> {
        self.finished.map(|f| f.duration_since(self.started))
    }
}

/// The fault knobs of a running sandbox (from [`super::Sandbox::faults`]).
#[derive(Clone)]
pub struct Faults {
    pub(crate) shared: Arc<Shared>,
}

impl Faults {
    fn with<R>(&self, f: impl FnOnce(&mut FaultState) -> R) -> R {
        f(&mut self.shared.lock().faults)
    }

    /// Delay every (non-control) request by `latency` before it is handled.
    pub fn set_latency(&self, latency: Duration) {
        self.with(|s| s.latency = latency);
    }

    /// Fail the next `n` requests matching `route` (`"PUT /auth/v1/admin/users/*"`).
    pub fn fail_next(&self, route: &str, n: usize, failure: Failure) {
        self.push(route, failure, Trigger::Next(n));
    }

    /// Fail each request matching `route` with probability `rate`, deterministically
    /// from `seed`.
    pub fn fail_rate(&self, route: &str, rate: f64, seed: u64, failure: Failure) {
        self.push(route, failure, Trigger::Rate { rate, state: seed });
    }

    /// Fail every request matching `route`.
    pub fn fail_always(&self, route: &str, failure: Failure) {
        self.push(route, failure, Trigger::Always);
    }

    /// Close the connection of the next `n` requests matching `route` without answering.
    pub fn drop_next(&self, route: &str, n: usize) {
        self.fail_next(route, n, Failure::drop_connection());
    }

    fn push(&self, route: &str, failure: Failure, trigger: Trigger) {
        let rule = Rule {
            route: route.to_string(),
            failure,
            trigger,
        };
        self.with(|s| s.rules.push(rule));
    }

    /// Commit each of the next creates (`POST /auth/v1/admin/users`) at once, but answer
    /// only after `delay` (`times`: `Times::Next(n)` or `Times::Always`).
    pub fn delay_create_response(&self, delay: Duration, times: Times) {
        self.with(|s| s.create_delay = Some((delay, times)));
    }

    /// Answer bans with 200 and a `banned_until`, but do not store them.
    pub fn lose_bans(&self, times: Times) {
        self.with(|s| s.lose_bans = Some(times));
    }

    /// Answer unbans with 200, but do not store them.
    pub fn lose_unbans(&self, times: Times) {
        self.with(|s| s.lose_unbans = Some(times));
    }

    /// Override PostgREST's max-rows (`None`: no cap at all).
    pub fn set_max_rows(&self, max_rows: Option<usize>) {
        self.with(|s| s.max_rows = Some(max_rows));
    }

    /// Claim `total` in every listing's count header (`X-Total-Count`, or the total of
    /// `Content-Range`), whatever the pages hold.
    pub fn claim_total(&self, total: u64) {
        self.with(|s| s.claimed_total = Some(total));
    }

    /// Answer every request matching `route` with 200 and a body that never ends.
    pub fn endless_body(&self, route: &str) {
        let route = route.to_string();
        self.with(|s| s.endless_body = Some(route));
    }

    /// At each user listing page served after the next `skip`, end the ban of the user
    /// with `email` just before the read (see [`FaultState::ban_ends_at_read`]).
    pub fn end_ban_at_read(&self, email: &str, skip: u64) {
        let email = email.to_string();
        self.with(|s| s.ban_ends_at_read = Some((email, skip)));
    }

    /// When page `page` of `GET /auth/v1/admin/users` is next served, first insert
    /// `users` new users (once), so a scan in progress sees the pages shift.
    pub fn insert_users_during_page(&self, page: u64, users: usize) {
        self.with(|s| s.insert_during_page = Some((page, users)));
    }

    /// Turn every knob off.
    pub fn clear(&self) {
        self.with(|s| *s = FaultState::default());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_match_by_method_and_segments() {
        assert!(route_matches(
            "PUT /auth/v1/admin/users/*",
            "PUT",
            "/auth/v1/admin/users/abc"
        ));
        assert!(!route_matches(
            "PUT /auth/v1/admin/users/*",
            "GET",
            "/auth/v1/admin/users/abc"
        ));
        assert!(!route_matches(
            "PUT /auth/v1/admin/users/*",
            "PUT",
            "/auth/v1/admin/users"
        ));
        assert!(route_matches("* /rest/v1/**", "GET", "/rest/v1/people"));
        assert!(route_matches(
            "/auth/v1/admin/users",
            "POST",
            "/auth/v1/admin/users/"
        ));
    }

    #[test]
    fn rates_are_deterministic() {
        let draw = |seed| {
            let mut rule = Rule {
                route: "GET /x".into(),
                failure: Failure::status(503),
                trigger: Trigger::Rate {
                    rate: 0.5,
                    state: seed,
                },
            };
            (0..64).map(|_| rule.fires("GET", "/x")).collect::<Vec<_>>()
        };
        assert_eq!(draw(7), draw(7));
        let hits = draw(7).iter().filter(|b| **b).count();
        assert!((16..48).contains(&hits));
    }
}
