//! GoTrue (`/auth/v1`) as `supabase-api.md` section A reads it from source: the admin
//! bearer check, the chi routes under `/admin/users` (no PATCH), listing with its
//! pagination and sort quirks, create/update/delete with GoTrue's validation order and
//! messages, both error shapes, and the User JSON. Its wire types are written here from
//! the contract; nothing is shared with the client in `src/supabase`.

use std::sync::Arc;

use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, request::Parts};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use uuid::Uuid;

use super::duration::parse_go_duration;
use super::faults::Times;
use super::jwt;
use super::server::{BODY_LIMIT, ReadBody, Shared, header};
use super::state::{Identity, State, User, truncate_micros};
use super::wire::{self, go_quote, go_time, sql_like};

/// GoTrue's `defaultPerPage`.
const DEFAULT_PER_PAGE: u64 = 50;
/// GoTrue's `DuplicateEmailMsg`.
const DUPLICATE_EMAIL: &str = "A user with this email address has already been registered";

/// An error as GoTrue's `HandleResponseError` writes it.
#[derive(Debug, Clone)]
pub struct ApiError {
    status: u16,
    /// The `error_code`; empty for a recovered panic (no `x-sb-error-code` then).
    code: String,
    msg: String,
    /// A user-visible Postgres error, shown instead with the legacy API version.
    pg: Option<Value>,
}

impl ApiError {
    pub fn new(status: u16, code: &str, msg: &str) -> ApiError {
        ApiError {
            status,
            code: code.to_string(),
            msg: msg.to_string(),
            pg: None,
        }
    }

    fn bad_request(code: &str, msg: impl Into<String>) -> ApiError {
        ApiError::new(400, code, &msg.into())
    }

    fn internal(msg: &str) -> ApiError {
        ApiError::new(500, "unexpected_failure", msg)
    }

    fn with_pg(mut self, pg: Value) -> ApiError {
        self.pg = Some(pg);
        self
    }

    /// Render for a request with these headers (`X-Supabase-Api-Version` picks the shape).
    pub fn render(&self, request_headers: &HeaderMap) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let version_2024 = api_version_2024(request_headers);
        let fallback_code = if self.status == 500 {
            "unexpected_failure"
        } else {
            "unknown"
        };
        let code = if self.code.is_empty() {
            fallback_code
        } else {
            &self.code
        };
        let body = if version_2024 {
            json!({"code": code, "message": self.msg})
        } else if let Some(pg) = &self.pg {
            pg.clone()
        } else {
            let mut m = Map::new();
            m.insert("code".into(), json!(self.status));
            m.insert("error_code".into(), json!(code));
            m.insert("msg".into(), json!(self.msg));
            if self.status >= 500 {
                m.insert("error_id".into(), json!(Uuid::new_v4().to_string()));
            }
            Value::Object(m)
        };
        let mut response = gotrue_json(status, &body);
        if version_2024 {
            response.headers_mut().insert(
                "x-supabase-api-version",
                HeaderValue::from_static("2024-01-01"),
            );
        }
        if !self.code.is_empty()
            && let Ok(v) = HeaderValue::from_str(&self.code)
        {
            response.headers_mut().insert("x-sb-error-code", v);
        }
        response
    }
}

/// `DetermineClosestAPIVersion`: a `YYYY-MM-DD` date on or after 2024-01-01 selects the
/// 2024-01-01 shape; anything else (absent, earlier, unparsable) the legacy one.
fn api_version_2024(headers: &HeaderMap) -> bool {
    let Some(v) = header(headers, "x-supabase-api-version") else {
        return false;
    };
    let b = v.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|s| s.iter().all(u8::is_ascii_digit));
    let shaped = b.len() == 10
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10);
    if !shaped {
        return false;
    }
    let (y, m, d) = (&v[0..4], &v[5..7], &v[8..10]);
    let (Ok(y), Ok(m), Ok(d)) = (y.parse::<i32>(), m.parse::<u8>(), d.parse::<u8>()) else {
        return false;
    };
    let Ok(month) = time::Month::try_from(m) else {
        return false;
    };
    if time::Date::from_calendar_date(y, month, d).is_err() {
        return false;
    }
    y >= 2024
}

/// GoTrue's `sendJSON`: `Content-Type: application/json`, compact JSON.
fn gotrue_json(status: StatusCode, body: &impl Serialize) -> Response {
    let text = serde_json::to_string(body).unwrap_or_else(|_| "{}".to_string());
    gotrue_json_text(status, text)
}

/// [`gotrue_json`] for a body already serialised.
fn gotrue_json_text(status: StatusCode, text: String) -> Response {
    let mut r = (status, text).into_response();
    r.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    r
}

/// chi's default 404 (GoTrue sets no NotFound handler).
fn chi_not_found() -> Response {
    let mut r = (StatusCode::NOT_FOUND, "404 page not found\n").into_response();
    r.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r.headers_mut().insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    r
}

/// chi's default 405: no body, an `Allow` header per routed method.
fn chi_method_not_allowed(allowed: &[&str]) -> Response {
    let mut r = StatusCode::METHOD_NOT_ALLOWED.into_response();
    for m in allowed {
        if let Ok(v) = HeaderValue::from_str(m) {
            r.headers_mut().append("allow", v);
        }
    }
    r
}

