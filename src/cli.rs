//! The command line as clap types. Doc comments are the help text. No I/O and no
//! environment reads here: `config.rs` resolves these into a `Config`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// The top-level help's epilogue: the environment and every exit code.
const TOP_HELP: &str = "\
Environment:
  MAP_SUPABASE_URL                project URL, e.g. https://abcd.supabase.co
                                  (http:// only for localhost, 127.0.0.0/8, ::1)
  MAP_SUPABASE_SERVICE_ROLE_KEY   service-role key (a JWT or an sb_secret_… key);
                                  read from the environment only, never printed
  NO_COLOR                        disables colour unless --color always

Exit codes:
  0    success (plan: also \"no changes\")
  1    error before any write was sent (configuration, network, server, bad input)
  2    plan --detailed-exitcode: the plan has changes
  3    apply refused and changed nothing (stale, other target, expired, digest,
       unknown format_version, --expect-digest mismatch, not confirmed);
       show: the digest does not match
  4    plan refused by a safety guard (too many bans, empty roster); no plan written
  5    apply sent writes and at least one change failed; run the same plan again to resume
  64   usage error
  130  interrupted; run the same plan again to resume";

/// Keep Supabase Auth users in step with an engineering roster, in two reviewed steps:
/// `plan` writes a changeset, `apply` executes exactly that changeset.
#[derive(Debug, Parser)]
#[command(name = "provision", version, propagate_version = true)]
#[command(after_help = TOP_HELP)]
pub struct Cli {
    #[command(flatten)]
    pub common: Common,

    #[command(subcommand)]
    pub command: Command,
}

/// Flags every command takes, before or after the command name.
#[derive(Debug, Args)]
pub struct Common {
    /// Requests in flight at any moment, reads included
    #[arg(long, global = true, value_name = "N", default_value_t = 8,
          value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub concurrency: u32,

    /// Timeout of each HTTP request, in seconds
    #[arg(long, global = true, value_name = "SECONDS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub timeout: u64,

    /// When to use colour: `auto` (a terminal, and NO_COLOR unset), `always` or `never`
    #[arg(long, global = true, value_enum, value_name = "WHEN", default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Read the roster and every auth user, show the changes, and write them to a plan file
    ///
    /// Reads the roster (by default the table activity.organization_people) and all
    /// Supabase Auth users, decides what must change (create, restore, ban), prints a
    /// coloured diff and writes the changeset to a JSON plan file for review. Nothing is
    /// written to Supabase.
    #[command(after_help = concat!(
        "Environment:\n",
        "  MAP_SUPABASE_URL, MAP_SUPABASE_SERVICE_ROLE_KEY (required); NO_COLOR\n\n",
        "Exit codes:\n",
        "  0   the plan was written (with --detailed-exitcode: and has no changes)\n",
        "  1   error (configuration, network, server, bad input); no plan written\n",
        "  2   --detailed-exitcode: the plan has changes\n",
        "  4   refused by a safety guard (too many bans, empty roster); no plan written\n",
        "  64  usage error"))]
    Plan(PlanArgs),

    /// Say what happens to one email and why: its roster entries, its auth users, the
    /// outcome and the rule behind it, and look-alikes on the other side
    ///
    /// With PLAN: offline, from the plan alone (its digest is checked first). Without: a
    /// live, read-only look with the same reads and policy flags as `plan`. Writes
    /// nothing anywhere.
    #[command(after_help = concat!(
        "Environment (without PLAN):\n",
        "  MAP_SUPABASE_URL, MAP_SUPABASE_SERVICE_ROLE_KEY (required)\n\n",
        "Exit codes:\n",
        "  0   explained, whatever the outcome (also: found nowhere)\n",
        "  1   error (configuration, network, server, unreadable plan)\n",
        "  3   the plan is refused (digest, format)\n",
        "  64  usage error"))]
    Explain(ExplainArgs),

    /// Execute exactly the changes of a reviewed plan file, refusing if the state drifted
    ///
    /// Re-reads the roster and every auth user, refuses (changing nothing) when the state
    /// differs from the one the plan was made from, asks for confirmation on a terminal,
    /// then makes the planned changes and checks that each took effect. Changes already in
    /// effect (an earlier, interrupted apply) are skipped, so re-running a plan resumes it.
    #[command(after_help = concat!(
        "Environment:\n",
        "  MAP_SUPABASE_URL, MAP_SUPABASE_SERVICE_ROLE_KEY (required); NO_COLOR\n\n",
        "Exit codes:\n",
        "  0    every change applied (or already in effect)\n",
        "  1    error before any write was sent (configuration, network, server, bad plan file)\n",
        "  3    refused, nothing changed: drifted state, other target, expired, digest mismatch,\n",
        "       unknown format_version, --expect-digest mismatch, or not confirmed\n",
        "  5    writes were sent and at least one change failed; run the same plan again to resume\n",
        "  64   usage error\n",
        "  130  interrupted; run the same plan again to resume"))]
    Apply(ApplyArgs),

    /// Render a saved plan file (works offline)
    ///
    /// Verifies the plan's digest and renders it as text, JSON or Markdown (fit to paste
    /// into a pull request or change ticket). Needs no environment and no network.
    #[command(after_help = concat!(
        "Environment:\n",
        "  none required; NO_COLOR\n\n",
        "Exit codes:\n",
        "  0   shown\n",
        "  1   the file is missing, unreadable or not a plan\n",
        "  3   the digest does not match (the file was edited), or unknown format_version\n",
        "  64  usage error"))]
    Show(ShowArgs),

    /// Print a shell completion script
    Completions {
        /// The shell to complete for
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },

    /// Print the man page (roff)
    Man,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Where to write the plan
    #[arg(long, value_name = "FILE", default_value = "plan.json")]
    pub out: PathBuf,

    /// The roster table [default: activity.organization_people]
    #[arg(long, value_name = "SCHEMA.TABLE", value_parser = parse_table, conflicts_with = "roster_file")]
    pub roster_table: Option<(String, String)>,

    /// Read the roster from a YAML, JSON or CSV file instead of the table
    #[arg(long, value_name = "FILE")]
    pub roster_file: Option<PathBuf>,

    /// Never ban this account: an exact email, or @DOMAIN for a whole domain (repeatable)
    #[arg(long, value_name = "EMAIL|@DOMAIN", value_parser = parse_protect)]
    pub protect: Vec<String>,

    /// Refuse the plan if it bans more than N users [default: the larger of 10 and 10% of active users]
    #[arg(long, value_name = "N")]
    pub max_bans: Option<usize>,

    /// Allow a roster with no valid email (bans every active, unprotected user)
    #[arg(long)]
    pub allow_empty_roster: bool,

    /// How long the plan stays valid: a whole number with s, m, h or d (e.g. 90s, 24h, 7d)
    #[arg(long, value_name = "DURATION", default_value = "7d", value_parser = parse_expires_in)]
    pub expires_in: Duration,

    /// Output format on stdout (`json` prints the plan file itself)
    #[arg(long, value_enum, default_value_t = PlanFormat::Text)]
    pub format: PlanFormat,

    /// Exit 2 when the plan has changes (0 when it has none)
    #[arg(long)]
    pub detailed_exitcode: bool,
}

