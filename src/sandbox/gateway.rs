//! The Supabase gateway in front of both servers: the `apikey` check (Kong's bodies, not
//! GoTrue's), the browser check for secret keys, and what `Authorization` the upstream
//! server sees. Legacy JWT keys pass `Authorization` through untouched; new
//! `sb_secret_…`/`sb_publishable_…` keys are swapped for a JWT of their role when
//! `Authorization` is absent or byte-identical to `apikey`.

use std::sync::Arc;

use axum::http::{HeaderValue, StatusCode, request::Parts};
use axum::response::Response;
use serde_json::json;

use super::server::{Shared, header, json};
use super::wire;

/// The upstream `Authorization` value (None: no header), or the gateway's refusal.
pub(crate) fn check(shared: &Arc<Shared>, parts: &Parts) -> Result<Option<String>, Box<Response>> {
    let headers = &parts.headers;
    let from_query = || {
        let q = wire::parse_query(parts.uri.query());
        wire::first(&q, "apikey").map(str::to_string)
    };
    let apikey = match header(headers, "apikey") {
        Some(k) => Some(k.to_string()),
        None => from_query(),
    };
    let authorization = header(headers, "authorization").map(str::to_string);
    let Some(apikey) = apikey.filter(|k| !k.is_empty()) else {
        return Err(Box::new(json(
            StatusCode::UNAUTHORIZED,
            json!({
                "message": "No API key found in request",
                "hint": "No `apikey` request header or url param was found."
            }),
        )));
    };
    let keys = &shared.keys;
    if apikey == keys.anon || apikey == keys.service_role {
        return Ok(authorization);
    }
    let swapped_role_jwt = if apikey == keys.secret {
        let browser = header(headers, "user-agent").is_some_and(|ua| ua.contains("Mozilla/"));
        if browser {
            let mut r = json(
                StatusCode::UNAUTHORIZED,
                json!({
                    "message": "Forbidden use of secret API key in browser",
                    "hint": "Secret API keys can only be used in a protected environment and should never be used in a browser. Delete this secret API key immediately!"
                }),
            );
            r.headers_mut().insert(
                "sb-error-code",
                HeaderValue::from_static("UNAUTHORIZED_INVALID_API_KEY_TYPE"),
            );
            return Err(Box::new(r));
        }
        &keys.service_role
    } else if apikey == keys.publishable {
        &keys.anon
    } else {
        return Err(Box::new(json(
            StatusCode::UNAUTHORIZED,
            json!({
                "message": "Invalid API key",
                "hint": "Double check your Supabase `anon` or `service_role` API key."
            }),
        )));
    };
    match authorization {
        None => Ok(Some(format!("Bearer {swapped_role_jwt}"))),
        Some(a) if a == format!("Bearer {apikey}") => {
            Ok(Some(format!("Bearer {swapped_role_jwt}")))
        }
        // Anything else goes through as sent: a different key there is not a JWT, and the
        // server behind refuses it.
        Some(a) => Ok(Some(a)),
    }
}
