//! The HTTP client for Supabase: the GoTrue admin API and PostgREST. The only place in
//! the crate that builds a request. Owns headers, timeouts, the shared concurrency
//! limiter, retries, error shapes, and complete (verified) listings. The key goes into
//! headers marked sensitive and nowhere else: never into a message, log or `Debug`.

mod auth;
mod failure;
mod limiter;
mod progress;
mod rest;
mod retry;
mod skim;

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, redirect};
use serde_json::Value;
use url::Url;

use crate::config::{SecretKey, is_loopback};
use crate::error::{ApiFailure, Error, FailureKind};

use failure::Scrubber;
use limiter::{Limiter, Outcome};
pub use progress::{ReadCounts, ReadProgress};
pub use retry::RetryPolicy;
pub(crate) use retry::{delay_before_retry, is_retryable_status};

/// Everything the client needs; the CLI builds it from flags and the environment.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The project URL (`MAP_SUPABASE_URL`), taken as given: the config decides which
    /// schemes are acceptable. A path (a project behind a prefix) is kept.
    pub base_url: Url,
    pub key: SecretKey,
    /// Requests in flight at any moment, reads and writes together (default 8; 0 is
    /// taken as 1).
    pub concurrency: usize,
    /// Per request, connecting included (default 30 s).
    pub timeout: Duration,
    pub retry: RetryPolicy,
}

impl ClientConfig {
    pub const DEFAULT_CONCURRENCY: usize = 8;
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

    /// The contract's defaults for everything but the target.
    pub fn new(base_url: Url, key: SecretKey) -> ClientConfig {
        ClientConfig {
            base_url,
            key,
            concurrency: Self::DEFAULT_CONCURRENCY,
            timeout: Self::DEFAULT_TIMEOUT,
            retry: RetryPolicy::default(),
        }
    }
}

/// A Supabase client. Cheap to clone: clones share the connection pool and the one
/// concurrency limiter, so `--concurrency` bounds the whole process.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    base: Url,
    retry: RetryPolicy,
    limiter: Limiter,
    concurrency: usize,
    scrub: Scrubber,
    /// The total of the last complete user listing (0 until one): bounds look-ups.
    listed_total: AtomicU64,
    progress: Arc<ReadProgress>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.inner.base.as_str())
            .field("concurrency", &self.inner.concurrency)
            .field("retry", &self.inner.retry)
            .finish_non_exhaustive()
    }
}

/// The `X-Client-Info` and `User-Agent` value. A non-browser User-Agent matters: the
/// gateway refuses `sb_secret_…` keys from browser-looking clients.
const CLIENT_INFO: &str = concat!("provision/", env!("CARGO_PKG_VERSION"));

/// Pins the GoTrue error shape to `{code: "<error_code>", message}` (the legacy shape is
/// still parsed, for servers that ignore the header).
const API_VERSION: &str = "2024-01-01";

/// Whether a request may be sent again after a failure that left its fate unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Retries {
    /// Idempotent: reads, and ban/restore (setting the same `ban_duration` twice is
    /// the same state).
    Policy,
    /// `POST /admin/users`: a second try could create a second user or answer
    /// `email_exists` for our own first try. The caller looks the email up instead.
    Never,
}

/// One request, rebuilt for each try.
struct RequestSpec {
    method: Method,
    url: Url,
    headers: Vec<(HeaderName, HeaderValue)>,
    body: Option<Value>,
    /// `GET /auth/v1/admin/users?page=2&…`: method, path and query, no host, no secret.
    describe: String,
}

/// An answer with its body read (the body counts as in flight).
struct Answer {
    status: u16,
    headers: HeaderMap,
    body: Vec<u8>,
}

/// The most of one response body the client reads (the contract: 64 MiB). At 1000 users
/// a page, a page is about 1 MiB; a longer answer is broken or hostile.
const MAX_BODY: usize = 64 << 20;

/// Why reading one answer stopped.
enum Read {
    Network(reqwest::Error),
    TooLarge,
}

/// A failure of one try, with what the retry loop needs to know about it.
struct TryFailure {
    failure: ApiFailure,
    retryable: bool,
}

