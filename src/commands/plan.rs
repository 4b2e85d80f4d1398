//! `provision plan`: read the state, reconcile, apply the guards, write and show the plan.
//! Split into steps (`PlanRequest::from_args`, `make`, `present`) so that one-step apply
//! can make a plan exactly as `plan` does without copying it.

use std::path::Path;

use crate::cli::{PlanArgs, PlanFormat};
use crate::config::{Connection, Env, PlanConfig, PlanPolicy};
use crate::error::{Error, Exit};
use crate::model::{ActionKind, Protection, RosterSource};
use crate::output::Output;
use crate::planfile::{Plan, PlanMeta};
use crate::reconcile;
use crate::regular_file;
use crate::render;
use crate::sanitize::sanitize;
use crate::supabase::Client;

use super::{client_for, now, read_state_shown};

/// The planner's policy from resolved `--protect` values: `plan` and `explain` build it
/// alike.
pub fn policy_of(protect: &[String]) -> reconcile::Policy {
    let mut protection = Protection::default();
    for p in protect {
        protection.add(p);
    }
    reconcile::Policy { protection }
}

pub async fn run(args: &PlanArgs, env: &Env<'_>, out: &Output) -> Result<Exit, Error> {
    // The policy file is read and checked before anything else: nothing is read from the
    // network until it is valid; nor until `--out` is known to be a place to write.
    let config = PlanConfig::resolve(args, Path::new(""))?;
    let to_stdout = args.out.as_os_str() == "-";
    if !to_stdout {
        check_out(&args.out, &config.policy.source)?;
    }
    let conn = Connection::from_env(env)?;
    let client = client_for(&conn, &config.client)?;
    let plan = make(&config.policy, &conn, &client, out).await?;
    if to_stdout {
        present_on_stdout(&plan, args.format, out);
    } else {
        plan.write_atomic(&args.out)?;
        let approvals = config.approvals.as_ref().map_or(0, |a| a.required);
        present(&plan, &args.out, args.format, approvals, out);
    }
    Ok(if args.detailed_exitcode && plan.summary.has_changes() {
        Exit::Changes
    } else {
        Exit::Success
    })
}

/// `--out` replaces nothing but a regular file, and never the roster file it reads:
/// checked before any request (`write_atomic` checks the path again as it writes).
pub fn check_out(path: &Path, source: &RosterSource) -> Result<(), Error> {
    let bad = |reason: String| Error::BadTarget {
        flag: "--out",
        path: path.to_path_buf(),
        reason,
    };
    regular_file::check(path).map_err(bad)?;
    if let RosterSource::File(roster) = source
        && regular_file::same_file(path, Path::new(roster))
    {
        return Err(bad("is the roster file".into()));
    }
    Ok(())
}

/// Read the state and make the plan: reconcile, print the warnings, apply the guards
/// (exit 4 before anything is written when one refuses).
pub async fn make(
    request: &PlanPolicy,
    conn: &Connection,
    client: &Client,
    out: &Output,
) -> Result<Plan, Error> {
    let (roster, users) = read_state_shown(client, &request.source, out)
        .await
        .map_err(|e| conn.explain(e))?;

    let now = now();
    let rec = reconcile::reconcile(&roster, &users, now, &policy_of(&request.protect));
    let roster_rows = roster.len();
    // The plan needs only the reconciliation from here on; at 100k users the raw
    // listings are tens of MB, better freed before the plan file is written.
    drop((roster, users));
    for line in render::warning_lines(&rec.warnings) {
        out.warn(&line);
    }

    if rec.observed.roster.is_empty() && !request.allow_empty_roster {
        return Err(Error::EmptyRoster {
            rows: roster_rows,
            source_name: request.source.to_string(),
        });
    }
    let max_bans = request
        .max_bans
        .unwrap_or_else(|| (rec.active_with_email / 10).max(10));
    if rec.summary.ban > max_bans {
        return Err(Error::TooManyBans {
            bans: rec.summary.ban,
            max: max_bans,
            emails: rec
                .changes
                .iter()
                .filter(|c| c.action == ActionKind::Ban)
                .map(|c| c.email.clone())
                .collect(),
        });
    }

    let expires = time::Duration::try_from(request.expires_in)
        .map_err(|e| Error::Internal(format!("--expires-in out of range: {e}")))?;
    Ok(Plan::from_reconciliation(
        rec,
        PlanMeta {
            created_at: now,
            expires_at: now + expires,
            target: conn.target(),
            roster_source: request.source.clone(),
            generator_version: env!("CARGO_PKG_VERSION").to_string(),
        },
    ))
}

/// `--out -`: the plan JSON is stdout's only content; the rendering asked for (the diff,
/// or Markdown) goes to stderr (the diff not under `--quiet`), then where the plan went.
fn present_on_stdout(plan: &Plan, format: PlanFormat, out: &Output) {
    out.stdout(&plan.to_pretty_json());
    match format {
        PlanFormat::Text if out.quiet => return,
        PlanFormat::Text => out.stderr(&render::plan_text(plan, out.stderr_style)),
        PlanFormat::Markdown => out.stderr(&render::plan_markdown(plan)),
        PlanFormat::Json => {}
    }
    out.stderr(&format!("Plan written to stdout ({}).\n", plan.digest));
}

/// Show a plan just written to `path`, in the format asked for. Under `--quiet` the
/// text view is not printed; `--format json` and `markdown` are data and always are.
pub fn present(plan: &Plan, path: &Path, format: PlanFormat, approvals: u32, out: &Output) {
    let out_path = path.display().to_string();
    match format {
        PlanFormat::Text if out.quiet => {}
        PlanFormat::Text => {
            out.stdout(&render::plan_text(plan, out.stdout_style));
            out.stdout(&render::plan_footer(
                plan,
                &out_path,
                approvals,
                out.stdout_style,
            ));
        }
        PlanFormat::Json => out.stdout(&plan.to_pretty_json()),
        PlanFormat::Markdown => out.stdout(&render::plan_markdown(plan)),
    }
    if format != PlanFormat::Text {
        out.note(&format!(
            "Plan saved to {} ({}).\n",
            sanitize(&out_path),
            plan.digest
        ));
    }
}
