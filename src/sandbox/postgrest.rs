//! PostgREST (`/rest/v1`) for the roster table, as `supabase-api.md` section B reads it:
//! JWT role, `Accept-Profile` against the exposed schemas, `select`/`order`/simple
//! filters, `limit`/`offset` intersected with a GET `Range` header, the silent max-rows
//! cap, `Prefer: count=…`, `Content-Range` and the 200/206/416 rules. Read-only: the
//! tool never writes the roster, so writes are refused rather than imitated.

use std::cmp::Ordering;
use std::sync::Arc;

use axum::http::{HeaderValue, Method, StatusCode, request::Parts};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use time::OffsetDateTime;

use super::jwt;
use super::server::{Shared, header, json};
use super::wire;

/// Roles that hold privileges on the roster table (`service_role` bypasses RLS and is
/// granted; `anon` and `authenticated` are not).
const GRANTED_ROLES: &[&str] = &["service_role", "supabase_admin", "postgres"];

fn error(
    status: StatusCode,
    code: &str,
    message: &str,
    details: Option<String>,
    hint: Option<String>,
) -> Response {
    let mut r = json(
        status,
        json!({"code": code, "details": details, "hint": hint, "message": message}),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("PostgREST; error={code}")) {
        r.headers_mut().insert("proxy-status", v);
    }
    r
}

fn bad_request(code: &str, message: &str, details: Option<String>) -> Response {
    error(StatusCode::BAD_REQUEST, code, message, details, None)
}