/// What the handlers need from the request.
struct Ctx<'a> {
    shared: &'a Arc<Shared>,
    parts: &'a Parts,
    query: Vec<(String, String)>,
    /// The path GoTrue sees (gateway prefix stripped), as `Link` URLs repeat it.
    path: &'a str,
}

impl Ctx<'_> {
    /// `requestAud`: the `X-JWT-AUD` header, else the configured audience.
    fn aud(&self) -> String {
        header(&self.parts.headers, "x-jwt-aud")
            .filter(|a| !a.is_empty())
            .map(str::to_string)
            .unwrap_or_else(|| self.shared.config.aud.clone())
    }
}

/// Serve a request for GoTrue. `path` is the GoTrue-relative path (`/admin/users`),
/// `authorization` what the gateway forwards.
pub(crate) async fn handle(
    shared: &Arc<Shared>,
    parts: &Parts,
    path: &str,
    authorization: Option<&str>,
    body: ReadBody,
) -> Response {
    let ctx = Ctx {
        shared,
        parts,
        query: wire::parse_query(parts.uri.query()),
        path,
    };
    match serve(&ctx, authorization, body).await {
        Ok(r) => r,
        Err(e) => e.render(&parts.headers),
    }
}

async fn serve(
    ctx: &Ctx<'_>,
    authorization: Option<&str>,
    body: ReadBody,
) -> Result<Response, ApiError> {
    let trimmed = ctx.path.strip_suffix('/').unwrap_or(ctx.path);
    let segments: Vec<&str> = trimmed.split('/').skip(1).collect();
    let method = &ctx.parts.method;
    match segments.as_slice() {
        ["health"] if *method == Method::GET => Ok(gotrue_json(
            StatusCode::OK,
            &json!({
                "version": "sandbox",
                "name": "GoTrue",
                "description": "GoTrue is a user registration and authentication API"
            }),
        )),
        ["admin", rest @ ..] => {
            // `requireAdminCredentials` wraps the whole `/admin` group, so it runs
            // before any route inside it is matched.
            require_admin(ctx, authorization)?;
            match rest {
                ["users"] => match *method {
                    Method::GET => list_users(ctx),
                    Method::POST => create_user(ctx, body).await,
                    _ => Ok(chi_method_not_allowed(&["GET", "POST"])),
                },
                ["users", id, tail @ ..] => {
                    // `loadUser` wraps the `/{user_id}` group: a bad or unknown id is a
                    // 404 whatever the method (PATCH included).
                    let user = load_user(ctx, id)?;
                    match tail {
                        [] => match *method {
                            Method::GET => {
                                Ok(gotrue_json(StatusCode::OK, &render_user(&user, true, true)))
                            }
                            Method::PUT => update_user(ctx, user, body),
                            Method::DELETE => delete_user(ctx, user, body),
                            _ => Ok(chi_method_not_allowed(&["GET", "PUT", "DELETE"])),
                        },
                        ["factors"] => match *method {
                            Method::GET => Ok(gotrue_json(StatusCode::OK, &json!([]))),
                            _ => Ok(chi_method_not_allowed(&["GET"])),
                        },
                        _ => Ok(chi_not_found()),
                    }
                }
                _ => Ok(chi_not_found()),
            }
        }
        _ => Ok(chi_not_found()),
    }
}

fn require_admin(ctx: &Ctx<'_>, authorization: Option<&str>) -> Result<(), ApiError> {
    // extractBearerToken: (?i)^bearer (\S+$)
    let token = authorization.and_then(|a| {
        let (scheme, rest) = (a.get(..7)?, a.get(7..)?);
        (scheme.eq_ignore_ascii_case("bearer ")
            && !rest.is_empty()
            && !rest.contains(char::is_whitespace))
        .then_some(rest)
    });
    let Some(token) = token else {
        return Err(ApiError::new(
            401,
            "no_authorization",
            "This endpoint requires a valid Bearer token",
        ));
    };
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let claims = jwt::verify(&ctx.shared.config.jwt_secret, token, now).map_err(|e| {
        ApiError::new(
            403,
            "bad_jwt",
            &format!(
                "invalid JWT: unable to parse or verify signature, {}",
                e.go_message()
            ),
        )
    })?;
    let role = claims.get("role").and_then(Value::as_str).unwrap_or("");
    if ctx.shared.config.admin_roles.iter().any(|r| r == role) {
        Ok(())
    } else {
        Err(ApiError::new(403, "not_admin", "User not allowed"))
    }
}

fn load_user(ctx: &Ctx<'_>, raw_id: &str) -> Result<User, ApiError> {
    let id = Uuid::parse_str(raw_id)
        .map_err(|_| ApiError::new(404, "validation_failed", "user_id must be an UUID"))?;
    ctx.shared
        .lock()
        .state
        .user(&id)
        .cloned()
        .ok_or_else(|| ApiError::new(404, "user_not_found", "User not found"))
}

