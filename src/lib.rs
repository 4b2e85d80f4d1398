//! `provision`: keep Supabase Auth users in step with an engineering roster, with
//! reviewed plan/apply changesets. This file wires config, client, core and rendering,
//! and is the one place that writes to stdout and stderr.

pub mod apply;
pub mod canonical;
pub mod cli;
pub mod config;
pub mod drift;
pub mod error;
pub mod model;
pub mod planfile;
pub mod reconcile;
pub mod render;
pub mod report;
pub mod roster;
pub mod supabase;
pub mod term;

#[cfg(feature = "sandbox")]
pub mod sandbox;

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use clap::{CommandFactory, Parser};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::apply::{ApplyReport, ChangeResult, StopFlag};
use crate::cli::{ApplyArgs, ApplyFormat, Cli, Command, Common, PlanArgs, PlanFormat, ShowArgs};
use crate::config::{Connection, Env, process_env, same_target, use_color};
use crate::error::{Error, Exit};
use crate::model::{AuthUser, Protection, RosterEntry, RosterSource};
use crate::planfile::{Plan, PlanMeta};
use crate::render::Style;
use crate::supabase::{Client, ClientConfig, RetryPolicy};

/// Parse `args` (program name first), run the command, and say how to exit.
pub fn run<I, T>(args: I) -> Exit
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    run_with_env(args, &process_env)
}

/// `run` with the environment given as a lookup function (the examples and tests use
/// it to point at a sandbox without touching the process environment).
pub fn run_with_env<I, T>(args: I, env: &Env<'_>) -> Exit
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    Exit::Success
                }
                _ => Exit::Usage,
            };
        }
    };
    let out = Output::new(&cli.common, env);
    let result = match cli.command {
        Command::Plan(ref args) => with_runtime(|| plan_cmd(args, &cli.common, env, &out)),
        Command::Apply(ref args) => with_runtime(|| apply_cmd(args, &cli.common, env, &out)),
        Command::Show(ref args) => show_cmd(args, &out),
        Command::Completions { shell } => {
            let mut buf = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "provision", &mut buf);
            out.stdout_bytes(&buf);
            Ok(Exit::Success)
        }
        Command::Man => {
            let mut buf = Vec::new();
            match clap_mangen::Man::new(Cli::command()).render(&mut buf) {
                Ok(()) => {
                    out.stdout_bytes(&buf);
                    Ok(Exit::Success)
                }
                Err(e) => Err(Error::Internal(format!("cannot render the man page: {e}"))),
            }
        }
    };
    match result {
        Ok(exit) => exit,
        Err(e) => {
            out.error(&e);
            e.exit()
        }
    }
}

fn with_runtime<F, Fut>(f: F) -> Result<Exit, Error>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<Exit, Error>>,
{
    // One thread: the work is requests in flight, not computation (reconciling big
    // states uses threads of its own). A multi-thread runtime drives connections on its
    // workers while this future runs on the calling thread, which costs two cross-thread
    // wake-ups per request: measured, 2-3% of an apply's wall time and a third of its CPU.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Internal(format!("cannot start the async runtime: {e}")))?;
    let result = rt.block_on(f());
    // Do not wait for a prompt still blocked on stdin after Ctrl-C.
    rt.shutdown_timeout(Duration::from_millis(200));
    result
}

/// The one writer: data to stdout, everything else to stderr. Write errors (a closed
/// pipe) are ignored rather than turned into panics.
struct Output {
    stdout_style: Style,
    stderr_style: Style,
}

impl Output {
    fn new(common: &Common, env: &Env<'_>) -> Output {
        Output {
            stdout_style: Style {
                color: use_color(common.color, term::stdout_is_terminal(), env),
            },
            stderr_style: Style {
                color: use_color(common.color, term::stderr_is_terminal(), env),
            },
        }
    }

    fn stdout(&self, text: &str) {
        self.stdout_bytes(text.as_bytes());
    }

    fn stdout_bytes(&self, bytes: &[u8]) {
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(bytes);
        let _ = out.flush();
    }

