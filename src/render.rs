//! Plans, drift and warnings as text for a terminal or Markdown for a pull request. Every
//! function returns a `String` and never prints; every email and server-provided string is
//! passed through `sanitize` first. Knows nothing of the plan's JSON or of I/O.

use std::collections::HashMap;
use std::fmt::Write as _;

use similar::{Algorithm, DiffOp, capture_diff_slices};

use crate::drift::Drift;
use crate::explanation::{Explanation, UserFact, Why};
use crate::model::{ActionKind, Change, Conflict, ObservedUser, Summary, short_id};
use crate::planfile::{Plan, format_time};
use crate::reconcile::{Decision, Warning};
use crate::report::{ApplyReport, ChangeResult, Outcome};
use crate::sanitize::sanitize;

/// How to render: colour or not (the shell decides, from `--color`, `NO_COLOR`, TTYs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Style {
    pub color: bool,
}

impl Style {
    fn paint(self, s: &str, pick: fn(console::Style) -> console::Style) -> String {
        pick(console::Style::new())
            .force_styling(self.color)
            .apply_to(s)
            .to_string()
    }
}

/// GitHub refuses comments over 65,536 characters; stay well below.
pub const MARKDOWN_LIMIT: usize = 60_000;

/// Look-alike pairs the Markdown lists before "… and N more" (it must stay short).
const MD_LOOK_ALIKES: usize = 20;

/// Longest list a text rendering prints before "… and N more" (changes are never cut).
const TEXT_LIST_LIMIT: usize = 100;

/// `Plan: 4 to create, 0 to restore, 1 to ban, 22 unchanged.`
pub fn summary_line(summary: &Summary) -> String {
    format!(
        "Plan: {} to create, {} to restore, {} to ban, {} unchanged.",
        summary.create, summary.restore, summary.ban, summary.unchanged
    )
}

/// The second summary line, when any of these is non-zero:
/// `Left alone: 1 protected, 1 ignored, 2 conflicts.`
fn left_alone_line(summary: &Summary) -> Option<String> {
    let parts: Vec<String> = [
        (summary.protected, "protected", "protected"),
        (summary.ignored, "ignored", "ignored"),
        (summary.conflicts, "conflict", "conflicts"),
    ]
    .into_iter()
    .filter(|(n, _, _)| *n > 0)
    .map(|(n, one, many)| format!("{n} {}", if n == 1 { one } else { many }))
    .collect();
    (!parts.is_empty()).then(|| format!("Left alone: {}.", parts.join(", ")))
}

/// How one observed user fares in the plan.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Fate {
    Restore,
    Ban,
}

/// A line of the user set, before or after: a user (by email and id) or a user the plan
/// creates (no id yet).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Key<'a> {
    User(&'a str, &'a str),
    New(&'a str),
}

impl Key<'_> {
    fn email(&self) -> &str {
        match self {
            Key::User(email, _) | Key::New(email) => email,
        }
    }
}

/// One rendered diff entry: a change, or a run of users the plan leaves as they are.
enum Row<'a> {
    Create(&'a str),
    Restore(&'a str),
    Ban(&'a str),
    Same(usize),
}

/// The user set before → after as a diff of user lines, computed with `similar` (patience:
/// keys are unique and both sides sorted, so it stays near-linear even for 100k users).
/// A user whose state changes is one line (`~` restore, `-` ban), not a delete and an
/// insert: users are never deleted, and ids never change.
fn user_diff(plan: &Plan) -> Vec<Row<'_>> {
    let fates: HashMap<&str, Fate> = plan
        .changes
        .iter()
        .filter_map(|c| match (c.action, c.user_id.as_deref()) {
            (ActionKind::Restore, Some(id)) => Some((id, Fate::Restore)),
            (ActionKind::Ban, Some(id)) => Some((id, Fate::Ban)),
            _ => None,
        })
        .collect();
    let before: Vec<Key> = plan
        .observed
        .users
        .iter()
        .map(|u| Key::User(&u.email, &u.id))
        .collect();
    let mut creates: Vec<Key> = plan
        .changes
        .iter()
        .filter(|c| c.action == ActionKind::Create)
        .map(|c| Key::New(&c.email))
        .collect();
    creates.sort_by(|a, b| a.email().cmp(b.email()));
    // After: the same users, with the created ones in email order among them.
    let mut after = Vec::with_capacity(before.len() + creates.len());
    let mut new = creates.iter().peekable();
    for key in &before {
        while let Some(c) = new.next_if(|c| c.email() < key.email()) {
            after.push(*c);
        }
        after.push(*key);
    }
    after.extend(new.copied());

    let mut rows = Vec::new();
    let mut same = 0usize;
    for op in capture_diff_slices(Algorithm::Patience, &before, &after) {
        // Old-side lines are users (their fate is the plan's); new-only lines are creates.
        let (_, old, new) = op.as_tag_tuple();
        for key in &before[old] {
            let Key::User(email, id) = *key else { continue };
            let row = match fates.get(id) {
                Some(Fate::Restore) => Row::Restore(email),
                Some(Fate::Ban) => Row::Ban(email),
                None => {
                    same += 1;
                    continue;
                }
            };
            push_row(&mut rows, &mut same, row);
        }
        if !matches!(op, DiffOp::Equal { .. }) {
            for key in &after[new] {
                if let Key::New(email) = *key {
                    push_row(&mut rows, &mut same, Row::Create(email));
                }
            }
        }
    }
    if same > 0 {
        rows.push(Row::Same(same));
    }
    rows
}

fn push_row<'a>(rows: &mut Vec<Row<'a>>, same: &mut usize, row: Row<'a>) {
    if *same > 0 {
        rows.push(Row::Same(*same));
        *same = 0;
    }
    rows.push(row);
}

