//! Plan integrity: does every change follow from the plan's own `observed` state? The
//! digest proves a plan was not edited after it was made, not that a program made it; this
//! pure check (no I/O, no clock, no request) is what makes a re-digested hand edit fail.
//! `apply` and `show` run it after the digest check; it returns the first violation.

use std::collections::{HashMap, HashSet};
use std::fmt;

use crate::lookalike;
use crate::model::{ActionKind, Change, Email, is_uuid_shaped};
use crate::planfile::Plan;
use crate::sanitize::sanitize;

/// Why a plan does not explain itself. `change` is the first offending change (its index
/// in `changes` and the change itself) when one change is to blame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub change: Option<(usize, Change)>,
    pub rule: Rule,
}

/// The rule broken (the contract's "Plan integrity" list).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    /// `created_at` is not before `expires_at`.
    TimesOutOfOrder,
    /// `observed.roster` or `observed.users` is not sorted and free of repeats.
    ObservedNotSorted,
    /// A create with a `user_id`, or a ban or restore without one.
    UserIdPresence,
    /// A `user_id` that is not UUID-shaped.
    IdNotUuid,
    /// A create of an email that is not a valid normalised email.
    InvalidEmail,
    /// A create of an email not on `observed.roster`.
    CreateNotOnRoster,
    /// A create of an email an observed user already has.
    CreateUserExists,
    /// A ban or restore whose `user_id` is not one observed user.
    UnknownUser,
    /// A ban or restore whose `user_id` is observed under another email.
    EmailMismatch { observed: String },
    /// A restore of a user observed active.
    RestoreNotBanned,
    /// A restore of an email not on `observed.roster`.
    RestoreNotOnRoster,
    /// A ban of a user observed banned.
    BanNotActive,
    /// A ban of an email on `observed.roster`.
    BanOnRoster,
    /// A change touching a user or email the plan lists as a conflict.
    TouchesConflict,
    /// The same email or user in two changes.
    Repeated,
    /// `look_alikes` does not follow from the changes (`lookalike::check` says how).
    LookAlikes(String),
    /// `summary.<member>` does not agree with the changes (or, for `unchanged`, with
    /// `observed`; for `conflicts`, with `conflicts`).
    Summary {
        member: &'static str,
        recorded: usize,
        computed: usize,
    },
}

impl fmt::Display for Violation {
    /// Emails and ids are sanitised: a hand-made plan may hold anything.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some((i, c)) = &self.change {
            write!(f, "`changes[{i}]` ({} {}", c.action, sanitize(&c.email))?;
            if let Some(id) = &c.user_id {
                write!(f, ", user {}", sanitize(id))?;
            }
            f.write_str("): ")?;
        }
        match &self.rule {
            Rule::TimesOutOfOrder => f.write_str("`created_at` is not before `expires_at`"),
            Rule::ObservedNotSorted => {
                f.write_str("its `observed` lists are not sorted and free of repeats")
            }
            Rule::UserIdPresence => {
                f.write_str("a create carries no `user_id`, and a ban or restore must carry one")
            }
            Rule::IdNotUuid => f.write_str("the `user_id` is not a UUID"),
            Rule::InvalidEmail => f.write_str("the email is not a valid normalised email"),
            Rule::CreateNotOnRoster => f.write_str("the email is not on `observed.roster`"),
            Rule::CreateUserExists => f.write_str("an observed user already has this email"),
            Rule::UnknownUser => f.write_str("the `user_id` is not one observed user"),
            Rule::EmailMismatch { observed } => write!(
                f,
                "the user is observed with the email {}, not this one",
                sanitize(observed)
            ),
            Rule::RestoreNotBanned => f.write_str("the user is observed active, not banned"),
            Rule::RestoreNotOnRoster => f.write_str("the email is not on `observed.roster`"),
            Rule::BanNotActive => f.write_str("the user is observed banned, not active"),
            Rule::BanOnRoster => f.write_str("the email is on `observed.roster`"),
            Rule::TouchesConflict => f.write_str("the plan lists this user or email as a conflict"),
            Rule::Repeated => f.write_str("an earlier change already names this email or user"),
            Rule::LookAlikes(why) => f.write_str(why),
            Rule::Summary {
                member,
                recorded,
                computed,
            } => write!(
                f,
                "`summary.{member}` is {recorded}, but the plan's changes and `observed` make {computed}"
            ),
        }
    }
}

