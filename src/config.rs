//! Command line + environment -> `Config`. Every environment read lives here. The
//! service-role key is held in `SecretKey`, whose `Debug` and `Display` are redacted.

use std::fmt;

/// The service-role key. Never printed: `Debug`/`Display` show `[redacted]`. The only
/// way to the bytes is `expose`, used by the HTTP client to build headers.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretKey(String);

impl SecretKey {
    pub fn new(key: String) -> SecretKey {
        SecretKey(key)
    }

    /// The raw key, for request headers only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// New-style `sb_secret_…` keys are not JWTs: sent in `apikey` alone.
    pub fn is_secret_key(&self) -> bool {
        self.0.starts_with("sb_secret_")
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey([redacted])")
    }
}

impl fmt::Display for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

use std::net::IpAddr;

use url::{Host, Url};

use crate::cli::ColorChoice;
use crate::error::Error;

pub const URL_VAR: &str = "MAP_SUPABASE_URL";
pub const KEY_VAR: &str = "MAP_SUPABASE_SERVICE_ROLE_KEY";

/// An environment lookup: the process environment, or a map in examples and tests.
pub type Env<'a> = dyn Fn(&str) -> Option<String> + Sync + 'a;

/// The one reader of the process environment. Everything else takes a lookup function,
/// so tests can resolve configuration without touching the real environment.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var_os(name).map(|v| v.to_string_lossy().into_owned())
}

/// Where to connect and with what: resolved from `MAP_SUPABASE_URL` and
/// `MAP_SUPABASE_SERVICE_ROLE_KEY`.
#[derive(Debug, Clone)]
pub struct Connection {
    pub url: Url,
    pub key: SecretKey,
}

impl Connection {
    pub fn from_env(env: &Env<'_>) -> Result<Connection, Error> {
        let raw_url = env(URL_VAR)
            .filter(|v| !v.trim().is_empty())
            .ok_or(Error::MissingEnv(URL_VAR))?;
        let url = parse_target_url(&raw_url)?;
        let key = env(KEY_VAR)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .ok_or(Error::MissingEnv(KEY_VAR))?;
        check_key_shape(&key)?;
        Ok(Connection {
            url,
            key: SecretKey::new(key),
        })
    }

    /// The target as recorded in a plan: scheme, host, port (if not the default) and
    /// path, without a trailing `/`.
    pub fn target(&self) -> String {
        target_string(&self.url)
    }
}

fn target_string(url: &Url) -> String {
    let mut s = format!("{}://{}", url.scheme(), url.host_str().unwrap_or(""));
    if let Some(port) = url.port() {
        s.push_str(&format!(":{port}"));
    }
    s.push_str(url.path().trim_end_matches('/'));
    s
}

/// Parse and vet `MAP_SUPABASE_URL`: https, or http for loopback hosts only; no
/// credentials, query or fragment (they would end up in plan files and logs).
pub fn parse_target_url(raw: &str) -> Result<Url, Error> {
    let bad = |reason: &str| Error::BadUrl {
        reason: reason.to_string(),
    };
    let url = Url::parse(raw.trim()).map_err(|e| bad(&e.to_string()))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad(
            "it holds credentials; put the key in MAP_SUPABASE_SERVICE_ROLE_KEY",
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad("it has a query or fragment"));
    }
    let host = url.host().ok_or_else(|| bad("it has no host"))?;
    match url.scheme() {
        "https" => {}
        "http" if is_loopback(&host) => {}
        "http" => return Err(Error::InsecureUrl),
        other => return Err(bad(&format!("the scheme `{other}` is not https"))),
    }
    Ok(url)
}

/// `localhost`, `127.0.0.0/8` or `::1`: where plain http is allowed and no proxy is used.
pub fn is_loopback(host: &Host<&str>) -> bool {
    match host {
        Host::Domain(d) => d.eq_ignore_ascii_case("localhost"),
        Host::Ipv4(ip) => IpAddr::V4(*ip).is_loopback(),
        Host::Ipv6(ip) => IpAddr::V6(*ip).is_loopback(),
    }
}

/// Two URLs name the same target when scheme, host and port are equal (host
/// case-insensitive, default ports filled in) and their paths are equal once a trailing
/// `/` is dropped.
pub fn same_target(a: &str, b: &str) -> bool {
    let (Ok(a), Ok(b)) = (Url::parse(a.trim()), Url::parse(b.trim())) else {
        return false;
    };
    a.scheme() == b.scheme()
        && a.host_str().map(str::to_ascii_lowercase) == b.host_str().map(str::to_ascii_lowercase)
        && a.port_or_known_default() == b.port_or_known_default()
        && a.path().trim_end_matches('/') == b.path().trim_end_matches('/')
}

/// Catch keys that cannot work before any request is sent. Never echoes the key.
fn check_key_shape(key: &str) -> Result<(), Error> {
    if key.starts_with("sb_publishable_") {
        return Err(Error::BadKey {
            reason: "it is a publishable key",
        });
    }
    if key.starts_with("sb_secret_") {
        return Ok(());
    }
    if key.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(Error::BadKey {
            reason: "it contains whitespace",
        });
    }
    let parts: Vec<&str> = key.split('.').collect();
    let b64url = |p: &&str| {
        !p.is_empty()
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '=')
    };
    if parts.len() != 3 || !parts.iter().all(b64url) {
        return Err(Error::BadKey {
            reason: "it is neither a JWT nor an `sb_secret_` key",
        });
    }
    Ok(())
}

