//! Turning what the servers send back on failure into `ApiFailure`, and an `ApiFailure`
//! into the one `Error` the user sees. Knows every error shape: GoTrue legacy and
//! 2024-01-01 bodies, `x-sb-error-code`, the gateway's `{message, hint}`, PostgREST's
//! `{code, message, details, hint}`, and non-JSON edge pages. Server text is untrusted:
//! it is cleaned of control characters, shortened, and scrubbed of the key.

use reqwest::header::HeaderMap;
use serde_json::Value;

use crate::error::{ApiFailure, Error, FailureKind};

/// Longest server-provided text kept in a message.
const MAX_MESSAGE_CHARS: usize = 300;

/// Cleans server-provided text before it goes anywhere near a message: no control
/// characters (terminal escapes), bounded length, and never the key, even if a proxy
/// echoes request headers back in an error page.
#[derive(Clone)]
pub(crate) struct Scrubber {
    key: String,
}

impl std::fmt::Debug for Scrubber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Scrubber([redacted])")
    }
}

impl Scrubber {
    pub(crate) fn new(key: &str) -> Scrubber {
        Scrubber {
            key: key.to_string(),
        }
    }

    pub(crate) fn clean(&self, text: &str) -> String {
        let text = self.redact(text);
        // Control characters become spaces, then runs of whitespace collapse to one.
        let spaced: String = text
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        let collapsed = spaced.split_whitespace().collect::<Vec<_>>().join(" ");
        if collapsed.chars().count() > MAX_MESSAGE_CHARS {
            let cut: String = collapsed.chars().take(MAX_MESSAGE_CHARS).collect();
            format!("{cut}…")
        } else {
            collapsed
        }
    }
}

impl Scrubber {
    /// The key out of `text`, whole or in part: the key itself, its JWT signature segment
    /// (the secret part of a JWT, when it has 8 characters or more), and any run of
    /// [`MIN_KEY_RUN`] or more characters copied from the key (an echo cut short, or
    /// the key minus a few characters). Each such stretch becomes `[redacted]`.
    fn redact(&self, text: &str) -> String {
        let key = self.key.as_bytes();
        if key.is_empty() {
            return text.to_string();
        }
        let mut text = text.replace(&self.key, "[redacted]");
        if let Some(sig) = self
            .key
            .rsplit('.')
            .next()
            .filter(|s| s.len() >= 8 && *s != self.key)
        {
            text = text.replace(sig, "[redacted]");
        }
        // Runs are found byte-wise; on an ASCII key (every JWT and `sb_secret_` key) a
        // matched run is ASCII too, so cutting at its ends keeps the text valid UTF-8.
        if !self.key.is_ascii() || key.len() < MIN_KEY_RUN {
            return text;
        }
        let windows: std::collections::HashSet<&[u8]> = key.windows(MIN_KEY_RUN).collect();
        let bytes = text.as_bytes();
        let mut covered = vec![false; bytes.len()];
        for (i, w) in bytes.windows(MIN_KEY_RUN).enumerate() {
            if windows.contains(w) {
                covered[i..i + MIN_KEY_RUN]
                    .iter_mut()
                    .for_each(|c| *c = true);
            }
        }
        if !covered.contains(&true) {
            return text;
        }
        let mut out = String::with_capacity(text.len());
        let mut i = 0;
        while i < bytes.len() {
            if covered[i] {
                while i < bytes.len() && covered[i] {
                    i += 1;
                }
                out.push_str("[redacted]");
            } else {
                let start = i;
                while i < bytes.len() && !covered[i] {
                    i += 1;
                }
                out.push_str(&String::from_utf8_lossy(&bytes[start..i]));
            }
        }
        out
    }
}

/// The shortest run of the key's characters that counts as (part of) the key.
const MIN_KEY_RUN: usize = 16;

/// Build the failure for an answer with a non-2xx status.
pub(crate) fn failure_from_response(
    request: &str,
    status: u16,
    headers: &HeaderMap,
    body: &[u8],
    scrub: &Scrubber,
) -> ApiFailure {
    let header_code = headers
        .get("x-sb-error-code")
        .and_then(|v| v.to_str().ok())
        .map(|s| scrub.clean(s))
        .filter(|s| !s.is_empty());
    let (body_code, message) = parse_error_body(body, scrub);
    let retry_after = headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| super::retry::parse_retry_after(v, std::time::SystemTime::now()));
    ApiFailure {
        request: request.to_string(),
        kind: FailureKind::Http,
        status: Some(status),
        code: body_code.or(header_code),
        message,
        retry_after,
    }
}

