//! What happens to one email and why, gathered from a live state or from a plan: the
//! facts about it, the outcome (`reconcile::decide`, the planner's own rule), and its
//! look-alikes on the other side. Pure: no I/O, no clock, no wording (render words it).

use time::OffsetDateTime;

use crate::lookalike::Index;
use crate::model::{
    ActionKind, AuthUser, Email, InvalidEmail, ObservedUser, RosterEntry, normalise_email,
};
use crate::planfile::Plan;
use crate::reconcile::{Decision, EmailState, Policy, decide};

/// The outcome for the email, as `explain` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Create,
    Restore,
    Ban,
    Unchanged,
    Protected,
    Ignored,
    Conflict,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Create => "create",
            Outcome::Restore => "restore",
            Outcome::Ban => "ban",
            Outcome::Unchanged => "unchanged",
            Outcome::Protected => "protected",
            Outcome::Ignored => "ignored",
            Outcome::Conflict => "conflict",
        }
    }
}

/// Why the outcome is what it is: the rule, with what it needs to be said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Why {
    /// The planner's rule for this email.
    Rule(Decision),
    /// Protected, by this `--protect` rule (`None`: from a plan, which does not record it).
    ProtectedBy(Option<String>),
    /// A roster row holds this value, and it is not a valid email.
    InvalidRosterRow(InvalidEmail),
    /// Not a valid email and found nowhere: a roster row holding it would be a conflict.
    InvalidEverywhere(InvalidEmail),
    /// Users that are all soft-deleted (live only).
    OnlySoftDeleted,
    /// The plan lists a conflict for it, with this reason.
    PlanConflict(String),
}

/// A roster entry that normalises to the email, as given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RosterFact {
    pub email: String,
    /// Where it came from (`row 3 of roster.csv`), or the plan's `observed.roster`.
    pub origin: String,
}

/// An auth user with the email.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserFact {
    pub id: String,
    /// As stored (live), or normalised (from a plan).
    pub email: String,
    pub banned: bool,
    /// Live only.
    pub banned_until: Option<OffsetDateTime>,
    pub soft_deleted: bool,
    /// Live only.
    pub last_sign_in_at: Option<OffsetDateTime>,
}

/// Everything `explain` reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    /// As given on the command line.
    pub email: String,
    pub normalised: String,
    pub roster_entries: Vec<RosterFact>,
    pub users: Vec<UserFact>,
    pub outcome: Outcome,
    pub why: Why,
    /// Emails on the other side (auth users when the email is on the roster, roster
    /// emails otherwise) that look like it, sorted.
    pub look_alikes: Vec<String>,
}