#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// The email to explain (case and surrounding spaces do not matter)
    #[arg(value_name = "EMAIL")]
    pub email: String,

    /// Explain from this plan file, offline, instead of reading the live state
    #[arg(value_name = "PLAN")]
    pub plan: Option<PathBuf>,

    /// The roster table [default: activity.organization_people]
    #[arg(long, value_name = "SCHEMA.TABLE", value_parser = parse_table, conflicts_with_all = ["roster_file", "plan"])]
    pub roster_table: Option<(String, String)>,

    /// Read the roster from a YAML, JSON or CSV file instead of the table
    #[arg(long, value_name = "FILE", conflicts_with = "plan")]
    pub roster_file: Option<PathBuf>,

    /// Never ban this account, as `plan --protect` (repeatable)
    #[arg(long, value_name = "EMAIL|@DOMAIN", value_parser = parse_protect, conflicts_with = "plan")]
    pub protect: Vec<String>,

    /// Output format on stdout
    #[arg(long, value_enum, default_value_t = ExplainFormat::Text)]
    pub format: ExplainFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExplainFormat {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// The plan file written by `provision plan`
    #[arg(value_name = "PLAN")]
    pub plan: PathBuf,

    /// Apply without asking for confirmation (required without a terminal)
    #[arg(long)]
    pub yes: bool,

    /// Refuse unless the plan's digest is this one (the digest that was reviewed)
    #[arg(long, value_name = "sha256:HEX", value_parser = parse_digest)]
    pub expect_digest: Option<String>,

    /// Append one JSON line per change to FILE (the record for a change ticket)
    #[arg(long, value_name = "FILE")]
    pub log: Option<PathBuf>,

    /// Output format: text, or one JSON object per line
    #[arg(long, value_enum, default_value_t = ApplyFormat::Text)]
    pub format: ApplyFormat,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The plan file to render
    #[arg(value_name = "PLAN")]
    pub plan: PathBuf,

    /// Output format
    #[arg(long, value_enum, default_value_t = PlanFormat::Text)]
    pub format: PlanFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PlanFormat {
    Text,
    Json,
    Markdown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ApplyFormat {
    Text,
    Json,
}

/// `SCHEMA.TABLE`, both parts plain identifiers (they go into a URL path and a header).
fn parse_table(s: &str) -> Result<(String, String), String> {
    let (schema, table) = s
        .split_once('.')
        .ok_or_else(|| format!("`{s}` is not SCHEMA.TABLE (e.g. activity.organization_people)"))?;
    let ident = |p: &str| {
        !p.is_empty()
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    };
    if !ident(schema) || !ident(table) {
        return Err(format!(
            "`{s}` is not SCHEMA.TABLE: use letters, digits, `_` and `-` on both sides of one dot"
        ));
    }
    Ok((schema.to_string(), table.to_string()))
}

/// An exact email or `@domain`; stored lower-cased.
fn parse_protect(s: &str) -> Result<String, String> {
    let v = s.trim().to_lowercase();
    if let Some(domain) = v.strip_prefix('@') {
        let ok = domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !domain.contains('@')
            && domain.is_ascii()
            && !domain.chars().any(|c| c.is_whitespace() || c.is_control());
        return if ok {
            Ok(v)
        } else {
            Err(format!("`{s}` is not @DOMAIN (e.g. @example.com)"))
        };
    }
    crate::model::Email::parse(&v)
        .map(|e| e.as_str().to_string())
        .map_err(|why| format!("`{s}` is neither an email nor @DOMAIN: {why}"))
}

/// A whole number with a unit `s`, `m`, `h` or `d`; at least one second.
pub fn parse_expires_in(s: &str) -> Result<Duration, String> {
    let bad = || {
        format!("`{s}` is not a duration: use a whole number with s, m, h or d (e.g. 90s, 24h, 7d)")
    };
    let unit = s.chars().last().ok_or_else(bad)?;
    let digits = &s[..s.len() - unit.len_utf8()];
    if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
        return Err(bad());
    }
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let scale = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => return Err(bad()),
    };
    // Ten years is far beyond any sensible review window, and keeps date maths in range.
    const MAX_SECS: u64 = 10 * 366 * 86_400;
    let secs = n
        .checked_mul(scale)
        .filter(|&s| s <= MAX_SECS)
        .ok_or_else(|| format!("`{s}` is too long: at most ten years"))?;
    if secs == 0 {
        return Err(format!("`{s}` is too short: at least 1s"));
    }
    Ok(Duration::from_secs(secs))
}

