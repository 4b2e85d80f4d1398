//! `provision plan`: read the state, reconcile, apply the guards, write and show the plan.
//! Split into steps (`PlanRequest::from_args`, `make`, `present`) so that one-step apply
//! can make a plan exactly as `plan` does without copying it.

use std::path::Path;
use std::time::Duration;

use crate::cli::{Common, PlanArgs, PlanFormat};
use crate::config::{Connection, Env};
use crate::error::{Error, Exit};
use crate::model::{Protection, RosterSource};
use crate::output::Output;
use crate::planfile::{Plan, PlanMeta};
use crate::reconcile;
use crate::render;
use crate::sanitize::sanitize;
use crate::supabase::Client;

use super::{client_for, now, read_state};

/// What a plan is made from, beyond the state it reads: the policy of one run.
#[derive(Debug, Clone)]
pub struct PlanRequest {
    pub source: RosterSource,
    pub protect: Vec<String>,
    pub max_bans: Option<usize>,
    pub allow_empty_roster: bool,
    pub expires_in: Duration,
}

impl PlanRequest {
    pub fn from_args(args: &PlanArgs) -> Result<PlanRequest, Error> {
        Ok(PlanRequest {
            source: roster_source(&args.roster_table, args.roster_file.as_deref())?,
            protect: args.protect.clone(),
            max_bans: args.max_bans,
            allow_empty_roster: args.allow_empty_roster,
            expires_in: args.expires_in,
        })
    }
}

/// The roster source the flags name (`--roster-table`, `--roster-file`, or the default
/// table): `plan` and `explain` resolve it alike.
pub fn roster_source(
    table: &Option<(String, String)>,
    file: Option<&Path>,
) -> Result<RosterSource, Error> {
    Ok(match (table, file) {
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
    })
}

/// The planner's policy from the `--protect` values: `plan` and `explain` build it alike.
pub fn policy_of(protect: &[String]) -> reconcile::Policy {
    let mut protection = Protection::default();
    for p in protect {
        protection.add(p);
    }
    reconcile::Policy { protection }
}

pub async fn run(
    args: &PlanArgs,
    common: &Common,
    env: &Env<'_>,
    out: &Output,
) -> Result<Exit, Error> {
    let request = PlanRequest::from_args(args)?;
    let conn = Connection::from_env(env)?;
    let client = client_for(&conn, common)?;
    let plan = make(&request, &conn, &client, out).await?;
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
    request: &PlanRequest,
    conn: &Connection,
    client: &Client,
    out: &Output,
) -> Result<Plan, Error> {
    let (roster, users) = read_state(client, &request.source).await?;

    let now = now();
    let rec = reconcile::reconcile(&roster, &users, now, &policy_of(&request.protect));
    let roster_rows = roster.len();
    // The plan needs only the reconciliation from here on; at 100k users the raw
    // listings are tens of MB, better freed before the plan file is written.
    drop((roster, users));
    for w in &rec.warnings {
        out.warn(&w.to_string());
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

/// Show a plan just written to `path`, in the format asked for.
pub fn present(plan: &Plan, path: &Path, format: PlanFormat, out: &Output) {
    let out_path = path.display().to_string();
    match format {
        PlanFormat::Text => {
            out.stdout(&render::plan_text(plan, out.stdout_style));
            out.stdout(&render::plan_footer(
                &out_path,
                &plan.digest,
                out.stdout_style,
            ));
        }
        PlanFormat::Json => out.stdout(&plan.to_pretty_json()),
        PlanFormat::Markdown => out.stdout(&render::plan_markdown(plan)),
    }
    if format != PlanFormat::Text {
        out.stderr(&format!(
            "Plan saved to {} ({}).\n",
            sanitize(&out_path),
            plan.digest
        ));
    }
}