/// Colour on a stream: `always` wins over NO_COLOR; `auto` needs a terminal and honours
/// NO_COLOR (any non-empty value).
pub fn use_color(
    choice: ColorChoice,
    is_terminal: bool,
    env: impl Fn(&str) -> Option<String>,
) -> bool {
    match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => is_terminal && env("NO_COLOR").is_none_or(|v| v.is_empty()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const JWT: &str = "eyJhbGciOiJIUzI1NiJ9.eyJyb2xlIjoic2VydmljZV9yb2xlIn0.c2lnbmF0dXJl";

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + Sync + use<> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        }
    }

    #[test]
    fn missing_variables_are_named() {
        let e = Connection::from_env(&env(&[])).unwrap_err();
        assert!(matches!(e, Error::MissingEnv(URL_VAR)));
        let e = Connection::from_env(&env(&[(URL_VAR, "https://a.supabase.co")])).unwrap_err();
        assert!(matches!(e, Error::MissingEnv(KEY_VAR)));
        let e = Connection::from_env(&env(&[(URL_VAR, "https://a.supabase.co"), (KEY_VAR, "  ")]))
            .unwrap_err();
        assert!(matches!(e, Error::MissingEnv(KEY_VAR)));
    }

    #[test]
    fn http_only_for_loopback() {
        for ok in [
            "https://abcd.supabase.co",
            "http://localhost:54321",
            "http://127.0.0.1:8000",
            "http://127.8.9.10",
            "http://[::1]:9999/",
        ] {
            assert!(parse_target_url(ok).is_ok(), "{ok}");
        }
        assert!(matches!(
            parse_target_url("http://abcd.supabase.co"),
            Err(Error::InsecureUrl)
        ));
        assert!(matches!(
            parse_target_url("http://10.0.0.1"),
            Err(Error::InsecureUrl)
        ));
        assert!(matches!(
            parse_target_url("http://localhost.evil.com"),
            Err(Error::InsecureUrl)
        ));
        assert!(matches!(
            parse_target_url("ftp://x.co"),
            Err(Error::BadUrl { .. })
        ));
        assert!(matches!(
            parse_target_url("https://u:p@x.co"),
            Err(Error::BadUrl { .. })
        ));
        assert!(matches!(
            parse_target_url("abcd.supabase.co"),
            Err(Error::BadUrl { .. })
        ));
    }

    #[test]
    fn same_target_fills_default_ports_and_ignores_trailing_slash() {
        assert!(same_target(
            "https://ABCD.supabase.co",
            "https://abcd.supabase.co:443/"
        ));
        assert!(same_target(
            "http://127.0.0.1:54321/",
            "http://127.0.0.1:54321"
        ));
        assert!(!same_target(
            "https://abcd.supabase.co",
            "http://abcd.supabase.co"
        ));
        assert!(!same_target(
            "https://abcd.supabase.co",
            "https://abce.supabase.co"
        ));
        assert!(!same_target("https://a.co/x", "https://a.co/y"));
        assert!(!same_target("http://127.0.0.1:1", "http://127.0.0.1:2"));
    }

    #[test]
    fn target_is_recorded_without_trailing_slash_or_default_port() {
        let c = Connection::from_env(&env(&[
            (URL_VAR, "https://ABCD.supabase.co:443/"),
            (KEY_VAR, JWT),
        ]))
        .unwrap();
        assert_eq!(c.target(), "https://abcd.supabase.co");
    }

    #[test]
    fn key_shapes() {
        let url = (URL_VAR, "https://a.supabase.co");
        assert!(Connection::from_env(&env(&[url, (KEY_VAR, JWT)])).is_ok());
        assert!(Connection::from_env(&env(&[url, (KEY_VAR, "sb_secret_abc")])).is_ok());
        for bad in ["sb_publishable_abc", "not-a-key", "a.b", "a b.c.d"] {
            let e = Connection::from_env(&env(&[url, (KEY_VAR, bad)])).unwrap_err();
            assert!(matches!(e, Error::BadKey { .. }), "{bad}");
            assert!(!e.to_string().contains(bad), "the key must not be echoed");
        }
    }

    #[test]
    fn key_is_redacted_in_debug() {
        let c = Connection::from_env(&env(&[(URL_VAR, "https://a.supabase.co"), (KEY_VAR, JWT)]))
            .unwrap();
        let dbg = format!("{c:?}");
        assert!(!dbg.contains(JWT));
        assert!(dbg.contains("redacted"));
    }

    #[test]
    fn colour_choice() {
        let none = env(&[]);
        let no_color = env(&[("NO_COLOR", "1")]);
        assert!(use_color(ColorChoice::Auto, true, &none));
        assert!(!use_color(ColorChoice::Auto, false, &none));
        assert!(!use_color(ColorChoice::Auto, true, &no_color));
        assert!(use_color(ColorChoice::Always, false, &no_color));
        assert!(!use_color(ColorChoice::Never, true, &none));
    }
}
