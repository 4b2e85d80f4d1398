//! HS256 JWTs signed and verified for real, and the project's API keys (legacy anon and
//! service_role JWTs, new `sb_secret_…` / `sb_publishable_…` keys). Owns no HTTP: the
//! gateway and the two servers turn a [`JwtError`] into their own error shapes.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Map, Value};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The secret of `supabase start` (the CLI's local stack). With it and the claims below
/// the sandbox's legacy keys are byte-identical to the well-known local demo keys.
pub const DEFAULT_JWT_SECRET: &str = "super-secret-jwt-token-with-at-least-32-characters-long";

/// The claims of the demo keys, in the byte order the demo keys were signed with.
const DEMO_EXP: i64 = 1_983_812_996;

/// Why a token was refused, worded like golang-jwt v5 (GoTrue repeats it in `bad_jwt`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwtError {
    /// Not three dot-separated parts (how many there were).
    Segments(usize),
    Malformed(String),
    Unverifiable(String),
    BadSignature(String),
    Expired,
    NotYetValid,
}

impl JwtError {
    /// golang-jwt's wording, which GoTrue puts after "invalid JWT: unable to parse or
    /// verify signature, ".
    pub fn go_message(&self) -> String {
        match self {
            JwtError::Segments(_) => {
                "token is malformed: token contains an invalid number of segments".to_string()
            }
            JwtError::Malformed(why) => format!("token is malformed: {why}"),
            JwtError::Unverifiable(why) => format!("token is unverifiable: {why}"),
            JwtError::BadSignature(why) => format!("token signature is invalid: {why}"),
            JwtError::Expired => "token has invalid claims: token is expired".to_string(),
            JwtError::NotYetValid => "token has invalid claims: token is not valid yet".to_string(),
        }
    }

    /// PostgREST's wording for the same failure (`PGRST301` / `PGRST303`).
    pub fn postgrest(&self) -> (&'static str, String) {
        match self {
            JwtError::Segments(n) => ("PGRST301", format!("Expected 3 parts in JWT; got {n}")),
            JwtError::Expired => ("PGRST303", "JWT expired".to_string()),
            JwtError::NotYetValid => ("PGRST303", "JWT not yet valid".to_string()),
            JwtError::BadSignature(_) => {
                ("PGRST301", "No suitable key or wrong key type".to_string())
            }
            _ => ("PGRST301", "JWT cryptographic operation failed".to_string()),
        }
    }
}

/// Sign `claims_json` (already serialised, so callers control member order) with HS256.
pub fn sign_raw(secret: &str, claims_json: &str) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims_json.as_bytes());
    let signing_input = format!("{header}.{payload}");
    let signature = URL_SAFE_NO_PAD.encode(mac(secret, signing_input.as_bytes()));
    format!("{signing_input}.{signature}")
}

/// Sign arbitrary claims with HS256.
pub fn sign(secret: &str, claims: &Value) -> String {
    sign_raw(secret, &claims.to_string())
}

