//! The control endpoint under `/_sandbox/`, for scripts and other processes: read the
//! request log, set or clear faults, read or replace the state. No key needed; these
//! requests are neither logged nor counted as in flight. Bad input is a 400, never a
//! panic.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use axum::http::{Method, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};

use super::faults::{Failure, FaultState, Rule, Times, Trigger};
use super::fixture::{self, Seed};
use super::server::{Shared, json};
use super::wire::go_time;

fn bad(msg: impl Into<String>) -> Response {
    json(StatusCode::BAD_REQUEST, json!({"error": msg.into()}))
}

pub(crate) async fn handle(shared: &Arc<Shared>, req: Request) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().trim_end_matches('/').to_string();
    let body = match axum::body::to_bytes(req.into_body(), 64 << 20).await {
        Ok(b) => b,
        Err(e) => return bad(format!("cannot read the body: {e}")),
    };
    let body_json = || -> Result<Value, String> {
        if body.is_empty() {
            return Ok(json!({}));
        }
        serde_json::from_slice(&body).map_err(|e| format!("the body is not JSON: {e}"))
    };
    match (method, path.as_str()) {
        (Method::GET, "/_sandbox/health") => json(StatusCode::OK, json!({"ok": true})),
        (Method::GET, "/_sandbox/requests") => requests(shared),
        (Method::DELETE, "/_sandbox/requests") => {
            let mut inner = shared.lock();
            inner.log.clear();
            inner.max_in_flight = inner.in_flight;
            json(StatusCode::OK, json!({}))
        }
        (Method::GET, "/_sandbox/faults") => faults_summary(&shared.lock().faults),
        (Method::POST, "/_sandbox/faults") => match body_json() {
            Ok(v) => set_faults(shared, v),
            Err(e) => bad(e),
        },
        (Method::DELETE, "/_sandbox/faults") => {
            shared.lock().faults = FaultState::default();
            json(StatusCode::OK, json!({}))
        }
        (Method::GET, "/_sandbox/state") => state(shared),
        (Method::POST, "/_sandbox/state") => match body_json() {
            Ok(v) => replace_state(shared, v),
            Err(e) => bad(e),
        },
        _ => json(
            StatusCode::NOT_FOUND,
            json!({"error": "unknown control route; see README.md, `The sandbox`"}),
        ),
    }
}

fn requests(shared: &Arc<Shared>) -> Response {
    let inner = shared.lock();
    let ms = |t: std::time::Instant| t.duration_since(shared.started).as_secs_f64() * 1000.0;
    let list: Vec<Value> = inner
        .log
        .iter()
        .map(|r| {
            json!({
                "seq": r.seq,
                "method": r.method,
                "path": r.path,
                "query": r.query,
                "headers": r.headers,
                "has_apikey": r.has_apikey,
                "has_authorization": r.has_authorization,
                "body": r.body,
                "status": r.status,
                "dropped": r.dropped,
                "faulted": r.faulted,
                "started_ms": ms(r.started),
                "finished_ms": r.finished.map(ms),
                "in_flight_at_start": r.in_flight_at_start,
            })
        })
        .collect();
    json(
        StatusCode::OK,
        json!({"requests": list, "max_in_flight": inner.max_in_flight, "in_flight": inner.in_flight}),
    )
}

fn faults_summary(f: &FaultState) -> Response {
    let times = |t: &Option<Times>| match t {
        None => Value::Null,
        Some(Times::Always) => json!("always"),
        Some(Times::Next(n)) => json!(n),
    };
    let rules: Vec<Value> = f
        .rules
        .iter()
        .map(|r| {
            let trigger = match &r.trigger {
                Trigger::Next(n) => json!({"remaining": n}),
                Trigger::Always => json!("always"),
                Trigger::Rate { rate, .. } => json!({"rate": rate}),
            };
            json!({"route": r.route, "failure": r.failure, "trigger": trigger})
        })
        .collect();
    json(
        StatusCode::OK,
        json!({
            "latency_ms": f.latency.as_millis() as u64,
            "failures": rules,
            "create_delay_ms": f.create_delay.map(|(d, _)| d.as_millis() as u64),
            "lose_bans": times(&f.lose_bans),
            "lose_unbans": times(&f.lose_unbans),
            "max_rows": f.max_rows.map(|m| m.map_or(json!("none"), |n| json!(n))),
            "insert_during_page": f.insert_during_page.map(|(p, k)| json!({"page": p, "users": k})),
            "claimed_total": f.claimed_total,
            "endless_body": f.endless_body,
            "end_ban_at_read": f.ban_ends_at_read.as_ref().map(|(e, skip)| json!({"email": e, "skip": skip})),
        }),
    )
}