/// `(code, message)` from an error body of any shape we know. The code is the string
/// error code (`error_code`, or `code` when it is a string; the legacy integer `code`
/// is only the HTTP status again). The message joins message, details and hint: the
/// hint is where PostgREST lists the exposed schemas.
fn parse_error_body(body: &[u8], scrub: &Scrubber) -> (Option<String>, String) {
    let json = serde_json::from_slice::<Value>(body).ok();
    let Some(Value::Object(obj)) = json else {
        return (None, excerpt(body, scrub));
    };
    let text = |key: &str| {
        obj.get(key)
            .and_then(Value::as_str)
            .map(|s| scrub.clean(s))
            .filter(|s| !s.is_empty())
    };
    let code = text("error_code")
        .or_else(|| text("code"))
        // OAuth-style bodies: `error` is the code when a description comes with it.
        .or_else(|| text("error_description").and_then(|_| text("error")));
    let mut message = text("msg")
        .or_else(|| text("message"))
        .or_else(|| text("error_description"))
        .or_else(|| text("error"))
        .unwrap_or_default();
    if let Some(details) = text("details") {
        push_part(&mut message, &details);
    }
    if let Some(hint) = text("hint") {
        push_part(&mut message, &format!("hint: {hint}"));
    }
    (code, message)
}

fn push_part(message: &mut String, part: &str) {
    if !message.is_empty() {
        message.push_str("; ");
    }
    message.push_str(part);
}

/// A short, readable excerpt of a non-JSON body (an edge proxy's HTML or plain text).
fn excerpt(body: &[u8], scrub: &Scrubber) -> String {
    let text = String::from_utf8_lossy(body);
    let text = strip_tags(&text);
    let cleaned = scrub.clean(&text);
    if cleaned.is_empty() {
        return String::new();
    }
    format!("non-JSON answer: {cleaned}")
}

