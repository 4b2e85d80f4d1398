//! `provision plan`: read the state, reconcile, apply the guards, write and show the plan.
//! Split into steps (`PlanRequest::from_args`, `make`, `present`) so that one-step apply
//! can make a plan exactly as `plan` does without copying it.

use std::path::Path;

use crate::cli::{PlanArgs, PlanFormat};
use crate::config::{Connection, Env, PlanConfig, PlanPolicy};
use crate::error::{Error, Exit};
use crate::model::{ActionKind, Protection};
use crate::output::Output;
use crate::planfile::{Plan, PlanMeta};
use crate::reconcile;
use crate::render;
use crate::sanitize::sanitize;
use crate::supabase::Client;

use super::{client_for, now, read_state_shown};

pub async fn run(args: &PlanArgs, env: &Env<'_>, out: &Output) -> Result<Exit, Error> {
    // The policy file is read and checked before anything else: nothing is read from the
    // network until it is valid.
    let config = PlanConfig::resolve(args, Path::new(""))?;
    let conn = Connection::from_env(env)?;
    let client = client_for(&conn, &config.client)?;
    let plan = make(&config.policy, &conn, &client, out).await?;
    plan.write_atomic(&args.out)?;
    present(&plan, &args.out, args.format, out);
    Ok(if args.detailed_exitcode && plan.summary.has_changes() {
        Exit::Changes
    } else {
        Exit::Success
    })
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

    let mut protection = Protection::default();
    for p in &request.protect {
        protection.add(p);
    }
    let now = now();
    let rec = reconcile::reconcile(&roster, &users, now, &reconcile::Policy { protection });
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

/// Show a plan just written to `path`, in the format asked for. Under `--quiet` the
/// text view is not printed; `--format json` and `markdown` are data and always are.
pub fn present(plan: &Plan, path: &Path, format: PlanFormat, out: &Output) {
    let out_path = path.display().to_string();
    match format {
        PlanFormat::Text if out.quiet => {}
        PlanFormat::Text => {
            out.stdout(&render::plan_text(plan, out.stdout_style));
            out.stdout(&render::plan_footer(plan, &out_path, out.stdout_style));
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
