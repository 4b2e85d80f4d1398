//! `provision apply PLAN`: load and check the plan, re-read the state, refuse on drift,
//! confirm, execute, verify with a check-read, report and log. One-step `provision apply`
//! (no PLAN) makes its plan with `plan::make` and runs the same steps after the drift
//! check (`Session::execute_changes`), so neither command's steps are copied.

use std::collections::HashSet;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::apply::{self, ApplyReport, ChangeResult, Outcome, StopFlag};
use crate::approval::{self, ApprovalPolicy, ApprovalReport};
use crate::cli::{ApplyArgs, ApplyFormat};
use crate::config::{
    ApplyConfig, ApplyMode, Connection, Env, PlanPolicy, approval_policy, same_target,
};
use crate::drift;
use crate::error::{Error, Exit};
use crate::jsonout;
use crate::model::{Change, RosterSource};
use crate::output::Output;
use crate::planfile::Plan;
use crate::regular_file;
use crate::render;
use crate::sanitize::sanitize;
use crate::supabase::Client;
use crate::term::{self, Progress};

use super::{checked, client_for, now, plan, read_state_shown, reading_progress};

/// Ctrl-C from the moment it is armed: stop starting work, let requests in flight
/// finish, exit 130.
pub struct Interrupt {
    pub stop: StopFlag,
    pub notify: Arc<tokio::sync::Notify>,
}

impl Interrupt {
    /// Call inside the runtime.
    pub fn arm() -> Interrupt {
        let stop = StopFlag::default();
        let notify = Arc::new(tokio::sync::Notify::new());
        {
            let (stop, notify) = (stop.clone(), notify.clone());
            tokio::spawn(async move {
                if tokio::signal::ctrl_c().await.is_ok() {
                    stop.raise();
                    notify.notify_one();
                }
            });
        }
        Interrupt { stop, notify }
    }
}

pub async fn run(args: &ApplyArgs, env: &Env<'_>, out: &Output) -> Result<Exit, Error> {
    // The policy file is read and checked before anything else.
    let config = ApplyConfig::resolve(args, Path::new(""))?;
    match &config.mode {
        ApplyMode::Saved(path) => apply_saved(path, args, &config, env, out).await,
        ApplyMode::OneStep(policy) => apply_now(policy, args, &config, env, out).await,
    }
}

/// `apply PLAN`: check the saved plan, re-read the state, refuse on drift, then execute.
async fn apply_saved(
    plan_path: &Path,
    args: &ApplyArgs,
    config: &ApplyConfig,
    env: &Env<'_>,
    out: &Output,
) -> Result<Exit, Error> {
    let interrupt = Interrupt::arm();

    let plan = checked(Plan::load(plan_path)?)?;
    if let Some(expected) = &args.expect_digest
        && *expected != plan.digest
    {
        return Err(Error::ExpectDigest {
            expected: expected.clone(),
            actual: plan.digest.clone(),
        });
    }
    if now() >= plan.expires_at {
        return Err(Error::Expired {
            expires_at: plan.expires_at.format(&Rfc3339).unwrap_or_default(),
        });
    }
    // Approvals before anything leaves the machine: too few is exit 3, no request.
    let policy = approval_policy(&args.approvals, config.approvals.as_ref())?;
    let approvals = check_approvals(&plan, &args.approvals.approvals, &policy, out)?;
    let conn = Connection::from_env(env)?;
    if !same_target(&plan.target, &conn.target()) {
        return Err(Error::WrongTarget {
            plan: plan.target.clone(),
            env: conn.target(),
        });
    }
    let log = open_log(args)?;
    let client = client_for(&conn, &config.client)?;

    let (roster, users) = tokio::select! {
        state = read_state_shown(&client, &plan.roster.source, out) => state
            .map_err(|e| conn.explain(roster_from_plan(e, &plan.roster.source)))?,
        _ = interrupt.notify.notified() => return Err(Error::InterruptedBeforeWrites),
    };
    let check = drift::check(&plan, &roster, &users, now());
    if !check.drift.is_empty() {
        out.stderr(&render::drift_text(&check.drift, out.stderr_style));
        return Err(Error::Drift);
    }

    let mut session = Session::new(&plan, &conn, &client, args, config, &interrupt, out);
    session.approvals = approvals.as_ref();
    session
        .execute_changes(check.already_applied, check.pending, log)
        .await
}