/// Drop `<…>` markup and the contents of `<style>`/`<script>`, so an HTML error page
/// reads as its words.
fn strip_tags(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut rest = html;
    while let Some(start) = rest.find('<') {
        out.push_str(&rest[..start]);
        out.push(' ');
        let after = &rest[start..];
        let lower = after
            .get(..8)
            .map(|s| s.to_ascii_lowercase())
            .unwrap_or_default();
        let skip_until = if lower.starts_with("<style") {
            Some("</style>")
        } else if lower.starts_with("<script") {
            Some("</script>")
        } else {
            None
        };
        let end = match skip_until {
            Some(close) => after
                .to_ascii_lowercase()
                .find(close)
                .map(|i| i + close.len()),
            None => after.find('>').map(|i| i + 1),
        };
        match end {
            Some(end) => rest = &after[end..],
            None => {
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// What was being read, for classification.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Reading<'a> {
    /// The auth admin API.
    AuthUsers,
    /// The roster table via PostgREST.
    RosterTable { schema: &'a str, table: &'a str },
}

/// Codes that say "your credentials were refused", whatever the status.
const AUTH_CODES: &[&str] = &[
    "no_authorization",
    "bad_jwt",
    "not_admin",
    "PGRST301",
    "PGRST302",
    "PGRST303",
];

/// Codes that say the roster table is missing or may not be read.
/// 42703 (no `email` column) is included: the table as named cannot serve a roster.
const ROSTER_TABLE_CODES: &[&str] = &["42P01", "PGRST205", "42501", "42703"];

/// Map a failed read to the error the user sees.
pub(crate) fn classify(failure: ApiFailure, reading: Reading<'_>) -> Error {
    let code = failure.code.as_deref();
    let status = failure.status;
    if let Reading::RosterTable { schema, table } = reading {
        if code == Some("PGRST106") || (status == Some(406) && mentions_schema(&failure)) {
            return Error::SchemaNotExposed {
                schema: schema.to_string(),
                failure,
            };
        }
        // 42501 comes as 403 (or 401 without a role); it is about the table's grants,
        // not the key, so it is checked before the generic 401/403 rule.
        if code.is_some_and(|c| ROSTER_TABLE_CODES.contains(&c)) || status == Some(404) {
            return Error::RosterTable {
                table: format!("{schema}.{table}"),
                failure,
            };
        }
    }
    // The gateway's refusals carry no code, only these messages.
    let gateway_refusal = failure.kind == FailureKind::Http
        && ["Invalid API key", "No API key found"]
            .iter()
            .any(|m| failure.message.contains(m));
    if matches!(status, Some(401 | 403))
        || code.is_some_and(|c| AUTH_CODES.contains(&c))
        || gateway_refusal
    {
        return Error::AuthFailed { failure };
    }
    Error::Api(failure)
}

fn mentions_schema(failure: &ApiFailure) -> bool {
    let m = failure.message.to_ascii_lowercase();
    m.contains("invalid schema") || m.contains("schema must be one of")
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    const KEY: &str = "eyJhbGciOiJIUzI1NiJ9.c2VjcmV0.sig";

    fn fail(status: u16, headers: &[(&'static str, &str)], body: &str) -> ApiFailure {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        failure_from_response(
            "GET /auth/v1/admin/users?page=1",
            status,
            &map,
            body.as_bytes(),
            &Scrubber::new(KEY),
        )
    }

    #[test]
    fn gotrue_legacy_shape() {
        let f = fail(
            422,
            &[],
            r#"{"code":422,"error_code":"email_exists","msg":"A user with this email address has already been registered"}"#,
        );
        assert_eq!(f.code.as_deref(), Some("email_exists"));
        assert_eq!(
            f.message,
            "A user with this email address has already been registered"
        );
        assert_eq!(f.status, Some(422));
        assert_eq!(f.kind, FailureKind::Http);
    }

    #[test]
    fn gotrue_2024_shape() {
        let f = fail(
            403,
            &[("x-sb-error-code", "not_admin")],
            r#"{"code":"not_admin","message":"User not allowed"}"#,
        );
        assert_eq!(f.code.as_deref(), Some("not_admin"));
        assert_eq!(f.message, "User not allowed");
    }

    #[test]
    fn code_from_header_when_body_has_none() {
        let f = fail(
            500,
            &[("x-sb-error-code", "unexpected_failure")],
            "upstream broke",
        );
        assert_eq!(f.code.as_deref(), Some("unexpected_failure"));
        assert_eq!(f.message, "non-JSON answer: upstream broke");
        // The legacy integer code is only the status: not an error code.
        let f = fail(500, &[], r#"{"code":500,"msg":"Internal"}"#);
        assert_eq!(f.code, None);
        assert_eq!(f.message, "Internal");
    }

    #[test]
    fn gateway_shape() {
        let f = fail(
            401,
            &[],
            r#"{"message":"Invalid API key","hint":"Double check your Supabase `anon` or `service_role` API key."}"#,
        );
        assert_eq!(f.code, None);
        assert_eq!(
            f.message,
            "Invalid API key; hint: Double check your Supabase `anon` or `service_role` API key."
        );
        assert!(matches!(
            classify(f, Reading::AuthUsers),
            Error::AuthFailed { .. }
        ));
        let f = fail(401, &[], r#"{"message":"No API key found in request"}"#);
        assert!(matches!(
            classify(f, Reading::AuthUsers),
            Error::AuthFailed { .. }
        ));
    }

    #[test]
    fn postgrest_shape() {
        let f = fail(
            406,
            &[],
            r#"{"code":"PGRST106","details":null,"hint":"Only the following schemas are exposed: public, graphql_public","message":"Invalid schema: activity"}"#,
        );
        assert_eq!(f.code.as_deref(), Some("PGRST106"));
        assert_eq!(
            f.message,
            "Invalid schema: activity; hint: Only the following schemas are exposed: public, graphql_public"
        );
        let f = fail(
            416,
            &[],
            r#"{"code":"PGRST103","details":"An offset of 30 was requested, but there are only 20 rows.","hint":null,"message":"Requested range not satisfiable"}"#,
        );
        assert_eq!(
            f.message,
            "Requested range not satisfiable; An offset of 30 was requested, but there are only 20 rows."
        );
    }

    #[test]
    fn oauth_shape() {
        let f = fail(
            400,
            &[],
            r#"{"error":"invalid_grant","error_description":"Invalid Refresh Token"}"#,
        );
        assert_eq!(f.code.as_deref(), Some("invalid_grant"));
        assert_eq!(f.message, "Invalid Refresh Token");
    }

    #[test]
    fn html_edge_page_becomes_a_short_clean_excerpt() {
        let body = format!(
            "<!DOCTYPE html><html><head><title>520: Web server is returning an unknown error</title><style>body{{color:red}}</style></head><body>\x1b[31m{}</body></html>",
            "x".repeat(2000)
        );
        let f = fail(520, &[("content-type", "text/html")], &body);
        assert!(
            f.message
                .starts_with("non-JSON answer: 520: Web server is returning an unknown error "),
            "{}",
            f.message
        );
        assert!(!f.message.contains('\x1b'));
        assert!(!f.message.contains("color:red"));
        assert!(f.message.chars().count() <= MAX_MESSAGE_CHARS + 20);
        assert_eq!(fail(502, &[], "").message, "");
    }

    #[test]
    fn the_key_is_scrubbed_from_echoed_text() {
        let f = fail(
            400,
            &[],
            &format!(r#"{{"message":"bad header apikey: {KEY}","hint":"Bearer {KEY}"}}"#),
        );
        assert!(!f.message.contains(KEY), "{}", f.message);
        assert!(f.message.contains("[redacted]"));
        let f = fail(502, &[], &format!("<p>echo: {KEY}</p>"));
        assert!(!f.message.contains(KEY));
    }

    #[test]
    fn the_key_is_redacted_in_part_too() {
        let key = "eyJhbGciOiJIUzI1NiJ9.eyJyb2xlIjoic2VydmljZV9yb2xlIn0.Zm9vYmFyYmF6cXV4c2lnbmF0dXJlMTIzNDU2";
        let s = Scrubber::new(key);
        let sig = key.rsplit('.').next().unwrap();
        // The signature alone, the key minus a few characters, a 16-character run, and
        // a run cut by a non-key character, beside text that must stay.
        for (text, want) in [
            (format!("sig={sig} ok"), "sig=[redacted] ok".to_string()),
            (
                format!("echo {} end", &key[..key.len() - 3]),
                "echo [redacted] end".to_string(),
            ),
            (format!("x{}y", &key[30..46]), "x[redacted]y".to_string()),
            (
                format!("{} {}", &key[0..10], &key[10..26]),
                format!("{} [redacted]", &key[0..10]),
            ),
            (
                "josé: nothing here".to_string(),
                "josé: nothing here".to_string(),
            ),
        ] {
            assert_eq!(s.clean(&text), want, "{text}");
        }
        // A 15-character run is not enough to be the key.
        let short = &key[30..45];
        assert_eq!(s.clean(short), short);
    }

    #[test]
    fn classification() {
        let roster = Reading::RosterTable {
            schema: "activity",
            table: "organization_people",
        };
        let pg = |status, code: &str| {
            fail(
                status,
                &[],
                &format!(r#"{{"code":"{code}","message":"m","details":null,"hint":null}}"#),
            )
        };
        assert!(matches!(
            classify(pg(406, "PGRST106"), roster),
            Error::SchemaNotExposed { ref schema, .. } if schema == "activity"
        ));
        for (status, code) in [
            (404, "42P01"),
            (404, "PGRST205"),
            (403, "42501"),
            (401, "42501"),
            (400, "42703"),
        ] {
            assert!(
                matches!(
                    classify(pg(status, code), roster),
                    Error::RosterTable { ref table, .. } if table == "activity.organization_people"
                ),
                "{status} {code}"
            );
        }
        for (status, code) in [
            (401, "PGRST301"),
            (401, "PGRST302"),
            (401, "PGRST303"),
            (401, "no_authorization"),
            (403, "bad_jwt"),
            (403, "not_admin"),
        ] {
            assert!(
                matches!(classify(pg(status, code), roster), Error::AuthFailed { .. }),
                "{status} {code}"
            );
            assert!(
                matches!(
                    classify(pg(status, code), Reading::AuthUsers),
                    Error::AuthFailed { .. }
                ),
                "{status} {code}"
            );
        }
        assert!(matches!(
            classify(pg(500, "unexpected_failure"), Reading::AuthUsers),
            Error::Api(_)
        ));
        // A 404 from the auth API is not about a roster table.
        assert!(matches!(
            classify(pg(404, "user_not_found"), Reading::AuthUsers),
            Error::Api(_)
        ));
    }

    #[test]
    fn scrubber_debug_hides_the_key() {
        let s = Scrubber::new(KEY);
        assert!(!format!("{s:?}").contains(KEY));
    }
}