/// Active users off the roster that no change and no conflict touches: the ones
/// `--protect` kept from a ban. Derived from the plan alone (sorted by email, then id).
fn protected_users(plan: &Plan) -> Vec<&ObservedUser> {
    let touched: std::collections::HashSet<&str> = plan
        .changes
        .iter()
        .filter_map(|c| c.user_id.as_deref())
        .chain(
            plan.conflicts
                .iter()
                .flat_map(|c| c.user_ids.iter().map(String::as_str)),
        )
        .collect();
    // Both lists are sorted by email in every plan: one walk down the roster, rather
    // than a binary search per user (at 100k users, a visible part of printing a plan).
    let sorted = plan.observed.users.is_sorted_by(|a, b| a.email <= b.email);
    let mut roster = plan.observed.roster.iter().peekable();
    plan.observed
        .users
        .iter()
        .filter(|u| !u.banned && !touched.contains(u.id.as_str()))
        .filter(|u| {
            let on_roster = if sorted {
                while roster.next_if(|e| e.as_str() < u.email.as_str()).is_some() {}
                roster.peek().is_some_and(|e| e.as_str() == u.email)
            } else {
                plan.observed
                    .roster
                    .binary_search_by(|e| e.as_str().cmp(&u.email))
                    .is_ok()
            };
            !on_roster
        })
        .collect()
}

/// The plan for a terminal: the summary line first, then the user set before → after
/// (changed lines only, unchanged runs collapsed to a count), then conflicts and protected
/// accounts as warnings.
pub fn plan_text(plan: &Plan, style: Style) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}",
        style.paint(&summary_line(&plan.summary), |s| s.bold())
    );
    if let Some(line) = left_alone_line(&plan.summary) {
        let _ = writeln!(out, "{line}");
    }
    out.push('\n');

    if !plan.look_alikes.is_empty() {
        let _ = writeln!(
            out,
            "{}",
            style.paint("Warning: creates that look like bans in this plan:", |s| s
                .yellow()
                .bold())
        );
        let mark = style.paint("!", console::Style::yellow);
        for pair in plan.look_alikes.iter().take(TEXT_LIST_LIMIT) {
            let _ = writeln!(out, "  {mark} {}", Warning::LookAlike(pair.clone()));
        }
        more_line(
            &mut out,
            plan.look_alikes.len(),
            TEXT_LIST_LIMIT,
            "look-alike pairs",
        );
        out.push('\n');
    }

    if plan.changes.is_empty() {
        out.push_str("No changes: the auth users are in step with the roster.\n");
    } else {
        out.push_str("Auth users, before → after:\n");
        for row in user_diff(plan) {
            let line = match row {
                Row::Create(email) => style.paint(
                    &format!("+ {} (new, active)", sanitize(email)),
                    console::Style::green,
                ),
                Row::Restore(email) => style.paint(
                    &format!("~ {} (banned → active)", sanitize(email)),
                    console::Style::yellow,
                ),
                Row::Ban(email) => style.paint(
                    &format!("- {} (active → banned)", sanitize(email)),
                    console::Style::red,
                ),
                Row::Same(n) => style.paint(
                    &format!("  … {n} {} without changes", users(n)),
                    console::Style::dim,
                ),
            };
            let _ = writeln!(out, "{line}");
        }
    }

    let protected = protected_users(plan);
    if !plan.conflicts.is_empty() || !protected.is_empty() {
        out.push('\n');
        let _ = writeln!(out, "{}", style.paint("Warnings:", |s| s.yellow().bold()));
        let mark = style.paint("!", console::Style::yellow);
        // One line per kind when a kind repeats; the full lists are in the plan.
        match plan.conflicts.as_slice() {
            [] => {}
            [one] => {
                let _ = writeln!(out, "  {mark} {}", Warning::Conflict(one.clone()));
            }
            many => {
                let _ = writeln!(
                    out,
                    "  {mark} {}",
                    conflicts_summary(many.iter().map(|c| c.email.as_str()), many.len())
                );
            }
        }
        match protected.as_slice() {
            [] => {}
            [one] => {
                let _ = writeln!(
                    out,
                    "  {mark} protected: `{}` is active and not on the roster; `--protect` keeps it from a ban",
                    sanitize(&one.email)
                );
            }
            many => {
                let _ = writeln!(
                    out,
                    "  {mark} protected: {} accounts are active and not on the roster; `--protect` keeps them from a ban: {}",
                    many.len(),
                    some_emails(many.iter().map(|u| u.email.as_str()), many.len())
                );
            }
        }
    }
    out
}

/// How many emails a one-line summary names before `…`.
const SUMMARY_NAMES: usize = 5;

/// `` `a@x.co`, `b@x.co`, … `` : the first few, sanitised.
fn some_emails<'a>(emails: impl Iterator<Item = &'a str>, total: usize) -> String {
    let mut names: Vec<String> = emails
        .take(SUMMARY_NAMES)
        .map(|e| format!("`{}`", sanitize(e)))
        .collect();
    if total > SUMMARY_NAMES {
        names.push("…".into());
    }
    names.join(", ")
}

fn conflicts_summary<'a>(emails: impl Iterator<Item = &'a str>, total: usize) -> String {
    format!(
        "{total} conflicts, each left alone: {} (each is listed with its reason in the plan's `conflicts`: `provision show PLAN --format json`)",
        some_emails(emails, total)
    )
}

/// Reconciliation warnings for stderr, one line each; a kind that repeats is one line
/// with its count (the full list is in the plan and under `--format json`).
pub fn warning_lines(warnings: &[Warning]) -> Vec<String> {
    let merged: Vec<&Warning> = warnings
        .iter()
        .filter(|w| matches!(w, Warning::MergedRosterRows { .. }))
        .collect();
    let conflicts: Vec<&Warning> = warnings
        .iter()
        .filter(|w| matches!(w, Warning::Conflict(_)))
        .collect();
    let mut lines = Vec::new();
    match merged.as_slice() {
        [] => {}
        [one] => lines.push(one.to_string()),
        many => lines.push(format!(
            "roster: {} emails appear in several rows (after trimming and lower-casing); each is merged into one: {}",
            many.len(),
            some_emails(
                many.iter().filter_map(|w| match w {
                    Warning::MergedRosterRows { email, .. } => Some(email.as_str()),
                    _ => None,
                }),
                many.len()
            )
        )),
    }
    match conflicts.as_slice() {
        [] => {}
        [one] => lines.push(one.to_string()),
        many => lines.push(conflicts_summary(
            many.iter().filter_map(|w| match w {
                Warning::Conflict(c) => Some(c.email.as_str()),
                _ => None,
            }),
            many.len(),
        )),
    }
    // Every look-alike pair on a line of its own: each may be a person about to be
    // locked out.
    lines.extend(
        warnings
            .iter()
            .filter(|w| matches!(w, Warning::LookAlike(_)))
            .map(ToString::to_string),
    );
    lines
}

