//! Every user-facing error sentence and the exit code it maps to. Other modules build
//! these variants; only this file words them. Never put the service-role key in one.

use std::fmt;
use std::path::PathBuf;

/// The contract's exit codes, and nothing else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Success; for `plan`, also "no changes".
    Success,
    /// An error before any write was sent.
    Error,
    /// `plan --detailed-exitcode` only: the plan has changes.
    Changes,
    /// `apply` refused and changed nothing (stale, wrong target, expired, digest, version,
    /// `--expect-digest`, not confirmed); `show` found a digest mismatch.
    Refused,
    /// `plan` refused by a safety guard; no plan written.
    Guard,
    /// `apply` sent writes and at least one change failed or did not take effect.
    Partial,
    /// A command-line parse error.
    Usage,
    /// Ctrl-C.
    Interrupted,
}

impl Exit {
    pub fn code(self) -> u8 {
        match self {
            Exit::Success => 0,
            Exit::Error => 1,
            Exit::Changes => 2,
            Exit::Refused => 3,
            Exit::Guard => 4,
            Exit::Partial => 5,
            Exit::Usage => 64,
            Exit::Interrupted => 130,
        }
    }
}

/// How a request to Supabase failed, as the client classifies it. Carries the server's
/// error code (`error_code`/`code`/`x-sb-error-code`) and message, never a header value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiFailure {
    /// `GET /auth/v1/admin/users?page=3`, `PUT /auth/v1/admin/users/{id}`: no secrets.
    pub request: String,
    pub kind: FailureKind,
    pub status: Option<u16>,
    pub code: Option<String>,
    pub message: String,
    /// The server's `Retry-After`, when it sent one (uncapped: the retry rules cap it).
    pub retry_after: Option<std::time::Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// Could not connect, connection dropped, TLS failure.
    Network,
    /// No answer within `--timeout`.
    Timeout,
    /// The server answered with an error status.
    Http,
    /// The server answered 2xx with a body we could not understand.
    BadResponse,
}

impl ApiFailure {
    /// The code for logs and reports: the server's error code, else the status, else the
    /// failure kind (`network`, `timeout`).
    pub fn error_code(&self) -> String {
        if let Some(code) = &self.code {
            return code.clone();
        }
        match (self.kind, self.status) {
            (_, Some(status)) => format!("http_{status}"),
            (FailureKind::Network, None) => "network".into(),
            (FailureKind::Timeout, None) => "timeout".into(),
            (_, None) => "bad_response".into(),
        }
    }
}