/// Go's `strconv.ParseUint(s, 10, 64)`, with its error text.
fn parse_uint(s: &str) -> Result<u64, String> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "strconv.ParseUint: parsing {}: invalid syntax",
            go_quote(s)
        ));
    }
    s.parse::<u64>().map_err(|_| {
        format!(
            "strconv.ParseUint: parsing {}: value out of range",
            go_quote(s)
        )
    })
}

fn list_users(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    let q = &ctx.query;
    // paginate(): "" means absent.
    let mut page: u64 = 1;
    let mut per_page: u64 = DEFAULT_PER_PAGE;
    if let Some(v) = wire::first(q, "page").filter(|v| !v.is_empty()) {
        page = parse_uint(v).map_err(|e| {
            ApiError::bad_request(
                "validation_failed",
                format!("Bad Pagination Parameters: {e}"),
            )
        })?;
    }
    if let Some(v) = wire::first(q, "per_page").filter(|v| !v.is_empty()) {
        per_page = parse_uint(v).map_err(|e| {
            ApiError::bad_request(
                "validation_failed",
                format!("Bad Pagination Parameters: {e}"),
            )
        })?;
    }
    // sort(): every `sort` value must name created_at; direction asc/desc, any case.
    let mut ascending = false;
    let mut first_sort = true;
    for (_, value) in q.iter().filter(|(k, _)| k == "sort") {
        let (field, dir) = match value.split_once(' ') {
            Some((f, d)) => (f, Some(d)),
            None => (value.as_str(), None),
        };
        if field != "created_at" {
            return Err(ApiError::bad_request(
                "validation_failed",
                format!("Bad Sort Parameters: bad field for sort '{field}'"),
            ));
        }
        let asc = match dir.map(str::to_uppercase).as_deref() {
            None | Some("DESC") => false,
            Some("ASC") => true,
            Some(_) => {
                return Err(ApiError::bad_request(
                    "validation_failed",
                    format!(
                        "Bad Sort Parameters: bad direction for sort '{}', only 'asc' and 'desc' allowed",
                        dir.unwrap_or_default()
                    ),
                ));
            }
        };
        // The first ORDER BY term decides; later ones only break its ties.
        if first_sort {
            ascending = asc;
            first_sort = false;
        }
    }
    let filter = wire::first(q, "filter").unwrap_or("").to_string();
    let aud = ctx.aud();

    // pop's Paginate: page < 1 becomes 1 and per_page < 1 becomes 20 (the values go
    // through Go's int, so huge ones wrap negative). The Link header below still uses
    // the values as parsed.
    let pop_page = if (page as i64) < 1 { 1 } else { page };
    let pop_per_page = if (per_page as i64) < 1 { 20 } else { per_page };
    let offset = usize::try_from((pop_page - 1).saturating_mul(pop_per_page)).unwrap_or(usize::MAX);
    let limit = usize::try_from(pop_per_page).unwrap_or(usize::MAX);

    let (total, users_json) = {
        let mut inner = ctx.shared.lock();
        inner.listings += 1;
        let salt = inner.listings;
        let ban_ends = match &mut inner.faults.ban_ends_at_read {
            Some((_, skip)) if *skip > 0 => {
                *skip -= 1;
                None
            }
            Some((email, _)) => Some(email.clone()),
            None => None,
        };
        if let Some(email) = ban_ends {
            let now = OffsetDateTime::now_utc();
            // Just after the start of the second at the earliest: a clock cut to whole
            // seconds sees the ban in force until the next second begins.
            let second = now.replace_nanosecond(1_000).unwrap_or(now);
            let ended = (now - time::Duration::milliseconds(300)).max(second);
            let found: Vec<User> = inner
                .state
                .user_by_email_ci(&email)
                .into_iter()
                .cloned()
                .collect();
            for mut u in found {
                u.banned_until = Some(truncate_micros(ended));
                inner.state.update_user(u);
            }
        }
        if let Some((at_page, k)) = inner.faults.insert_during_page
            && at_page == pop_page
        {
            inner.faults.insert_during_page = None;
            let now = OffsetDateTime::now_utc();
            for i in 0..k {
                let created = inner.state.now_for_insert(truncate_micros(now));
                let mut u = User::new(Uuid::new_v4(), &ctx.shared.config.aud, created);
                let email = format!("inserted-{salt}-{i}@example.com");
                u.identities.push(u.email_identity(&email, created));
                u.email = Some(email);
                u.app_metadata = provider_metadata(&["email"]);
                inner.state.insert_user(u);
            }
        }
        let matcher = |u: &User| {
            let pattern = format!("%{filter}%");
            u.email
                .as_deref()
                .is_some_and(|e| sql_like(e, &pattern, false))
                || u.user_metadata
                    .get("full_name")
                    .and_then(Value::as_str)
                    .is_some_and(|n| sql_like(n, &pattern, true))
        };
        let filter_fn: Option<&dyn Fn(&User) -> bool> = if filter.is_empty() {
            None
        } else {
            Some(&matcher)
        };
        let (total, ids) = inner
            .state
            .list_page_ids(&aud, filter_fn, ascending, offset, limit, salt);
        (total, listed_users_json(&mut inner.state, &ids))
    };

    // addPaginationHeaders divides by per_page as parsed: per_page=0 panics there, and
    // the recoverer answers 500 with no error code.
    if per_page == 0 {
        return Err(ApiError {
            status: 500,
            code: String::new(),
            msg: "Internal Server Error".into(),
            pg: None,
        });
    }
    let count = total as u64;
    let total_pages = count / per_page + u64::from(!count.is_multiple_of(per_page));
    let mut pairs = ctx.query.clone();
    let with_page = |pairs: &mut Vec<(String, String)>, p: u64| {
        pairs.retain(|(k, _)| k != "page");
        pairs.push(("page".into(), p.to_string()));
        format!("{}?{}", ctx.path, wire::encode_query(pairs))
    };
    let mut link = String::new();
    if total_pages > page {
        link.push_str(&format!(
            "<{}>; rel=\"next\", ",
            with_page(&mut pairs, page + 1)
        ));
    }
    link.push_str(&format!(
        "<{}>; rel=\"last\"",
        with_page(&mut pairs, total_pages)
    ));

    // `{"aud":…,"users":[…]}`: what serialising `json!({"users": […], "aud": aud})`
    // gives (members in key order), with each user's JSON made once and kept.
    let mut body = String::with_capacity(users_json.len() + aud.len() + 32);
    body.push_str("{\"aud\":");
    body.push_str(&json!(aud).to_string());
    body.push_str(",\"users\":");
    body.push_str(&users_json);
    body.push('}');
    let mut response = gotrue_json_text(StatusCode::OK, body);
    if let Ok(v) = HeaderValue::from_str(&link) {
        response.headers_mut().insert("link", v);
    }
    response
        .headers_mut()
        .insert("x-total-count", HeaderValue::from(count));
    Ok(response)
}

