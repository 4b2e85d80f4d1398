//! Command line + policy file + environment -> one resolved configuration per command
//! (`PlanConfig`, `ApplyConfig`, `ShowConfig`): flags win over `provision.toml`, which
//! wins over the defaults. Every environment read lives here. The service-role key is
//! held in `SecretKey`, whose `Debug` and `Display` are redacted.

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
use std::path::{Path, PathBuf};
use std::time::Duration;

use url::{Host, Url};

use crate::approval::ApprovalPolicy;
use crate::cli::{
    ApplyArgs, ApprovalArgs, ClientArgs, ColorChoice, ExplainArgs, PlanArgs, PolicyArgs, ShowArgs,
};
use crate::error::{Error, FailureKind};
use crate::model::RosterSource;
use crate::policyfile::{self, Approvals, PolicyFile};

/// `--concurrency` when neither the flag nor the policy file sets it.
pub const DEFAULT_CONCURRENCY: u32 = 8;
/// `--timeout` (seconds) when neither the flag nor the policy file sets it.
pub const DEFAULT_TIMEOUT: u64 = 30;
/// `--expires-in` when neither the flag nor the policy file sets it.
pub const DEFAULT_EXPIRES_IN: Duration = Duration::from_secs(7 * 86_400);

/// How requests are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientSettings {
    pub concurrency: usize,
    pub timeout: Duration,
}

/// The policy a plan is made under: where the roster comes from, who is protected, the
/// guards and the expiry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanPolicy {
    pub source: RosterSource,
    /// Normalised `--protect` values: the policy file's list, then the flags'.
    pub protect: Vec<String>,
    /// `None`: the default (the larger of 10 and 10% of active users with an email).
    pub max_bans: Option<usize>,
    pub allow_empty_roster: bool,
    pub expires_in: Duration,
}

/// `provision plan`, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanConfig {
    pub policy: PlanPolicy,
    pub client: ClientSettings,
    pub approvals: Option<Approvals>,
}

/// What `apply` executes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApplyMode {
    /// A saved plan file: it carries its own policy.
    Saved(PathBuf),
    /// One-step apply: plan under this policy, then apply.
    OneStep(PlanPolicy),
}

/// `provision apply`, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyConfig {
    pub mode: ApplyMode,
    pub client: ClientSettings,
    /// The `[approvals]` table (for a saved plan; one-step apply is refused with one).
    pub approvals: Option<Approvals>,
}

/// `provision show`, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShowConfig {
    pub approvals: Option<Approvals>,
}

impl PlanConfig {
    /// `dir` is the working directory the policy file and relative paths are found from
    /// (`""` for the process's own).
    pub fn resolve(args: &PlanArgs, dir: &Path) -> Result<PlanConfig, Error> {
        let file = policyfile::load(args.global.config.config.as_deref(), dir)?;
        Ok(PlanConfig {
            policy: plan_policy(&args.policy, args.expires_in, file.as_ref())?,
            client: client_settings(&args.global.client, file.as_ref()),
            approvals: file.and_then(|f| f.approvals),
        })
    }
}

/// `provision explain`, resolved: without a PLAN, the policy and client `plan` would use
/// (flags over the policy file, read the same way).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExplainConfig {
    pub policy: PlanPolicy,
    pub client: ClientSettings,
}

impl ExplainConfig {
    pub fn resolve(args: &ExplainArgs, dir: &Path) -> Result<ExplainConfig, Error> {
        let file = policyfile::load(args.global.config.config.as_deref(), dir)?;
        Ok(ExplainConfig {
            policy: plan_policy(&args.policy, None, file.as_ref())?,
            client: client_settings(&args.global.client, file.as_ref()),
        })
    }
}

