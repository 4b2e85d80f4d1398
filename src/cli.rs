//! The command line as clap types. Doc comments are the help text. No I/O and no
//! environment reads here: `config.rs` resolves these into a `Config`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};

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
       unknown format_version, --expect-digest mismatch, too few approvals,
       not confirmed); show: the digest does not match; approve: the plan is refused
  4    plan (or apply without PLAN) refused by a safety guard (too many bans, empty
       roster); no plan written
  5    apply sent writes and at least one change failed; run the same plan again to resume
  64   usage error
  130  interrupted; run the same plan again to resume

Policy file: provision.toml in the working directory, or --config FILE.
Man pages: `provision man COMMAND` prints provision-COMMAND(1).";

/// The heading the flags shared by several commands stand under, in every help.
const GLOBAL: &str = "Global options";

/// Keep Supabase Auth users in step with an engineering roster, in two reviewed steps:
/// `plan` writes a changeset, `apply` executes exactly that changeset.
#[derive(Debug, Parser)]
#[command(name = "provision", version, propagate_version = true)]
#[command(after_help = TOP_HELP)]
pub struct Cli {
    /// The global options given before the command name. `Cli::parse_args` moves them
    /// into the command's own (a command lists only the ones that apply to it).
    #[command(flatten)]
    pub global: GlobalArgs,

    #[command(subcommand)]
    pub command: Command,
}

/// Options that may stand before the command name as well as after it.
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = GLOBAL)]
pub struct GlobalArgs {
    #[command(flatten)]
    pub client: ClientArgs,

    #[command(flatten)]
    pub config: ConfigArg,

    #[command(flatten)]
    pub color: ColorArg,

    #[command(flatten)]
    pub progress: ProgressArg,
}

/// Progress off a terminal (plan and apply).
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = GLOBAL)]
pub struct ProgressArg {
    /// When stderr is not a terminal (CI, cron), print a progress line at most this
    /// often, in seconds (decimals allowed) [default: 10]
    #[arg(long, value_name = "SECONDS", value_parser = parse_interval)]
    pub progress_interval: Option<Duration>,
}

impl ProgressArg {
    pub const DEFAULT: Duration = Duration::from_secs(10);

    pub fn every(&self) -> Duration {
        self.progress_interval.unwrap_or(Self::DEFAULT)
    }
}

/// How requests are made (plan and apply). Unset values come from `provision.toml`,
/// then the defaults.
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = GLOBAL)]
pub struct ClientArgs {
    /// Requests in flight at any moment, reads included [default: 8]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub concurrency: Option<u32>,

    /// Timeout of each HTTP request, in seconds [default: 30]
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub timeout: Option<u64>,
}