fn users(n: usize) -> &'static str {
    if n == 1 { "user" } else { "users" }
}

fn more_line(out: &mut String, total: usize, shown: usize, what: &str) {
    if total > shown {
        let _ = writeln!(out, "  … and {} more {what}", total - shown);
    }
}

/// What the shell prints after writing the plan: where it is, its digest, and how to
/// apply it (only when there is something to apply).
/// `approvals` is how many the policy file requires (0: none): the next steps then start
/// with collecting them, and the apply command passes them.
pub fn plan_footer(plan: &Plan, path: &str, approvals: u32, style: Style) -> String {
    let path_arg = shell_quote(&sanitize(path));
    let digest = sanitize(&plan.digest);
    let mut text = format!("Plan saved to {path_arg}\nDigest: {digest}\n");
    if !plan.changes.is_empty() {
        let mut command = format!("provision apply {path_arg} --expect-digest {digest}");
        if approvals > 0 {
            let approve = format!("provision approve {path_arg}");
            let _ = writeln!(
                text,
                "Approvals: the policy file requires {approvals}; each approver runs: {}",
                style.paint(&approve, |s| s.bold())
            );
            command.push_str(" --approval FILE…");
        }
        let _ = writeln!(
            text,
            "Apply it with: {}",
            style.paint(&command, |s| s.bold())
        );
    }
    text
}

/// Quote for a POSIX shell when needed, so the printed command can be pasted.
fn shell_quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars().all(|c| {
            c.is_ascii_alphanumeric()
                || matches!(c, '/' | '.' | '_' | '-' | '+' | ':' | '@' | ',' | '=')
        });
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Drift for a terminal: one line per difference (at most 100, then a count).
pub fn drift_text(drift: &[Drift], style: Style) -> String {
    let mut out = String::new();
    let n = drift.len();
    let _ = writeln!(
        out,
        "{}",
        style.paint(
            &format!(
                "The remote state changed since the plan was made ({n} {}):",
                if n == 1 { "difference" } else { "differences" }
            ),
            |s| s.bold()
        )
    );
    for d in drift.iter().take(TEXT_LIST_LIMIT) {
        let _ = writeln!(out, "  {} {d}", style.paint("!", console::Style::red));
    }
    more_line(&mut out, n, TEXT_LIST_LIMIT, "differences");
    out
}

/// Reconciliation warnings for stderr, `warning: …` lines (see `warning_lines`).
pub fn warnings_text(warnings: &[Warning], style: Style) -> String {
    let label = style.paint("warning:", |s| s.yellow().bold());
    warning_lines(warnings)
        .iter()
        .map(|w| format!("{label} {w}\n"))
        .collect()
}

// ---- Markdown ----

/// Each list section of the Markdown holds at most this many bytes of items.
const MD_SECTION_BUDGET: usize = 9_000;
/// Longest email or reason shown in Markdown, in characters, before `…`.
const MD_ITEM_CHARS: usize = 200;

/// The plan for a pull request or change ticket: a summary table, a warning banner when
/// anything is banned, the changes per action in collapsible sections, the conflicts and
/// protected accounts, then the target and digest. Always under 60,000 characters: each
/// list is cut with "… and N more", each item at 200 characters.
/// The rule behind an explanation's outcome, in one sentence.
pub fn explanation_reason(why: &Why) -> String {
    match why {
        Why::Rule(d) => match d {
            Decision::Create => "it is on the roster and no auth user has it: an account is created.",
            Decision::Restore => "it is on the roster and its auth user is banned: the same user is unbanned.",
            Decision::Ban => "its auth user is active and it is not on the roster: the user is banned.",
            Decision::Unchanged => "it is on the roster and its auth user is active: nothing to do.",
            Decision::AlreadyBanned => "it is not on the roster and its auth user is banned already: nothing to do.",
            Decision::Protected => "it is not on the roster, but a `--protect` rule keeps its user from a ban.",
            Decision::HeldByInvalidRow => "a roster row with an invalid email names it: a conflict, left alone.",
            Decision::SharedEmail => "two or more auth users have it: never guessed at, a conflict, left alone.",
            Decision::NotFound => "it is on no roster row and no auth user has it: nothing to do.",
            Decision::BadUserId => "an auth user with it has an id that is not a UUID: never used in a request, a conflict, left alone.",
        }
        .to_string(),
        Why::ProtectedBy(Some(rule)) => format!(
            "it is not on the roster, but `--protect {}` keeps its active user from a ban.",
            sanitize(rule)
        ),
        Why::ProtectedBy(None) => "it is not on the roster, but the plan bans no one with it: a `--protect` rule of the run that made the plan kept it.".to_string(),
        Why::InvalidRosterRow(invalid) => format!(
            "a roster row holds it and it is not a valid email ({invalid}): a conflict, left alone."
        ),
        Why::InvalidEverywhere(invalid) => format!(
            "it is not a valid email ({invalid}): a roster row holding it would be a conflict, left alone."
        ),
        Why::OnlySoftDeleted => "its only auth users are soft-deleted: never touched.".to_string(),
        Why::PlanConflict(reason) => format!(
            "the plan lists it as a conflict ({}): left alone.",
            sanitize(reason)
        ),
    }
}

fn user_state(u: &UserFact) -> String {
    let state = match (u.soft_deleted, u.banned, u.banned_until) {
        (true, _, _) => "soft-deleted".to_string(),
        (false, true, Some(until)) => format!("banned until {}", format_time(until)),
        (false, true, None) => "banned".to_string(),
        (false, false, _) => "active".to_string(),
    };
    match u.last_sign_in_at {
        Some(at) => format!("{state}, last sign-in {}", format_time(at)),
        None => state,
    }
}