/// Explain `given` from a fresh read of the roster and the auth users, with the policy
/// `plan` would use.
pub fn live(
    given: &str,
    roster: &[RosterEntry],
    users: &[AuthUser],
    now: OffsetDateTime,
    policy: &Policy,
) -> Explanation {
    let normalised = normalise_email(given);
    let entries: Vec<&RosterEntry> = roster
        .iter()
        .filter(|r| r.email.as_deref().map(normalise_email).as_deref() == Some(&normalised))
        .collect();
    let invalid_row = entries
        .iter()
        .find_map(|r| Email::parse(r.email.as_deref().unwrap_or_default()).err());
    let on_roster = entries
        .iter()
        .any(|r| Email::parse(r.email.as_deref().unwrap_or_default()).is_ok());
    let held: Vec<&AuthUser> = users
        .iter()
        .filter(|u| u.email.as_deref().map(normalise_email).as_deref() == Some(&normalised))
        .collect();
    let mut observed: Vec<ObservedUser> = held
        .iter()
        .filter(|u| !u.is_ignored())
        .map(|u| ObservedUser {
            id: u.id.clone(),
            email: normalised.clone(),
            banned: u.is_banned(now),
        })
        .collect();
    observed.sort();
    let state = EmailState {
        on_roster,
        users: &observed,
        held_by_invalid_row: invalid_row.is_some() && !on_roster,
    };
    let decision = decide(&normalised, &state, policy);
    let (outcome, why) = match (decision, &invalid_row, Email::parse(given)) {
        (Decision::Protected, _, _) => (
            Outcome::Protected,
            Why::ProtectedBy(policy.protection.rule_for(&normalised)),
        ),
        (Decision::HeldByInvalidRow | Decision::NotFound, Some(invalid), _) if !on_roster => {
            (Outcome::Conflict, Why::InvalidRosterRow(invalid.clone()))
        }
        (Decision::NotFound, None, Err(invalid)) => {
            (Outcome::Conflict, Why::InvalidEverywhere(invalid))
        }
        (Decision::NotFound, None, Ok(_)) if !held.is_empty() => {
            (Outcome::Ignored, Why::OnlySoftDeleted)
        }
        (decision, _, _) => (outcome_of(decision), Why::Rule(decision)),
    };

    let other_side: Vec<String> = if on_roster {
        users
            .iter()
            .filter(|u| !u.is_ignored())
            .filter_map(|u| u.email.as_deref().map(normalise_email))
            .collect()
    } else {
        roster
            .iter()
            .filter_map(|r| Email::parse(r.email.as_deref().unwrap_or_default()).ok())
            .map(|e| e.as_str().to_string())
            .collect()
    };
    Explanation {
        email: given.to_string(),
        roster_entries: entries
            .iter()
            .map(|r| RosterFact {
                email: r.email.clone().unwrap_or_default(),
                origin: r.origin.clone(),
            })
            .collect(),
        users: held
            .iter()
            .map(|u| UserFact {
                id: u.id.clone(),
                email: u.email.clone().unwrap_or_default(),
                banned: u.is_banned(now),
                banned_until: u.banned_until.filter(|_| u.is_banned(now)),
                soft_deleted: u.deleted_at.is_some(),
                last_sign_in_at: u.last_sign_in_at,
            })
            .collect(),
        outcome,
        why,
        look_alikes: look_alikes(&normalised, other_side.iter().map(String::as_str)),
        normalised,
    }
}

/// Explain `given` from a plan alone (already parsed and checked). The outcome is the
/// plan's: its change for the email, its conflict, or else the planner's rule over what
/// the plan observed (a ban the plan does not make was prevented by `--protect`).
pub fn from_plan(given: &str, plan: &Plan) -> Explanation {
    let normalised = normalise_email(given);
    let on_roster = plan
        .observed
        .roster
        .binary_search_by(|e| e.as_str().cmp(&normalised))
        .is_ok();
    let group: Vec<ObservedUser> = plan
        .observed
        .users
        .iter()
        .filter(|u| u.email == normalised)
        .cloned()
        .collect();
    let conflict = plan.conflicts.iter().find(|c| {
        normalise_email(&c.email) == normalised
            || c.user_ids
                .iter()
                .any(|id| group.iter().any(|u| &u.id == id))
    });
    let state = EmailState {
        on_roster,
        users: &group,
        held_by_invalid_row: false,
    };
    let decision = decide(&normalised, &state, &Policy::default());
    let change = plan.changes.iter().find(|c| c.email == normalised);
    let (outcome, why) = match (change, conflict, decision) {
        (Some(c), _, _) => (
            match c.action {
                ActionKind::Create => Outcome::Create,
                ActionKind::Restore => Outcome::Restore,
                ActionKind::Ban => Outcome::Ban,
            },
            Why::Rule(decision),
        ),
        (None, Some(c), _) => (Outcome::Conflict, Why::PlanConflict(c.reason.clone())),
        (None, None, Decision::Ban) => (Outcome::Protected, Why::ProtectedBy(None)),
        (None, None, Decision::NotFound) => match Email::parse(given) {
            Err(invalid) => (Outcome::Conflict, Why::InvalidEverywhere(invalid)),
            Ok(_) => (Outcome::Ignored, Why::Rule(decision)),
        },
        (None, None, decision) => (outcome_of(decision), Why::Rule(decision)),
    };
    let roster_entries = if on_roster {
        vec![RosterFact {
            email: normalised.clone(),
            origin: "the plan's observed roster".into(),
        }]
    } else {
        Vec::new()
    };
    let other_side: Vec<&str> = if on_roster {
        plan.observed
            .users
            .iter()
            .map(|u| u.email.as_str())
            .collect()
    } else {
        plan.observed.roster.iter().map(Email::as_str).collect()
    };
    Explanation {
        email: given.to_string(),
        roster_entries,
        users: group
            .into_iter()
            .map(|u| UserFact {
                id: u.id,
                email: u.email,
                banned: u.banned,
                banned_until: None,
                soft_deleted: false,
                last_sign_in_at: None,
            })
            .collect(),
        outcome,
        why,
        look_alikes: look_alikes(&normalised, other_side.into_iter()),
        normalised,
    }
}