/// The policy file (plan, apply and show).
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = GLOBAL)]
pub struct ConfigArg {
    /// The policy file [default: provision.toml in the working directory, when present]
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// Colour (every command that prints text).
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = GLOBAL)]
pub struct ColorArg {
    /// When to use colour: `auto` (a terminal other than TERM=dumb, and NO_COLOR unset),
    /// `always` or `never` [default: auto]
    #[arg(long, value_enum, value_name = "WHEN")]
    pub color: Option<ColorChoice>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

impl ColorArg {
    pub fn choice(&self) -> ColorChoice {
        self.color.unwrap_or(ColorChoice::Auto)
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Read the roster and every auth user, show the changes, and write them to a plan file
    ///
    /// Reads the roster (by default the table activity.organization_people) and all
    /// Supabase Auth users, decides what must change (create, restore, ban), prints a
    /// coloured diff and writes the changeset to a JSON plan file for review. Nothing is
    /// written to Supabase. Settings not given as flags come from the policy file
    /// (provision.toml); flags win, and --protect adds to the file's list.
    #[command(after_help = concat!(
        "Environment:\n",
        "  MAP_SUPABASE_URL, MAP_SUPABASE_SERVICE_ROLE_KEY (required); NO_COLOR\n\n",
        "Exit codes:\n",
        "  0   the plan was written (with --detailed-exitcode: and has no changes)\n",
        "  1   error (configuration, policy file, network, server, bad input); no plan written\n",
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
        "  MAP_SUPABASE_URL, MAP_SUPABASE_SERVICE_ROLE_KEY (required); provision.toml as for plan\n\n",
        "Exit codes:\n",
        "  0   explained, whatever the outcome (also: found nowhere)\n",
        "  1   error (configuration, network, server, unreadable plan)\n",
        "  3   the plan is refused (digest, format)\n",
        "  64  usage error"))]
    Explain(ExplainArgs),

    /// Execute a reviewed plan file (refusing if the state drifted), or plan and apply in one step
    ///
    /// With PLAN: re-reads the roster and every auth user, refuses (changing nothing) when
    /// the state differs from the one the plan was made from, asks for confirmation on a
    /// terminal, then makes the planned changes and checks that each took effect. Changes
    /// already in effect (an earlier, interrupted apply) are skipped, so re-running a plan
    /// resumes it.
    ///
    /// Without PLAN (one-step apply, e.g. from cron): plans exactly as `provision plan`
    /// would (same reads, policy file and guards), shows the changes, asks for confirmation
    /// (or takes --yes), then executes and verifies them the same way. Refused when the
    /// policy file requires approvals.
    #[command(after_help = concat!(
        "Environment:\n",
        "  MAP_SUPABASE_URL, MAP_SUPABASE_SERVICE_ROLE_KEY (required); NO_COLOR\n\n",
        "Exit codes:\n",
        "  0    every change applied (or already in effect), or nothing to do\n",
        "  1    error before any write was sent (configuration, network, server, bad plan file)\n",
        "  3    refused, nothing changed: drifted state, other target, expired, digest mismatch,\n",
        "       unknown format_version, --expect-digest mismatch, too few approvals, not\n",
        "       confirmed, or (without PLAN) the policy file requires approvals\n",
        "  4    without PLAN: refused by a safety guard (too many bans, empty roster)\n",
        "  5    writes were sent and at least one change failed; run the same plan again to resume\n",
        "  64   usage error (e.g. plan flags next to PLAN: a saved plan carries its own policy)\n",
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
        "  1   the file is missing, unreadable or not a plan; a bad policy file\n",
        "  3   the digest does not match (the file was edited), or unknown format_version\n",
        "  64  usage error"))]
    Show(ShowArgs),

    /// Approve a plan: sign its digest with your SSH key (works offline)
    ///
    /// Checks the plan (digest, format, expiry), then signs `<digest>\n` in OpenSSH's
    /// SSHSIG format, namespace `provision-plan`: with `--key FILE` (an OpenSSH private
    /// key; an encrypted one asks for its passphrase on a terminal), else through ssh-agent
    /// (`SSH_AUTH_SOCK`) with the one key it holds or the key whose public half is
    /// `--key FILE.pub`. Writes the armored signature and prints the key's fingerprint.
    /// The same file comes from
    /// `printf '%s\n' sha256:… | ssh-keygen -Y sign -f KEY -n provision-plan`.
    #[command(after_help = concat!(
        "Environment:\n",
        "  SSH_AUTH_SOCK (the agent, when --key is not a private key file)\n\n",
        "Exit codes:\n",
        "  0   signed\n",
        "  1   key, agent or file problem (nothing written)\n",
        "  3   the plan itself is refused (digest, format, expired)\n",
        "  64  usage error"))]
    Approve(ApproveArgs),

    /// Print a shell completion script
    Completions {
        /// The shell to complete for
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },

    /// Print a man page (roff): provision(1), or provision-COMMAND(1) for one command
    ///
    /// One page per command, named as cargo and git name theirs: `provision man` prints
    /// provision(1), `provision man plan` prints provision-plan(1). To install them all:
    /// `for c in "" plan apply show approve completions man; do provision man $c > provision${c:+-$c}.1; done`.
    Man {
        /// The command whose page to print (default: the top-level page)
        #[arg(value_name = "COMMAND", value_parser = ["plan", "apply", "show", "approve", "completions", "man"])]
        command: Option<String>,
    },
}