    fn stderr(&self, text: &str) {
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(text.as_bytes());
        let _ = err.flush();
    }

    fn warn(&self, text: &str) {
        let prefix = if self.stderr_style.color {
            console::style("warning:")
                .yellow()
                .bold()
                .force_styling(true)
                .to_string()
        } else {
            "warning:".to_string()
        };
        self.stderr(&format!("{prefix} {}\n", render::sanitize(text)));
    }

    fn error(&self, e: &Error) {
        // Every line sanitised: messages carry emails and server text.
        let text: Vec<String> = e.to_string().lines().map(render::sanitize).collect();
        self.stderr(&format!("{}\n", text.join("\n")));
    }
}

fn client_for(conn: &Connection, common: &Common) -> Result<Client, Error> {
    Client::new(ClientConfig {
        base_url: conn.url.clone(),
        key: conn.key.clone(),
        concurrency: common.concurrency as usize,
        timeout: Duration::from_secs(common.timeout),
        retry: RetryPolicy::default(),
    })
}

async fn read_roster(client: &Client, source: &RosterSource) -> Result<Vec<RosterEntry>, Error> {
    match source {
        RosterSource::Table { schema, table } => client.read_roster_table(schema, table).await,
        RosterSource::File(path) => roster::read_roster_file(Path::new(path)),
    }
}

/// Read the roster and every auth user at once; both must be complete. When both fail,
/// an authentication failure is the one reported: it is the root cause (an `anon` key,
/// say, also makes the roster table unreadable).
async fn read_state(
    client: &Client,
    source: &RosterSource,
) -> Result<(Vec<RosterEntry>, Vec<AuthUser>), Error> {
    match tokio::join!(read_roster(client, source), client.list_users()) {
        (Ok(roster), Ok(users)) => Ok((roster, users)),
        (Err(e), Ok(_)) | (Ok(_), Err(e)) => Err(e),
        (Err(roster), Err(users)) => Err(match (&roster, &users) {
            (_, Error::AuthFailed { .. }) => users,
            _ => roster,
        }),
    }
}

fn now() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    // Plans record whole seconds; keep the in-memory value equal to the file's.
    now.replace_nanosecond(0).unwrap_or(now)
}

async fn plan_cmd(
    args: &PlanArgs,
    common: &Common,
    env: &Env<'_>,
    out: &Output,
) -> Result<Exit, Error> {
    let conn = Connection::from_env(env)?;
    let source = match (&args.roster_table, &args.roster_file) {
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
        (None, None) => RosterSource::default_table(),
    };
    let client = client_for(&conn, common)?;
    let (roster, users) = read_state(&client, &source).await?;

    let mut protection = Protection::default();
    for p in &args.protect {
        protection.add(p);
    }
    let now = now();
    let rec = reconcile::reconcile(&roster, &users, now, &reconcile::Policy { protection });
    let roster_rows = roster.len();
    // The plan needs only the reconciliation from here on; at 100k users the raw
    // listings are tens of MB, better freed before the plan file is written.
    drop((roster, users));
    for w in &rec.warnings {
        out.warn(&w.to_string());
    }

    if rec.observed.roster.is_empty() && !args.allow_empty_roster {
        return Err(Error::EmptyRoster {
            rows: roster_rows,
            source_name: source.to_string(),
        });
    }
    let max_bans = args
        .max_bans
        .unwrap_or_else(|| (rec.active_with_email / 10).max(10));
    if rec.summary.ban > max_bans {
        return Err(Error::TooManyBans {
            bans: rec.summary.ban,
            max: max_bans,
        });
    }

    let expires = time::Duration::try_from(args.expires_in)
        .map_err(|e| Error::Internal(format!("--expires-in out of range: {e}")))?;
    let plan = Plan::from_reconciliation(
        rec,
        PlanMeta {
            created_at: now,
            expires_at: now + expires,
            target: conn.target(),
            roster_source: source,
            generator_version: env!("CARGO_PKG_VERSION").to_string(),
        },
    );
    plan.write_atomic(&args.out)?;

    let out_path = args.out.display().to_string();
    match args.format {
        PlanFormat::Text => {
            out.stdout(&render::plan_text(&plan, out.stdout_style));
            out.stdout(&render::plan_footer(
                &out_path,
                &plan.digest,
                out.stdout_style,
            ));
        }
        PlanFormat::Json => out.stdout(&plan.to_pretty_json()),
        PlanFormat::Markdown => out.stdout(&render::plan_markdown(&plan)),
    }
    if args.format != PlanFormat::Text {
        out.stderr(&format!(
            "Plan saved to {} ({}).\n",
            render::sanitize(&out_path),
            plan.digest
        ));
    }
    Ok(if args.detailed_exitcode && plan.summary.has_changes() {
        Exit::Changes
    } else {
        Exit::Success
    })
}