impl Client {
    pub fn new(cfg: ClientConfig) -> Result<Client, Error> {
        let mut base = cfg.base_url;
        if base.cannot_be_a_base() || !matches!(base.scheme(), "http" | "https") {
            return Err(Error::BadUrl {
                reason: "it must be an http:// or https:// URL".into(),
            });
        }
        base.set_query(None);
        base.set_fragment(None);

        let headers = default_headers(&cfg.key)?;
        let timeout = cfg.timeout.max(Duration::from_millis(1));
        let mut builder = reqwest::Client::builder();
        // The proxy variables (`HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY`, `NO_PROXY`) are
        // honoured for a remote target (reqwest reads them), but a loopback target never
        // goes through a proxy: it would carry the key, in clear over plain http, to
        // another host.
        if base.host().is_some_and(|h| is_loopback(&h)) {
            builder = builder.no_proxy();
        }
        let http = builder
            .user_agent(CLIENT_INFO)
            .default_headers(headers)
            .timeout(timeout)
            .connect_timeout(timeout)
            // A redirect would carry the `apikey` header (not one reqwest strips) to
            // wherever it points. Supabase never redirects these routes: a 3xx is an error.
            .redirect(redirect::Policy::none())
            .build()
            .map_err(|e| Error::Internal(format!("cannot set up the HTTP client: {e}")))?;

        let concurrency = cfg.concurrency.max(1);
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                base,
                retry: cfg.retry,
                limiter: Limiter::new(concurrency),
                concurrency,
                scrub: Scrubber::new(cfg.key.expose()),
                listed_total: AtomicU64::new(0),
                progress: Arc::default(),
            }),
        })
    }

    /// Pages and rows read so far, for a progress display.
    pub fn read_progress(&self) -> Arc<ReadProgress> {
        self.inner.progress.clone()
    }

    /// Peak number of requests this client (and its clones) had in flight at once.
    pub fn peak_in_flight(&self) -> usize {
        self.inner.limiter.peak()
    }

    /// `base` + path segments (each percent-encoded as one segment) + query.
    fn endpoint(&self, segments: &[&str], query: &[(&str, &str)]) -> Url {
        let mut url = self.inner.base.clone();
        // `new` checked the base can be a base, so this always succeeds.
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        if !query.is_empty() {
            let q = query
                .iter()
                .map(|(k, v)| format!("{}={}", encode_component(k), encode_component(v)))
                .collect::<Vec<_>>()
                .join("&");
            url.set_query(Some(&q));
        }
        url
    }

    fn spec(
        &self,
        method: Method,
        url: Url,
        headers: Vec<(HeaderName, HeaderValue)>,
        body: Option<Value>,
    ) -> RequestSpec {
        let mut describe = format!("{method} {}", url.path());
        if let Some(q) = url.query() {
            describe.push('?');
            describe.push_str(q);
        }
        RequestSpec {
            method,
            url,
            headers,
            body,
            describe: self.inner.scrub.clean(&describe),
        }
    }

    /// Send `spec` until it succeeds (2xx), fails for good, or runs out of tries. Every
    /// try takes a slot of the shared limiter; waiting between tries does not.
    async fn send(&self, spec: &RequestSpec, retries: Retries) -> Result<Answer, ApiFailure> {
        let policy = &self.inner.retry;
        let max_tries = match retries {
            Retries::Policy => policy.max_tries.max(1),
            Retries::Never => 1,
        };
        let mut tries = 0;
        loop {
            tries += 1;
            let failed = match self.try_once(spec).await {
                Ok(answer) => return Ok(answer),
                Err(failed) => failed,
            };
            if !failed.retryable || tries >= max_tries {
                return Err(failed.failure);
            }
            let delay = retry::delay_before_retry(policy, tries - 1, failed.failure.retry_after);
            tokio::time::sleep(delay).await;
        }
    }

    async fn try_once(&self, spec: &RequestSpec) -> Result<Answer, TryFailure> {
        let mut permit = self.inner.limiter.acquire().await;
        let mut req = self
            .inner
            .http
            .request(spec.method.clone(), spec.url.clone());
        for (name, value) in &spec.headers {
            req = req.header(name, value);
        }
        if let Some(body) = &spec.body {
            req = req.json(body);
        }
        let result = async {
            let mut resp = req.send().await.map_err(Read::Network)?;
            let status = resp.status().as_u16();
            let headers = resp.headers().clone();
            // Streamed and checked as it arrives: a body (or a `Content-Length`) past the
            // cap is refused, never gathered into memory first.
            if resp.content_length().is_some_and(|n| n > MAX_BODY as u64) {
                return Err(Read::TooLarge);
            }
            let mut body = Vec::new();
            while let Some(chunk) = resp.chunk().await.map_err(Read::Network)? {
                if body.len() + chunk.len() > MAX_BODY {
                    return Err(Read::TooLarge);
                }
                body.extend_from_slice(&chunk);
            }
            Ok(Answer {
                status,
                headers,
                body,
            })
        }
        .await;
        permit.record(match &result {
            Ok(a) if (200..300).contains(&a.status) => Outcome::Success,
            Ok(a) if matches!(a.status, 429 | 503) => Outcome::Overloaded,
            _ => Outcome::Neutral,
        });
        drop(permit);

        match result {
            Ok(answer) if (200..300).contains(&answer.status) => Ok(answer),
            Ok(answer) => Err(TryFailure {
                    failure: failure::failure_from_response(
                        &spec.describe,
                        answer.status,
                        &answer.headers,
                        &answer.body,
                        &self.inner.scrub,
                    ),
                retryable: retry::is_retryable_status(answer.status),
            }),
            Err(Read::Network(e)) => Err(self.network_failure(&spec.describe, e)),
            // The same request would get the same answer: not retried.
            Err(Read::TooLarge) => Err(TryFailure {
                failure: self.bad_response(
                    spec,
                    format!(
                        "the answer is longer than {} MiB, the most provision reads of one answer; refusing to read more",
                        MAX_BODY >> 20
                    ),
                ),
                retryable: false,
            }),
        }
    }

    fn network_failure(&self, describe: &str, e: reqwest::Error) -> TryFailure {
        // Builder and redirect errors are ours or the server's design: trying again
        // gives the same answer. Connect, send, timeout and body errors may be passing.
        let retryable = !(e.is_builder() || e.is_redirect() || e.is_status());
        let kind = if e.is_timeout() {
            FailureKind::Timeout
        } else {
            FailureKind::Network
        };
        let e = e.without_url();
        let mut message = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            message.push_str(": ");
            message.push_str(&s.to_string());
            source = s.source();
        }
        TryFailure {
            failure: ApiFailure {
                request: describe.to_string(),
                kind,
                status: None,
                code: None,
                message: self.inner.scrub.clean(&message),
                retry_after: None,
            },
            retryable,
        }
    }

    /// A 2xx answer we could not make sense of.
    fn bad_response(&self, spec: &RequestSpec, message: impl AsRef<str>) -> ApiFailure {
        ApiFailure {
            request: spec.describe.clone(),
            kind: FailureKind::BadResponse,
            status: None,
            code: None,
            message: self.inner.scrub.clean(message.as_ref()),
            retry_after: None,
        }
    }
}