fn outcome_of(decision: Decision) -> Outcome {
    match decision {
        Decision::Create => Outcome::Create,
        Decision::Restore => Outcome::Restore,
        Decision::Ban => Outcome::Ban,
        Decision::Unchanged | Decision::AlreadyBanned => Outcome::Unchanged,
        Decision::Protected => Outcome::Protected,
        Decision::HeldByInvalidRow | Decision::SharedEmail | Decision::BadUserId => {
            Outcome::Conflict
        }
        Decision::NotFound => Outcome::Ignored,
    }
}

/// The emails of `others` that look like `email`, sorted and unique (through the index:
/// one email against a whole side).
fn look_alikes<'a>(email: &str, others: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut found: Vec<String> = Index::new(others)
        .matches(email)
        .into_iter()
        .map(str::to_string)
        .collect();
    found.sort_unstable();
    found.dedup();
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::planfile::tests::{plan_for, user};
    use crate::reconcile::reconcile;
    use crate::reconcile::tests::{now, rows as roster};

    fn team() -> (Vec<RosterEntry>, Vec<AuthUser>) {
        (
            roster(&[
                "jon@example.com",
                "Ann@example.com ",
                "not-an-email",
                "bob@example.com",
            ]),
            vec![
                user(
                    "0b1e6c4a-0000-4000-8000-000000000001",
                    "ann@example.com",
                    false,
                ),
                user(
                    "0b1e6c4a-0000-4000-8000-000000000002",
                    "John@example.com",
                    false,
                ),
                user(
                    "0b1e6c4a-0000-4000-8000-000000000003",
                    "bob@example.com",
                    true,
                ),
                user(
                    "0b1e6c4a-0000-4000-8000-000000000004",
                    "ops@example.com",
                    false,
                ),
                user(
                    "0b1e6c4a-0000-4000-8000-000000000005",
                    "eve@example.com",
                    true,
                ),
            ],
        )
    }

    fn policy() -> Policy {
        let mut p = Policy::default();
        p.protection.add("ops@example.com");
        p
    }

    /// Live and from the plan made of the same state, every outcome agrees with the plan.
    #[test]
    fn live_and_plan_explanations_agree_with_the_plan_for_every_email() {
        let (r, u) = team();
        let plan = plan_for(&reconcile(&r, &u, now(), &policy()));
        for (email, outcome) in [
            ("jon@example.com", Outcome::Create),
            ("ANN@example.com", Outcome::Unchanged),
            ("bob@example.com", Outcome::Restore),
            ("john@example.com", Outcome::Ban),
            ("ops@example.com", Outcome::Protected),
            ("eve@example.com", Outcome::Unchanged),
            ("nobody@example.com", Outcome::Ignored),
            ("not-an-email", Outcome::Conflict),
        ] {
            let live = live(email, &r, &u, now(), &policy());
            assert_eq!(live.outcome, outcome, "live {email}: {live:?}");
            let offline = from_plan(email, &plan);
            assert_eq!(offline.outcome, outcome, "plan {email}: {offline:?}");
        }
    }

    #[test]
    fn live_names_the_protect_rule_and_the_plan_cannot() {
        let (r, u) = team();
        let e = live("ops@example.com", &r, &u, now(), &policy());
        assert_eq!(e.why, Why::ProtectedBy(Some("ops@example.com".into())));
        let plan = plan_for(&reconcile(&r, &u, now(), &policy()));
        assert_eq!(
            from_plan("ops@example.com", &plan).why,
            Why::ProtectedBy(None)
        );
    }

    #[test]
    fn facts_and_look_alikes_on_the_other_side() {
        let (r, u) = team();
        let e = live(" JON@example.com", &r, &u, now(), &policy());
        assert_eq!(e.normalised, "jon@example.com");
        assert_eq!(
            e.roster_entries,
            vec![RosterFact {
                email: "jon@example.com".into(),
                origin: "row 2".into()
            }]
        );
        assert!(e.users.is_empty());
        assert_eq!(e.why, Why::Rule(Decision::Create));
        assert_eq!(e.look_alikes, vec!["john@example.com".to_string()]);
        // From the ban's side, the roster's look-alike.
        let e = live("john@example.com", &r, &u, now(), &policy());
        assert_eq!(e.users.len(), 1);
        assert_eq!(e.users[0].email, "John@example.com");
        assert_eq!(e.look_alikes, vec!["jon@example.com".to_string()]);
    }

    #[test]
    fn a_user_named_by_an_invalid_roster_row_is_a_conflict_not_a_ban() {
        // `carol@localhost` is not a valid email (no dot in the domain), but the row names
        // the user exactly: the planner spares the user, and so must the explanation.
        let r = roster(&["ann@example.com", " Carol@localhost"]);
        let u = vec![user(
            "0b1e6c4a-0000-4000-8000-000000000009",
            "carol@localhost",
            false,
        )];
        let e = live("carol@localhost", &r, &u, now(), &policy());
        assert_eq!(e.outcome, Outcome::Conflict, "{e:?}");
        let plan = plan_for(&reconcile(&r, &u, now(), &policy()));
        assert!(
            plan.changes.iter().all(|c| c.email != "carol@localhost"),
            "{:?}",
            plan.changes
        );
        assert_eq!(
            from_plan("carol@localhost", &plan).outcome,
            Outcome::Conflict
        );
    }

    #[test]
    fn found_nowhere_and_only_soft_deleted_are_both_ignored_for_their_own_reason() {
        let (r, mut u) = team();
        let e = live("nobody@example.com", &r, &u, now(), &policy());
        assert_eq!(
            (e.outcome, e.why),
            (Outcome::Ignored, Why::Rule(Decision::NotFound))
        );
        u.push(AuthUser {
            deleted_at: Some(now()),
            ..user(
                "0b1e6c4a-0000-4000-8000-000000000006",
                "gone@example.com",
                false,
            )
        });
        let e = live("gone@example.com", &r, &u, now(), &policy());
        assert_eq!((e.outcome, e.why), (Outcome::Ignored, Why::OnlySoftDeleted));
        assert!(e.users[0].soft_deleted);
    }

    #[test]
    fn an_invalid_email_is_explained_as_a_conflict() {
        let (r, u) = team();
        let e = live("not-an-email", &r, &u, now(), &policy());
        assert_eq!(e.why, Why::InvalidRosterRow(InvalidEmail::AtSigns(0)));
        let e = live("a@b", &r, &u, now(), &policy());
        assert_eq!(e.outcome, Outcome::Conflict);
        assert_eq!(
            e.why,
            Why::InvalidEverywhere(InvalidEmail::DomainWithoutDot)
        );
    }

    #[test]
    fn two_users_with_one_email_are_a_conflict_from_the_same_rule() {
        let (r, mut u) = team();
        u.push(user(
            "0b1e6c4a-0000-4000-8000-000000000006",
            "ANN@example.com",
            false,
        ));
        let e = live("ann@example.com", &r, &u, now(), &policy());
        assert_eq!(
            (e.outcome, e.why),
            (Outcome::Conflict, Why::Rule(Decision::SharedEmail))
        );
        let plan = plan_for(&reconcile(&r, &u, now(), &policy()));
        assert!(matches!(
            from_plan("ann@example.com", &plan).why,
            Why::PlanConflict(_)
        ));
    }
}