impl fmt::Display for ApiFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.kind, self.status) {
            (FailureKind::Timeout, _) => write!(f, "{}: no answer in time", self.request),
            (FailureKind::Network, _) => write!(f, "{}: {}", self.request, self.message),
            (_, Some(status)) => {
                write!(f, "{}: HTTP {status}", self.request)?;
                if let Some(code) = &self.code {
                    write!(f, " `{code}`")?;
                }
                if !self.message.is_empty() {
                    write!(f, ": {}", self.message)?;
                }
                Ok(())
            }
            (_, None) => write!(f, "{}: {}", self.request, self.message),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    // ---- configuration (exit 1) ----
    #[error(
        "error: `{0}` is not set\nExport it in the environment (it is never read from a flag or a file)."
    )]
    MissingEnv(&'static str),

    #[error(
        "error: `MAP_SUPABASE_URL` is not a usable URL: {reason}\nSet it to the project URL alone: `https://<project-ref>.supabase.co` (or `http://127.0.0.1:54321` for a local stack), with no path, query or credentials."
    )]
    BadUrl { reason: String },

    #[error(
        "error: `MAP_SUPABASE_URL` uses http:// for a host that is not loopback\nUse https:// (plain http is accepted only for localhost, 127.0.0.0/8 and ::1)."
    )]
    InsecureUrl,

    #[error(
        "error: `MAP_SUPABASE_SERVICE_ROLE_KEY` does not look like a service-role key ({reason})\nUse the project's service_role JWT or an `sb_secret_…` key from the API settings."
    )]
    BadKey { reason: &'static str },

    #[error("error: `{flag}`: {reason}")]
    BadFlag { flag: &'static str, reason: String },

    #[error(
        "error: the policy file `{path}` given with `--config` does not exist\nCheck the path, or leave `--config` out to read `provision.toml` from the working directory when it is there."
    )]
    ConfigMissing { path: PathBuf },

    #[error(
        "error: `{path}`{}: {reason}\nFix the policy file and run the command again; nothing was read from Supabase.",
        policy_location(*.line, .key)
    )]
    PolicyFile {
        path: PathBuf,
        line: Option<usize>,
        /// `policy.max_bans`, or empty when the file does not parse as TOML.
        key: String,
        reason: String,
    },

    // ---- reading from Supabase (exit 1) ----
    #[error(
        "error: authentication failed ({failure})\nCheck that `MAP_SUPABASE_SERVICE_ROLE_KEY` is the service_role key of the project at `MAP_SUPABASE_URL`."
    )]
    AuthFailed { failure: ApiFailure },

    #[error(
        "error: the schema `{schema}` is not exposed by the project's API ({failure})\nAdd `{schema}` under Dashboard → Project Settings → API → Exposed schemas, or pass `--roster-table` / `--roster-file`."
    )]
    SchemaNotExposed { schema: String, failure: ApiFailure },

    #[error(
        "error: the roster table `{table}` cannot be read ({failure})\nCheck that the table exists and that `service_role` has `USAGE` on its schema and `SELECT` on it."
    )]
    RosterTable { table: String, failure: ApiFailure },

    #[error(
        "error: request failed: {0}\nNothing was changed. Check the network and the project's status, then run the command again."
    )]
    Api(ApiFailure),

    #[error(
        "error: cannot reach `{host}`, the host and port of `MAP_SUPABASE_URL` ({failure})\nNothing was changed. Check `MAP_SUPABASE_URL` for a typo, then the network (DNS, proxy, firewall), and run the command again."
    )]
    Unreachable { host: String, failure: ApiFailure },

    #[error(
        "error: cannot read the roster file `{path}` named by the plan, resolved against the directory `{dir}`: {reason}\nThe plan records a relative roster path: run `provision apply` from the directory `provision plan` ran in, or re-run `provision plan` here."
    )]
    PlanRosterFile {
        path: PathBuf,
        dir: PathBuf,
        reason: String,
    },

    #[error(
        "error: incomplete listing of {what}: {detail}\nNothing was planned or changed from it; run the command again (a listing that does not add up is never acted on)."
    )]
    IncompleteRead { what: &'static str, detail: String },

    // ---- files (exit 1) ----
    #[error("error: cannot read `{path}`: {reason}")]
    ReadFile { path: PathBuf, reason: String },

    #[error("error: `{path}`{location}: {reason}\nFix the roster file and run the command again.")]
    RosterFile {
        path: PathBuf,
        /// ` row 3`, ` line 7 column 2`, or empty.
        location: String,
        reason: String,
    },

    #[error(
        "error: `{path}` is not a plan file: {reason}\nPass the file written by `provision plan --out`."
    )]
    NotAPlan { path: PathBuf, reason: String },

    #[error("error: cannot write `{path}`: {reason}")]
    WriteFile { path: PathBuf, reason: String },

    #[error(
        "error: `{flag}` `{path}` {reason}; nothing was read or written\nName a regular file, or a new path, other than the roster and plan files."
    )]
    BadTarget {
        flag: &'static str,
        path: PathBuf,
        reason: String,
    },

    // ---- approvals (exit 1 unless said) ----
    #[error(
        "error: `{path}` line {line}: {reason}\nFix the allowed-signers file (OpenSSH's format: `principals [options] keytype base64`) and run the command again."
    )]
    AllowedSignersLine {
        path: PathBuf,
        line: usize,
        reason: String,
    },

    #[error("error: `{path}` cannot sign: {reason}\n{hint}")]
    SigningKey {
        path: PathBuf,
        reason: String,
        hint: String,
    },

    #[error(
        "error: `{path}` is encrypted and there is no terminal to ask for its passphrase\nRun `provision approve` on a terminal, or add the key to ssh-agent (`ssh-add {path}`) and pass `--key {path}.pub`."
    )]
    PassphraseNeedsTerminal { path: PathBuf },

    #[error(
        "error: no `--key` was given and no ssh-agent is reachable (`SSH_AUTH_SOCK` is not set)\nPass `--key` with your private key file, or start ssh-agent and add your key with `ssh-add`."
    )]
    NoAgent,

    #[error(
        "error: ssh-agent: {reason}\nCheck the agent (`ssh-add -L` lists its keys), or pass `--key` with your private key file."
    )]
    Agent { reason: String },

    #[error(
        "error: ssh-agent holds no key\nAdd yours with `ssh-add`, or pass `--key` with your private key file."
    )]
    AgentEmpty,

    #[error(
        "error: ssh-agent holds {count} keys and no `--key` says which one signs:\n{keys}Pass `--key FILE.pub` with the public half of the key to sign with."
    )]
    AgentSeveralKeys { count: usize, keys: String },

    #[error(
        "error: ssh-agent does not hold the key `{path}` ({fingerprint})\nAdd it with `ssh-add`, or pass `--key` with the private key file."
    )]
    AgentLacksKey { path: PathBuf, fingerprint: String },

    #[error(
        "error: approvals are required, but no allowed-signers file says whose approvals count\nPass `--allowed-signers FILE` (OpenSSH's allowed-signers format)."
    )]
    ApprovalsNeedSigners,

    // ---- guards (exit 4) ----
    #[error(
        "error: the plan would ban {bans} users, more than `--max-bans` {max}:\n{}No plan was written. Check the roster source; if the bans are intended, pass `--max-bans {bans}`.",
        ban_list(.emails, *.bans)
    )]
    TooManyBans {
        bans: usize,
        max: usize,
        /// The accounts it would ban, sorted (the first `BAN_LIST_LIMIT` are named).
        emails: Vec<String>,
    },

    #[error(
        "error: the roster has no valid email ({rows} rows read from {source_name})\nNo plan was written. Check the roster source; to ban every active user on purpose, pass `--allow-empty-roster`."
    )]
    EmptyRoster { rows: usize, source_name: String },

    // ---- refusals (exit 3) ----
    #[error(
        "error: the plan's format_version {0} is not one this provision knows (it knows 1)\nRe-run `provision plan` with this version of provision."
    )]
    /// The version as the file wrote it (an integer, possibly too large for any type).
    UnknownFormat(String),

    #[error(
        "error: the plan's digest does not match its contents (recorded {recorded}, computed {computed})\nThe file was edited after it was made, so it is not the reviewed plan. Re-run `provision plan`."
    )]
    DigestMismatch { recorded: String, computed: String },

    #[error(
        "error: the plan does not follow from its own observed state: {0}\nNothing was changed. A plan edited by hand is not a reviewed plan, even with a fresh digest; re-run `provision plan`."
    )]
    Integrity(String),

    #[error(
        "error: the plan's digest is {actual}, not the expected {expected}\nApply the plan that was reviewed, or re-run `provision plan` and review again."
    )]
    ExpectDigest { expected: String, actual: String },

    #[error(
        "error: the plan expired at {expires_at}\nRe-run `provision plan` and review the new plan."
    )]
    Expired { expires_at: String },

    #[error(
        "error: the plan was made for `{plan}`, but `MAP_SUPABASE_URL` is `{env}`\nApply it against the project it was made for, or re-run `provision plan` here."
    )]
    WrongTarget { plan: String, env: String },

    #[error(
        "error: the remote state changed since the plan was made; nothing was changed\nRe-run `provision plan` and review the new plan."
    )]
    Drift,

    #[error(
        "error: the plan has {counted} of the {required} approvals it needs; nothing was changed\n{details}Collect approvals with `provision approve PLAN` from approvers in the allowed-signers file, and pass each with `--approval FILE`."
    )]
    ApprovalsMissing {
        counted: usize,
        required: u32,
        /// One line per approval that did not count, each ending in a newline.
        details: String,
    },

    #[error("error: not confirmed; nothing was changed")]
    NotConfirmed,

    #[error(
        "error: the policy file `{path}` requires {required} approval(s), so apply without a plan file is refused; nothing was changed\nRun `provision plan`, have the plan approved, then `provision apply PLAN`."
    )]
    ApprovalsRequired { path: PathBuf, required: u32 },

    #[error(
        "error: refusing to apply without confirmation: stdin or stderr is not a terminal\nPass `--yes` to apply non-interactively (e.g. in CI), after reviewing the plan."
    )]
    NeedsYes,

    // ---- apply outcomes ----
    #[error(
        "error: {failed} of {total} changes failed or did not take effect\nRun `provision apply` with the same plan again to resume."
    )]
    Partial { failed: usize, total: usize },

    #[error(
        "error: cannot write the log `{path}`: {reason}; no further change was started\nThe changes whose `started` record was written may have been made. Fix the log file's disk, then run `provision apply` with the same plan again to resume."
    )]
    LogFailed { path: PathBuf, reason: String },

    #[error(
        "error: interrupted; requests in flight were allowed to finish\nRun `provision apply` with the same plan again to resume."
    )]
    Interrupted,

    #[error("error: not confirmed (interrupted at the prompt); nothing was changed")]
    InterruptedAtPrompt,

    #[error("error: interrupted before any change was sent; nothing was changed")]
    InterruptedBeforeWrites,

    #[error("error: internal error: {0}\nThis is a bug in provision; please report it.")]
    Internal(String),
}