/// Headers on every request. The key is sent as `apikey` (read by the gateway); a JWT
/// key also as `Authorization: Bearer` (read by GoTrue and PostgREST). An `sb_secret_…`
/// key is not a JWT: it goes in `apikey` alone, and the gateway swaps in a short-lived
/// service_role JWT upstream. Sending it in `Authorization` too would only be accepted
/// if byte-identical, and would put the secret in one more header for proxies to log.
fn default_headers(key: &SecretKey) -> Result<HeaderMap, Error> {
    let sensitive = |value: String| {
        HeaderValue::from_str(&value)
            .map(|mut v| {
                v.set_sensitive(true);
                v
            })
            .map_err(|_| Error::BadKey {
                reason: "it contains characters that cannot be sent in an HTTP header",
            })
    };
    let mut headers = HeaderMap::new();
    headers.insert("apikey", sensitive(key.expose().to_string())?);
    if !key.is_secret_key() {
        headers.insert(
            reqwest::header::AUTHORIZATION,
            sensitive(format!("Bearer {}", key.expose()))?,
        );
    }
    headers.insert("x-client-info", HeaderValue::from_static(CLIENT_INFO));
    headers.insert(
        "x-supabase-api-version",
        HeaderValue::from_static(API_VERSION),
    );
    Ok(headers)
}