/// The roster and the policy of a plan: `plan`, and `apply` without PLAN.
#[derive(Debug, Clone, Default, Args)]
pub struct PolicyArgs {
    /// The roster table [default: activity.organization_people]
    #[arg(long, value_name = "SCHEMA.TABLE", value_parser = parse_table, conflicts_with = "roster_file")]
    pub roster_table: Option<(String, String)>,

    /// Read the roster from a YAML, JSON or CSV file instead of the table
    #[arg(long, value_name = "FILE")]
    pub roster_file: Option<PathBuf>,

    /// Never ban this account: an exact email, or @DOMAIN for a whole domain (repeatable;
    /// adds to the policy file's list)
    #[arg(long, value_name = "EMAIL|@DOMAIN", value_parser = parse_protect)]
    pub protect: Vec<String>,

    /// Refuse the plan if it bans more than N users [default: the larger of 10 and 10% of active users]
    #[arg(long, value_name = "N")]
    pub max_bans: Option<usize>,

    /// Allow a roster with no valid email (bans every active, unprotected user)
    #[arg(long)]
    pub allow_empty_roster: bool,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Where to write the plan: a regular file (never a device, FIFO or the roster
    /// file), or `-` for stdout (the diff then goes to stderr)
    #[arg(long, value_name = "FILE", default_value = "plan.json")]
    pub out: PathBuf,

    #[command(flatten)]
    pub policy: PolicyArgs,

    /// How long the plan stays valid: a whole number with s, m, h, d or w (e.g. 90s, 24h,
    /// 7d, 2w) [default: 7d]
    #[arg(long, value_name = "DURATION", value_parser = parse_expires_in)]
    pub expires_in: Option<Duration>,

    /// Output format on stdout (`json` prints the plan file itself)
    #[arg(long, value_enum, default_value_t = PlanFormat::Text)]
    pub format: PlanFormat,

    /// Exit 2 when the plan has changes (0 when it has none)
    #[arg(long)]
    pub detailed_exitcode: bool,

    /// Print nothing but errors (a run with nothing to do is silent). --format json or
    /// markdown wins: that output is still printed in full on stdout
    #[arg(long, short = 'q')]
    pub quiet: bool,

    #[command(flatten)]
    pub global: GlobalArgs,
}

#[derive(Debug, Args)]
#[command(group(
    clap::ArgGroup::new("explain_policy_flags")
        .args(["roster_table", "roster_file", "protect", "max_bans", "allow_empty_roster"])
        .multiple(true)
        .conflicts_with("plan")
))]
pub struct ExplainArgs {
    /// The email to explain (case and surrounding spaces do not matter)
    #[arg(value_name = "EMAIL")]
    pub email: String,

    /// Explain from this plan file, offline, instead of reading the live state
    #[arg(value_name = "PLAN")]
    pub plan: Option<PathBuf>,

    /// The policy `plan` would use (live only; a plan carries its own)
    #[command(flatten)]
    pub policy: PolicyArgs,

    /// Output format on stdout
    #[arg(long, value_enum, default_value_t = ExplainFormat::Text)]
    pub format: ExplainFormat,

    #[command(flatten)]
    pub global: GlobalArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExplainFormat {
    Text,
    Json,
}

#[derive(Debug, Args)]
#[command(group(
    clap::ArgGroup::new("plan_flags")
        .args(["roster_table", "roster_file", "protect", "max_bans", "allow_empty_roster", "out"])
        .multiple(true)
        .conflicts_with("plan")
))]
pub struct ApplyArgs {
    /// The plan file written by `provision plan`; without it, plan and apply in one step
    #[arg(value_name = "PLAN")]
    pub plan: Option<PathBuf>,