/// One-step apply: make the plan exactly as `plan` does (same reads, policy and guards),
/// then execute it with the same steps as a saved plan's. There is no drift check: the
/// changes are the ones just read and shown.
async fn apply_now(
    policy: &PlanPolicy,
    args: &ApplyArgs,
    config: &ApplyConfig,
    env: &Env<'_>,
    out: &Output,
) -> Result<Exit, Error> {
    let interrupt = Interrupt::arm();
    if let Some(path) = args.out.as_deref() {
        plan::check_out(path, &policy.source)?;
    }
    let conn = Connection::from_env(env)?;
    let log = open_log(args)?;
    let client = client_for(&conn, &config.client)?;
    let plan = tokio::select! {
        plan = plan::make(policy, &conn, &client, out) => plan?,
        _ = interrupt.notify.notified() => return Err(Error::InterruptedBeforeWrites),
    };
    if plan.changes.is_empty() {
        out.note(&render::plan_text(&plan, out.stderr_style));
    }
    let mut session = Session::new(&plan, &conn, &client, args, config, &interrupt, out);
    session.save_to = args.out.as_deref();
    session
        .execute_changes(Vec::new(), plan.changes.clone(), log)
        .await
}

/// A relative roster file named by a saved plan and not found here says where the path
/// came from and what it was resolved against: `apply` may run in another directory.
fn roster_from_plan(e: Error, source: &RosterSource) -> Error {
    let RosterSource::File(recorded) = source else {
        return e;
    };
    match e {
        Error::ReadFile { path, reason } if path == Path::new(recorded) && path.is_relative() => {
            Error::PlanRosterFile {
                dir: std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")),
                path,
                reason,
            }
        }
        other => other,
    }
}

/// The `--log` file, opened before any request. Never the plan file itself: appending
/// records to it would break the plan being applied.
fn open_log(args: &ApplyArgs) -> Result<Option<ApplyLog>, Error> {
    if let (Some(log), Some(plan)) = (args.log.as_deref(), args.plan.as_deref())
        && regular_file::same_file(log, plan)
    {
        return Err(Error::BadTarget {
            flag: "--log",
            path: log.to_path_buf(),
            reason: "is the plan file".into(),
        });
    }
    args.log.as_deref().map(ApplyLog::open).transpose()
}

/// What the steps after the drift check need: the plan being executed, the client, and
/// how this run was asked to behave.
pub struct Session<'a> {
    pub plan: &'a Plan,
    pub conn: &'a Connection,
    pub client: &'a Client,
    pub concurrency: usize,
    pub yes: bool,
    pub format: ApplyFormat,
    pub interrupt: &'a Interrupt,
    pub out: &'a Output,
    /// One-step `apply --out FILE`: where the plan is written, after the confirmation
    /// and before the first write.
    pub save_to: Option<&'a Path>,
    /// The approvals that were checked, when the apply needed or was given any: their
    /// principals and fingerprints go on every `--log` record and the JSON summary.
    pub approvals: Option<&'a ApprovalReport>,
}