/// Percent-encode a query component: everything but RFC 3986 unreserved characters, so
/// a space is `%20` (not `+`, which a `filter` email may contain literally).
fn encode_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const JWT: &str = "eyJhbGciOiJIUzI1NiJ9.eyJyb2xlIjoic2VydmljZV9yb2xlIn0.c2ln";

    fn client(base: &str, key: &str) -> Client {
        Client::new(ClientConfig::new(
            Url::parse(base).unwrap(),
            SecretKey::new(key.into()),
        ))
        .unwrap()
    }

    #[test]
    fn jwt_key_goes_in_both_headers_secret_key_in_apikey_only() {
        let h = default_headers(&SecretKey::new(JWT.into())).unwrap();
        assert_eq!(h["apikey"], JWT);
        assert_eq!(h["authorization"], format!("Bearer {JWT}").as_str());
        assert!(h["apikey"].is_sensitive());
        assert!(h["authorization"].is_sensitive());
        assert_eq!(h["x-supabase-api-version"], "2024-01-01");
        assert!(
            h["x-client-info"]
                .to_str()
                .unwrap()
                .starts_with("provision/")
        );

        let h = default_headers(&SecretKey::new("sb_secret_abc123".into())).unwrap();
        assert_eq!(h["apikey"], "sb_secret_abc123");
        assert!(h.get("authorization").is_none());
    }

    #[test]
    fn a_key_that_cannot_be_a_header_is_refused_without_echoing_it() {
        let err = default_headers(&SecretKey::new("abc\ndef".into())).unwrap_err();
        let text = format!("{err} {err:?}");
        assert!(!text.contains("abc"), "{text}");
    }

    #[test]
    fn endpoints_keep_a_base_path_and_encode_segments_and_queries() {
        let c = client("https://abcd.supabase.co", JWT);
        let u = c.endpoint(
            &["auth", "v1", "admin", "users"],
            &[
                ("page", "2"),
                ("sort", "created_at asc"),
                ("filter", "a+b@x.io"),
            ],
        );
        assert_eq!(
            u.as_str(),
            "https://abcd.supabase.co/auth/v1/admin/users?page=2&sort=created_at%20asc&filter=a%2Bb%40x.io"
        );
        let c = client("http://127.0.0.1:5555/proxy/?x=1", JWT);
        let u = c.endpoint(&["rest", "v1", "odd/name"], &[]);
        assert_eq!(u.as_str(), "http://127.0.0.1:5555/proxy/rest/v1/odd%2Fname");
    }

    #[test]
    fn descriptions_name_method_path_query_only() {
        let c = client("https://user:pw@abcd.supabase.co", JWT);
        let url = c.endpoint(&["auth", "v1", "admin", "users"], &[("page", "3")]);
        let s = c.spec(Method::GET, url, vec![], None);
        assert_eq!(s.describe, "GET /auth/v1/admin/users?page=3");
    }

    #[test]
    fn debug_output_holds_no_key() {
        let c = client("https://abcd.supabase.co", JWT);
        assert!(!format!("{c:?}").contains(JWT));
        let cfg = ClientConfig::new(
            Url::parse("https://abcd.supabase.co").unwrap(),
            SecretKey::new(JWT.into()),
        );
        assert!(!format!("{cfg:?}").contains(JWT));
    }

    /// A server that answers each connection with the next canned response, for the
    /// malformed answers a faithful sandbox never gives. Returns the base URL.
    async fn canned(answers: Vec<String>) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            for answer in answers {
                let (mut sock, _) = listener.accept().await.unwrap();
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = sock.read(&mut chunk).await.unwrap();
                    if n == 0 {
                        break;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                sock.write_all(answer.as_bytes()).await.unwrap();
                sock.shutdown().await.unwrap();
            }
        });
        format!("http://{addr}")
    }

    fn ok(headers: &str, body: &str) -> String {
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n{headers}Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
    }

    #[tokio::test]
    async fn a_listing_without_a_total_is_refused_as_unverifiable() {
        let base = canned(vec![ok(
            "",
            r#"{"users":[{"id":"a","email":"a@example.com"}]}"#,
        )])
        .await;
        let err = client(&base, JWT).list_users().await.unwrap_err();
        assert!(matches!(err, Error::IncompleteRead { .. }), "{err:?}");
        assert!(err.to_string().contains("X-Total-Count"), "{err}");
    }

    #[tokio::test]
    async fn a_user_without_an_id_fails_the_listing() {
        let base = canned(vec![ok(
            "X-Total-Count: 2\r\n",
            r#"{"users":[{"id":"a","email":"a@example.com"},{"email":"b@example.com"}]}"#,
        )])
        .await;
        let err = client(&base, JWT).list_users().await.unwrap_err();
        let Error::Api(f) = &err else {
            panic!("expected Error::Api, got {err:?}");
        };
        assert_eq!(f.kind, FailureKind::BadResponse);
        assert!(f.message.contains("user 2 of the page"), "{}", f.message);
        assert!(f.message.contains("no `id`"), "{}", f.message);
    }

    #[tokio::test]
    async fn a_listing_shorter_than_its_total_is_never_returned() {
        // Three scans, each claiming 3 users but holding 2.
        let page = ok(
            "X-Total-Count: 3\r\n",
            r#"{"users":[{"id":"a","email":"a@example.com"},{"id":"b","email":"b@example.com"}]}"#,
        );
        let base = canned(vec![page.clone(), page.clone(), page]).await;
        let err = client(&base, JWT).list_users().await.unwrap_err();
        assert!(matches!(err, Error::IncompleteRead { .. }), "{err:?}");
        assert!(err.to_string().contains("page 1 held 2 users"), "{err}");
    }

    #[tokio::test]
    async fn an_email_look_up_reads_no_more_pages_than_a_full_listing() {
        // The full listing holds 2 users (one page); the look-up then gets pages full of
        // other users with a huge total, for as long as it keeps asking.
        let listing = ok(
            "X-Total-Count: 2\r\n",
            r#"{"users":[{"id":"a","email":"a@example.com"},{"id":"b","email":"b@example.com"}]}"#,
        );
        let others: Vec<String> = (0..1000)
            .map(|i| {
                format!(
                    r#"{{"id":"{i:08x}-0000-4000-8000-000000000000","email":"x{i}@example.com"}}"#
                )
            })
            .collect();
        let full = ok(
            "X-Total-Count: 9000000\r\n",
            &format!(r#"{{"users":[{}]}}"#, others.join(",")),
        );
        let base = canned(vec![listing, full.clone(), full.clone(), full]).await;
        let c = client(&base, JWT);
        assert_eq!(c.list_users().await.unwrap().len(), 2);
        let f = c.find_users_by_email("ada@example.com").await.unwrap_err();
        assert_eq!(f.kind, FailureKind::BadResponse);
        assert!(
            f.message.contains("did not end within 2 pages"),
            "{}",
            f.message
        );
    }

    /// A restore answered with `answer`, which must fail.
    async fn failed_restore(answer: String) -> ApiFailure {
        let base = canned(vec![answer]).await;
        client(&base, JWT)
            .set_ban_duration("9f2e0000-0000-4000-8000-00000000000a", "none")
            .await
            .unwrap_err()
    }

    #[tokio::test]
    async fn a_content_length_over_64_mib_is_refused_before_reading() {
        let huge = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: 2000000000\r\n\r\n{".to_string();
        let f = failed_restore(huge).await;
        assert_eq!(f.kind, FailureKind::BadResponse);
        assert_eq!(
            f.to_string(),
            "PUT /auth/v1/admin/users/9f2e0000-0000-4000-8000-00000000000a: the answer is longer than 64 MiB, the most provision reads of one answer; refusing to read more"
        );
    }

    #[tokio::test]
    async fn a_roster_page_without_an_exact_count_is_refused() {
        let base = canned(vec![ok(
            "Content-Range: 0-0/*\r\n",
            r#"[{"email":"a@example.com"}]"#,
        )])
        .await;
        let err = client(&base, JWT)
            .read_roster_table("activity", "organization_people")
            .await
            .unwrap_err();
        assert!(matches!(err, Error::IncompleteRead { .. }), "{err:?}");
    }

    #[tokio::test]
    async fn a_roster_page_that_contradicts_its_range_is_read_again_then_refused() {
        let page = ok("Content-Range: 0-1/2\r\n", r#"[{"email":"a@example.com"}]"#);
        let base = canned(vec![page.clone(), page.clone(), page]).await;
        let err = client(&base, JWT)
            .read_roster_table("activity", "organization_people")
            .await
            .unwrap_err();
        assert!(matches!(err, Error::IncompleteRead { .. }), "{err:?}");
        assert!(err.to_string().contains("3 reads"), "{err}");
    }

    #[tokio::test]
    async fn an_unparsable_success_body_is_a_bad_response() {
        let f = failed_restore(ok("", "<html>hello</html>")).await;
        assert_eq!(f.kind, FailureKind::BadResponse);
        assert_eq!(
            f.request,
            "PUT /auth/v1/admin/users/9f2e0000-0000-4000-8000-00000000000a"
        );
    }

    #[tokio::test]
    async fn a_user_id_that_is_not_a_uuid_is_never_sent() {
        // Nothing listens here: a request would fail as a network error, not this way.
        let c = client("http://127.0.0.1:9", JWT);
        for id in [
            ".\t.",
            "..",
            ".",
            "a/b",
            "",
            "9f2e0000-0000-4000-8000-00000000000a/..",
        ] {
            let f = c.set_ban_duration(id, "876000h").await.unwrap_err();
            assert_eq!(f.kind, FailureKind::BadResponse, "{id:?}");
            assert!(f.message.contains("not a UUID"), "{id:?}: {f}");
        }
        // Every segment is percent-encoded as one segment.
        let u = c.endpoint(&["auth", "v1", "admin", "users", "a/b?c#d %"], &[]);
        assert_eq!(u.path(), "/auth/v1/admin/users/a%2Fb%3Fc%23d%20%25");
    }

    #[test]
    fn non_http_urls_are_refused() {
        let r = Client::new(ClientConfig::new(
            Url::parse("mailto:a@b.c").unwrap(),
            SecretKey::new(JWT.into()),
        ));
        assert!(matches!(r, Err(Error::BadUrl { .. })));
    }
}
