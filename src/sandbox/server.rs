//! The running server: its thread and tokio runtime, the accept loop (which can drop a
//! connection on purpose), the shared state behind the one lock, and the one request
//! entry point (control routes, request log, in-flight count, latency, faults, then the
//! gateway and the two servers).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State as AxumState};
use axum::http::{HeaderMap, HeaderValue, StatusCode, request::Parts};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::TokioIo;
use tokio::sync::{Notify, oneshot};
use tower::ServiceExt;

use super::SandboxConfig;
use super::faults::{Failure, FaultState, LOGGED_HEADERS, LoggedRequest};
use super::jwt::Keys;
use super::state::State;
use super::{control, delay, gateway, gotrue, postgrest};

/// Request bodies are read up to GoTrue's limit (`limitRequestBody(1 << 20)`): a body of
/// exactly 1 MiB is read, one byte more is too large.
pub const BODY_LIMIT: usize = 1 << 20;

/// The request log keeps at most this many entries (the oldest half goes when full), so
/// a standalone sandbox under a long benchmark does not grow without bound.
pub const LOG_CAP: usize = 100_000;

/// Everything a handler may touch. Mutable data lives in [`Inner`], behind one lock.
pub(crate) struct Shared {
    inner: Mutex<Inner>,
    pub config: SandboxConfig,
    pub keys: Keys,
    pub started: Instant,
}

pub(crate) struct Inner {
    pub state: State,
    pub faults: FaultState,
    pub log: Vec<LoggedRequest>,
    pub next_seq: u64,
    pub in_flight: usize,
    pub max_in_flight: usize,
    /// Counts user listings; salts the order of `created_at` ties.
    pub listings: u64,
    /// PostgREST's last filtered, ordered row indices: (roster version, query, indices).
    pub rest_order: Option<(u64, String, Arc<Vec<usize>>)>,
}

impl Shared {
    pub fn new(config: SandboxConfig, state: State) -> Shared {
        let keys = Keys::derive(&config.jwt_secret);
        let faults = FaultState {
            latency: config.latency,
            ..FaultState::default()
        };
        Shared {
            inner: Mutex::new(Inner {
                state,
                faults,
                log: Vec::new(),
                next_seq: 1,
                in_flight: 0,
                max_in_flight: 0,
                listings: 0,
                rest_order: None,
            }),
            config,
            keys,
            started: Instant::now(),
        }
    }

    /// The one lock. A panic elsewhere must not wedge every later test, so a poisoned
    /// lock is taken over as is.
    pub fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The effective PostgREST max-rows.
    pub fn max_rows(&self, inner: &Inner) -> Option<usize> {
        inner.faults.max_rows.unwrap_or(self.config.max_rows)
    }
}

/// Closes the connection a request arrived on (see `serve_connection`).
#[derive(Clone)]
pub(crate) struct ConnAbort(Arc<Notify>);

/// A started server: where it listens, and how to stop it.
pub(crate) struct Running {
    pub addr: SocketAddr,
    pub shutdown: Option<oneshot::Sender<()>>,
    pub thread: Option<std::thread::JoinHandle<()>>,
}

/// Bind `127.0.0.1:port` and serve on a thread of its own, with its own runtime, so the
/// sandbox works the same from sync tests, async tests and examples.
pub(crate) fn spawn(shared: Arc<Shared>, port: u16) -> Result<Running, String> {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<SocketAddr, String>>();
    let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("sandbox".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready_tx.send(Err(format!("cannot start a runtime: {e}")));
                    return;
                }
            };
            runtime.block_on(async move {
                let listener =
                    match tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port)))
                        .await
                    {
                        Ok(l) => l,
                        Err(e) => {
                            let _ = ready_tx.send(Err(format!("cannot bind port {port}: {e}")));
                            return;
                        }
                    };
                let addr = match listener.local_addr() {
                    Ok(a) => a,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.to_string()));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(addr));
                accept_loop(listener, shared, shutdown_rx).await;
            });
            // Dropping the runtime here ends every connection task: in-flight requests
            // see their connection close.
            drop(runtime);
        })
        .map_err(|e| format!("cannot start the sandbox thread: {e}"))?;
    match ready_rx.recv() {
        Ok(Ok(addr)) => Ok(Running {
            addr,
            shutdown: Some(shutdown_tx),
            thread: Some(thread),
        }),
        Ok(Err(e)) => {
            let _ = thread.join();
            Err(e)
        }
        Err(_) => {
            let _ = thread.join();
            Err("the sandbox thread ended before it was ready".into())
        }
    }
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
    mut shutdown: oneshot::Receiver<()>,
) {
    let router = Router::new().fallback(entry).with_state(shared);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let _ = stream.set_nodelay(true);
                tokio::spawn(serve_connection(stream, router.clone()));
            }
        }
    }
}