/// `AdminUserParams`, decoded with Go's `encoding/json` rules.
#[derive(Debug, Default)]
struct AdminParams {
    id: String,
    aud: String,
    role: String,
    email: String,
    phone: String,
    password: Option<String>,
    password_hash: String,
    email_confirm: bool,
    phone_confirm: bool,
    user_metadata: Option<Map<String, Value>>,
    app_metadata: Option<Map<String, Value>>,
    ban_duration: String,
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Go's syntax error text for a body serde could not parse (approximated: Go and serde
/// stop at the same byte, but Go words each case its own way).
fn go_syntax_error(body: &[u8], err: &serde_json::Error) -> String {
    if err.is_eof() {
        return "unexpected end of JSON input".into();
    }
    let text = String::from_utf8_lossy(body);
    let line = err.line().saturating_sub(1);
    let col = err.column().saturating_sub(1);
    let c = text
        .lines()
        .nth(line)
        .and_then(|l| l.chars().nth(col))
        .unwrap_or('?');
    format!("invalid character '{c}' looking for beginning of value")
}

fn decode_params(body: ReadBody, struct_name: &str) -> Result<Map<String, Value>, ApiError> {
    let bytes = match body {
        ReadBody::TooLarge => {
            return Err(ApiError::new(
                413,
                "request_entity_too_large",
                &format!("Request body too large (max {BODY_LIMIT} bytes)"),
            ));
        }
        ReadBody::Complete(b) => b,
    };
    let bad_json = |why: String| {
        ApiError::bad_request(
            "bad_json",
            format!("Could not parse request body as JSON: {why}"),
        )
    };
    let value: Value =
        serde_json::from_slice(&bytes).map_err(|e| bad_json(go_syntax_error(&bytes, &e)))?;
    match value {
        Value::Object(m) => Ok(m),
        Value::Null => Ok(Map::new()),
        other => Err(bad_json(format!(
            "json: cannot unmarshal {} into Go value of type api.{struct_name}",
            json_kind(&other)
        ))),
    }
}

/// Go matches JSON keys to fields exactly first, then case-insensitively.
fn field<'a>(m: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    m.get(name).or_else(|| {
        m.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    })
}

fn type_error(struct_name: &str, name: &str, got: &Value, go_type: &str) -> ApiError {
    ApiError::bad_request(
        "bad_json",
        format!(
            "Could not parse request body as JSON: json: cannot unmarshal {} into Go struct field {struct_name}.{name} of type {go_type}",
            json_kind(got)
        ),
    )
}

fn admin_params(body: ReadBody) -> Result<AdminParams, ApiError> {
    const S: &str = "AdminUserParams";
    let m = decode_params(body, S)?;
    let string = |name: &str| -> Result<String, ApiError> {
        match field(&m, name) {
            None | Some(Value::Null) => Ok(String::new()),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(other) => Err(type_error(S, name, other, "string")),
        }
    };
    let boolean = |name: &str| -> Result<bool, ApiError> {
        match field(&m, name) {
            None | Some(Value::Null) => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(other) => Err(type_error(S, name, other, "bool")),
        }
    };
    let map = |name: &str| -> Result<Option<Map<String, Value>>, ApiError> {
        match field(&m, name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Object(o)) => Ok(Some(o.clone())),
            Some(other) => Err(type_error(S, name, other, "map[string]interface {}")),
        }
    };
    let password = match field(&m, "password") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => return Err(type_error(S, "password", other, "string")),
    };
    Ok(AdminParams {
        id: string("id")?,
        aud: string("aud")?,
        role: string("role")?,
        email: string("email")?,
        phone: string("phone")?,
        password,
        password_hash: string("password_hash")?,
        email_confirm: boolean("email_confirm")?,
        phone_confirm: boolean("phone_confirm")?,
        user_metadata: map("user_metadata")?,
        app_metadata: map("app_metadata")?,
        ban_duration: string("ban_duration")?,
    })
}