impl<'a> Session<'a> {
    pub fn new(
        plan: &'a Plan,
        conn: &'a Connection,
        client: &'a Client,
        args: &ApplyArgs,
        config: &ApplyConfig,
        interrupt: &'a Interrupt,
        out: &'a Output,
    ) -> Session<'a> {
        Session {
            plan,
            conn,
            client,
            concurrency: config.client.concurrency,
            yes: args.yes,
            format: args.format,
            interrupt,
            out,
            save_to: None,
            approvals: None,
        }
    }

    /// Show the pending changes, confirm them, make them, verify them with a check-read,
    /// then record and report every change (the already applied ones included).
    pub async fn execute_changes(
        &self,
        already_applied: Vec<Change>,
        pending: Vec<Change>,
        mut log: Option<ApplyLog>,
    ) -> Result<Exit, Error> {
        let (plan, out) = (self.plan, self.out);
        let mut report = ApplyReport {
            unchanged: plan.summary.unchanged,
            ..ApplyReport::default()
        };
        let already = already_applied.len();
        report.results.extend(
            already_applied
                .into_iter()
                .map(ChangeResult::already_applied),
        );
        // Outcomes known now (skipped as already in effect) are recorded now.
        if let Some(log) = log.as_mut() {
            log.approvals = self.approvals.cloned();
            for r in &report.results {
                log.outcome(plan, r);
            }
        }

        if !pending.is_empty() {
            // What a prompt asks about is shown even under --quiet.
            let show = |text: &str| {
                if self.yes {
                    out.note(text)
                } else {
                    out.stderr(text)
                }
            };
            show(&render::plan_text(plan, out.stderr_style));
            if already > 0 {
                show(&format!(
                    "{} of the plan's changes are already in effect; {} remain.\n",
                    already,
                    pending.len()
                ));
            }
            if !self.yes {
                self.confirm(pending.len()).await?;
            }
        }
        if let Some(path) = self.save_to {
            plan.write_atomic(path)?;
            out.note(&format!(
                "Plan saved to {} ({}).\n",
                sanitize(&path.display().to_string()),
                plan.digest
            ));
        }

        if !pending.is_empty() {
            // One step per finished change, so that after Ctrl-C the count shown is the
            // number of results the counters are made from.
            let progress =
                Progress::counted(out.progress, "applying", "changes", pending.len() as u64);
            let stop = &self.interrupt.stop;
            let mut journal = LogAndProgress {
                plan,
                log: log.as_mut(),
                progress: &progress,
            };
            let (results, not_started) = apply::execute(
                self.client,
                pending,
                self.concurrency,
                now(),
                stop,
                &mut journal,
            )
            .await;
            progress.finish(stop.is_raised());
            report.results.extend(results);
            report.not_started = not_started;
            report.interrupted = stop.is_raised();

            if !report.interrupted {
                // The check-read: a write the server acknowledged but did not keep has failed.
                let progress = reading_progress(self.client, out, "checking", false);
                let fresh = self.client.list_users().await;
                progress.finish(false);
                match fresh {
                    Ok(fresh) => apply::verify_effects(&mut report.results, &fresh, now()),
                    Err(e) => {
                        out.error(&self.conn.explain(e));
                        out.stderr("error: could not check that the changes took effect\n");
                        // The log keeps its `started` records: their outcome is unknown.
                        self.record(&mut None, &mut report);
                        self.print_report(&report, false);
                        if let Some(err) = log.and_then(ApplyLog::into_failure) {
                            out.error(&err);
                        }
                        // Writes were sent and their effect is unknown: exit 5, and a re-run
                        // of the same plan resumes (finished changes count as already applied).
                        return Ok(Exit::Partial);
                    }
                }
            }
        }

        let log_failure = log.as_ref().is_some_and(ApplyLog::failed);
        let complete = !report.interrupted && report.failed() == 0 && !log_failure;
        if report.interrupted {
            // No check-read after Ctrl-C: the successes are unconfirmed, so the log keeps
            // their `started` records only (failures and skips are recorded already).
            self.record(&mut None, &mut report);
        } else {
            self.record(&mut log, &mut report);
        }
        self.print_report(&report, complete);
        if let Some(err) = log.and_then(ApplyLog::into_failure) {
            return Err(err);
        }
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

    /// Ask on the terminal (refusing without one); Ctrl-C at the prompt ends the command.
    async fn confirm(&self, pending: usize) -> Result<(), Error> {
        if !term::is_interactive() {
            return Err(Error::NeedsYes);
        }
        let question = format!(
            "Apply {} changes to {}? Type `yes` to confirm",
            pending,
            sanitize(&self.plan.target)
        );
        // The prompt blocks on stdin: run it aside so Ctrl-C still ends the command.
        let answer = tokio::task::spawn_blocking(move || term::confirm(&question));
        let confirmed = tokio::select! {
            answer = answer => answer
                .map_err(|e| Error::Internal(format!("the confirmation prompt failed: {e}")))??,
            _ = self.interrupt.notify.notified() => return Err(Error::InterruptedAtPrompt),
        };
        if confirmed {
            Ok(())
        } else {
            Err(Error::NotConfirmed)
        }
    }

    /// One line per change, in plan order, with its final outcome (after the check-read,
    /// so a record never says `applied` for a change that did not take effect): to stdout
    /// with `--format json`, and to the `--log` file for the outcomes not yet recorded
    /// (failures and skipped changes were recorded as soon as they were known).
    fn record(&self, log: &mut Option<ApplyLog>, report: &mut ApplyReport) {
        report.results.sort_by(|a, b| a.change.cmp(&b.change));
        for r in &report.results {
            if self.format == ApplyFormat::Json {
                self.out.stdout(&format!(
                    "{}\n",
                    jsonout::to_string(&render::change_json(r))
                ));
            }
            if let Some(log) = log.as_mut() {
                log.outcome(self.plan, r);
            }
        }
    }

    fn print_report(&self, report: &ApplyReport, complete: bool) {
        match self.format {
            ApplyFormat::Json => {
                let mut summary = render::apply_summary_json(report);
                if let Some(approvals) = self.approvals {
                    add_approvals(&mut summary["summary"], approvals);
                }
                self.out
                    .stdout(&format!("{}\n", jsonout::to_string(&summary)));
            }
            ApplyFormat::Text => {
                self.out.stderr(&render::apply_failures(report));
                // --quiet: the counters only when a change was made or failed.
                let c = report.counters();
                if !self.out.quiet || c.created + c.restored + c.decommissioned + c.failed > 0 {
                    self.out.stdout(&render::apply_counters(report, complete));
                }
            }
        }
    }
}