/// Serve one connection with hyper. Each request carries a [`ConnAbort`]; notifying it
/// drops the connection future, which closes the socket without an answer: a real
/// dropped connection, as a client sees it.
async fn serve_connection(stream: tokio::net::TcpStream, router: Router) {
    let abort = Arc::new(Notify::new());
    let handle = ConnAbort(abort.clone());
    let service =
        hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(handle.clone());
            router.clone().oneshot(req.map(Body::new))
        });
    let conn = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        _ = conn => {}
        _ = abort.notified() => {}
    }
}

/// Marks a request in flight for as long as it lives, and completes its log entry
/// however it ends (answered, dropped, or abandoned by the client).
struct InFlight {
    shared: Arc<Shared>,
    seq: u64,
    status: u16,
    dropped: bool,
    faulted: bool,
}

impl InFlight {
    fn begin(
        shared: &Arc<Shared>,
        parts: &Parts,
    ) -> (InFlight, std::time::Duration, Option<Failure>) {
        let mut headers = std::collections::BTreeMap::new();
        for name in LOGGED_HEADERS {
            if let Some(v) = parts.headers.get(*name) {
                headers.insert(
                    (*name).to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                );
            }
        }
        let method = parts.method.as_str().to_string();
        let path = parts.uri.path().to_string();
        let mut inner = shared.lock();
        let seq = inner.next_seq;
        inner.next_seq += 1;
        inner.in_flight += 1;
        inner.max_in_flight = inner.max_in_flight.max(inner.in_flight);
        let in_flight = inner.in_flight;
        let latency = inner.faults.latency;
        let failure = inner.faults.failure_for(&method, &path);
        if inner.log.len() >= LOG_CAP {
            inner.log.drain(..LOG_CAP / 2);
        }
        inner.log.push(LoggedRequest {
            seq,
            method,
            path,
            query: parts.uri.query().map(str::to_string),
            headers,
            has_apikey: parts.headers.contains_key("apikey"),
            has_authorization: parts.headers.contains_key("authorization"),
            body: None,
            status: 0,
            dropped: false,
            faulted: failure.is_some(),
            started: Instant::now(),
            finished: None,
            in_flight_at_start: in_flight,
        });
        (
            InFlight {
                shared: shared.clone(),
                seq,
                status: 0,
                dropped: false,
                faulted: failure.is_some(),
            },
            latency,
            failure,
        )
    }

    fn set_body(&self, body: &Bytes) {
        if body.is_empty() {
            return;
        }
        let text = String::from_utf8_lossy(body).into_owned();
        let mut inner = self.shared.lock();
        if let Some(entry) = inner.log.iter_mut().rev().find(|e| e.seq == self.seq) {
            entry.body = Some(text);
        }
    }
}

impl InFlight {
    /// Complete the log entry now (before a dropped connection closes, so a client that
    /// sees the close also sees the entry).
    fn record(&self) {
        let mut inner = self.shared.lock();
        if let Some(entry) = inner.log.iter_mut().rev().find(|e| e.seq == self.seq) {
            entry.status = self.status;
            entry.dropped = self.dropped;
            entry.faulted = self.faulted;
            entry.finished.get_or_insert_with(Instant::now);
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.record();
        let mut inner = self.shared.lock();
        inner.in_flight = inner.in_flight.saturating_sub(1);
    }
}

/// The one request entry point.
async fn entry(AxumState(shared): AxumState<Arc<Shared>>, req: Request) -> Response {
    let path = req.uri().path();
    if path == "/_sandbox" || path.starts_with("/_sandbox/") {
        return control::handle(&shared, req).await;
    }
    let arrived = Instant::now();
    let abort = req.extensions().get::<ConnAbort>().cloned();
    let (parts, body) = req.into_parts();
    let (mut flight, latency, failure) = InFlight::begin(&shared, &parts);
    if !latency.is_zero() {
        delay::sleep_until(arrived + latency).await;
    }
    let body = match axum::body::to_bytes(body, BODY_LIMIT).await {
        Ok(bytes) => ReadBody::Complete(bytes),
        Err(_) => ReadBody::TooLarge,
    };
    if let ReadBody::Complete(bytes) = &body {
        flight.set_body(bytes);
    }

    if let Some(failure) = failure.as_ref().filter(|f| !f.after_commit) {
        return answer_failure(&mut flight, failure, &parts, abort).await;
    }
    let (endless, claimed_total) = {
        let inner = shared.lock();
        let endless = inner.faults.endless_body.as_deref().is_some_and(|route| {
            super::faults::route_matches(route, parts.method.as_str(), parts.uri.path())
        });
        (endless, inner.faults.claimed_total)
    };
    if endless {
        flight.status = 200;
        return endless_response();
    }
    let mut response = route(&shared, &parts, body).await;
    if let Some(failure) = failure.as_ref().filter(|f| f.after_commit) {
        return answer_failure(&mut flight, failure, &parts, abort).await;
    }
    if let Some(total) = claimed_total {
        claim_total(&mut response, total);
    }
    flight.status = response.status().as_u16();
    response
}

/// 200, JSON, and a body of spaces that never ends (JSON allows any amount of leading
/// whitespace, so only a bound on what is read stops a client).
fn endless_response() -> Response {
    let chunk = Bytes::from(vec![b' '; 64 * 1024]);
    let stream =
        futures::stream::repeat_with(move || Ok::<_, std::convert::Infallible>(chunk.clone()));
    let mut r = Response::new(Body::from_stream(stream));
    r.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    r
}

/// Replace the count a listing reports (a lying server).
fn claim_total(response: &mut Response, total: u64) {
    let headers = response.headers_mut();
    if headers.contains_key("x-total-count") {
        headers.insert("x-total-count", HeaderValue::from(total));
    }
    let range = headers
        .get("content-range")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once('/'))
        .map(|(range, _)| format!("{range}/{total}"));
    if let Some(v) = range.and_then(|r| HeaderValue::from_str(&r).ok()) {
        headers.insert("content-range", v);
    }
}