/// badoux/checkmail's format regex, by hand:
/// `^[a-zA-Z0-9.!#$%&'*+/=?^_`{|}~-]+@[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)*$`
pub(crate) fn checkmail_format(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    let local_ok = !local.is_empty()
        && local
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".!#$%&'*+/=?^_`{|}~-".contains(&b));
    let label_ok = |l: &str| {
        let b = l.as_bytes();
        !b.is_empty()
            && b.len() <= 63
            && b[0].is_ascii_alphanumeric()
            && b[b.len() - 1].is_ascii_alphanumeric()
            && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
    };
    local_ok && domain.split('.').all(label_ok)
}

/// `validateEmail`: not trimmed; lower-cased on success.
fn validate_email(email: &str) -> Result<String, ApiError> {
    if email.is_empty() {
        return Err(ApiError::bad_request(
            "validation_failed",
            "An email address is required",
        ));
    }
    if email.len() > 255 {
        return Err(ApiError::bad_request(
            "validation_failed",
            "An email address is too long",
        ));
    }
    if !checkmail_format(email) {
        return Err(ApiError::bad_request(
            "validation_failed",
            "Unable to validate email address: invalid format",
        ));
    }
    Ok(email.to_lowercase())
}

/// `validatePhone`: drop a leading `+` and spaces, then E.164 digits.
fn validate_phone(phone: &str) -> Result<String, ApiError> {
    let p = phone.strip_prefix('+').unwrap_or(phone).replace(' ', "");
    let b = p.as_bytes();
    let ok = (2..=15).contains(&b.len())
        && (b'1'..=b'9').contains(&b[0])
        && b.iter().all(u8::is_ascii_digit);
    if ok {
        Ok(p)
    } else {
        Err(ApiError::bad_request(
            "validation_failed",
            "Invalid phone number format (E.164 required)",
        ))
    }
}

/// `ban_duration` as GoTrue reads it: "" = no change, "none" = 0, else Go durations.
fn parse_ban(raw: &str) -> Result<Option<i64>, ApiError> {
    if raw.is_empty() {
        return Ok(None);
    }
    if raw == "none" {
        return Ok(Some(0));
    }
    parse_go_duration(raw).map(Some).map_err(|e| {
        ApiError::bad_request(
            "validation_failed",
            format!("invalid format for ban duration: {e}"),
        )
    })
}

/// `User.Ban`: zero unbans, anything else is `time.Now() + d` (nanoseconds; the row
/// keeps microseconds).
fn ban_until(nanos: i64, now: OffsetDateTime) -> Option<OffsetDateTime> {
    if nanos == 0 {
        return None;
    }
    Some(now + time::Duration::nanoseconds(nanos))
}

/// The shallow merge of `UpdateUserMetaData`/`UpdateAppMetaData`: null deletes a key.
fn merge(target: &mut Map<String, Value>, patch: &Map<String, Value>) {
    for (k, v) in patch {
        if v.is_null() {
            target.remove(k);
        } else {
            target.insert(k.clone(), v.clone());
        }
    }
}

pub(crate) fn provider_metadata(providers: &[&str]) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert(
        "provider".into(),
        json!(providers.first().copied().unwrap_or("email")),
    );
    m.insert("providers".into(), json!(providers));
    m
}

fn pg_unique_violation(constraint: &str, column: &str, value: &str) -> Value {
    json!({
        "code": "23505",
        "message": format!("duplicate key value violates unique constraint \"{constraint}\""),
        "detail": format!("Key ({column})=({value}) already exists."),
    })
}