fn show_cmd(args: &ShowArgs, out: &Output) -> Result<Exit, Error> {
    let text = std::fs::read_to_string(&args.plan).map_err(|e| Error::ReadFile {
        path: args.plan.clone(),
        reason: e.to_string(),
    })?;
    let plan = Plan::parse(&text, &args.plan)?;
    match args.format {
        PlanFormat::Json => out.stdout(&text),
        PlanFormat::Markdown => out.stdout(&render::plan_markdown(&plan)),
        PlanFormat::Text => {
            out.stdout(&render::plan_text(&plan, out.stdout_style));
            out.stdout(&render::plan_details(&plan, OffsetDateTime::now_utc()));
        }
    }
    Ok(Exit::Success)
}

async fn apply_cmd(
    args: &ApplyArgs,
    common: &Common,
    env: &Env<'_>,
    out: &Output,
) -> Result<Exit, Error> {
    // Ctrl-C from here on: stop starting work, let requests in flight finish, exit 130.
    let stop = StopFlag::default();
    let interrupt = Arc::new(tokio::sync::Notify::new());
    {
        let (stop, interrupt) = (stop.clone(), interrupt.clone());
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                stop.raise();
                interrupt.notify_one();
            }
        });
    }

    let plan = Plan::load(&args.plan)?;
    if let Some(expected) = &args.expect_digest
        && *expected != plan.digest
    {
        return Err(Error::ExpectDigest {
            expected: expected.clone(),
            actual: plan.digest.clone(),
        });
    }
    let now = now();
    if now >= plan.expires_at {
        return Err(Error::Expired {
            expires_at: plan.expires_at.format(&Rfc3339).unwrap_or_default(),
        });
    }
    let conn = Connection::from_env(env)?;
    if !same_target(&plan.target, &conn.target()) {
        return Err(Error::WrongTarget {
            plan: plan.target.clone(),
            env: conn.target(),
        });
    }
    let mut log = match &args.log {
        Some(path) => Some(ApplyLog::open(path)?),
        None => None,
    };
    let client = client_for(&conn, common)?;

    let (roster, users) = tokio::select! {
        state = read_state(&client, &plan.roster.source) => state?,
        _ = interrupt.notified() => return Err(Error::Interrupted),
    };
    let now = self::now();
    let check = drift::check(&plan, &roster, &users, now);
    if !check.drift.is_empty() {
        out.stderr(&render::drift_text(&check.drift, out.stderr_style));
        return Err(Error::Drift);
    }

    let mut report = ApplyReport {
        unchanged: plan.summary.unchanged,
        ..ApplyReport::default()
    };
    report.results.extend(
        check
            .already_applied
            .iter()
            .cloned()
            .map(ChangeResult::already_applied),
    );

    if !check.pending.is_empty() {
        out.stderr(&render::plan_text(&plan, out.stderr_style));
        if !check.already_applied.is_empty() {
            out.stderr(&format!(
                "{} of the plan's changes are already in effect; {} remain.\n",
                check.already_applied.len(),
                check.pending.len()
            ));
        }
        if !args.yes {
            if !term::is_interactive() {
                return Err(Error::NeedsYes);
            }
            let question = format!(
                "Apply {} changes to {}? Type `yes` to confirm",
                check.pending.len(),
                render::sanitize(&plan.target)
            );
            // The prompt blocks on stdin: run it aside so Ctrl-C still ends the command.
            let answer = tokio::task::spawn_blocking(move || term::confirm(&question));
            let confirmed = tokio::select! {
                answer = answer => answer
                    .map_err(|e| Error::Internal(format!("the confirmation prompt failed: {e}")))??,
                _ = interrupt.notified() => return Err(Error::Interrupted),
            };
            if !confirmed {
                return Err(Error::NotConfirmed);
            }
        }

        let bar = term::progress(
            check.pending.len(),
            args.format == ApplyFormat::Text && term::stderr_is_terminal(),
        );
        let (results, not_started) = apply::execute(
            &client,
            check.pending.clone(),
            common.concurrency as usize,
            now,
            &stop,
            |_| bar.inc(1),
        )
        .await;
        bar.finish_and_clear();
        report.results.extend(results);
        report.not_started = not_started;
        report.interrupted = stop.is_raised();

        if !report.interrupted {
            // The check-read: a write the server acknowledged but did not keep has failed.
            match client.list_users().await {
                Ok(fresh) => apply::verify_effects(&mut report.results, &fresh, self::now()),
                Err(e) => {
                    out.error(&e);
                    out.stderr("error: could not check that the changes took effect\n");
                    record(out, args.format, &mut log, &plan, &mut report);
                    print_report(out, args.format, &report, false);
                    // Writes were sent and their effect is unknown: exit 5, and a re-run
                    // of the same plan resumes (finished changes count as already applied).
                    return Ok(Exit::Partial);
                }
            }
        }
    }

    let complete = !report.interrupted && report.failed() == 0;
    record(out, args.format, &mut log, &plan, &mut report);
    print_report(out, args.format, &report, complete);
    if report.interrupted {
        return Err(Error::Interrupted);
    }
    if report.failed() > 0 {
        return Err(Error::Partial {
            failed: report.failed(),
            total: report.results.len(),
        });
    }
    Ok(Exit::Success)
}