/// Check that every change follows from `plan.observed`, and that the plan's own counts
/// and times agree with it. `Ok` for every plan `reconcile` produces; the first
/// violation otherwise (plan-wide rules first, then the changes in order, then the
/// summary).
pub fn check(plan: &Plan) -> Result<(), Violation> {
    let whole = |rule| Err(Violation { change: None, rule });
    if plan.created_at >= plan.expires_at {
        return whole(Rule::TimesOutOfOrder);
    }
    let roster = &plan.observed.roster;
    let users = &plan.observed.users;
    let sorted_roster = roster.windows(2).all(|w| w[0] < w[1]);
    let sorted_users = users
        .windows(2)
        .all(|w| (&w[0].email, &w[0].id) < (&w[1].email, &w[1].id));
    if !sorted_roster || !sorted_users {
        return whole(Rule::ObservedNotSorted);
    }
    let on_roster = |email: &str| roster.binary_search_by(|e| e.as_str().cmp(email)).is_ok();
    let has_user = |email: &str| {
        let start = users.partition_point(|u| u.email.as_str() < email);
        users.get(start).is_some_and(|u| u.email == email)
    };
    // Ids observed once; an id observed twice (under two emails) is no one's to touch.
    let mut by_id: HashMap<&str, Option<usize>> = HashMap::with_capacity(users.len());
    for (i, u) in users.iter().enumerate() {
        by_id
            .entry(u.id.as_str())
            .and_modify(|slot| *slot = None)
            .or_insert(Some(i));
    }
    let conflict_ids: HashSet<&str> = plan
        .conflicts
        .iter()
        .flat_map(|c| c.user_ids.iter().map(String::as_str))
        .collect();
    let conflict_emails: HashSet<&str> = plan.conflicts.iter().map(|c| c.email.as_str()).collect();

    let mut seen_emails: HashSet<&str> = HashSet::with_capacity(plan.changes.len());
    let mut seen_ids: HashSet<&str> = HashSet::with_capacity(plan.changes.len());
    let mut counts = [0usize; 3];
    for (i, c) in plan.changes.iter().enumerate() {
        let refuse = |rule| {
            Err(Violation {
                change: Some((i, c.clone())),
                rule,
            })
        };
        match (c.action, c.user_id.as_deref()) {
            (ActionKind::Create, Some(_)) | (ActionKind::Restore | ActionKind::Ban, None) => {
                return refuse(Rule::UserIdPresence);
            }
            (_, Some(id)) if !is_uuid_shaped(id) => return refuse(Rule::IdNotUuid),
            _ => {}
        }
        if !seen_emails.insert(c.email.as_str())
            || c.user_id.as_deref().is_some_and(|id| !seen_ids.insert(id))
        {
            return refuse(Rule::Repeated);
        }
        if conflict_emails.contains(c.email.as_str())
            || c.user_id
                .as_deref()
                .is_some_and(|id| conflict_ids.contains(id))
        {
            return refuse(Rule::TouchesConflict);
        }
        match (c.action, c.user_id.as_deref()) {
            (ActionKind::Create, _) => {
                if !Email::parse(&c.email).is_ok_and(|e| e.as_str() == c.email) {
                    return refuse(Rule::InvalidEmail);
                }
                if !on_roster(&c.email) {
                    return refuse(Rule::CreateNotOnRoster);
                }
                if has_user(&c.email) {
                    return refuse(Rule::CreateUserExists);
                }
            }
            (action, Some(id)) => {
                let Some(Some(u)) = by_id.get(id).map(|slot| slot.map(|i| &users[i])) else {
                    return refuse(Rule::UnknownUser);
                };
                if u.email != c.email {
                    return refuse(Rule::EmailMismatch {
                        observed: u.email.clone(),
                    });
                }
                // Two observed users with this email: a conflict, whoever is named.
                let start = users.partition_point(|x| x.email < c.email);
                if users[start..]
                    .iter()
                    .take_while(|x| x.email == c.email)
                    .count()
                    > 1
                {
                    return refuse(Rule::TouchesConflict);
                }
                let listed = on_roster(&c.email);
                match action {
                    ActionKind::Restore if !u.banned => return refuse(Rule::RestoreNotBanned),
                    ActionKind::Restore if !listed => return refuse(Rule::RestoreNotOnRoster),
                    ActionKind::Ban if u.banned => return refuse(Rule::BanNotActive),
                    ActionKind::Ban if listed => return refuse(Rule::BanOnRoster),
                    _ => {}
                }
            }
            // Refused above.
            (_, None) => return refuse(Rule::UserIdPresence),
        }
        counts[c.action as usize] += 1;
    }

    // Roster emails held by exactly one observed user, active, with a UUID id: the pairs
    // `reconcile` counts as unchanged.
    let mut unchanged = 0;
    let mut rest = users.as_slice();
    while let Some(first) = rest.first() {
        let len = rest.iter().take_while(|u| u.email == first.email).count();
        if let [u] = &rest[..len]
            && !u.banned
            && is_uuid_shaped(&u.id)
            && on_roster(&u.email)
        {
            unchanged += 1;
        }
        rest = &rest[len..];
    }
    let s = &plan.summary;
    for (member, recorded, computed) in [
        ("create", s.create, counts[ActionKind::Create as usize]),
        ("restore", s.restore, counts[ActionKind::Restore as usize]),
        ("ban", s.ban, counts[ActionKind::Ban as usize]),
        ("unchanged", s.unchanged, unchanged),
        ("conflicts", s.conflicts, plan.conflicts.len()),
    ] {
        if recorded != computed {
            return whole(Rule::Summary {
                member,
                recorded,
                computed,
            });
        }
    }
    // Each pair a planned create and a planned ban that truly look alike, sorted, once.
    if let Err(why) = lookalike::check(&plan.look_alikes, &plan.changes) {
        return whole(Rule::LookAlikes(why));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Conflict, ObservedUser};
    use crate::planfile::tests::{plan_for, sample_plan};
    use crate::reconcile::tests::{policy_strategy, roster_strategy, uid, users_strategy};
    use crate::reconcile::{reconcile, tests::now};
    use proptest::prelude::*;

    fn rule_of(plan: &Plan) -> Rule {
        check(plan).expect_err("refused").rule
    }

    #[test]
    fn look_alikes_that_do_not_follow_from_the_changes_are_refused() {
        use crate::lookalike::LookAlike;
        let rows = crate::reconcile::tests::rows(&["jon@example.com"]);
        let users = vec![crate::planfile::tests::user(
            "0b1e6c4a-0000-4000-8000-000000000002",
            "john@example.com",
            false,
        )];
        let mut plan = plan_for(&reconcile(&rows, &users, now(), &Default::default()));
        assert_eq!(plan.look_alikes.len(), 1);
        assert_eq!(check(&plan), Ok(()));
        plan.look_alikes.push(LookAlike {
            create: "jon@example.com".into(),
            ban: "johnny@example.com".into(),
        });
        let err = check(&plan).unwrap_err();
        assert_eq!(err.to_string(), "`look_alikes[1].ban` is not a planned ban");
    }

    #[test]
    fn the_sample_plan_follows_from_its_observed_state() {
        assert_eq!(check(&sample_plan()), Ok(()));
    }

    #[test]
    fn a_ban_naming_one_email_with_another_users_id_is_refused() {
        // The issue's attack: a ban that says carol but carries rostered ann's id.
        let mut plan = sample_plan();
        let ann = plan.observed.users[0].id.clone();
        let ban = plan
            .changes
            .iter_mut()
            .find(|c| c.action == ActionKind::Ban)
            .unwrap();
        assert_eq!(ban.email, "carol@example.com");
        ban.user_id = Some(ann.clone());
        let v = check(&plan).unwrap_err();
        assert_eq!(
            v.rule,
            Rule::EmailMismatch {
                observed: "ann@example.com".into()
            }
        );
        assert_eq!(
            v.to_string(),
            format!(
                "`changes[2]` (ban carol@example.com, user {ann}): the user is observed with the email ann@example.com, not this one"
            )
        );
    }

    #[test]
    fn each_hand_made_change_the_issue_names_is_refused() {
        let base = sample_plan();
        let with = |edit: &dyn Fn(&mut Plan)| {
            let mut p = base.clone();
            edit(&mut p);
            p
        };
        // A ban on a user nobody observed (a phone-only user is not observed).
        let p = with(&|p| p.changes[2].user_id = Some(uid("phone")));
        assert_eq!(rule_of(&p), Rule::UnknownUser);
        // A create of an email that is not on the roster.
        let p = with(&|p| p.changes[0].email = "zed@example.com".into());
        assert_eq!(rule_of(&p), Rule::CreateNotOnRoster);
        // The same ban twice (summary adjusted, so only the repeat is wrong).
        let p = with(&|p| {
            p.changes.push(p.changes[2].clone());
            p.summary.ban += 1;
        });
        assert_eq!(rule_of(&p), Rule::Repeated);
        // An empty user id.
        let p = with(&|p| p.changes[2].user_id = Some(String::new()));
        assert_eq!(rule_of(&p), Rule::IdNotUuid);
        // A ban of a rostered, active user.
        let p = with(&|p| {
            p.changes[2] = Change {
                action: ActionKind::Ban,
                email: "ann@example.com".into(),
                user_id: Some(p.observed.users[0].id.clone()),
            }
        });
        assert_eq!(rule_of(&p), Rule::BanOnRoster);
        // Times out of order, observed unsorted, a summary that disagrees.
        let p = with(&|p| p.created_at = p.expires_at);
        assert_eq!(rule_of(&p), Rule::TimesOutOfOrder);
        let p = with(&|p| p.observed.users.reverse());
        assert_eq!(rule_of(&p), Rule::ObservedNotSorted);
        let p = with(&|p| p.summary.unchanged += 1);
        assert!(matches!(
            rule_of(&p),
            Rule::Summary {
                member: "unchanged",
                ..
            }
        ));
    }

    /// One field of one change, or of the summary, or a time, set to another value.
    #[derive(Debug, Clone)]
    enum Mutation {
        Action(usize, ActionKind),
        Email(usize, String),
        UserId(usize, Option<String>),
        Drop(usize),
        Repeat(usize),
        Summary(usize, usize),
        Expiry,
    }

    fn apply_mutation(plan: &mut Plan, m: &Mutation) {
        let n = plan.changes.len();
        match m {
            Mutation::Action(i, a) => plan.changes[i % n].action = *a,
            Mutation::Email(i, e) => plan.changes[i % n].email = e.clone(),
            Mutation::UserId(i, id) => plan.changes[i % n].user_id = id.clone(),
            Mutation::Drop(i) => {
                plan.changes.remove(i % n);
            }
            Mutation::Repeat(i) => plan.changes.push(plan.changes[i % n].clone()),
            Mutation::Summary(which, delta) => {
                let s = &mut plan.summary;
                let field = match which % 5 {
                    0 => &mut s.create,
                    1 => &mut s.restore,
                    2 => &mut s.ban,
                    3 => &mut s.unchanged,
                    _ => &mut s.conflicts,
                };
                *field += 1 + delta;
            }
            Mutation::Expiry => plan.expires_at = plan.created_at,
        }
    }

    /// Values worth trying: every email and id the plan knows, plus strangers.
    fn mutation(plan: &Plan) -> impl Strategy<Value = Mutation> + use<> {
        let mut emails: Vec<String> = plan
            .observed
            .users
            .iter()
            .map(|u| u.email.clone())
            .chain(plan.observed.roster.iter().map(|e| e.as_str().to_string()))
            .chain(plan.changes.iter().map(|c| c.email.clone()))
            .collect();
        emails.push("stranger@example.com".into());
        let mut ids: Vec<Option<String>> = plan
            .observed
            .users
            .iter()
            .map(|u| Some(u.id.clone()))
            .collect();
        ids.extend([None, Some(uid("stranger")), Some(".\t.".into())]);
        let emails = prop::sample::select(emails);
        let ids = prop::sample::select(ids);
        let actions = prop::sample::select(ActionKind::ALL.to_vec());
        prop_oneof![
            (any::<usize>(), actions).prop_map(|(i, a)| Mutation::Action(i, a)),
            (any::<usize>(), emails).prop_map(|(i, e)| Mutation::Email(i, e)),
            (any::<usize>(), ids).prop_map(|(i, id)| Mutation::UserId(i, id)),
            any::<usize>().prop_map(Mutation::Drop),
            any::<usize>().prop_map(Mutation::Repeat),
            (any::<usize>(), 0..3usize).prop_map(|(w, d)| Mutation::Summary(w, d)),
            Just(Mutation::Expiry),
        ]
    }

    proptest! {
        #[test]
        fn every_plan_reconcile_produces_passes(
            roster in roster_strategy(), users in users_strategy(), policy in policy_strategy()
        ) {
            let plan = plan_for(&reconcile(&roster, &users, now(), &policy));
            prop_assert_eq!(check(&plan), Ok(()));
        }

        #[test]
        fn every_single_field_mutation_that_changes_what_apply_does_is_refused(
            (plan, m) in (roster_strategy(), users_strategy(), policy_strategy())
                .prop_map(|(r, u, p)| plan_for(&reconcile(&r, &u, now(), &p)))
                .prop_filter("a plan with changes", |p| !p.changes.is_empty())
                .prop_flat_map(|p| { let m = mutation(&p); (Just(p), m) })
        ) {
            let mut mutated = plan.clone();
            apply_mutation(&mut mutated, &m);
            // A mutation that sets a field to the value it had changes nothing.
            prop_assume!(mutated != plan);
            prop_assert!(check(&mutated).is_err(), "accepted {:?}", m);
        }
    }

    #[test]
    fn observed_lists_with_a_repeat_are_refused() {
        let mut plan = sample_plan();
        let ann = plan.observed.roster[0].clone();
        plan.observed.roster.insert(0, ann);
        assert_eq!(rule_of(&plan), Rule::ObservedNotSorted);

        let mut plan = sample_plan();
        let ann = plan.observed.users[0].clone();
        plan.observed.users.insert(0, ann);
        assert_eq!(rule_of(&plan), Rule::ObservedNotSorted);
    }

    #[test]
    fn a_change_naming_a_listed_conflict_by_email_or_by_id_alone_is_refused() {
        let carol = sample_plan().observed.users[2].clone();
        assert_eq!(carol.email, "carol@example.com");
        for conflict in [
            Conflict {
                email: carol.email.clone(),
                reason: "listed by hand".into(),
                user_ids: vec![],
            },
            Conflict {
                email: "someone@example.com".into(),
                reason: "listed by hand".into(),
                user_ids: vec![carol.id.clone()],
            },
        ] {
            let mut plan = sample_plan();
            plan.conflicts.push(conflict);
            plan.summary.conflicts += 1;
            assert_eq!(rule_of(&plan), Rule::TouchesConflict);
        }
    }

    #[test]
    fn a_ban_of_one_of_two_users_sharing_an_email_is_refused_even_unlisted() {
        // A hand edit dropped the conflict entry two users sharing carol's email make.
        let mut plan = sample_plan();
        let carol = plan.observed.users[2].clone();
        plan.observed.users.push(ObservedUser {
            id: uid("carol-twin"),
            ..carol
        });
        plan.observed.users.sort();
        assert_eq!(rule_of(&plan), Rule::TouchesConflict);
    }

    #[test]
    fn a_restore_or_ban_against_the_observed_state_is_refused_by_its_own_rule() {
        // sample_plan: restore bob (banned, rostered), ban carol (active, not rostered).
        let base = sample_plan();
        let with = |edit: &dyn Fn(&mut Plan)| {
            let mut p = base.clone();
            edit(&mut p);
            p
        };
        let p = with(&|p| p.observed.users[1].banned = false);
        assert_eq!(rule_of(&p), Rule::RestoreNotBanned);
        let p = with(&|p| {
            p.observed
                .roster
                .retain(|e| e.as_str() != "bob@example.com")
        });
        assert_eq!(rule_of(&p), Rule::RestoreNotOnRoster);
        let p = with(&|p| p.observed.users[2].banned = true);
        assert_eq!(rule_of(&p), Rule::BanNotActive);
    }

    #[test]
    fn a_user_observed_under_two_emails_is_no_ones_to_touch() {
        let mut plan = sample_plan();
        // carol's id also observed under a second email: the ban is no longer safe.
        let carol = plan.observed.users[2].clone();
        plan.observed.users.push(ObservedUser {
            email: "zz@example.com".into(),
            ..carol
        });
        assert_eq!(rule_of(&plan), Rule::UnknownUser);
    }
}