/// Serve a PostgREST request; `path` is below `/rest/v1`.
pub(crate) fn handle(
    shared: &Arc<Shared>,
    parts: &Parts,
    path: &str,
    authorization: Option<&str>,
) -> Response {
    // 1. The JWT (PostgREST's auth middleware runs before anything else).
    let (role, authed) = match authorization {
        None => ("anon".to_string(), false),
        Some(a) => {
            let token = match (a.get(..7), a.get(7..)) {
                (Some(s), Some(t)) if s.eq_ignore_ascii_case("bearer ") => Some(t.trim()),
                _ => None,
            };
            match token {
                None => ("anon".to_string(), false),
                Some(token) => {
                    let now = OffsetDateTime::now_utc().unix_timestamp();
                    match jwt::verify(&shared.config.jwt_secret, token, now) {
                        Ok(claims) => (
                            claims
                                .get("role")
                                .and_then(Value::as_str)
                                .unwrap_or("anon")
                                .to_string(),
                            true,
                        ),
                        Err(e) => {
                            let (code, message) = e.postgrest();
                            let mut r = error(StatusCode::UNAUTHORIZED, code, &message, None, None);
                            let challenge = format!(
                                "Bearer error=\"invalid_token\", error_description=\"{message}\""
                            );
                            if let Ok(v) = HeaderValue::from_str(&challenge) {
                                r.headers_mut().insert("www-authenticate", v);
                            }
                            return r;
                        }
                    }
                }
            }
        }
    };

    let method = parts.method.clone();
    if method != Method::GET && method != Method::HEAD {
        return error(
            StatusCode::METHOD_NOT_ALLOWED,
            "PGRST117",
            &format!("Unsupported HTTP method: {method}"),
            Some("The sandbox's PostgREST is read-only".into()),
            None,
        );
    }

    // 2. The schema: Accept-Profile (GET/HEAD), else the first exposed schema.
    let exposed = &shared.config.exposed_schemas;
    let schema = match header(&parts.headers, "accept-profile") {
        Some(s) => {
            if !exposed.iter().any(|e| e == s) {
                return error(
                    StatusCode::NOT_ACCEPTABLE,
                    "PGRST106",
                    &format!("Invalid schema: {s}"),
                    None,
                    Some(format!(
                        "Only the following schemas are exposed: {}",
                        exposed.join(", ")
                    )),
                );
            }
            s.to_string()
        }
        None => exposed.first().cloned().unwrap_or_else(|| "public".into()),
    };

    // 3. The table, from the schema cache.
    let table = path.trim_start_matches('/');
    let (roster_schema, roster_table) = shared.config.roster_parts();
    if table != roster_table || schema != roster_schema {
        let hint = (table == roster_table && exposed.iter().any(|e| e == roster_schema))
            .then(|| format!("Perhaps you meant the table '{roster_schema}.{roster_table}'"));
        return error(
            StatusCode::NOT_FOUND,
            "PGRST205",
            &format!("Could not find the table '{schema}.{table}' in the schema cache"),
            None,
            hint,
        );
    }

    // 4. The query string and headers.
    let query: Vec<(String, String)> = wire::parse_query(parts.uri.query())
        .into_iter()
        .filter(|(k, _)| k != "apikey")
        .collect();
    let columns = shared
        .lock()
        .state
        .roster_columns(|roster| {
            let mut cols: Vec<String> =
                vec!["id".into(), "email".into(), "name".into(), "kind".into()];
            for row in roster {
                for k in row.extra.keys() {
                    if !cols.contains(k) {
                        cols.push(k.clone());
                    }
                }
            }
            cols
        })
        .to_vec();
    let missing_column = |c: &str| {
        bad_request(
            "42703",
            &format!("column {roster_table}.{c} does not exist"),
            None,
        )
    };
    let mut select: Option<Vec<(String, String)>> = None;
    let mut order: Vec<(String, bool, Option<bool>)> = Vec::new();
    let mut limit: Option<u64> = None;
    let mut offset: u64 = 0;
    let mut filters: Vec<(String, bool, String, String)> = Vec::new();
    for (k, v) in &query {
        match k.as_str() {
            "select" => {
                let mut items = Vec::new();
                for item in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                    let (alias, col) = match item.split_once(':') {
                        Some((a, c)) if !c.starts_with(':') => (a.to_string(), c),
                        _ => (String::new(), item),
                    };
                    let col = col.split("::").next().unwrap_or(col);
                    if col == "*" {
                        items.extend(columns.iter().map(|c| (c.clone(), c.clone())));
                        continue;
                    }
                    if !columns.iter().any(|c| c == col) {
                        return missing_column(col);
                    }
                    let alias = if alias.is_empty() {
                        col.to_string()
                    } else {
                        alias
                    };
                    items.push((alias, col.to_string()));
                }
                select = Some(items);
            }
            "order" => {
                for term in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                    let mut bits = term.split('.');
                    let col = bits.next().unwrap_or("");
                    let mut asc = true;
                    let mut nulls_first = None;
                    for m in bits {
                        match m {
                            "asc" => asc = true,
                            "desc" => asc = false,
                            "nullsfirst" => nulls_first = Some(true),
                            "nullslast" => nulls_first = Some(false),
                            _ => {
                                return bad_request(
                                    "PGRST100",
                                    &format!(
                                        "\"failed to parse order ({v})\" (line 1, column {})",
                                        term.len()
                                    ),
                                    Some(format!(
                                        "unexpected \"{m}\" expecting \"asc\", \"desc\", \"nullsfirst\" or \"nullslast\""
                                    )),
                                );
                            }
                        }
                    }
                    if !columns.iter().any(|c| c == col) {
                        return missing_column(col);
                    }
                    order.push((col.to_string(), asc, nulls_first));
                }
            }
            "limit" => match v.parse::<u64>() {
                Ok(n) => limit = Some(n),
                Err(_) => {
                    return bad_request(
                        "PGRST100",
                        &format!("\"failed to parse limit parameter ({v})\""),
                        None,
                    );
                }
            },
            "offset" => match v.parse::<u64>() {
                Ok(n) => offset = n,
                Err(_) => {
                    return bad_request(
                        "PGRST100",
                        &format!("\"failed to parse offset parameter ({v})\""),
                        None,
                    );
                }
            },
            "columns" | "on_conflict" => {}
            col => {
                let (negate, rest) = match v.strip_prefix("not.") {
                    Some(r) => (true, r),
                    None => (false, v.as_str()),
                };
                let Some((op, operand)) = rest.split_once('.') else {
                    return bad_request(
                        "PGRST100",
                        &format!("\"failed to parse filter ({v})\""),
                        None,
                    );
                };
                if !matches!(
                    op,
                    "eq" | "neq" | "gt" | "gte" | "lt" | "lte" | "like" | "ilike" | "is" | "in"
                ) {
                    return bad_request(
                        "PGRST100",
                        &format!("\"failed to parse filter ({v})\""),
                        None,
                    );
                }
                if !columns.iter().any(|c| c == col) {
                    return missing_column(col);
                }
                filters.push((col.to_string(), negate, op.to_string(), operand.to_string()));
            }
        }
    }

    // The Range header (GET only), parsed like PostgREST: `^([0-9]+)-([0-9]*)$`, else ignored.
    let mut header_range: Option<(u64, Option<u64>)> = None;
    if method == Method::GET
        && let Some(r) = header(&parts.headers, "range")
    {
        let r = r.trim();
        if let Some((lo, hi)) = r.split_once('-')
            && !lo.is_empty()
            && lo.bytes().all(|b| b.is_ascii_digit())
            && hi.bytes().all(|b| b.is_ascii_digit())
        {
            let lo = lo.parse::<u64>().unwrap_or(u64::MAX);
            let hi = if hi.is_empty() {
                None
            } else {
                Some(hi.parse::<u64>().unwrap_or(u64::MAX))
            };
            if hi.is_some_and(|h| lo > h) {
                return error(
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    "PGRST103",
                    "Requested range not satisfiable",
                    Some("The lower boundary must be lower than or equal to the upper boundary in the Range header.".into()),
                    None,
                );
            }
            header_range = Some((lo, hi));
        }
    }
    let prefer_count = parts
        .headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| {
            matches!(
                p.trim(),
                "count=exact" | "count=planned" | "count=estimated"
            )
        });

    // 5. Privileges (checked when the query runs).
    if !GRANTED_ROLES.contains(&role.as_str()) {
        let status = if authed {
            StatusCode::FORBIDDEN
        } else {
            StatusCode::UNAUTHORIZED
        };
        return error(
            status,
            "42501",
            &format!("permission denied for table {roster_table}"),
            None,
            None,
        );
    }

    // 6. The query. The filtered, ordered row positions are kept between requests while
    // the table is unchanged (a scan asks the same query once per page); only the page's
    // rows are rendered.
    let (page, total, lower) = {
        let mut inner = shared.lock();
        let max_rows = shared.max_rows(&inner);
        let key = format!("{filters:?} {order:?}");
        let (roster, positions) = inner.state.roster_view(&key, |roster| {
            let rows: Vec<Map<String, Value>> = roster.iter().map(|r| r.to_json()).collect();
            let mut positions: Vec<usize> = (0..rows.len())
                .filter(|&i| {
                    filters.iter().all(|(col, negate, op, operand)| {
                        matches_filter(rows[i].get(col).unwrap_or(&Value::Null), op, operand)
                            != *negate
                    })
                })
                .collect();
            if !order.is_empty() {
                // Stable, as before: equal keys keep the table's order.
                positions.sort_by(|&a, &b| {
                    for (col, asc, nulls_first) in &order {
                        let o = compare(
                            rows[a].get(col).unwrap_or(&Value::Null),
                            rows[b].get(col).unwrap_or(&Value::Null),
                            *asc,
                            *nulls_first,
                        );
                        if o != Ordering::Equal {
                            return o;
                        }
                    }
                    Ordering::Equal
                });
            }
            positions
        });
        let total = positions.len() as u64;

        // The top-level range: limit/offset, intersected with the Range header, then
        // restricted to max-rows (silently).
        let mut lower = offset;
        let mut upper: Option<i128> = limit.map(|l| i128::from(offset) + i128::from(l) - 1);
        if let Some((hl, hu)) = header_range {
            lower = lower.max(hl);
            if let Some(hu) = hu {
                upper = Some(upper.map_or(i128::from(hu), |u| u.min(i128::from(hu))));
            }
        }
        if let Some(max) = max_rows {
            let cap = i128::from(lower) + max as i128 - 1;
            upper = Some(upper.map_or(cap, |u| u.min(cap)));
        }
        let start = usize::try_from(lower)
            .unwrap_or(usize::MAX)
            .min(positions.len());
        let end_incl = upper.unwrap_or(i128::MAX).min(positions.len() as i128 - 1);
        let page: Vec<Map<String, Value>> = if end_incl >= start as i128 {
            positions[start..=(end_incl as usize)]
                .iter()
                .map(|&i| roster[i].to_json())
                .collect()
        } else {
            Vec::new()
        };
        (page, total, lower)
    };
    let returned = page.len() as u64;

    let count = prefer_count.then_some(total);
    let status = match count {
        None => StatusCode::OK,
        Some(t) if lower > t => {
            return error(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "PGRST103",
                "Requested range not satisfiable",
                Some(format!(
                    "An offset of {lower} was requested, but there are only {t} rows."
                )),
                None,
            );
        }
        Some(t) if returned < t => StatusCode::PARTIAL_CONTENT,
        Some(_) => StatusCode::OK,
    };
    let range_text = if count != Some(0) && returned > 0 {
        format!("{}-{}", lower, lower + returned - 1)
    } else {
        "*".to_string()
    };
    let total_text = count.map_or("*".to_string(), |t| t.to_string());
    let content_range = format!("{range_text}/{total_text}");

    let body: Vec<Value> = page
        .into_iter()
        .map(|row| match &select {
            None => Value::Object(row),
            Some(items) => {
                let mut m = Map::new();
                for (alias, col) in items {
                    m.insert(alias.clone(), row.get(col).cloned().unwrap_or(Value::Null));
                }
                Value::Object(m)
            }
        })
        .collect();
    let mut response = if method == Method::HEAD {
        let mut r = status.into_response();
        r.headers_mut().insert(
            "content-type",
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        r
    } else {
        json(status, Value::Array(body))
    };
    if let Ok(v) = HeaderValue::from_str(&content_range) {
        response.headers_mut().insert("content-range", v);
    }
    response
}