    /// Apply without asking for confirmation (required without a terminal);
    /// `--auto-approve` is the same flag
    #[arg(long, visible_alias = "auto-approve")]
    pub yes: bool,

    /// Refuse unless the plan's digest is this one (the digest that was reviewed; needs PLAN)
    #[arg(long, value_name = "sha256:HEX", value_parser = parse_digest, requires = "plan")]
    pub expect_digest: Option<String>,

    /// Append JSON lines to FILE, the record for a change ticket: a `started` line before
    /// each write is sent, then each change's outcome once known. A regular file only;
    /// if it cannot be written, no further change starts and apply exits 5
    #[arg(long, value_name = "FILE")]
    pub log: Option<PathBuf>,

    /// Output format: text, or one JSON object per line
    #[arg(long, value_enum, default_value_t = ApplyFormat::Text)]
    pub format: ApplyFormat,

    /// Print nothing but errors, and the counters when a change was made or failed.
    /// --format json wins: its lines are still printed in full on stdout
    #[arg(long, short = 'q')]
    pub quiet: bool,

    /// Without PLAN: also write the plan it executes to FILE, before the first write
    #[arg(
        long,
        value_name = "FILE",
        help_heading = "One-step apply (without PLAN)"
    )]
    pub out: Option<PathBuf>,

    #[command(flatten, next_help_heading = "One-step apply (without PLAN)")]
    pub policy: PolicyArgs,

    #[command(flatten, next_help_heading = "Approvals (with PLAN)")]
    pub approvals: ApprovalArgs,

    #[command(flatten)]
    pub global: GlobalArgs,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The plan file to render
    #[arg(value_name = "PLAN")]
    pub plan: PathBuf,

    /// Output format
    #[arg(long, value_enum, default_value_t = PlanFormat::Text)]
    pub format: PlanFormat,

    #[command(flatten, next_help_heading = "Approvals")]
    pub approvals: ApprovalArgs,

    #[command(flatten)]
    pub config: ConfigArg,

    #[command(flatten)]
    pub color: ColorArg,
}

#[derive(Debug, Args)]
pub struct ApproveArgs {
    /// The plan file to approve
    #[arg(value_name = "PLAN")]
    pub plan: PathBuf,

    /// An OpenSSH private key file, or the `.pub` of a key held by ssh-agent [default: the agent's one key]
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,

    /// Where to write the signature (`-`: stdout) [default: PLAN.<fingerprint>.sig]
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,

    #[command(flatten)]
    pub color: ColorArg,
}

/// Approvals to check: `apply PLAN` requires them, `show` lists them. Unset values come
/// from the policy file's `[approvals]` (see `config::approval_policy`).
#[derive(Debug, Clone, Default, Args)]
pub struct ApprovalArgs {
    /// An approval: a signature file from `provision approve` or `ssh-keygen -Y sign` (repeatable)
    #[arg(long = "approval", value_name = "FILE", requires = "plan")]
    pub approvals: Vec<PathBuf>,

    /// OpenSSH allowed-signers file naming whose approvals count [default: the policy file's]
    #[arg(long, value_name = "FILE", requires = "plan")]
    pub allowed_signers: Option<PathBuf>,