impl ApplyConfig {
    pub fn resolve(args: &ApplyArgs, dir: &Path) -> Result<ApplyConfig, Error> {
        let file = policyfile::load(args.global.config.config.as_deref(), dir)?;
        let mode = match &args.plan {
            Some(plan) => ApplyMode::Saved(plan.clone()),
            None => {
                // A policy that asks for reviewed plans cannot be bypassed by skipping the
                // plan: refused before anything is read.
                if let Some(f) = &file
                    && let Some(a) = &f.approvals
                {
                    return Err(Error::ApprovalsRequired {
                        path: f.path.clone(),
                        required: a.required,
                    });
                }
                ApplyMode::OneStep(plan_policy(&args.policy, None, file.as_ref())?)
            }
        };
        Ok(ApplyConfig {
            mode,
            client: client_settings(&args.global.client, file.as_ref()),
            approvals: file.and_then(|f| f.approvals),
        })
    }
}

/// The approvals an apply of a plan file needs (and `show` lists): the flags with the
/// policy file's `[approvals]`. The file's `required` is a floor (a flag may ask for
/// more, never fewer) and its allowed-signers file cannot be swapped by a flag: a policy
/// that requires approvals cannot be bypassed from the command line.
pub fn approval_policy(
    flags: &ApprovalArgs,
    file: Option<&Approvals>,
) -> Result<ApprovalPolicy, Error> {
    let Some(file) = file else {
        return Ok(ApprovalPolicy {
            allowed_signers: flags.allowed_signers.clone(),
            required: flags.require_approvals.unwrap_or(0),
        });
    };
    if let Some(flag) = &flags.allowed_signers
        && !same_file(flag, &file.allowed_signers)
    {
        return Err(Error::BadFlag {
            flag: "--allowed-signers",
            reason: format!(
                "the policy file's `[approvals]` names `{}`; a flag cannot replace the allowed signers a policy requires",
                file.allowed_signers.display()
            ),
        });
    }
    Ok(ApprovalPolicy {
        allowed_signers: Some(file.allowed_signers.clone()),
        required: flags.require_approvals.unwrap_or(0).max(file.required),
    })
}

/// Whether two paths name the same file (as given, or once resolved).
fn same_file(a: &Path, b: &Path) -> bool {
    a == b
        || matches!(
            (std::fs::canonicalize(a), std::fs::canonicalize(b)),
            (Ok(a), Ok(b)) if a == b
        )
}

impl ShowConfig {
    pub fn resolve(args: &ShowArgs, dir: &Path) -> Result<ShowConfig, Error> {
        let file = policyfile::load(args.config.config.as_deref(), dir)?;
        Ok(ShowConfig {
            approvals: file.and_then(|f| f.approvals),
        })
    }
}

fn client_settings(flags: &ClientArgs, file: Option<&PolicyFile>) -> ClientSettings {
    let concurrency = flags
        .concurrency
        .or(file.and_then(|f| f.concurrency))
        .unwrap_or(DEFAULT_CONCURRENCY);
    let timeout = flags
        .timeout
        .or(file.and_then(|f| f.timeout))
        .unwrap_or(DEFAULT_TIMEOUT);
    ClientSettings {
        concurrency: concurrency as usize,
        timeout: Duration::from_secs(timeout),
    }
}