/// One line per change, in plan order, with its final outcome (after the check-read, so
/// a record never says `applied` for a change that did not take effect): to stdout with
/// `--format json`, and to the `--log` file.
fn record(
    out: &Output,
    format: ApplyFormat,
    log: &mut Option<ApplyLog>,
    plan: &Plan,
    report: &mut ApplyReport,
) {
    report.results.sort_by(|a, b| a.change.cmp(&b.change));
    for r in &report.results {
        if format == ApplyFormat::Json {
            out.stdout(&format!("{}\n", render::change_json(r)));
        }
        if let Some(log) = log.as_mut() {
            log.write(plan, r);
        }
    }
}

fn print_report(out: &Output, format: ApplyFormat, report: &ApplyReport, complete: bool) {
    match format {
        ApplyFormat::Json => out.stdout(&format!("{}\n", render::apply_summary_json(report))),
        ApplyFormat::Text => {
            out.stderr(&render::apply_failures(report));
            out.stdout(&render::apply_counters(report, complete));
        }
    }
}

/// `apply --log FILE`: one JSON line per change, appended, owner-only permissions.
struct ApplyLog {
    path: std::path::PathBuf,
    file: File,
    broken: bool,
}

impl ApplyLog {
    fn open(path: &Path) -> Result<ApplyLog, Error> {
        let mut options = OpenOptions::new();
        options.create(true).append(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let file = options.open(path).map_err(|e| Error::WriteFile {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        Ok(ApplyLog {
            path: path.to_path_buf(),
            file,
            broken: false,
        })
    }

    fn write(&mut self, plan: &Plan, r: &ChangeResult) {
        let line = render::log_line(plan, r, OffsetDateTime::now_utc());
        if !self.broken && writeln!(self.file, "{line}").is_err() {
            // Keep applying: the writes matter more than the log, but say so once.
            self.broken = true;
            eprintln!(
                "warning: cannot write to the log `{}`; continuing without it",
                render::sanitize(&self.path.display().to_string())
            );
        }
    }
}