    /// Distinct principals who must approve the plan (`apply` refuses with fewer; `show`
    /// lists what is missing) [default: the policy file's, else 0]
    #[arg(long, value_name = "N", requires = "plan")]
    pub require_approvals: Option<u32>,
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

impl Cli {
    /// Parse, then move the global options given before the command name into the
    /// command's own. A global option the command does not take (`--timeout` before
    /// `show`), or one given on both sides, is a usage error.
    pub fn parse_args<I, T>(args: I) -> Result<Cli, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let mut cli = Cli::try_parse_from(args)?;
        let before = std::mem::take(&mut cli.global);
        let name = cli.command.name();
        // Completions and man pages print no colour: `--color` is accepted and ignored.
        let mut ignored = ColorArg::default();
        let (global, config, color) = match &mut cli.command {
            Command::Plan(PlanArgs { global, .. })
            | Command::Apply(ApplyArgs { global, .. })
            | Command::Explain(ExplainArgs { global, .. }) => {
                let GlobalArgs {
                    client,
                    config,
                    color,
                    progress,
                } = global;
                (Some((client, progress)), Some(config), color)
            }
            Command::Show(a) => (None, Some(&mut a.config), &mut a.color),
            Command::Approve(a) => (None, None, &mut a.color),
            Command::Completions { .. } | Command::Man { .. } => (None, None, &mut ignored),
        };
        let (concurrency, timeout, interval) = match global {
            Some((client, progress)) => (
                Some(&mut client.concurrency),
                Some(&mut client.timeout),
                Some(&mut progress.progress_interval),
            ),
            None => (None, None, None),
        };
        let b = &before;
        put(concurrency, b.client.concurrency, "--concurrency", name)?;
        put(timeout, b.client.timeout, "--timeout", name)?;
        let interval_before = b.progress.progress_interval;
        put(interval, interval_before, "--progress-interval", name)?;
        let config = config.map(|c| &mut c.config);
        put(config, b.config.config.clone(), "--config", name)?;
        put(Some(&mut color.color), b.color.color, "--color", name)?;
        Ok(cli)
    }
}

/// Move one global option given before the command name into the command's slot.
fn put<T>(
    slot: Option<&mut Option<T>>,
    before: Option<T>,
    flag: &str,
    command: &str,
) -> Result<(), clap::Error> {
    let Some(value) = before else {
        return Ok(());
    };
    let usage = |msg: String| Cli::command().error(clap::error::ErrorKind::ArgumentConflict, msg);
    match slot {
        None => Err(usage(format!(
            "`{flag}` does not apply to `provision {command}`"
        ))),
        Some(slot) if slot.is_some() => Err(usage(format!(
            "`{flag}` is given both before and after `{command}`; give it once"
        ))),
        Some(slot) => {
            *slot = Some(value);
            Ok(())
        }
    }
}

impl Command {
    pub fn name(&self) -> &'static str {
        match self {
            Command::Plan(_) => "plan",
            Command::Apply(_) => "apply",
            Command::Show(_) => "show",
            Command::Explain(_) => "explain",
            Command::Approve(_) => "approve",
            Command::Completions { .. } => "completions",
            Command::Man { .. } => "man",
        }
    }

    /// Whether progress may be shown on stderr (not under `--quiet` nor `--format json`),
    /// and how often a plain progress line may be printed.
    pub fn progress(&self) -> (bool, Duration) {
        match self {
            Command::Plan(a) => (
                !a.quiet && a.format != PlanFormat::Json,
                a.global.progress.every(),
            ),
            Command::Apply(a) => (
                !a.quiet && a.format != ApplyFormat::Json,
                a.global.progress.every(),
            ),
            _ => (false, ProgressArg::DEFAULT),
        }
    }

    /// `--quiet` (plan and apply).
    pub fn quiet(&self) -> bool {
        match self {
            Command::Plan(a) => a.quiet,
            Command::Apply(a) => a.quiet,
            _ => false,
        }
    }

    /// The `--color` choice (`auto` for commands that print no colour).
    pub fn color(&self) -> ColorChoice {
        match self {
            Command::Plan(a) => a.global.color.choice(),
            Command::Apply(a) => a.global.color.choice(),
            Command::Show(a) => a.color.choice(),
            Command::Explain(a) => a.global.color.choice(),
            Command::Approve(a) => a.color.choice(),
            Command::Completions { .. } | Command::Man { .. } => ColorChoice::Auto,
        }
    }
}

