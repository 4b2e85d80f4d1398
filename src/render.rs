//! Plans, drift and warnings as text for a terminal or Markdown for a pull request. Every
//! function returns a `String` and never prints; every email and server-provided string is
//! passed through `sanitize` first. Knows nothing of the plan's JSON or of I/O.

use std::collections::HashMap;
use std::fmt::Write as _;

use similar::{Algorithm, DiffOp, capture_diff_slices};

use crate::drift::Drift;
use crate::model::{ActionKind, Change, Conflict, ObservedUser, Summary};
use crate::planfile::{Plan, format_time};
use crate::reconcile::Warning;

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

/// Longest list a text rendering prints before "… and N more" (changes are never cut).
const TEXT_LIST_LIMIT: usize = 100;

/// Escape what a terminal (or a reviewer's eye) could be fooled by: control characters,
/// Unicode bidi overrides and isolates, and invisible format characters, each as
/// `\u{…}` in lower-case hex. Everything else passes through unchanged.
pub fn sanitize(s: &str) -> String {
    if !s.chars().any(needs_escape) {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        if needs_escape(c) {
            let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    out
}

fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{00AD}'                      // soft hyphen
            | '\u{061C}'                    // Arabic letter mark
            | '\u{180E}'                    // Mongolian vowel separator
            | '\u{200B}'..='\u{200F}'       // zero-width space/joiners, LRM, RLM
            | '\u{2028}'..='\u{202E}'       // line/paragraph separators, bidi embeddings
            | '\u{2060}'..='\u{206F}'       // word joiner, invisible operators, isolates
            | '\u{FEFF}'                    // zero-width no-break space (BOM)
            | '\u{FFF9}'..='\u{FFFB}'       // interlinear annotations
            | '\u{E0000}'..='\u{E007F}' // tags
        )
}

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
    plan.observed
        .users
        .iter()
        .filter(|u| !u.banned && !touched.contains(u.id.as_str()))
        .filter(|u| {
            plan.observed
                .roster
                .binary_search_by(|e| e.as_str().cmp(&u.email))
                .is_err()
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
        for c in plan.conflicts.iter().take(TEXT_LIST_LIMIT) {
            let _ = writeln!(out, "  {mark} {}", Warning::Conflict(c.clone()));
        }
        more_line(&mut out, plan.conflicts.len(), TEXT_LIST_LIMIT, "conflicts");
        for u in protected.iter().take(TEXT_LIST_LIMIT) {
            let _ = writeln!(
                out,
                "  {mark} protected: `{}` is active and not on the roster; `--protect` keeps it from a ban",
                sanitize(&u.email)
            );
        }
        more_line(
            &mut out,
            protected.len(),
            TEXT_LIST_LIMIT,
            "protected accounts",
        );
    }
    out
}

fn users(n: usize) -> &'static str {
    if n == 1 { "user" } else { "users" }
}

fn more_line(out: &mut String, total: usize, shown: usize, what: &str) {
    if total > shown {
        let _ = writeln!(out, "  … and {} more {what}", total - shown);
    }
}

/// What the shell prints after writing the plan: where it is, its digest, how to apply.
pub fn plan_footer(path: &str, digest: &str, style: Style) -> String {
    let path_arg = shell_quote(&sanitize(path));
    let digest = sanitize(digest);
    let command = format!("provision apply {path_arg} --expect-digest {digest}");
    format!(
        "Plan saved to {path_arg}\nDigest: {digest}\nApply it with: {}\n",
        style.paint(&command, |s| s.bold())
    )
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

/// Reconciliation warnings for stderr, one `warning: …` line each.
pub fn warnings_text(warnings: &[Warning], style: Style) -> String {
    let label = style.paint("warning:", |s| s.yellow().bold());
    warnings.iter().map(|w| format!("{label} {w}\n")).collect()
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
    if !s.has_changes() {
        out.push_str("No changes: the auth users are in step with the roster.\n\n");
    }

    for action in ActionKind::ALL {
        let changes: Vec<&Change> = plan.changes.iter().filter(|c| c.action == action).collect();
        if changes.is_empty() {
            continue;
        }
        let items = changes.iter().map(|c| match &c.user_id {
            Some(id) => format!("{} (user {})", md_item(&c.email), md_item(&short_id(id))),
            None => md_item(&c.email),
        });
        md_details(&mut out, &format!("{action}: {}", changes.len()), items);
    }

    if !plan.conflicts.is_empty() {
        let _ = writeln!(out, "#### Conflicts (left alone)\n");
        md_list(&mut out, plan.conflicts.iter().map(md_conflict));
        out.push('\n');
    }
    let protected = protected_users(plan);
    if !protected.is_empty() {
        md_details(
            &mut out,
            &format!("protected (not banned): {}", protected.len()),
            protected.iter().map(|u| md_item(&u.email)),
        );
    }

    let _ = writeln!(
        out,
        "Target: {}  \nRoster: {} ({} emails); auth users: {}  \nCreated {}, expires {}  \nDigest: `{}`",
        md_item(&plan.target),
        md_item(&plan.roster_source.to_string()),
        plan.roster_count,
        plan.auth_users_count,
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

fn md_details(out: &mut String, summary: &str, items: impl Iterator<Item = String>) {
    let _ = writeln!(out, "<details>\n<summary>{summary}</summary>\n");
    md_list(out, items);
    out.push_str("\n</details>\n\n");
}

/// A bullet list within `MD_SECTION_BUDGET` bytes; what does not fit becomes a count.
fn md_list(out: &mut String, items: impl Iterator<Item = String>) {
    let mut used = 0usize;
    let mut left_off = 0usize;
    for item in items {
        if left_off > 0 || used + item.len() + 3 > MD_SECTION_BUDGET {
            left_off += 1;
            continue;
        }
        used += item.len() + 3;
        let _ = writeln!(out, "- {item}");
    }
    if left_off > 0 {
        let _ = writeln!(out, "- … and {left_off} more");
    }
}

fn short_id(id: &str) -> String {
    let mut chars = id.chars();
    let head: String = chars.by_ref().take(8).collect();
    if chars.next().is_some() {
        format!("{head}…")
    } else {
        head
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