/// What the executor reports as it goes: a `started` record before each write (a
/// failed one stops new changes), a failed outcome as soon as it is known, and progress.
struct LogAndProgress<'a> {
    plan: &'a Plan,
    log: Option<&'a mut ApplyLog>,
    progress: &'a Progress,
}

impl apply::Journal for LogAndProgress<'_> {
    fn started(&mut self, change: &Change) -> bool {
        match self.log.as_mut() {
            Some(log) => log.started(self.plan, change),
            None => true,
        }
    }

    fn finished(&mut self, result: &ChangeResult) {
        self.progress.inc();
        // A failure is final (the check-read only re-judges successes): record it now.
        if let (Some(log), Outcome::Failed { .. }) = (self.log.as_mut(), &result.outcome) {
            log.outcome(self.plan, result);
        }
    }
}

/// `apply --log FILE`: JSON lines appended to a regular file (owner-only permissions):
/// a `started` record before each write is sent, then each change's outcome once it is
/// known. Each record is written whole with one `write` and not buffered, so it
/// survives a crash of this process. The first failed write is kept: no record is
/// attempted after it, and the command stops new changes and exits 5.
pub struct ApplyLog {
    path: PathBuf,
    file: File,
    /// The file's length after the last whole record.
    len: u64,
    /// The approvals of an approved apply: every record carries them.
    approvals: Option<ApprovalReport>,
    /// Changes whose outcome was recorded (each gets one).
    recorded: HashSet<Change>,
    failure: Option<String>,
}

