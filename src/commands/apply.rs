//! `provision apply PLAN`: load and check the plan, re-read the state, refuse on drift,
//! confirm, execute, verify with a check-read, report and log. The steps after the drift
//! check (`execute_changes`) take the changes to make, so that one-step apply can reuse
//! them for a plan it has just made.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::apply::{self, ApplyReport, ChangeResult, StopFlag};
use crate::cli::{ApplyArgs, ApplyFormat, Common};
use crate::config::{Connection, Env, same_target};
use crate::drift;
use crate::error::{Error, Exit};
use crate::model::Change;
use crate::output::Output;
use crate::planfile::Plan;
use crate::render;
use crate::sanitize::sanitize;
use crate::supabase::Client;
use crate::term;

use super::{client_for, now, read_state};

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

pub async fn run(
    args: &ApplyArgs,
    common: &Common,
    env: &Env<'_>,
    out: &Output,
) -> Result<Exit, Error> {
    let interrupt = Interrupt::arm();

    let plan = Plan::load(&args.plan)?;
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
    let conn = Connection::from_env(env)?;
    if !same_target(&plan.target, &conn.target()) {
        return Err(Error::WrongTarget {
            plan: plan.target.clone(),
            env: conn.target(),
        });
    }
    let log = match &args.log {
        Some(path) => Some(ApplyLog::open(path)?),
        None => None,
    };
    let client = client_for(&conn, common)?;

    let (roster, users) = tokio::select! {
        state = read_state(&client, &plan.roster.source) => state?,
        _ = interrupt.notify.notified() => return Err(Error::Interrupted),
    };
    let check = drift::check(&plan, &roster, &users, now());
    if !check.drift.is_empty() {
        out.stderr(&render::drift_text(&check.drift, out.stderr_style));
        return Err(Error::Drift);
    }

    let session = Session {
        plan: &plan,
        client: &client,
        concurrency: common.concurrency as usize,
        yes: args.yes,
        format: args.format,
        interrupt: &interrupt,
        out,
    };
    session
        .execute_changes(check.already_applied, check.pending, log)
        .await
}

/// What the steps after the drift check need: the plan being executed, the client, and
/// how this run was asked to behave.
pub struct Session<'a> {
    pub plan: &'a Plan,
    pub client: &'a Client,
    pub concurrency: usize,
    pub yes: bool,
    pub format: ApplyFormat,
    pub interrupt: &'a Interrupt,
    pub out: &'a Output,
}

impl Session<'_> {
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

        if !pending.is_empty() {
            out.stderr(&render::plan_text(plan, out.stderr_style));
            if already > 0 {
                out.stderr(&format!(
                    "{} of the plan's changes are already in effect; {} remain.\n",
                    already,
                    pending.len()
                ));
            }
            if !self.yes {
                self.confirm(pending.len()).await?;
            }

            let bar = term::progress(
                pending.len(),
                self.format == ApplyFormat::Text && term::stderr_is_terminal(),
            );
            let stop = &self.interrupt.stop;
            let (results, not_started) =
                apply::execute(self.client, pending, self.concurrency, now(), stop, |_| {
                    bar.inc(1)
                })
                .await;
            bar.finish_and_clear();
            report.results.extend(results);
            report.not_started = not_started;
            report.interrupted = stop.is_raised();

            if !report.interrupted {
                // The check-read: a write the server acknowledged but did not keep has failed.
                match self.client.list_users().await {
                    Ok(fresh) => apply::verify_effects(&mut report.results, &fresh, now()),
                    Err(e) => {
                        out.error(&e);
                        out.stderr("error: could not check that the changes took effect\n");
                        self.record(&mut log, &mut report);
                        self.print_report(&report, false);
                        // Writes were sent and their effect is unknown: exit 5, and a re-run
                        // of the same plan resumes (finished changes count as already applied).
                        return Ok(Exit::Partial);
                    }
                }
            }
        }

        let complete = !report.interrupted && report.failed() == 0;
        self.record(&mut log, &mut report);
        self.print_report(&report, complete);
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
            _ = self.interrupt.notify.notified() => return Err(Error::Interrupted),
        };
        if confirmed {
            Ok(())
        } else {
            Err(Error::NotConfirmed)
        }
    }

    /// One line per change, in plan order, with its final outcome (after the check-read,
    /// so a record never says `applied` for a change that did not take effect): to stdout
    /// with `--format json`, and to the `--log` file.
    fn record(&self, log: &mut Option<ApplyLog>, report: &mut ApplyReport) {
        report.results.sort_by(|a, b| a.change.cmp(&b.change));
        for r in &report.results {
            if self.format == ApplyFormat::Json {
                self.out.stdout(&format!("{}\n", render::change_json(r)));
            }
            if let Some(log) = log.as_mut() {
                log.write(self.plan, r);
            }
        }
    }

    fn print_report(&self, report: &ApplyReport, complete: bool) {
        match self.format {
            ApplyFormat::Json => self
                .out
                .stdout(&format!("{}\n", render::apply_summary_json(report))),
            ApplyFormat::Text => {
                self.out.stderr(&render::apply_failures(report));
                self.out.stdout(&render::apply_counters(report, complete));
            }
        }
    }
}

/// `apply --log FILE`: one JSON line per change, appended, owner-only permissions.
pub struct ApplyLog {
    path: PathBuf,
    file: File,
    broken: bool,
}

impl ApplyLog {
    pub fn open(path: &Path) -> Result<ApplyLog, Error> {
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
                sanitize(&self.path.display().to_string())
            );
        }
    }
}