async fn create_user(ctx: &Ctx<'_>, body: ReadBody) -> Result<Response, ApiError> {
    let params = admin_params(body)?;
    let aud = if params.aud.is_empty() {
        ctx.aud()
    } else {
        params.aud.clone()
    };
    if params.email.is_empty() && params.phone.is_empty() {
        return Err(ApiError::bad_request(
            "validation_failed",
            "Cannot create a user without either an email or phone",
        ));
    }
    let mut providers = Vec::new();
    let mut email = None;
    if !params.email.is_empty() {
        let e = validate_email(&params.email)?;
        if ctx.shared.lock().state.email_taken_ci(&e, &aud) {
            return Err(ApiError::new(422, "email_exists", DUPLICATE_EMAIL));
        }
        email = Some(e);
        providers.push("email");
    }
    let mut phone = None;
    if !params.phone.is_empty() {
        let p = validate_phone(&params.phone)?;
        if ctx.shared.lock().state.phone_taken(&p, &aud) {
            return Err(ApiError::new(
                422,
                "phone_exists",
                "Phone number already registered by another user",
            ));
        }
        phone = Some(p);
        providers.push("phone");
    }
    if params.password.is_some() && !params.password_hash.is_empty() {
        return Err(ApiError::bad_request(
            "validation_failed",
            "Only a password or a password hash should be provided",
        ));
    }
    if params.password.as_ref().is_some_and(|p| p.len() > 72) {
        return Err(ApiError::bad_request(
            "validation_failed",
            "bcrypt: password length exceeds 72 bytes",
        ));
    }
    let mut id = Uuid::new_v4();
    if !params.id.is_empty() {
        id = Uuid::parse_str(&params.id).map_err(|_| {
            ApiError::bad_request("validation_failed", "ID must conform to the uuid v4 format")
        })?;
        if id.is_nil() {
            return Err(ApiError::bad_request(
                "validation_failed",
                "ID cannot be a nil uuid",
            ));
        }
    }
    let ban = parse_ban(&params.ban_duration)?;

    let now = OffsetDateTime::now_utc();
    let delay = {
        let mut inner = ctx.shared.lock();
        // The transaction: re-check what a concurrent request may have taken meanwhile,
        // as the database's unique indexes would.
        if inner.state.user(&id).is_some() {
            return Err(ApiError::internal("Database error creating new user")
                .with_pg(pg_unique_violation("users_pkey", "id", &id.to_string())));
        }
        if let Some(e) = &email
            && inner.state.exact_email_taken(e, &id)
        {
            return Err(ApiError::internal("Database error creating new user")
                .with_pg(pg_unique_violation("users_email_partial_key", "email", e)));
        }
        let created = inner.state.now_for_insert(truncate_micros(now));
        let mut user = User::new(id, &aud, created);
        user.email = email.clone();
        user.phone = phone.clone();
        user.user_metadata = params.user_metadata.clone().unwrap_or_default();
        user.app_metadata = provider_metadata(&providers);
        if let Some(e) = &email {
            let identity = user.email_identity(e, created);
            user.identities.push(identity);
        }
        if let Some(p) = &phone {
            let identity = user.phone_identity(p, created);
            user.identities.push(identity);
        }
        let role = params.role.trim();
        if !role.is_empty() {
            user.role = role.to_string();
        }
        if let Some(app) = &params.app_metadata {
            merge(&mut user.app_metadata, app);
        }
        // The response shows what Go held in memory (nanoseconds where it called
        // time.Now()); the row keeps microseconds.
        let mut shown = user.clone();
        if params.email_confirm {
            user.email_confirmed_at = Some(truncate_micros(now));
            shown.email_confirmed_at = Some(now);
            for u in [&mut user, &mut shown] {
                u.user_metadata
                    .insert("email_verified".into(), Value::Bool(true));
            }
        }
        if params.phone_confirm {
            user.phone_confirmed_at = Some(truncate_micros(now));
            shown.phone_confirmed_at = Some(now);
        }
        if let Some(nanos) = ban {
            let until = ban_until(nanos, now);
            user.banned_until = until.map(truncate_micros);
            shown.banned_until = until;
        }
        inner.state.insert_user(user);
        let delay = match inner.faults.create_delay {
            Some((d, times)) => {
                let mut slot = Some(times);
                let fire = Times::take(&mut slot);
                inner.faults.create_delay = slot.map(|t| (d, t));
                fire.then_some(d)
            }
            None => None,
        };
        (delay, shown)
    };
    let (delay, shown) = delay;
    if let Some(d) = delay {
        // timeoutMiddleware: past the deadline the client gets a 504, though the
        // transaction has committed.
        let deadline = ctx.shared.config.max_request_duration;
        if d >= deadline {
            tokio::time::sleep(deadline).await;
            return Err(ApiError::new(
                504,
                "request_timeout",
                "Processing this request timed out, please retry after a moment.",
            ));
        }
        tokio::time::sleep(d).await;
    }
    Ok(gotrue_json(
        StatusCode::OK,
        &render_user(&shown, true, false),
    ))
}