/// `"always"` or a count.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum TimesSpec {
    Count(usize),
    Word(String),
}

impl TimesSpec {
    fn times(self) -> Result<Times, String> {
        match self {
            TimesSpec::Count(n) => Ok(Times::Next(n)),
            TimesSpec::Word(w) if w == "always" => Ok(Times::Always),
            TimesSpec::Word(w) => Err(format!("`{w}`: expected a count or \"always\"")),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FailureSpec {
    route: String,
    #[serde(default)]
    times: Option<TimesSpec>,
    #[serde(default)]
    rate: Option<f64>,
    #[serde(default)]
    seed: Option<u64>,
    #[serde(flatten)]
    failure: Failure,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PageInsert {
    page: u64,
    users: usize,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FaultsSpec {
    #[serde(default)]
    latency_ms: Option<u64>,
    #[serde(default)]
    failures: Vec<FailureSpec>,
    #[serde(default)]
    create_delay_ms: Option<u64>,
    #[serde(default)]
    create_delay_times: Option<TimesSpec>,
    #[serde(default)]
    lose_bans: Option<TimesSpec>,
    #[serde(default)]
    lose_unbans: Option<TimesSpec>,
    /// A number, or `"none"` for no cap.
    #[serde(default)]
    max_rows: Option<Value>,
    #[serde(default)]
    insert_during_page: Option<PageInsert>,
    #[serde(default)]
    claimed_total: Option<u64>,
    #[serde(default)]
    endless_body: Option<String>,
    #[serde(default)]
    end_ban_at_read: Option<BanEnd>,
}

/// `{"email": "bob@example.com", "skip": 1}`.
#[derive(Debug, Deserialize)]
struct BanEnd {
    email: String,
    #[serde(default)]
    skip: u64,
}

/// Add the given knobs to the current ones (DELETE clears).
fn set_faults(shared: &Arc<Shared>, v: Value) -> Response {
    let spec: FaultsSpec = match serde_json::from_value(v) {
        Ok(s) => s,
        Err(e) => return bad(format!("bad faults: {e}")),
    };
    let result = (|| -> Result<(), String> {
        let mut rules = Vec::new();
        for f in spec.failures {
            let trigger = match (f.rate, f.times) {
                (Some(rate), None) => {
                    if !(0.0..=1.0).contains(&rate) {
                        return Err(format!("rate {rate} is not within 0..=1"));
                    }
                    Trigger::Rate {
                        rate,
                        state: f.seed.unwrap_or(0),
                    }
                }
                (None, None) => Trigger::Next(1),
                (None, Some(t)) => match t.times()? {
                    Times::Always => Trigger::Always,
                    Times::Next(n) => Trigger::Next(n),
                },
                (Some(_), Some(_)) => return Err("give `times` or `rate`, not both".into()),
            };
            if !f.failure.drop_connection && !(100..=599).contains(&f.failure.status) {
                return Err(format!("status {} is not an HTTP status", f.failure.status));
            }
            rules.push(Rule {
                route: f.route,
                failure: f.failure,
                trigger,
            });
        }
        let create_times = spec.create_delay_times.map(TimesSpec::times).transpose()?;
        let lose_bans = spec.lose_bans.map(TimesSpec::times).transpose()?;
        let lose_unbans = spec.lose_unbans.map(TimesSpec::times).transpose()?;
        let max_rows = match spec.max_rows {
            None => None,
            Some(Value::String(s)) if s == "none" => Some(None),
            Some(Value::Number(n)) => Some(Some(
                n.as_u64()
                    .and_then(|n| usize::try_from(n).ok())
                    .ok_or("max_rows must be a non-negative integer or \"none\"")?,
            )),
            Some(other) => {
                return Err(format!(
                    "max_rows: expected a number or \"none\", not {other}"
                ));
            }
        };
        let mut inner = shared.lock();
        let f = &mut inner.faults;
        if let Some(ms) = spec.latency_ms {
            f.latency = Duration::from_millis(ms);
        }
        f.rules.extend(rules);
        if let Some(ms) = spec.create_delay_ms {
            f.create_delay = Some((
                Duration::from_millis(ms),
                create_times.unwrap_or(Times::Next(1)),
            ));
        }
        if lose_bans.is_some() {
            f.lose_bans = lose_bans;
        }
        if lose_unbans.is_some() {
            f.lose_unbans = lose_unbans;
        }
        if max_rows.is_some() {
            f.max_rows = max_rows;
        }
        if let Some(p) = spec.insert_during_page {
            f.insert_during_page = Some((p.page, p.users));
        }
        if spec.claimed_total.is_some() {
            f.claimed_total = spec.claimed_total;
        }
        if spec.endless_body.is_some() {
            f.endless_body = spec.endless_body;
        }
        if let Some(b) = spec.end_ban_at_read {
            f.ban_ends_at_read = Some((b.email, b.skip));
        }
        Ok(())
    })();
    match result {
        Ok(()) => faults_summary(&shared.lock().faults),
        Err(e) => bad(e),
    }
}

fn state(shared: &Arc<Shared>) -> Response {
    let mut inner = shared.lock();
    let t = |v: Option<time::OffsetDateTime>| v.map(go_time);
    let users: Vec<Value> = inner
        .state
        .users_sorted()
        .iter()
        .map(|u| {
            json!({
                "id": u.id.to_string(),
                "aud": u.aud,
                "role": u.role,
                "email": u.email,
                "phone": u.phone,
                "created_at": go_time(u.created_at),
                "updated_at": go_time(u.updated_at),
                "banned_until": t(u.banned_until),
                "deleted_at": t(u.deleted_at),
                "is_anonymous": u.is_anonymous,
                "email_confirmed_at": t(u.email_confirmed_at),
                "last_sign_in_at": t(u.last_sign_in_at),
                "app_metadata": u.app_metadata,
                "user_metadata": u.user_metadata,
            })
        })
        .collect();
    let roster: Vec<Value> = inner
        .state
        .roster()
        .iter()
        .map(|r| Value::Object(r.to_json()))
        .collect();
    json(
        StatusCode::OK,
        json!({
            "roster_table": shared.config.roster_table,
            "exposed_schemas": shared.config.exposed_schemas,
            "users": users,
            "roster": roster,
        }),
    )
}

/// Replace the users and/or the roster with those of a fixture-format JSON body (a
/// section that is absent is kept; `roster_table`/`exposed_schemas` are fixed at start).
fn replace_state(shared: &Arc<Shared>, v: Value) -> Response {
    let has_users = v.get("users").is_some();
    let has_roster = v.get("roster").is_some();
    if v.get("roster_table").is_some() || v.get("exposed_schemas").is_some() {
        return bad("roster_table and exposed_schemas are fixed when the sandbox starts");
    }
    let seed = match Seed::from_json(v) {
        Ok(s) => s,
        Err(e) => return bad(format!("bad state: {e}")),
    };
    let mut inner = shared.lock();
    // Build into a scratch state first, so a bad user leaves the real one untouched.
    let mut scratch = super::state::State::new(&shared.config.aud);
    if let Err(e) = fixture::apply(
        &mut scratch,
        &Seed {
            roster: Vec::new(),
            ..seed.clone()
        },
        &shared.config.aud,
    ) {
        return bad(e);
    }
    if has_users {
        inner.state.clear_users();
        for u in scratch.users_sorted() {
            inner.state.insert_user(u);
        }
    }
    if has_roster {
        inner.state.set_roster(seed.roster);
    }
    drop(inner);
    state(shared)
}