fn mac(secret: &str, data: &[u8]) -> Vec<u8> {
    // HMAC takes keys of any length, so this cannot fail.
    let mut m = <HmacSha256 as KeyInit>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

/// Verify an HS256 token and return its claims. `now` is Unix seconds.
pub fn verify(secret: &str, token: &str, now: i64) -> Result<Map<String, Value>, JwtError> {
    let parts: Vec<&str> = token.split('.').collect();
    if parts.len() != 3 {
        return Err(JwtError::Segments(parts.len()));
    }
    let header_bytes = URL_SAFE_NO_PAD
        .decode(parts[0])
        .map_err(|_| JwtError::Malformed("could not base64 decode header".to_string()))?;
    let header: Map<String, Value> = serde_json::from_slice(&header_bytes)
        .map_err(|_| JwtError::Malformed("could not JSON decode header".to_string()))?;
    let claims_bytes = URL_SAFE_NO_PAD
        .decode(parts[1])
        .map_err(|_| JwtError::Malformed("could not base64 decode claim".to_string()))?;
    let claims: Map<String, Value> = serde_json::from_slice(&claims_bytes)
        .map_err(|_| JwtError::Malformed("could not JSON decode claim".to_string()))?;
    if let Some(Value::String(_)) = header.get("kid") {
        // GoTrue looks a `kid` up in its JWKS; the sandbox has none.
        return Err(JwtError::Unverifiable(
            "error while executing keyfunc: invalid kid".to_string(),
        ));
    }
    match header.get("alg").and_then(Value::as_str) {
        Some("HS256") => {}
        // Valid methods for GoTrue, but their keys are found by `kid`, which is absent.
        Some("RS256" | "ES256" | "EdDSA") => {
            return Err(JwtError::Unverifiable(
                "error while executing keyfunc: missing kid".to_string(),
            ));
        }
        Some(other) => {
            return Err(JwtError::BadSignature(format!(
                "signing method {other} is invalid"
            )));
        }
        None => {
            return Err(JwtError::BadSignature(
                "signing method (alg) is unavailable".to_string(),
            ));
        }
    }
    let signature = URL_SAFE_NO_PAD
        .decode(parts[2])
        .map_err(|_| JwtError::Malformed("could not base64 decode signature".to_string()))?;
    let mut m = <HmacSha256 as KeyInit>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    m.update(format!("{}.{}", parts[0], parts[1]).as_bytes());
    if m.verify_slice(&signature).is_err() {
        return Err(JwtError::BadSignature("signature is invalid".to_string()));
    }
    match claims.get("exp") {
        None | Some(Value::Null) => {}
        Some(Value::Number(n)) => {
            if n.as_f64().is_some_and(|exp| (now as f64) > exp) {
                return Err(JwtError::Expired);
            }
        }
        Some(_) => return Err(JwtError::Malformed("invalid type for claim".to_string())),
    }
    if let Some(Value::Number(n)) = claims.get("nbf")
        && n.as_f64().is_some_and(|nbf| (now as f64) < nbf)
    {
        return Err(JwtError::NotYetValid);
    }
    if let Some(role) = claims.get("role")
        && !role.is_string()
        && !role.is_null()
    {
        return Err(JwtError::Malformed(
            "could not JSON decode claim: json: cannot unmarshal into Go struct field \
             AccessTokenClaims.role of type string"
                .to_string(),
        ));
    }
    Ok(claims)
}

/// The project's four API keys, derived from the JWT secret so that a restarted
/// sandbox hands out the same keys (a pasted `export` line keeps working).
#[derive(Debug, Clone)]
pub struct Keys {
    pub service_role: String,
    pub anon: String,
    pub secret: String,
    pub publishable: String,
}

impl Keys {
    pub fn derive(secret: &str) -> Keys {
        let service_role = sign_raw(
            secret,
            &format!(r#"{{"iss":"supabase-demo","role":"service_role","exp":{DEMO_EXP}}}"#),
        );
        let anon = sign_raw(
            secret,
            &format!(r#"{{"iss":"supabase-demo","role":"anon","exp":{DEMO_EXP}}}"#),
        );
        let opaque = |label: &str| {
            let raw = URL_SAFE_NO_PAD.encode(mac(secret, label.as_bytes()));
            raw.chars().take(32).collect::<String>()
        };
        Keys {
            secret: format!("sb_secret_{}", opaque("sb_secret")),
            publishable: format!("sb_publishable_{}", opaque("sb_publishable")),
            service_role,
            anon,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_keys_are_the_well_known_local_demo_keys() {
        let keys = Keys::derive(DEFAULT_JWT_SECRET);
        assert_eq!(
            keys.service_role,
            "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJzdXBhYmFzZS1kZW1vIiwicm9sZSI6InNlcnZpY2Vfcm9sZSIsImV4cCI6MTk4MzgxMjk5Nn0.EGIM96RAZx35lJzdJsyH-qQwv8Hdp7fsn3W0YpN81IU"
        );
        assert!(keys.secret.starts_with("sb_secret_"));
    }

    #[test]
    fn verify_round_trips_and_rejects_tampering() {
        let keys = Keys::derive(DEFAULT_JWT_SECRET);
        let claims = verify(DEFAULT_JWT_SECRET, &keys.anon, 0).unwrap();
        assert_eq!(claims["role"], "anon");
        assert!(matches!(
            verify("another-secret", &keys.anon, 0),
            Err(JwtError::BadSignature(_))
        ));
        assert!(matches!(
            verify(DEFAULT_JWT_SECRET, "abc", 0),
            Err(JwtError::Segments(1))
        ));
        assert_eq!(
            verify(DEFAULT_JWT_SECRET, &keys.anon, DEMO_EXP + 1),
            Err(JwtError::Expired)
        );
    }
}