/// `sha256:` and 64 hex digits; stored lower-cased.
fn parse_digest(s: &str) -> Result<String, String> {
    let v = s.trim().to_lowercase();
    match v.strip_prefix("sha256:") {
        Some(hex) if hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit()) => Ok(v),
        _ => Err(format!(
            "`{s}` is not a plan digest: expected `sha256:` followed by 64 hex digits"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn expires_in_takes_whole_numbers_with_units() {
        assert_eq!(parse_expires_in("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_expires_in("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_expires_in("7d"), Ok(Duration::from_secs(604_800)));
        assert_eq!(parse_expires_in("5m"), Ok(Duration::from_secs(300)));
        for bad in [
            "0s",
            "",
            "d",
            "1.5h",
            "-1h",
            "10",
            "1w",
            "1 h",
            "99999999999999999999d",
            "1é",
        ] {
            assert!(parse_expires_in(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn protect_accepts_emails_and_domains() {
        assert_eq!(
            parse_protect("Ops@Example.com"),
            Ok("ops@example.com".into())
        );
        assert_eq!(parse_protect("@Example.com"), Ok("@example.com".into()));
        assert!(parse_protect("@localhost").is_err());
        assert!(parse_protect("nobody").is_err());
        assert!(parse_protect("@").is_err());
    }

    #[test]
    fn digest_must_be_sha256_hex() {
        let hex = "a".repeat(64);
        assert_eq!(
            parse_digest(&format!("SHA256:{}", hex.to_uppercase())),
            Ok(format!("sha256:{hex}"))
        );
        assert!(parse_digest(&hex).is_err());
        assert!(parse_digest("sha256:abc").is_err());
    }

    #[test]
    fn table_is_schema_dot_table() {
        assert_eq!(
            parse_table("activity.organization_people"),
            Ok(("activity".into(), "organization_people".into()))
        );
        assert!(parse_table("people").is_err());
        assert!(parse_table("a.b.c").is_err());
        assert!(parse_table("a/b.c").is_err());
    }

    #[test]
    fn common_flags_stand_before_or_after_the_command() {
        let a = Cli::try_parse_from(["provision", "--concurrency", "3", "show", "p.json"]).unwrap();
        let b = Cli::try_parse_from(["provision", "show", "p.json", "--concurrency", "3"]).unwrap();
        assert_eq!(a.common.concurrency, 3);
        assert_eq!(b.common.concurrency, 3);
        assert!(Cli::try_parse_from(["provision", "--concurrency", "0", "show", "p"]).is_err());
        assert!(Cli::try_parse_from(["provision", "--timeout", "0", "show", "p"]).is_err());
    }

    #[test]
    fn roster_table_and_file_exclude_each_other() {
        let r = Cli::try_parse_from([
            "provision",
            "plan",
            "--roster-table",
            "a.b",
            "--roster-file",
            "r.yaml",
        ]);
        assert!(r.is_err());
    }
}