fn as_text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

fn matches_filter(v: &Value, op: &str, operand: &str) -> bool {
    match op {
        "is" => match operand {
            "null" => v.is_null(),
            "true" => v == &Value::Bool(true),
            "false" => v == &Value::Bool(false),
            _ => false,
        },
        "in" => {
            let inner = operand.trim_start_matches('(').trim_end_matches(')');
            let text = as_text(v);
            inner
                .split(',')
                .map(|s| s.trim().trim_matches('"'))
                .any(|s| text.as_deref() == Some(s))
        }
        "like" | "ilike" => as_text(v)
            .is_some_and(|t| wire::sql_like(&t, &operand.replace('*', "%"), op == "ilike")),
        _ => {
            let Some(text) = as_text(v) else {
                return false;
            };
            let o = match (v, operand.parse::<f64>()) {
                (Value::Number(n), Ok(x)) => n.as_f64().and_then(|a| a.partial_cmp(&x)),
                _ => Some(text.as_str().cmp(operand)),
            };
            let Some(o) = o else {
                return false;
            };
            match op {
                "eq" => o == Ordering::Equal,
                "neq" => o != Ordering::Equal,
                "gt" => o == Ordering::Greater,
                "gte" => o != Ordering::Less,
                "lt" => o == Ordering::Less,
                "lte" => o != Ordering::Greater,
                _ => false,
            }
        }
    }
}

/// Postgres ordering: NULLS LAST for ascending and NULLS FIRST for descending unless
/// told otherwise; text compares bytewise (the C collation).
fn compare(a: &Value, b: &Value, asc: bool, nulls_first: Option<bool>) -> Ordering {
    let nulls_first = nulls_first.unwrap_or(!asc);
    match (a.is_null(), b.is_null()) {
        (true, true) => return Ordering::Equal,
        (true, false) => {
            return if nulls_first {
                Ordering::Less
            } else {
                Ordering::Greater
            };
        }
        (false, true) => {
            return if nulls_first {
                Ordering::Greater
            } else {
                Ordering::Less
            };
        }
        _ => {}
    }
    let o = match (a, b) {
        (Value::Number(x), Value::Number(y)) => x
            .as_f64()
            .partial_cmp(&y.as_f64())
            .unwrap_or(Ordering::Equal),
        (Value::String(x), Value::String(y)) => x.as_bytes().cmp(y.as_bytes()),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        _ => a.to_string().cmp(&b.to_string()),
    };
    if asc { o } else { o.reverse() }
}