impl Error {
    pub fn exit(&self) -> Exit {
        use Error::*;
        match self {
            MissingEnv(_) | BadUrl { .. } | InsecureUrl | BadKey { .. } | BadFlag { .. } => {
                Exit::Error
            }
            ConfigMissing { .. } | PolicyFile { .. } => Exit::Error,
            AuthFailed { .. } | SchemaNotExposed { .. } | RosterTable { .. } | Api(_) => {
                Exit::Error
            }
            Unreachable { .. } | PlanRosterFile { .. } => Exit::Error,
            IncompleteRead { .. } => Exit::Error,
            ReadFile { .. }
            | RosterFile { .. }
            | NotAPlan { .. }
            | WriteFile { .. }
            | BadTarget { .. } => Exit::Error,
            AllowedSignersLine { .. } | SigningKey { .. } | PassphraseNeedsTerminal { .. } => {
                Exit::Error
            }
            NoAgent | Agent { .. } | AgentEmpty | AgentSeveralKeys { .. } => Exit::Error,
            AgentLacksKey { .. } | ApprovalsNeedSigners => Exit::Error,
            ApprovalsMissing { .. } => Exit::Refused,
            TooManyBans { .. } | EmptyRoster { .. } => Exit::Guard,
            UnknownFormat(_)
            | DigestMismatch { .. }
            | Integrity(_)
            | ExpectDigest { .. }
            | Expired { .. } => Exit::Refused,
            WrongTarget { .. } | Drift | NotConfirmed | NeedsYes => Exit::Refused,
            ApprovalsRequired { .. } => Exit::Refused,
            Partial { .. } | LogFailed { .. } => Exit::Partial,
            Interrupted | InterruptedAtPrompt | InterruptedBeforeWrites => Exit::Interrupted,
            Internal(_) => Exit::Error,
        }
    }
}

