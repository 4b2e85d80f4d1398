//! `provision show PLAN`: render a saved plan, offline, after the checks `Plan::parse` and
//! `integrity::check` make.

use std::path::Path;

use time::OffsetDateTime;

use crate::approval;
use crate::cli::{PlanFormat, ShowArgs};
use crate::config::{ShowConfig, approval_policy};
use crate::error::{Error, Exit};
use crate::jsonout;
use crate::output::Output;
use crate::planfile::Plan;
use crate::render;
use crate::sanitize::sanitize;

pub fn run(args: &ShowArgs, out: &Output) -> Result<Exit, Error> {
    // The policy file is checked like every command's (its approvals are for `show`, too).
    let config = ShowConfig::resolve(args, Path::new(""))?;
    let text = Plan::read_text(&args.plan)?;
    let plan = super::checked(Plan::parse(&text, &args.plan)?)?;
    let approvals = approval::evaluate(
        &plan.digest,
        &args.approvals.approvals,
        &approval_policy(&args.approvals, config.approvals.as_ref())?,
        OffsetDateTime::now_utc(),
        &super::local_time,
    )?;
    match args.format {
        // As stored, with controls and bidi characters escaped (same values).
        PlanFormat::Json => out.stdout(&jsonout::escape_text(&text)),
        PlanFormat::Markdown => out.stdout(&render::plan_markdown(&plan)),
        PlanFormat::Text => {
            out.stdout(&render::plan_text(&plan, out.stdout_style));
            out.stdout(&render::plan_details(&plan, OffsetDateTime::now_utc()));
        }
    }
    // Who approved and what is missing: after the plan (on stderr when stdout carries
    // the plan's JSON, which stays as stored).
    if let Some(report) = approvals {
        let text: String = approval::report_text(&report)
            .lines()
            .map(|line| format!("{}\n", sanitize(line)))
            .collect();
        match args.format {
            PlanFormat::Json => out.stderr(&text),
            PlanFormat::Markdown => out.stdout(&format!("\n```\n{text}```\n")),
            PlanFormat::Text => out.stdout(&format!("\n{text}")),
        }
    }
    Ok(Exit::Success)
}