/// Flags over the file over the defaults; `--protect` adds to the file's list. A roster
/// flag replaces the file's source whichever kind either is.
fn plan_policy(
    flags: &PolicyArgs,
    expires_in: Option<Duration>,
    file: Option<&PolicyFile>,
) -> Result<PlanPolicy, Error> {
    let source = match (&flags.roster_table, &flags.roster_file) {
        (Some((schema, table)), _) => RosterSource::Table {
            schema: schema.clone(),
            table: table.clone(),
        },
        (None, Some(path)) => {
            let path = path.to_str().ok_or(Error::BadFlag {
                flag: "--roster-file",
                reason: "the path is not valid UTF-8".into(),
            })?;
            RosterSource::File(path.to_string())
        }
        (None, None) => file
            .and_then(|f| f.roster.clone())
            .unwrap_or_else(RosterSource::default_table),
    };
    let mut protect: Vec<String> = file.map(|f| f.protect.clone()).unwrap_or_default();
    protect.extend(flags.protect.iter().cloned());
    Ok(PlanPolicy {
        source,
        protect,
        max_bans: flags.max_bans.or(file.and_then(|f| f.max_bans)),
        allow_empty_roster: flags.allow_empty_roster
            || file.and_then(|f| f.allow_empty_roster).unwrap_or(false),
        expires_in: expires_in
            .or(file.and_then(|f| f.expires_in))
            .unwrap_or(DEFAULT_EXPIRES_IN),
    })
}

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

    /// `host:port` of the target, the default port filled in.
    pub fn host_port(&self) -> String {
        let host = self.url.host().map(|h| h.to_string()).unwrap_or_default();
        match self.url.port_or_known_default() {
            Some(port) => format!("{host}:{port}"),
            None => host,
        }
    }

    /// A request that could not reach the server names where it went and which
    /// variable said so; every other error is returned as it is.
    pub fn explain(&self, e: Error) -> Error {
        match e {
            Error::Api(failure)
                if matches!(failure.kind, FailureKind::Network | FailureKind::Timeout) =>
            {
                Error::Unreachable {
                    host: self.host_port(),
                    failure,
                }
            }
            other => other,
        }
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

/// Parse and vet `MAP_SUPABASE_URL`: a scheme, https (or http for loopback hosts only),
/// and nothing but the project's origin: no credentials, path, query or fragment (a
/// `/rest/v1` path would be doubled on every request; the rest would end up in plan files
/// and logs). A trailing `/` is fine.
pub fn parse_target_url(raw: &str) -> Result<Url, Error> {
    let bad = |reason: &str| Error::BadUrl {
        reason: reason.to_string(),
    };
    let raw = raw.trim();
    // `abcd.supabase.co` is a relative URL, and `localhost:54321` parses with the
    // scheme `localhost`: both lack `scheme://`.
    if !raw.contains("://") {
        return Err(bad(&format!("`{raw}` has no scheme (`https://`)")));
    }
    let url = Url::parse(raw).map_err(|e| bad(&e.to_string()))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad(
            "it holds credentials; put the key in MAP_SUPABASE_SERVICE_ROLE_KEY",
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad("it has a query or fragment"));
    }
    if url.path() != "/" && !url.path().is_empty() {
        return Err(bad(&format!(
            "it has a path (`{}`); provision adds `/auth/v1` and `/rest/v1` itself",
            url.path()
        )));
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
    // A URL with credentials is never a target this program made (it refuses them in
    // `MAP_SUPABASE_URL`): a plan naming one was written by hand.
    let bare = |u: &Url| u.username().is_empty() && u.password().is_none();
    bare(&a)
        && bare(&b)
        && a.scheme() == b.scheme()
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

/// Colour on a stream: `always` wins over NO_COLOR; `auto` needs a terminal that is not
/// `TERM=dumb` and honours NO_COLOR (any non-empty value).
pub fn use_color(
    choice: ColorChoice,
    is_terminal: bool,
    env: impl Fn(&str) -> Option<String>,
) -> bool {
    match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => {
            is_terminal && !is_dumb_terminal(&env) && env("NO_COLOR").is_none_or(|v| v.is_empty())
        }
    }
}

/// `TERM=dumb`: a terminal that moves no cursor and shows no colour (Emacs shells, some
/// CI log viewers). It gets plain progress lines and no colour.
pub fn is_dumb_terminal(env: impl Fn(&str) -> Option<String>) -> bool {
    env("TERM").is_some_and(|t| t == "dumb")
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
    fn a_url_with_a_path_a_query_or_no_scheme_is_refused_with_the_expected_shape() {
        let reason = |raw: &str| match parse_target_url(raw) {
            Err(Error::BadUrl { reason }) => reason,
            other => panic!("{raw}: {other:?}"),
        };
        assert_eq!(
            reason("http://127.0.0.1:54321/rest/v1"),
            "it has a path (`/rest/v1`); provision adds `/auth/v1` and `/rest/v1` itself"
        );
        assert_eq!(
            reason("abcd.supabase.co"),
            "`abcd.supabase.co` has no scheme (`https://`)"
        );
        assert_eq!(
            reason("localhost:54321"),
            "`localhost:54321` has no scheme (`https://`)"
        );
        assert_eq!(
            reason("https://a.supabase.co/?x=1"),
            "it has a query or fragment"
        );
        let e = Error::BadUrl {
            reason: reason("https://a.supabase.co/auth/v1/"),
        };
        assert_eq!(
            e.to_string(),
            "error: `MAP_SUPABASE_URL` is not a usable URL: it has a path (`/auth/v1/`); provision adds `/auth/v1` and `/rest/v1` itself\n\
             Set it to the project URL alone: `https://<project-ref>.supabase.co` (or `http://127.0.0.1:54321` for a local stack), with no path, query or credentials."
        );
        assert!(parse_target_url("https://a.supabase.co/").is_ok());
    }

    #[test]
    fn network_failures_name_the_host_port_and_the_variable() {
        let c = Connection::from_env(&env(&[
            (URL_VAR, "https://abcd.supabase.co"),
            (KEY_VAR, JWT),
        ]))
        .unwrap();
        assert_eq!(c.host_port(), "abcd.supabase.co:443");
        let failure = crate::error::ApiFailure {
            request: "GET /auth/v1/admin/users".into(),
            kind: FailureKind::Network,
            status: None,
            code: None,
            message: "dns error".into(),
            retry_after: None,
        };
        assert_eq!(
            c.explain(Error::Api(failure.clone())).to_string(),
            "error: cannot reach `abcd.supabase.co:443`, the host and port of `MAP_SUPABASE_URL` (GET /auth/v1/admin/users: dns error)\n\
             Nothing was changed. Check `MAP_SUPABASE_URL` for a typo, then the network (DNS, proxy, firewall), and run the command again."
        );
        let http = crate::error::ApiFailure {
            kind: FailureKind::Http,
            status: Some(500),
            ..failure
        };
        assert!(matches!(c.explain(Error::Api(http)), Error::Api(_)));
        let local =
            Connection::from_env(&env(&[(URL_VAR, "http://[::1]:9999/"), (KEY_VAR, JWT)])).unwrap();
        assert_eq!(local.host_port(), "[::1]:9999");
    }

    #[test]
    fn a_target_with_credentials_is_never_the_same_target() {
        assert!(!same_target(
            "https://user:pass@abcd.supabase.co",
            "https://abcd.supabase.co"
        ));
        assert!(!same_target(
            "https://abcd.supabase.co",
            "https://user@abcd.supabase.co"
        ));
        assert!(!same_target(
            "https://u:p@abcd.supabase.co",
            "https://u:p@abcd.supabase.co"
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
        let dumb = env(&[("TERM", "dumb")]);
        assert!(!use_color(ColorChoice::Auto, true, &dumb));
        assert!(use_color(ColorChoice::Always, true, &dumb));
        assert!(use_color(
            ColorChoice::Auto,
            true,
            env(&[("TERM", "xterm-256color")])
        ));
    }

    fn plan_args(args: &[&str]) -> PlanArgs {
        let mut all = vec!["provision", "plan"];
        all.extend_from_slice(args);
        match crate::cli::Cli::parse_args(all).unwrap().command {
            crate::cli::Command::Plan(a) => a,
            _ => unreachable!(),
        }
    }

    fn apply_args(args: &[&str]) -> ApplyArgs {
        let mut all = vec!["provision", "apply"];
        all.extend_from_slice(args);
        match crate::cli::Cli::parse_args(all).unwrap().command {
            crate::cli::Command::Apply(a) => a,
            _ => unreachable!(),
        }
    }

    const POLICY: &str = "[roster]\nfile = \"roster.yaml\"\n[policy]\nprotect = [\"@bots.example.com\"]\nmax_bans = 20\nallow_empty_roster = true\nexpires_in = \"1d\"\n[client]\nconcurrency = 3\ntimeout = 5\n";

    #[test]
    fn without_a_policy_file_the_defaults_apply() {
        let dir = tempfile::tempdir().unwrap();
        let c = PlanConfig::resolve(&plan_args(&[]), dir.path()).unwrap();
        assert_eq!(
            c,
            PlanConfig {
                policy: PlanPolicy {
                    source: RosterSource::default_table(),
                    protect: vec![],
                    max_bans: None,
                    allow_empty_roster: false,
                    expires_in: DEFAULT_EXPIRES_IN,
                },
                client: ClientSettings {
                    concurrency: 8,
                    timeout: Duration::from_secs(30)
                },
                approvals: None,
            }
        );
    }

    #[test]
    fn the_policy_file_fills_what_the_flags_leave_and_flags_win() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("ops")).unwrap();
        std::fs::write(dir.path().join("ops/p.toml"), POLICY).unwrap();
        let from_file =
            PlanConfig::resolve(&plan_args(&["--config", "ops/p.toml"]), dir.path()).unwrap();
        assert_eq!(
            from_file.policy,
            PlanPolicy {
                source: RosterSource::File("ops/roster.yaml".into()),
                protect: vec!["@bots.example.com".into()],
                max_bans: Some(20),
                allow_empty_roster: true,
                expires_in: Duration::from_secs(86_400),
            }
        );
        assert_eq!(
            from_file.client,
            ClientSettings {
                concurrency: 3,
                timeout: Duration::from_secs(5)
            }
        );
        let flags = PlanConfig::resolve(
            &plan_args(&[
                "--config",
                "ops/p.toml",
                "--roster-table",
                "hr.people",
                "--protect",
                "ops@example.com",
                "--max-bans",
                "0",
                "--expires-in",
                "2h",
                "--concurrency",
                "1",
            ]),
            dir.path(),
        )
        .unwrap();
        assert_eq!(
            flags.policy,
            PlanPolicy {
                source: RosterSource::Table {
                    schema: "hr".into(),
                    table: "people".into()
                },
                protect: vec!["@bots.example.com".into(), "ops@example.com".into()],
                max_bans: Some(0),
                allow_empty_roster: true,
                expires_in: Duration::from_secs(7200),
            }
        );
        assert_eq!(flags.client.concurrency, 1);
        assert_eq!(flags.client.timeout, Duration::from_secs(5));
    }

    #[test]
    fn provision_toml_in_the_working_directory_is_read() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("provision.toml"), POLICY).unwrap();
        let c = PlanConfig::resolve(&plan_args(&[]), dir.path()).unwrap();
        assert_eq!(c.policy.source, RosterSource::File("roster.yaml".into()));
    }

    #[test]
    fn one_step_apply_is_refused_when_the_policy_requires_approvals() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("provision.toml"),
            "[approvals]\nallowed_signers = \"signers\"\nrequired = 2\n",
        )
        .unwrap();
        let e = ApplyConfig::resolve(&apply_args(&["--yes"]), dir.path()).unwrap_err();
        assert!(
            matches!(e, Error::ApprovalsRequired { required: 2, .. }),
            "{e}"
        );
        let saved = ApplyConfig::resolve(&apply_args(&["plan.json"]), dir.path()).unwrap();
        assert_eq!(saved.mode, ApplyMode::Saved(PathBuf::from("plan.json")));
        assert_eq!(
            saved.approvals,
            Some(Approvals {
                allowed_signers: PathBuf::from("signers"),
                required: 2
            })
        );
    }
}