/// A request body as read: complete, or over GoTrue's 1 MiB limit.
pub(crate) enum ReadBody {
    Complete(Bytes),
    TooLarge,
}

async fn answer_failure(
    flight: &mut InFlight,
    failure: &Failure,
    parts: &Parts,
    abort: Option<ConnAbort>,
) -> Response {
    if failure.drop_connection
        && let Some(ConnAbort(notify)) = abort
    {
        flight.dropped = true;
        flight.record();
        notify.notify_one();
        // The connection task drops this future; nothing is ever sent.
        return std::future::pending::<Response>().await;
    }
    let response = failure_response(failure, parts);
    flight.status = response.status().as_u16();
    response
}

/// An injected failure, in the shape of the server the route belongs to.
fn failure_response(failure: &Failure, parts: &Parts) -> Response {
    let status = StatusCode::from_u16(failure.status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    let path = parts.uri.path();
    let message = failure.message.clone().unwrap_or_else(|| {
        status
            .canonical_reason()
            .unwrap_or("Service Unavailable")
            .to_string()
    });
    let mut response = if let Some(raw) = &failure.raw_body {
        let mut r = (status, raw.clone()).into_response();
        r.headers_mut().insert(
            "content-type",
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        r
    } else if let Some(code) = &failure.error_code {
        if path.starts_with("/auth/v1") {
            gotrue::ApiError::new(failure.status, code, &message).render(&parts.headers)
        } else {
            json(
                status,
                serde_json::json!({"code": code, "message": message, "details": null, "hint": null}),
            )
        }
    } else {
        json(status, serde_json::json!({ "message": message }))
    };
    if let Some(retry_after) = &failure.retry_after
        && let Ok(v) = HeaderValue::from_str(retry_after)
    {
        response.headers_mut().insert("retry-after", v);
    }
    response
}

/// Gateway routing: `/auth/v1/*` to GoTrue, `/rest/v1/*` to PostgREST, after the key check.
async fn route(shared: &Arc<Shared>, parts: &Parts, body: ReadBody) -> Response {
    let path = parts.uri.path();
    let under = |prefix: &str| {
        path.strip_prefix(prefix)
            .filter(|rest| rest.is_empty() || rest.starts_with('/'))
            .map(str::to_string)
    };
    if let Some(rest) = under("/auth/v1") {
        let upstream = match gateway::check(shared, parts) {
            Ok(u) => u,
            Err(resp) => return *resp,
        };
        return gotrue::handle(shared, parts, &rest, upstream.as_deref(), body).await;
    }
    if let Some(rest) = under("/rest/v1") {
        let upstream = match gateway::check(shared, parts) {
            Ok(u) => u,
            Err(resp) => return *resp,
        };
        return postgrest::handle(shared, parts, &rest, upstream.as_deref());
    }
    json(
        StatusCode::NOT_FOUND,
        serde_json::json!({"message": "no Route matched with those values"}),
    )
}

/// A JSON response with the content type Kong and PostgREST use.
pub(crate) fn json(status: StatusCode, body: serde_json::Value) -> Response {
    let mut r = (status, body.to_string()).into_response();
    r.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    r
}

/// A header's value as text, if present and valid UTF-8.
pub(crate) fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}