impl ApplyLog {
    /// Open for appending; anything but a regular file (or a new path) is refused before
    /// any request (a FIFO would block, a device would swallow the record).
    pub fn open(path: &Path) -> Result<ApplyLog, Error> {
        let bad = |reason: String| Error::BadTarget {
            flag: "--log",
            path: path.to_path_buf(),
            reason,
        };
        regular_file::check(path).map_err(bad)?;
        let file = regular_file::owner_only()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| Error::WriteFile {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?;
        // The path may have changed between the check and the open.
        match file.metadata() {
            Ok(meta) if meta.is_file() => {}
            _ => return Err(bad("is not a regular file".into())),
        }
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        Ok(ApplyLog {
            path: path.to_path_buf(),
            file,
            len,
            approvals: None,
            recorded: HashSet::new(),
            failure: None,
        })
    }

    /// Record that `change`'s write is about to be sent; false when the log failed.
    fn started(&mut self, plan: &Plan, change: &Change) -> bool {
        let mut line = render::log_started_line(plan, change, OffsetDateTime::now_utc());
        self.stamp(&mut line);
        self.append(&line)
    }

    /// Record `r`'s outcome, once per change.
    fn outcome(&mut self, plan: &Plan, r: &ChangeResult) {
        if self.recorded.insert(r.change.clone()) {
            let mut line = render::log_line(plan, r, OffsetDateTime::now_utc());
            self.stamp(&mut line);
            self.append(&line);
        }
    }

    /// `approved_by` and the key fingerprints, on an approved apply's records.
    fn stamp(&self, record: &mut serde_json::Value) {
        if let Some(approvals) = &self.approvals {
            add_approvals(record, approvals);
        }
    }

    fn append(&mut self, record: &serde_json::Value) -> bool {
        if self.failure.is_some() {
            return false;
        }
        let mut line = jsonout::to_string(record);
        line.push('\n');
        match self.file.write_all(line.as_bytes()) {
            Ok(()) => {
                self.len += line.len() as u64;
                true
            }
            Err(e) => {
                // Part of the record may have been written (a full disk, a size limit):
                // cut it off, so the log holds whole records only. Best effort: the
                // error that matters is the one in hand.
                let _ = self.file.set_len(self.len);
                self.failure = Some(e.to_string());
                false
            }
        }
    }

    fn failed(&self) -> bool {
        self.failure.is_some()
    }

    /// The error to exit with, if a write failed.
    fn into_failure(self) -> Option<Error> {
        self.failure.map(|reason| Error::LogFailed {
            path: self.path,
            reason,
        })
    }
}

/// Check the plan's approvals against `policy` (the flags with the policy file's
/// `[approvals]`): `None` when none are required or given; too few is
/// `ApprovalsMissing` (exit 3). Approvals that did not count are warned about even when
/// enough others did.
pub fn check_approvals(
    plan: &Plan,
    approvals: &[PathBuf],
    policy: &ApprovalPolicy,
    out: &Output,
) -> Result<Option<ApprovalReport>, Error> {
    let Some(report) =
        approval::evaluate(&plan.digest, approvals, policy, now(), &super::local_time)?
    else {
        return Ok(None);
    };
    approval::enforce(&report)?;
    for n in &report.not_counted {
        out.warn(&format!(
            "approval not counted: {}",
            approval::not_counted_line(n)
        ));
    }
    Ok(Some(report))
}

/// `approved_by` (principals) and `approver_fingerprints` (`SHA256:…`, in the same
/// order) on a `--log` record or the JSON summary of an approved apply.
fn add_approvals(object: &mut serde_json::Value, approvals: &ApprovalReport) {
    object["approved_by"] = serde_json::json!(approvals.approved_by());
    object["approver_fingerprints"] = serde_json::json!(approvals.fingerprints());
}