/// How many accounts a `--max-bans` refusal names before it gives a count.
pub const BAN_LIST_LIMIT: usize = 50;

/// `  - a@example.com` lines, then `  … and N more`.
fn ban_list(emails: &[String], bans: usize) -> String {
    let mut text: String = emails
        .iter()
        .take(BAN_LIST_LIMIT)
        .map(|e| format!("  - {e}\n"))
        .collect();
    let named = emails.len().min(BAN_LIST_LIMIT);
    if bans > named {
        text.push_str(&format!("  … and {} more\n", bans - named));
    }
    text
}

/// ` line 3, key `policy.max_bans``, as much of it as is known.
fn policy_location(line: Option<usize>, key: &str) -> String {
    match (line, key) {
        (Some(line), "") => format!(" line {line}"),
        (Some(line), key) => format!(" line {line}, key `{key}`"),
        (None, "") => String::new(),
        (None, key) => format!(", key `{key}`"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_are_the_contract() {
        let codes: Vec<u8> = [
            Exit::Success,
            Exit::Error,
            Exit::Changes,
            Exit::Refused,
            Exit::Guard,
            Exit::Partial,
            Exit::Usage,
            Exit::Interrupted,
        ]
        .iter()
        .map(|e| e.code())
        .collect();
        assert_eq!(codes, vec![0, 1, 2, 3, 4, 5, 64, 130]);
    }

    #[test]
    fn errors_map_to_their_codes() {
        assert_eq!(Error::MissingEnv("MAP_SUPABASE_URL").exit(), Exit::Error);
        assert_eq!(
            Error::TooManyBans {
                bans: 11,
                max: 10,
                emails: vec![]
            }
            .exit(),
            Exit::Guard
        );
        assert_eq!(Error::UnknownFormat("2".into()).exit(), Exit::Refused);
        assert_eq!(Error::Drift.exit(), Exit::Refused);
        assert_eq!(Error::NeedsYes.exit(), Exit::Refused);
        assert_eq!(
            Error::Partial {
                failed: 1,
                total: 3
            }
            .exit(),
            Exit::Partial
        );
        assert_eq!(Error::Interrupted.exit(), Exit::Interrupted);
    }

    #[test]
    fn too_many_bans_names_fifty_accounts_then_a_count() {
        let emails: Vec<String> = (0..53).map(|i| format!("u{i:02}@example.com")).collect();
        let text = Error::TooManyBans {
            bans: 53,
            max: 10,
            emails,
        }
        .to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "error: the plan would ban 53 users, more than `--max-bans` 10:"
        );
        assert_eq!(lines[1], "  - u00@example.com");
        assert_eq!(lines[50], "  - u49@example.com");
        assert_eq!(lines[51], "  … and 3 more");
        assert_eq!(
            lines[52],
            "No plan was written. Check the roster source; if the bans are intended, pass `--max-bans 53`."
        );
        assert_eq!(lines.len(), 53);
    }

    #[test]
    fn failure_code_prefers_server_code() {
        let mut f = ApiFailure {
            request: "POST /auth/v1/admin/users".into(),
            kind: FailureKind::Http,
            status: Some(422),
            code: Some("email_exists".into()),
            message: "A user with this email address has already been registered".into(),
            retry_after: None,
        };
        assert_eq!(f.error_code(), "email_exists");
        assert_eq!(
            f.to_string(),
            "POST /auth/v1/admin/users: HTTP 422 `email_exists`: A user with this email address has already been registered"
        );
        f.code = None;
        assert_eq!(f.error_code(), "http_422");
        f.kind = FailureKind::Timeout;
        f.status = None;
        assert_eq!(f.error_code(), "timeout");
    }
}