/// `explain` for a person.
pub fn explanation_text(e: &Explanation) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Email: {}", sanitize(&e.email));
    let _ = writeln!(out, "Normalised: {}", sanitize(&e.normalised));
    if e.roster_entries.is_empty() {
        out.push_str("Roster: not on the roster\n");
    } else {
        let _ = writeln!(out, "Roster:");
        for r in &e.roster_entries {
            let _ = writeln!(out, "  {} ({})", sanitize(&r.email), sanitize(&r.origin));
        }
    }
    if e.users.is_empty() {
        out.push_str("Auth users: none\n");
    } else {
        let _ = writeln!(out, "Auth users:");
        for u in &e.users {
            let _ = writeln!(
                out,
                "  {} {} ({})",
                sanitize(&u.id),
                sanitize(&u.email),
                user_state(u)
            );
        }
    }
    let _ = writeln!(out, "Outcome: {}", e.outcome.as_str());
    let _ = writeln!(out, "Why: {}", explanation_reason(&e.why));
    if e.look_alikes.is_empty() {
        out.push_str("Look-alikes: none\n");
    } else {
        let list: Vec<String> = e.look_alikes.iter().map(|l| sanitize(l)).collect();
        let _ = writeln!(out, "Look-alikes: {}", list.join(", "));
    }
    out
}

/// `explain --format json`: one object, pretty-printed, then a newline.
pub fn explanation_json(e: &Explanation) -> String {
    let users: Vec<serde_json::Value> = e
        .users
        .iter()
        .map(|u| {
            serde_json::json!({
                "id": u.id,
                "email": u.email,
                "state": if u.soft_deleted { "soft_deleted" } else if u.banned { "banned" } else { "active" },
                "banned_until": u.banned_until.map(format_time),
                "last_sign_in_at": u.last_sign_in_at.map(format_time),
            })
        })
        .collect();
    let roster: Vec<serde_json::Value> = e
        .roster_entries
        .iter()
        .map(|r| serde_json::json!({"email": r.email, "origin": r.origin}))
        .collect();
    let value = serde_json::json!({
        "email": e.email,
        "normalised": e.normalised,
        "roster_entries": roster,
        "users": users,
        "outcome": e.outcome.as_str(),
        "reason": explanation_reason(&e.why),
        "look_alikes": e.look_alikes,
    });
    // Controls and bidi/zero-width characters as `\u` escapes, as every JSON output.
    let mut text = crate::jsonout::to_string_pretty(&value);
    text.push('\n');
    text
}

pub fn plan_markdown(plan: &Plan) -> String {
    let s = &plan.summary;
    let mut out = String::new();
    let _ = writeln!(out, "### provision plan\n");
    let _ = writeln!(
        out,
        "| create | restore | ban | unchanged | protected | ignored | conflicts |"
    );
    let _ = writeln!(out, "|---:|---:|---:|---:|---:|---:|---:|");
    let _ = writeln!(
        out,
        "| {} | {} | {} | {} | {} | {} | {} |\n",
        s.create, s.restore, s.ban, s.unchanged, s.protected, s.ignored, s.conflicts
    );
    if s.ban > 0 {
        let _ = writeln!(
            out,
            "> [!WARNING]\n> {} {} will be banned (`ban_duration` 876000h). Check each one before applying.\n",
            s.ban,
            if s.ban == 1 { "account" } else { "accounts" }
        );
    }
    if !plan.look_alikes.is_empty() {
        let n = plan.look_alikes.len();
        let _ = writeln!(
            out,
            "> [!WARNING]\n> {n} {} like {} in this plan: a typo in the roster?",
            if n == 1 {
                "create looks"
            } else {
                "creates look"
            },
            if n == 1 { "a ban" } else { "bans" },
        );
        for pair in plan.look_alikes.iter().take(MD_LOOK_ALIKES) {
            let _ = writeln!(
                out,
                "> - create {} while banning {}",
                md_item(&pair.create),
                md_item(&pair.ban)
            );
        }
        if n > MD_LOOK_ALIKES {
            let _ = writeln!(out, "> - … and {} more", n - MD_LOOK_ALIKES);
        }
        out.push('\n');
    }
    if !s.has_changes() {
        out.push_str("No changes: the auth users are in step with the roster.\n\n");
    }

    for action in ActionKind::ALL {
        let changes: Vec<&Change> = plan.changes.iter().filter(|c| c.action == action).collect();
        if changes.is_empty() {
            continue;
        }
        md_details(
            &mut out,
            &format!("{action}: {}", changes.len()),
            &changes,
            |c| match &c.user_id {
                Some(id) => format!("{} (user {})", md_item(&c.email), md_item(&short_id(id))),
                None => md_item(&c.email),
            },
        );
    }

    if !plan.conflicts.is_empty() {
        let _ = writeln!(out, "#### Conflicts (left alone)\n");
        md_list(&mut out, &plan.conflicts, md_conflict);
        out.push('\n');
    }
    let protected = protected_users(plan);
    if !protected.is_empty() {
        md_details(
            &mut out,
            &format!("protected (not banned): {}", protected.len()),
            &protected,
            |u| md_item(&u.email),
        );
    }

    let _ = writeln!(
        out,
        "Target: {}  \nRoster: {} ({} emails); auth users: {}  \nCreated {}, expires {}  \nDigest: `{}`",
        md_item(&plan.target),
        md_item(&plan.roster.source.to_string()),
        plan.roster.count,
        plan.auth_users.count,
        format_time(plan.created_at),
        format_time(plan.expires_at),
        sanitize(&plan.digest),
    );
    out
}

fn md_conflict(c: &Conflict) -> String {
    let email = if c.email.is_empty() {
        "(no email)".to_string()
    } else {
        md_item(&c.email)
    };
    let mut line = format!("{email}: {}", md_item(&c.reason));
    if !c.user_ids.is_empty() {
        let ids: Vec<String> = c
            .user_ids
            .iter()
            .take(5)
            .map(|id| md_item(&short_id(id)))
            .collect();
        let _ = write!(line, " (users {}", ids.join(", "));
        if c.user_ids.len() > 5 {
            let _ = write!(line, " and {} more", c.user_ids.len() - 5);
        }
        line.push(')');
    }
    line
}