fn update_user(ctx: &Ctx<'_>, loaded: User, body: ReadBody) -> Result<Response, ApiError> {
    let params = admin_params(body)?;
    let email = if params.email.is_empty() {
        None
    } else {
        Some(validate_email(&params.email)?)
    };
    let phone = if params.phone.is_empty() {
        None
    } else {
        Some(validate_phone(&params.phone)?)
    };
    let ban = parse_ban(&params.ban_duration)?;
    if let Some(p) = &params.password
        && p.chars().count() < 6
    {
        return Err(ApiError::new(
            422,
            "weak_password",
            "Password should be at least 6 characters.",
        ));
    }

    let now = OffsetDateTime::now_utc();
    let mut inner = ctx.shared.lock();
    // Work on the current row (another request may have changed it since loadUser).
    let Some(mut user) = inner.state.user(&loaded.id).cloned() else {
        return Err(ApiError::internal("Error updating user"));
    };
    let mut shown_ban: Option<Option<OffsetDateTime>> = None;
    let mut shown_confirm = None;
    let role = params.role.trim();
    if !role.is_empty() {
        user.role = role.to_string();
    }
    if params.email_confirm {
        user.email_confirmed_at = Some(truncate_micros(now));
        shown_confirm = Some(now);
        user.user_metadata
            .insert("email_verified".into(), Value::Bool(true));
    }
    if params.phone_confirm {
        user.phone_confirmed_at = Some(truncate_micros(now));
    }
    if let Some(e) = &email {
        // No duplicate check here (supabase/auth#2014): the unique index answers, and
        // the transaction rolls back whole.
        if inner.state.exact_email_taken(e, &user.id) {
            return Err(
                ApiError::internal("Error updating user").with_pg(pg_unique_violation(
                    "users_email_partial_key",
                    "email",
                    e,
                )),
            );
        }
        match user.identities.iter_mut().find(|i| i.provider == "email") {
            Some(identity) => {
                identity.identity_data.insert("email".into(), json!(e));
                identity
                    .identity_data
                    .insert("email_verified".into(), json!(params.email_confirm));
                identity.email = Some(e.clone());
                identity.updated_at = truncate_micros(now);
            }
            None => {
                let identity = user.email_identity(e, truncate_micros(now));
                user.identities.push(identity);
            }
        }
        if user.is_anonymous && params.email_confirm {
            user.is_anonymous = false;
        }
        user.email = Some(e.clone());
    }
    if let Some(p) = &phone {
        match user.identities.iter_mut().find(|i| i.provider == "phone") {
            Some(identity) => {
                identity.identity_data.insert("phone".into(), json!(p));
                identity.updated_at = truncate_micros(now);
            }
            None => {
                let identity = user.phone_identity(p, truncate_micros(now));
                user.identities.push(identity);
            }
        }
        if user.is_anonymous && params.phone_confirm {
            user.is_anonymous = false;
        }
        user.phone = Some(p.clone());
    }
    if let Some(app) = &params.app_metadata {
        merge(&mut user.app_metadata, app);
    }
    if let Some(meta) = &params.user_metadata {
        merge(&mut user.user_metadata, meta);
    }
    let mut lost = false;
    if let Some(nanos) = ban {
        let until = ban_until(nanos, now);
        let slot = if until.is_some() {
            &mut inner.faults.lose_bans
        } else {
            &mut inner.faults.lose_unbans
        };
        lost = Times::take(slot);
        shown_ban = Some(until);
        user.banned_until = until.map(truncate_micros);
    }
    // Every `UpdateOnly` bumps updated_at; a PUT that ran none (`{}`) leaves it alone.
    let touched = !role.is_empty()
        || params.email_confirm
        || params.phone_confirm
        || email.is_some()
        || phone.is_some()
        || params.app_metadata.is_some()
        || params.user_metadata.is_some()
        || ban.is_some();
    if touched {
        user.updated_at = truncate_micros(now);
    }
    let mut shown = user.clone();
    if let Some(until) = shown_ban {
        shown.banned_until = until;
    }
    if let Some(t) = shown_confirm {
        shown.email_confirmed_at = Some(t);
    }
    if lost {
        // The "lost ban" fault: answer as if stored, keep the row as it was.
        drop(inner);
    } else {
        inner.state.update_user(user);
        drop(inner);
    }
    Ok(gotrue_json(
        StatusCode::OK,
        &render_user(&shown, true, true),
    ))
}

fn delete_user(ctx: &Ctx<'_>, user: User, body: ReadBody) -> Result<Response, ApiError> {
    let soft = match &body {
        ReadBody::Complete(b) if b.is_empty() => false,
        _ => {
            let m = decode_params(body, "adminUserDeleteParams")?;
            match field(&m, "should_soft_delete") {
                None | Some(Value::Null) => false,
                Some(Value::Bool(b)) => *b,
                Some(other) => {
                    return Err(type_error(
                        "adminUserDeleteParams",
                        "should_soft_delete",
                        other,
                        "bool",
                    ));
                }
            }
        }
    };
    let mut inner = ctx.shared.lock();
    if soft {
        if let Some(mut u) = inner.state.user(&user.id).cloned()
            && u.deleted_at.is_none()
        {
            let now = truncate_micros(OffsetDateTime::now_utc());
            u.deleted_at = Some(now);
            // SoftDeleteUser obfuscates the email and phone so they can be reused.
            u.email = u.email.as_ref().map(|e| obfuscate(&u.id, e));
            u.phone = u.phone.as_ref().map(|p| obfuscate(&u.id, p));
            u.identities.clear();
            u.updated_at = now;
            inner.state.update_user(u);
        }
    } else {
        inner.state.remove_user(&user.id);
    }
    Ok(gotrue_json(StatusCode::OK, &json!({})))
}