/// `SCHEMA.TABLE`, both parts plain identifiers (they go into a URL path and a header).
pub(crate) fn parse_table(s: &str) -> Result<(String, String), String> {
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
pub(crate) fn parse_protect(s: &str) -> Result<String, String> {
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

/// A whole number with a unit `s`, `m`, `h`, `d` or `w`; at least one second.
pub fn parse_expires_in(s: &str) -> Result<Duration, String> {
    let bad = || {
        format!(
            "`{s}` is not a duration: use a whole number with s, m, h, d or w (e.g. 90s, 24h, 7d, 2w)"
        )
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
        'w' => 7 * 86_400,
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

/// Seconds, decimals allowed: from 0.05 (tests use small intervals) to an hour.
fn parse_interval(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a number of seconds (e.g. 10 or 0.5)"))?;
    if !(0.05..=3600.0).contains(&secs) {
        return Err(format!("`{s}` is out of range: 0.05 to 3600 seconds"));
    }
    Ok(Duration::from_secs_f64(secs))
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
        assert_eq!(parse_expires_in("2w"), Ok(Duration::from_secs(1_209_600)));
        for bad in [
            "0s",
            "",
            "d",
            "1.5h",
            "-1h",
            "10",
            "1y",
            "600w",
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
    fn global_flags_stand_before_or_after_the_command() {
        let concurrency = |cli: Cli| match cli.command {
            Command::Plan(a) => a.global.client.concurrency,
            _ => None,
        };
        let a = Cli::parse_args(["provision", "--concurrency", "3", "plan"]).unwrap();
        let b = Cli::parse_args(["provision", "plan", "--concurrency", "3"]).unwrap();
        assert_eq!(concurrency(a), Some(3));
        assert_eq!(concurrency(b), Some(3));
        let c = Cli::parse_args(["provision", "--config", "p.toml", "show", "p.json"]).unwrap();
        let Command::Show(show) = c.command else {
            panic!("show")
        };
        assert_eq!(show.config.config, Some(PathBuf::from("p.toml")));
        assert!(Cli::parse_args(["provision", "--concurrency", "0", "plan"]).is_err());
        assert!(Cli::parse_args(["provision", "--timeout", "0", "apply", "p"]).is_err());
    }

    #[test]
    fn global_flags_are_refused_where_they_do_not_apply() {
        for args in [
            vec!["provision", "--concurrency", "3", "show", "p.json"],
            vec!["provision", "--timeout", "3", "man"],
            vec!["provision", "--config", "x.toml", "completions", "bash"],
            vec!["provision", "show", "p.json", "--timeout", "3"],
            vec!["provision", "--timeout", "3", "plan", "--timeout", "4"],
        ] {
            let e = Cli::parse_args(args.clone()).unwrap_err();
            assert_ne!(e.kind(), clap::error::ErrorKind::DisplayHelp, "{args:?}");
        }
        assert!(Cli::parse_args(["provision", "--color", "never", "man"]).is_ok());
    }

    #[test]
    fn plan_flags_beside_a_plan_are_usage_errors() {
        for flag in [
            vec!["--roster-table", "a.b"],
            vec!["--roster-file", "r.yaml"],
            vec!["--protect", "@example.com"],
            vec!["--max-bans", "3"],
            vec!["--allow-empty-roster"],
            vec!["--out", "x.json"],
        ] {
            let mut args = vec!["provision", "apply", "plan.json"];
            args.extend(flag.iter().copied());
            let e = Cli::parse_args(args).unwrap_err();
            assert_eq!(
                e.kind(),
                clap::error::ErrorKind::ArgumentConflict,
                "{flag:?}"
            );
            let mut args = vec!["provision", "apply"];
            args.extend(flag.iter().copied());
            assert!(Cli::parse_args(args).is_ok(), "{flag:?} without PLAN");
        }
        let hex = format!("sha256:{}", "a".repeat(64));
        let e = Cli::parse_args(["provision", "apply", "--expect-digest", &hex]).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::MissingRequiredArgument);
    }

    #[test]
    fn auto_approve_is_yes() {
        let cli = Cli::parse_args(["provision", "apply", "--auto-approve"]).unwrap();
        let Command::Apply(a) = cli.command else {
            panic!("apply")
        };
        assert!(a.yes);
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