fn md_details<T>(out: &mut String, summary: &str, items: &[T], item: impl Fn(&T) -> String) {
    let _ = writeln!(out, "<details>\n<summary>{summary}</summary>\n");
    md_list(out, items, item);
    out.push_str("\n</details>\n\n");
}

/// A bullet list within `MD_SECTION_BUDGET` bytes; what does not fit becomes a count
/// (and is never formatted: a 100k-item list costs what the shown part costs).
fn md_list<T>(out: &mut String, items: &[T], item: impl Fn(&T) -> String) {
    let mut used = 0usize;
    let mut shown = 0usize;
    for t in items {
        let line = item(t);
        if used + line.len() + 3 > MD_SECTION_BUDGET {
            break;
        }
        used += line.len() + 3;
        shown += 1;
        let _ = writeln!(out, "- {line}");
    }
    if shown < items.len() {
        let _ = writeln!(out, "- … and {} more", items.len() - shown);
    }
}

/// Cut to `MD_ITEM_CHARS`, sanitise, then escape everything Markdown or HTML would read
/// as markup, so a crafted email renders as the text it is.
fn md_item(s: &str) -> String {
    let mut chars = s.chars();
    let mut cut: String = chars.by_ref().take(MD_ITEM_CHARS).collect();
    if chars.next().is_some() {
        cut.push('…');
    }
    let mut out = String::with_capacity(cut.len() + 8);
    for c in sanitize(&cut).chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\\' | '`' | '*' | '_' | '{' | '}' | '[' | ']' | '(' | ')' | '#' | '+' | '!' | '|'
            | '~' | '@' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

/// `apply`'s counters, in the contract's words and order; `already applied`, `failed`
/// and `not started` only when non-zero; `Reconciliation complete` on full success.
pub fn apply_counters(report: &ApplyReport, complete: bool) -> String {
    let c = report.counters();
    let mut text = format!(
        "created: {}\nrestored: {}\ndecommissioned: {}\nunchanged: {}\n",
        c.created, c.restored, c.decommissioned, c.unchanged
    );
    for (label, n) in [
        ("already applied", c.already_applied),
        ("failed", c.failed),
        ("not started", report.not_started),
    ] {
        if n > 0 {
            let _ = writeln!(text, "{label}: {n}");
        }
    }
    if complete {
        text.push_str("Reconciliation complete\n");
    }
    text
}

/// One line per failed change: action, email, the server's code and message.
pub fn apply_failures(report: &ApplyReport) -> String {
    let mut text = String::new();
    for r in &report.results {
        if let Outcome::Failed { code, message } = &r.outcome {
            let _ = writeln!(
                text,
                "failed: {} {}: `{}` {}",
                r.change.action,
                sanitize(&r.change.email),
                sanitize(code),
                sanitize(message)
            );
        }
    }
    text
}

/// `apply --format json`: the object for one change.
pub fn change_json(r: &ChangeResult) -> serde_json::Value {
    serde_json::json!({
        "action": r.change.action.as_str(),
        "email": r.change.email,
        "user_id": r.user_id,
        "outcome": r.outcome.as_str(),
        "error_code": r.outcome.error_code(),
    })
}

/// `apply --format json`: the closing summary object.
pub fn apply_summary_json(report: &ApplyReport) -> serde_json::Value {
    let c = report.counters();
    serde_json::json!({"summary": {
        "created": c.created,
        "restored": c.restored,
        "decommissioned": c.decommissioned,
        "unchanged": c.unchanged,
        "already_applied": c.already_applied,
        "failed": c.failed,
    }})
}

/// `apply --log`: the record of one change's outcome for a change ticket (`time` is a
/// parameter: this module never reads the clock). Failed changes add `error_message`.
pub fn log_line(plan: &Plan, r: &ChangeResult, time: time::OffsetDateTime) -> serde_json::Value {
    let mut line = log_record(
        plan,
        &r.change,
        r.user_id.as_deref(),
        r.outcome.as_str(),
        r.outcome.error_code(),
        time,
    );
    if let Outcome::Failed { message, .. } = &r.outcome {
        line["error_message"] = serde_json::Value::String(message.clone());
    }
    line
}

/// `apply --log`: the record that a change's write is about to be sent (`"outcome":
/// "started"`); its outcome record follows when known.
pub fn log_started_line(
    plan: &Plan,
    change: &Change,
    time: time::OffsetDateTime,
) -> serde_json::Value {
    log_record(
        plan,
        change,
        change.user_id.as_deref(),
        "started",
        None,
        time,
    )
}

fn log_record(
    plan: &Plan,
    change: &Change,
    user_id: Option<&str>,
    outcome: &str,
    error_code: Option<&str>,
    time: time::OffsetDateTime,
) -> serde_json::Value {
    serde_json::json!({
        "time": time.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
        "plan_digest": plan.digest,
        "target": plan.target,
        "action": change.action.as_str(),
        "email": change.email,
        "user_id": user_id,
        "outcome": outcome,
        "error_code": error_code,
    })
}

/// `show`'s epilogue: the plan's digest, target, roster source, age and expiry, as of
/// `now` (a parameter: this module never reads the clock).
pub fn plan_details(plan: &Plan, now: time::OffsetDateTime) -> String {
    let created = format_time(plan.created_at);
    let expires = format_time(plan.expires_at);
    let expiry = if plan.expires_at > now {
        format!("in {}", span(plan.expires_at - now))
    } else {
        format!("EXPIRED {} ago", span(now - plan.expires_at))
    };
    let age = if now >= plan.created_at {
        format!("{} ago", span(now - plan.created_at))
    } else {
        "in the future".to_string()
    };
    format!(
        "Digest:  {}\nTarget:  {}\nRoster:  {} ({} emails)\nCreated: {created} ({age})\nExpires: {expires} ({expiry})\n",
        sanitize(&plan.digest),
        sanitize(&plan.target),
        sanitize(&plan.roster.source.to_string()),
        plan.roster.count,
    )
}

/// A duration for people: the two largest units (`6d 21h`, `3h 5m`, `42s`).
fn span(d: time::Duration) -> String {
    let secs = d.whole_seconds().max(0);
    let (days, hours, mins) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60);
    match (days, hours, mins) {
        (0, 0, 0) => format!("{secs}s"),
        (0, 0, m) => format!("{m}m {}s", secs % 60),
        (0, h, m) => format!("{h}h {m}m"),
        (d, h, _) => format!("{d}d {h}h"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{AuthUser, RosterEntry, RosterSource};
    use crate::planfile::tests::{plan_for, user};

    fn result(action: ActionKind, email: &str, outcome: Outcome) -> ChangeResult {
        ChangeResult {
            change: Change {
                action,
                email: email.into(),
                user_id: Some("u1".into()),
            },
            user_id: Some("u1".into()),
            outcome,
        }
    }

    #[test]
    fn apply_counters_are_the_contracts_lines() {
        let mut report = ApplyReport {
            results: vec![
                result(ActionKind::Create, "a@example.com", Outcome::Applied),
                result(ActionKind::Ban, "b@example.com", Outcome::Applied),
            ],
            unchanged: 22,
            ..ApplyReport::default()
        };
        assert_eq!(
            apply_counters(&report, true),
            "created: 1\nrestored: 0\ndecommissioned: 1\nunchanged: 22\nReconciliation complete\n"
        );
        report.results.push(result(
            ActionKind::Restore,
            "c@example.com",
            Outcome::AlreadyApplied,
        ));
        report.results.push(result(
            ActionKind::Create,
            "d\u{1b}[2J@example.com",
            Outcome::Failed {
                code: "validation_failed".into(),
                message: "bad".into(),
            },
        ));
        report.not_started = 3;
        assert_eq!(
            apply_counters(&report, false),
            "created: 1\nrestored: 0\ndecommissioned: 1\nunchanged: 22\nalready applied: 1\nfailed: 1\nnot started: 3\n"
        );
        let failures = apply_failures(&report);
        assert!(
            failures.starts_with("failed: create d\\u{1b}[2J@example.com: `validation_failed` bad"),
            "{failures}"
        );
        assert_eq!(apply_summary_json(&report)["summary"]["failed"], 1);
    }

    #[test]
    fn spans_read_like_people_talk() {
        assert_eq!(span(time::Duration::seconds(42)), "42s");
        assert_eq!(span(time::Duration::seconds(185)), "3m 5s");
        assert_eq!(span(time::Duration::minutes(185)), "3h 5m");
        assert_eq!(span(time::Duration::hours(165)), "6d 21h");
    }
    use crate::planfile::PlanMeta;
    use crate::reconcile::tests::{now, policy_strategy, roster_strategy, users_strategy};
    use crate::reconcile::{Policy, reconcile};
    use proptest::prelude::*;

    const PLAIN: Style = Style { color: false };
    const COLOR: Style = Style { color: true };

    /// Roster rows as a file gives them, `row 2` first.
    fn rows(emails: &[&str]) -> Vec<RosterEntry> {
        emails
            .iter()
            .enumerate()
            .map(|(i, e)| RosterEntry {
                email: Some(e.to_string()),
                origin: format!("row {}", i + 2),
            })
            .collect()
    }

    fn plan_of(roster: &[&str], users: &[AuthUser], policy: &Policy) -> Plan {
        plan_for(&reconcile(&rows(roster), users, now(), policy))
    }

    /// Every kind of line: unchanged runs, a create, a restore, a ban, a conflict, a
    /// protected account, an ignored user, an invalid roster row.
    fn sample() -> Plan {
        let mut policy = Policy::default();
        policy.protection.add("ops@example.com");
        let mut users = vec![
            user(
                "a0000000-0000-4000-8000-000000000001",
                "ann@example.com",
                false,
            ),
            user(
                "a0000000-0000-4000-8000-000000000002",
                "bob@example.com",
                true,
            ),
            user(
                "a0000000-0000-4000-8000-000000000003",
                "carol@example.com",
                false,
            ),
            user(
                "a0000000-0000-4000-8000-000000000004",
                "dup@example.com",
                false,
            ),
            user(
                "a0000000-0000-4000-8000-000000000005",
                "DUP@example.com",
                false,
            ),
            user(
                "a0000000-0000-4000-8000-000000000006",
                "ops@example.com",
                false,
            ),
            user(
                "a0000000-0000-4000-8000-000000000007",
                "zed@example.com",
                true,
            ),
            AuthUser {
                email: None,
                ..user("a0000000-0000-4000-8000-000000000008", "", false)
            },
        ];
        for i in 0..3 {
            users.push(user(
                &format!("b0000000-0000-4000-8000-00000000000{i}"),
                &format!("m{i}@example.com"),
                false,
            ));
        }
        plan_of(
            &[
                "ann@example.com",
                "bob@example.com",
                "dana@example.com",
                "m0@example.com",
                "m1@example.com",
                "m2@example.com",
                "not an email",
            ],
            &users,
            &policy,
        )
    }

    fn visible_escapes(s: &str) -> String {
        s.replace('\u{1b}', "␛")
    }

    #[test]
    fn plan_text_plain() {
        insta::assert_snapshot!(plan_text(&sample(), PLAIN));
    }

    #[test]
    fn plan_text_coloured() {
        let text = plan_text(&sample(), COLOR);
        assert!(text.contains("\u{1b}[32m+ dana@example.com"), "{text}");
        assert!(text.contains("\u{1b}[33m~ bob@example.com"), "{text}");
        assert!(text.contains("\u{1b}[31m- carol@example.com"), "{text}");
        insta::assert_snapshot!(visible_escapes(&text));
    }

    #[test]
    fn plain_text_has_no_escape_codes() {
        assert!(!plan_text(&sample(), PLAIN).contains('\u{1b}'));
        assert!(!plan_footer(&sample(), "plan.json", 0, PLAIN).contains('\u{1b}'));
        assert!(!drift_text(&[], PLAIN).contains('\u{1b}'));
    }

    #[test]
    fn plan_markdown_snapshot() {
        insta::assert_snapshot!(plan_markdown(&sample()));
    }

    #[test]
    fn look_alikes_stand_under_a_warning_above_the_changes() {
        let plan = plan_of(
            &["jon@example.com", "ann@example.com"],
            &[
                user(
                    "0b1e6c4a-0000-4000-8000-000000000001",
                    "ann@example.com",
                    false,
                ),
                user(
                    "0b1e6c4a-0000-4000-8000-000000000002",
                    "john@example.com",
                    false,
                ),
            ],
            &Policy::default(),
        );
        assert_eq!(
            plan_text(&plan, PLAIN),
            "Plan: 1 to create, 0 to restore, 1 to ban, 1 unchanged.\n\n\
             Warning: creates that look like bans in this plan:\n\
             \x20 ! create jon@example.com while banning john@example.com: a typo in the roster?\n\n\
             Auth users, before → after:\n\
             \x20 … 1 user without changes\n\
             - john@example.com (active → banned)\n\
             + jon@example.com (new, active)\n"
        );
        let md = plan_markdown(&plan);
        let warning = "> [!WARNING]\n> 1 create looks like a ban in this plan: a typo in the roster?\n\
                       > - create jon\\@example.com while banning john\\@example.com\n\n";
        let at = md.find(warning).unwrap_or_else(|| panic!("{md}"));
        assert!(
            at < md.find("<summary>create: 1</summary>").unwrap(),
            "{md}"
        );
    }

    #[test]
    fn a_plan_without_changes_says_so() {
        let plan = plan_of(
            &["ann@example.com"],
            &[user(
                "9f2e0000-0000-4000-8000-000000000001",
                "ann@example.com",
                false,
            )],
            &Policy::default(),
        );
        assert_eq!(
            plan_text(&plan, PLAIN),
            "Plan: 0 to create, 0 to restore, 0 to ban, 1 unchanged.\n\nNo changes: the auth users are in step with the roster.\n"
        );
        let md = plan_markdown(&plan);
        assert!(md.contains("No changes"), "{md}");
        assert!(!md.contains("[!WARNING]"), "{md}");
    }

    #[test]
    fn footer_names_the_file_digest_and_command() {
        let plan = sample();
        let d = &plan.digest;
        assert_eq!(
            plan_footer(&plan, "plan.json", 0, PLAIN),
            format!(
                "Plan saved to plan.json\nDigest: {d}\nApply it with: provision apply plan.json --expect-digest {d}\n"
            )
        );
        assert_eq!(
            plan_footer(&plan, "plan.json", 2, PLAIN),
            format!(
                "Plan saved to plan.json\nDigest: {d}\n\
                 Approvals: the policy file requires 2; each approver runs: provision approve plan.json\n\
                 Apply it with: provision apply plan.json --expect-digest {d} --approval FILE…\n"
            )
        );
        let quoted = plan_footer(&plan, "my plans/it's.json", 0, PLAIN);
        assert!(
            quoted.contains("provision apply 'my plans/it'\\''s.json' --expect-digest"),
            "{quoted}"
        );
    }

    #[test]
    fn footer_has_no_apply_line_when_nothing_to_apply() {
        let plan = plan_of(
            &["ann@example.com"],
            &[user("1", "ann@example.com", false)],
            &Policy::default(),
        );
        let d = &plan.digest;
        assert_eq!(
            plan_footer(&plan, "plan.json", 2, PLAIN),
            format!("Plan saved to plan.json\nDigest: {d}\n")
        );
    }

    #[test]
    fn repeated_warnings_of_one_kind_are_one_line_with_a_count() {
        let roster = rows(&[
            "a@x.co",
            "A@x.co",
            "b@x.co",
            "B@x.co",
            "bad one",
            "worse one",
        ]);
        let rec = reconcile(&roster, &[], now(), &Policy::default());
        assert_eq!(
            warning_lines(&rec.warnings),
            vec![
                "roster: 2 emails appear in several rows (after trimming and lower-casing); each is merged into one: `a@x.co`, `b@x.co`".to_string(),
                "2 conflicts, each left alone: `bad one`, `worse one` (each is listed with its reason in the plan's `conflicts`: `provision show PLAN --format json`)".to_string(),
            ]
        );
        let mut policy = Policy::default();
        policy.protection.add("@ops.co");
        let users: Vec<_> = (1..=7)
            .map(|i| {
                user(
                    &format!("a0000000-0000-4000-8000-00000000000{i}"),
                    &format!("u{i}@ops.co"),
                    false,
                )
            })
            .collect();
        let plan = plan_of(&["ann@example.com"], &users, &policy);
        let text = plan_text(&plan, PLAIN);
        assert!(
            text.ends_with(
                "Warnings:\n  ! protected: 7 accounts are active and not on the roster; `--protect` keeps them from a ban: `u1@ops.co`, `u2@ops.co`, `u3@ops.co`, `u4@ops.co`, `u5@ops.co`, …\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn drift_text_lists_each_difference() {
        let drift = vec![
            Drift::RosterAdded {
                email: crate::model::Email::parse("eve@example.com").unwrap(),
            },
            Drift::Banned {
                email: "erin@example.com".into(),
                id: "1".into(),
            },
        ];
        insta::assert_snapshot!(drift_text(&drift, PLAIN), @r"
        The remote state changed since the plan was made (2 differences):
          ! roster: +eve@example.com added since the plan
          ! erin@example.com: active at plan time, now banned
        ");
        let many: Vec<Drift> = (0..150)
            .map(|i| Drift::UserDeleted {
                email: format!("u{i}@example.com"),
                id: i.to_string(),
            })
            .collect();
        let text = drift_text(&many, PLAIN);
        assert_eq!(text.lines().count(), 1 + 100 + 1);
        assert!(text.ends_with("  … and 50 more differences\n"), "{text}");
    }

    #[test]
    fn warnings_text_prefixes_each_warning() {
        let plan = plan_of(
            &["A@example.com", "a@example.com "],
            &[],
            &Policy::default(),
        );
        let _ = plan;
        let rec = reconcile(
            &[
                RosterEntry {
                    email: Some("A@example.com".into()),
                    origin: "row 2".into(),
                },
                RosterEntry {
                    email: Some("a@example.com ".into()),
                    origin: "row 3".into(),
                },
            ],
            &[],
            now(),
            &Policy::default(),
        );
        assert_eq!(
            warnings_text(&rec.warnings, PLAIN),
            "warning: roster: `a@example.com` appears in 2 rows (after trimming and lower-casing); they are merged into one\n"
        );
    }

    #[test]
    fn bidi_and_control_emails_are_escaped_in_text_and_markdown() {
        // An auth user's email is whatever the server holds: it reaches the ban list.
        let evil = "admin\u{202e}moc.elpmaxe@evil.com\u{1b}[0m";
        let plan = plan_of(
            &[],
            &[user("9f2e0000-0000-4000-8000-000000000001", evil, false)],
            &Policy::default(),
        );
        let text = plan_text(&plan, COLOR);
        assert!(
            !text.contains('\u{202e}') && !text.contains("\u{1b}[0m@"),
            "{text}"
        );
        assert!(
            text.contains("admin\\u{202e}moc.elpmaxe@evil.com\\u{1b}[0m"),
            "{text}"
        );
        let md = plan_markdown(&plan);
        assert!(!md.contains('\u{202e}') && !md.contains('\u{1b}'), "{md}");
        assert!(md.contains("admin\\\\u\\{202e\\}"), "{md}");
    }

    #[test]
    fn markdown_escapes_markup_in_emails() {
        let plan = plan_of(
            &[],
            &[user(
                "9f2e0000-0000-4000-8000-000000000001",
                "<img src=x>*[a](b)*@example.com",
                false,
            )],
            &Policy::default(),
        );
        let md = plan_markdown(&plan);
        assert!(
            md.contains("&lt;img src=x&gt;\\*\\[a\\]\\(b\\)\\*\\@example.com"),
            "{md}"
        );
        assert!(!md.contains("<img"), "{md}");
    }

    fn big_plan(n: usize) -> Plan {
        // n users: a third paired, a third leavers (bans), a third banned returners
        // (restores), plus n/3 newcomers interleaved (creates).
        let mut roster = Vec::new();
        let mut users = Vec::new();
        for i in 0..n {
            let email = format!("user{i:06}@example.com");
            let id = format!("{i:08}-0000-4000-8000-000000000000");
            match i % 3 {
                0 => {
                    roster.push(email.clone());
                    users.push(user(&id, &email, false));
                }
                1 => users.push(user(&id, &email, false)),
                _ => {
                    roster.push(email.clone());
                    users.push(user(&id, &email, true));
                }
            }
            if i % 3 == 0 {
                roster.push(format!("user{i:06}x@example.com"));
            }
        }
        let roster: Vec<&str> = roster.iter().map(String::as_str).collect();
        plan_of(&roster, &users, &Policy::default())
    }

    #[test]
    fn markdown_of_a_100k_change_plan_stays_under_the_limit() {
        let plan = big_plan(100_000);
        assert!(plan.changes.len() >= 100_000);
        let md = plan_markdown(&plan);
        assert!(md.chars().count() < MARKDOWN_LIMIT, "{}", md.len());
        assert!(md.contains("… and "), "lists are cut");
        assert!(md.contains(&plan.digest));
    }

    #[test]
    fn markdown_stays_under_the_limit_with_huge_hostile_values() {
        let long = format!("{}@example.com", "\u{202e}<&".repeat(5_000));
        let mut users: Vec<AuthUser> = (0..300)
            .map(|i| {
                user(
                    &format!("{i}{}", "9".repeat(500)),
                    &format!("{i}{long}"),
                    false,
                )
            })
            .collect();
        users.extend((0..100).map(|i| user(&format!("d{i}"), "dup@example.com", false)));
        let mut policy = Policy::default();
        policy.protection.add("@example.org");
        users.extend((0..300).map(|i| {
            user(
                &format!("p{i}"),
                &format!("{i}{}@example.org", "_".repeat(300)),
                false,
            )
        }));
        let roster: Vec<String> = (0..300)
            .map(|i| format!("bad{i}{}", "`".repeat(3_000)))
            .collect();
        let roster: Vec<&str> = roster.iter().map(String::as_str).collect();
        let mut plan = plan_of(&roster, &users, &policy);
        plan.target = format!("https://{}.example.com", "a".repeat(10_000));
        let md = plan_markdown(&plan);
        assert!(md.chars().count() < MARKDOWN_LIMIT, "{}", md.len());
        assert!(!md.contains('\u{202e}'));
    }

    #[test]
    fn text_of_a_big_plan_prints_changes_not_unchanged_users() {
        let plan = big_plan(30_000);
        let text = plan_text(&plan, PLAIN);
        let changes = plan.changes.len();
        // One line per change, at most one collapsed run between changes, a few more.
        assert!(text.lines().count() <= 2 * changes + 10);
        assert_eq!(
            text.lines().filter(|l| l.starts_with("+ ")).count(),
            plan.summary.create
        );
    }

    proptest! {
        /// The diff shows each change exactly once, in email order, and accounts for every
        /// observed user.
        #[test]
        fn user_diff_accounts_for_every_change_and_user(
            roster in roster_strategy(), users in users_strategy(), policy in policy_strategy()
        ) {
            let rec = reconcile(&roster, &users, now(), &policy);
            let plan = Plan::new(&rec, PlanMeta {
                created_at: now(),
                expires_at: now(),
                target: "https://abcd.supabase.co".into(),
                roster_source: RosterSource::default_table(),
                generator_version: "0.1.0".into(),
            });
            let rows = user_diff(&plan);
            let (mut creates, mut restores, mut bans, mut same) = (0, 0, 0, 0);
            let mut emails = Vec::new();
            for row in &rows {
                match row {
                    Row::Create(e) => { creates += 1; emails.push(*e); }
                    Row::Restore(e) => { restores += 1; emails.push(*e); }
                    Row::Ban(e) => { bans += 1; emails.push(*e); }
                    Row::Same(n) => same += n,
                }
            }
            prop_assert_eq!(creates, plan.summary.create);
            prop_assert_eq!(restores, plan.summary.restore);
            prop_assert_eq!(bans, plan.summary.ban);
            prop_assert_eq!(same + restores + bans, plan.observed.users.len());
            prop_assert!(emails.windows(2).all(|w| w[0] <= w[1]));
            // No two collapsed runs in a row.
            prop_assert!(rows.windows(2).all(|w| !matches!(w, [Row::Same(_), Row::Same(_)])));
        }
    }
}