fn obfuscate(id: &Uuid, value: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(format!("{id}{value}").as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The User JSON (`models.User`): always-present members, `omitempty` ones, and
/// `identities` (null in list items). `read` marks a database read (which also carries
/// the generated `confirmed_at`).
/// The JSON list of these users as the listing renders them (`render_user(u, false,
/// true)`, compact), each user's text made once and kept by the state until it changes.
fn listed_users_json(state: &mut State, ids: &[Uuid]) -> String {
    let mut out = String::from("[");
    for id in ids {
        let Some(text) = state.listed_json(id, |u| render_user(u, false, true).to_string()) else {
            continue;
        };
        if out.len() > 1 {
            out.push(',');
        }
        out.push_str(text);
    }
    out.push(']');
    out
}

fn render_user(u: &User, with_identities: bool, read: bool) -> Value {
    let mut m = Map::new();
    let t = |v: Option<OffsetDateTime>| v.map(go_time);
    m.insert("id".into(), json!(u.id.to_string()));
    m.insert("aud".into(), json!(u.aud));
    m.insert("role".into(), json!(u.role));
    m.insert("email".into(), json!(u.email.clone().unwrap_or_default()));
    if let Some(v) = t(u.email_confirmed_at) {
        m.insert("email_confirmed_at".into(), json!(v));
    }
    m.insert("phone".into(), json!(u.phone.clone().unwrap_or_default()));
    if let Some(v) = t(u.phone_confirmed_at) {
        m.insert("phone_confirmed_at".into(), json!(v));
    }
    if read {
        let confirmed = match (u.email_confirmed_at, u.phone_confirmed_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if let Some(v) = t(confirmed) {
            m.insert("confirmed_at".into(), json!(v));
        }
    }
    if let Some(v) = t(u.last_sign_in_at) {
        m.insert("last_sign_in_at".into(), json!(v));
    }
    m.insert("app_metadata".into(), Value::Object(u.app_metadata.clone()));
    m.insert(
        "user_metadata".into(),
        Value::Object(u.user_metadata.clone()),
    );
    m.insert(
        "identities".into(),
        if with_identities {
            Value::Array(u.identities.iter().map(|i| render_identity(u, i)).collect())
        } else {
            Value::Null
        },
    );
    if let Some(v) = t(u.banned_until) {
        m.insert("banned_until".into(), json!(v));
    }
    m.insert("created_at".into(), json!(go_time(u.created_at)));
    m.insert("updated_at".into(), json!(go_time(u.updated_at)));
    if let Some(v) = t(u.deleted_at) {
        m.insert("deleted_at".into(), json!(v));
    }
    m.insert("is_anonymous".into(), json!(u.is_anonymous));
    Value::Object(m)
}

fn render_identity(u: &User, i: &Identity) -> Value {
    let mut m = Map::new();
    m.insert("identity_id".into(), json!(i.identity_id.to_string()));
    m.insert("id".into(), json!(i.provider_id));
    m.insert("user_id".into(), json!(u.id.to_string()));
    m.insert(
        "identity_data".into(),
        Value::Object(i.identity_data.clone()),
    );
    m.insert("provider".into(), json!(i.provider));
    if let Some(v) = i.last_sign_in_at {
        m.insert("last_sign_in_at".into(), json!(go_time(v)));
    }
    m.insert("created_at".into(), json!(go_time(i.created_at)));
    m.insert("updated_at".into(), json!(go_time(i.updated_at)));
    if let Some(e) = &i.email {
        m.insert("email".into(), json!(e));
    }
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kept_listing_json_is_the_rendered_users_json() {
        let mut state = State::new("authenticated");
        let t = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        let mut users = Vec::new();
        for (i, email) in ["a@x.io", "B\u{7}\"@x.io", ""].iter().enumerate() {
            let mut u = User::new(
                Uuid::new_v4(),
                "authenticated",
                t + time::Duration::seconds(i as i64),
            );
            u.email = (!email.is_empty()).then(|| email.to_string());
            u.banned_until = (i == 1).then_some(t);
            u.user_metadata.insert("full_name".into(), json!("Zoë"));
            state.insert_user(u.clone());
            users.push(u);
        }
        let ids: Vec<Uuid> = users.iter().map(|u| u.id).collect();
        let expected = |users: &[User]| {
            Value::Array(users.iter().map(|u| render_user(u, false, true)).collect()).to_string()
        };
        assert_eq!(listed_users_json(&mut state, &ids), expected(&users));
        // Kept, then renewed when a user changes.
        assert_eq!(listed_users_json(&mut state, &ids), expected(&users));
        users[0].banned_until = Some(t + time::Duration::hours(1));
        state.update_user(users[0].clone());
        assert_eq!(listed_users_json(&mut state, &ids), expected(&users));
        state.remove_user(&ids[2]);
        assert_eq!(listed_users_json(&mut state, &ids), expected(&users[..2]));
        // The page body frame, as `json!` would order it.
        let framed = json!({"users": [], "aud": "authenticated"}).to_string();
        assert_eq!(framed, r#"{"aud":"authenticated","users":[]}"#);
    }

    #[test]
    fn checkmail_accepts_and_refuses_like_the_regex() {
        assert!(checkmail_format("dana@example.com"));
        assert!(checkmail_format("a.b+c@x"));
        assert!(!checkmail_format(" dana@example.com"));
        assert!(!checkmail_format("dana@example.com "));
        assert!(!checkmail_format("dana@-example.com"));
        assert!(!checkmail_format("dana@example..com"));
        assert!(!checkmail_format("dana@@example.com"));
        assert!(!checkmail_format("dána@example.com"));
    }

    #[test]
    fn api_version_dates() {
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            m.insert("x-supabase-api-version", HeaderValue::from_str(v).unwrap());
            api_version_2024(&m)
        };
        assert!(h("2024-01-01"));
        assert!(h("2025-06-30"));
        assert!(!h("2023-12-31"));
        assert!(!h("yesterday"));
    }
}
