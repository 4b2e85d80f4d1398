//! The pure drift check: a verified plan against freshly read roster rows and auth users.
//! Sorts each planned change into already applied or pending, and names every other
//! difference as drift. No I/O, no clock (takes `now`), no wording beyond `Display`.

use std::collections::{HashMap, HashSet};
use std::fmt;

use time::OffsetDateTime;

use crate::model::{
    ActionKind, AuthUser, Change, Email, ObservedUser, RosterEntry, effect_in_place,
    normalise_email, short_id,
};
use crate::planfile::{Plan, format_time};
use crate::reconcile::observe;
use crate::sanitize::sanitize;

/// One difference between what the plan observed and the fresh state that no planned
/// change explains. Ids are kept whole; `Display` shortens them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Drift {
    RosterAdded {
        email: Email,
    },
    RosterRemoved {
        email: Email,
    },
    /// A user id that did not exist at plan time (and that no planned create explains).
    UserCreated {
        email: String,
        id: String,
        banned: bool,
    },
    /// A user id gone since the plan (deleted, soft-deleted, or left without an email).
    UserDeleted {
        email: String,
        id: String,
    },
    /// The user behind an email was deleted and another created with the same email.
    Recreated {
        email: String,
        old_id: String,
        new_id: String,
    },
    /// Active at plan time, banned now, and no planned ban explains it.
    Banned {
        email: String,
        id: String,
    },
    /// Banned at plan time, active now (unbanned, or the ban expired), and no planned
    /// restore explains it.
    Unbanned {
        email: String,
        id: String,
    },
    /// The plan bans this user and it is banned now, but for less than 50 years: someone
    /// else's ban, not a decommission.
    ShortBan {
        email: String,
        id: String,
        until: OffsetDateTime,
    },
    EmailChanged {
        id: String,
        old_email: String,
        new_email: String,
    },
    /// The roster now has a row naming a user the plan bans, with a value that is not a
    /// valid email (so outside the fingerprints). Planning would have made it a conflict
    /// and spared the user, so the ban must not go ahead on the old plan.
    RosterNamesBannedUser {
        email: String,
        given: String,
    },
}

impl Drift {
    /// The email a reader looks for (the old one for a changed email).
    pub fn email(&self) -> &str {
        match self {
            Drift::RosterAdded { email } | Drift::RosterRemoved { email } => email.as_str(),
            Drift::UserCreated { email, .. }
            | Drift::UserDeleted { email, .. }
            | Drift::Recreated { email, .. }
            | Drift::Banned { email, .. }
            | Drift::Unbanned { email, .. }
            | Drift::ShortBan { email, .. }
            | Drift::RosterNamesBannedUser { email, .. } => email,
            Drift::EmailChanged { old_email, .. } => old_email,
        }
    }

    fn sort_key(&self) -> (bool, &str, &str) {
        let id = match self {
            Drift::RosterAdded { .. }
            | Drift::RosterRemoved { .. }
            | Drift::RosterNamesBannedUser { .. } => "",
            Drift::UserCreated { id, .. }
            | Drift::UserDeleted { id, .. }
            | Drift::Banned { id, .. }
            | Drift::Unbanned { id, .. }
            | Drift::ShortBan { id, .. }
            | Drift::EmailChanged { id, .. } => id,
            Drift::Recreated { old_id, .. } => old_id,
        };
        let is_user = !matches!(
            self,
            Drift::RosterAdded { .. }
                | Drift::RosterRemoved { .. }
                | Drift::RosterNamesBannedUser { .. }
        );
        (is_user, self.email(), id)
    }
}

impl fmt::Display for Drift {
    /// The contract's wording; emails and ids are sanitised for the terminal.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Drift::RosterAdded { email } => {
                write!(
                    f,
                    "roster: +{} added since the plan",
                    sanitize(email.as_str())
                )
            }
            Drift::RosterRemoved { email } => {
                write!(
                    f,
                    "roster: -{} removed since the plan",
                    sanitize(email.as_str())
                )
            }
            Drift::UserCreated { email, id, banned } => write!(
                f,
                "{}: user {} created since the plan{}",
                sanitize(email),
                sanitize(&short_id(id)),
                if *banned { " (banned)" } else { "" }
            ),
            Drift::UserDeleted { email, id } => write!(
                f,
                "{}: user {} deleted since the plan",
                sanitize(email),
                sanitize(&short_id(id))
            ),
            Drift::Recreated {
                email,
                old_id,
                new_id,
            } => write!(
                f,
                "{}: user {} deleted and re-created as {}",
                sanitize(email),
                sanitize(&short_id(old_id)),
                sanitize(&short_id(new_id))
            ),
            Drift::Banned { email, .. } => {
                write!(f, "{}: active at plan time, now banned", sanitize(email))
            }
            Drift::Unbanned { email, .. } => {
                write!(f, "{}: banned at plan time, now active", sanitize(email))
            }
            Drift::ShortBan { email, until, .. } => write!(
                f,
                "{}: banned, but not by a decommission (banned until {})",
                sanitize(email),
                format_time(*until)
            ),
            Drift::EmailChanged {
                id,
                old_email,
                new_email,
            } => write!(
                f,
                "{}: user {} now has the email {}",
                sanitize(old_email),
                sanitize(&short_id(id)),
                sanitize(new_email)
            ),
            Drift::RosterNamesBannedUser { email, given } => write!(
                f,
                "roster: a row `{}` naming {}, whom the plan bans, appeared since the plan",
                sanitize(given),
                sanitize(email)
            ),
        }
    }
}

/// The outcome of comparing a plan with the fresh state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DriftReport {
    /// Every difference no planned change explains, roster first, then by email and id.
    /// Non-empty means: refuse, change nothing.
    pub drift: Vec<Drift>,
    /// Planned changes whose effect is already in place (in plan order).
    pub already_applied: Vec<Change>,
    /// Planned changes still to make (in plan order).
    pub pending: Vec<Change>,
}

impl DriftReport {
    pub fn has_drift(&self) -> bool {
        !self.drift.is_empty()
    }
}

/// Compare `plan.observed` with the fresh state, normalised exactly as `plan` did.
///
/// A planned change is already applied when: create — an active user with that email
/// exists; ban — that user id is banned at least 50 years out; restore — that user id is
/// active. The differences those effects explain are not drift; every other difference
/// in what the fingerprints cover (roster emails; each user's id, email and banned state)
/// is, one `Drift` per difference.
pub fn check(
    plan: &Plan,
    fresh_roster: &[RosterEntry],
    fresh_users: &[AuthUser],
    now: OffsetDateTime,
) -> DriftReport {
    let fresh = observe(fresh_roster, fresh_users, now);
    let mut drift = roster_drift(&plan.observed.roster, &fresh.roster);
    drift.extend(invalid_rows_naming_bans(plan, fresh_roster));

    // The raw users behind planned bans and restores: only they need more than `observed`
    // (how long a ban runs).
    let targeted: HashSet<&str> = plan
        .changes
        .iter()
        .filter_map(|c| c.user_id.as_deref())
        .collect();
    let targets: HashMap<&str, &AuthUser> = fresh_users
        .iter()
        .filter(|u| !u.is_ignored() && targeted.contains(u.id.as_str()))
        .map(|u| (u.id.as_str(), u))
        .collect();
    let planned_bans: HashSet<&str> = ids_of(plan, ActionKind::Ban);
    let planned_restores: HashSet<&str> = ids_of(plan, ActionKind::Restore);
    let planned_creates: HashSet<&str> = plan
        .changes
        .iter()
        .filter(|c| c.action == ActionKind::Create)
        .map(|c| c.email.as_str())
        .collect();

    // Walk both user lists in (email, id) order; most entries are equal and cost one
    // comparison. What differs is collected and explained below.
    let mut gone: Vec<&ObservedUser> = Vec::new();
    let mut new: Vec<&ObservedUser> = Vec::new();
    let state_change = |before: &ObservedUser, after: &ObservedUser, drift: &mut Vec<Drift>| {
        match (before.banned, after.banned) {
            (false, true) if planned_bans.contains(after.id.as_str()) => {
                match targets.get(after.id.as_str()) {
                    Some(user) if user.is_long_banned(now) => {}
                    Some(user) => drift.push(Drift::ShortBan {
                        email: after.email.clone(),
                        id: after.id.clone(),
                        until: user.banned_until.unwrap_or(now),
                    }),
                    // Not listed with an email: cannot happen for an observed user.
                    None => drift.push(Drift::Banned {
                        email: after.email.clone(),
                        id: after.id.clone(),
                    }),
                }
            }
            (false, true) => drift.push(Drift::Banned {
                email: after.email.clone(),
                id: after.id.clone(),
            }),
            (true, false) if planned_restores.contains(after.id.as_str()) => {}
            (true, false) => drift.push(Drift::Unbanned {
                email: after.email.clone(),
                id: after.id.clone(),
            }),
            _ => {}
        }
    };
    let (mut b, mut a) = (
        plan.observed.users.iter().peekable(),
        fresh.users.iter().peekable(),
    );
    loop {
        match (b.peek().copied(), a.peek().copied()) {
            (Some(before), Some(after)) => {
                match (before.email.as_str(), before.id.as_str())
                    .cmp(&(after.email.as_str(), after.id.as_str()))
                {
                    std::cmp::Ordering::Equal => {
                        state_change(before, after, &mut drift);
                        b.next();
                        a.next();
                    }
                    std::cmp::Ordering::Less => {
                        gone.push(before);
                        b.next();
                    }
                    std::cmp::Ordering::Greater => {
                        new.push(after);
                        a.next();
                    }
                }
            }
            (Some(before), None) => {
                gone.push(before);
                b.next();
            }
            (None, Some(after)) => {
                new.push(after);
                a.next();
            }
            (None, None) => break,
        }
    }

    // The same id under another email: an email change (and maybe a state change too).
    let new_by_id: HashMap<&str, &ObservedUser> = new.iter().map(|u| (u.id.as_str(), *u)).collect();
    let mut moved: HashSet<&str> = HashSet::new();
    for before in &gone {
        if let Some(after) = new_by_id.get(before.id.as_str()) {
            moved.insert(before.id.as_str());
            drift.push(Drift::EmailChanged {
                id: before.id.clone(),
                old_email: before.email.clone(),
                new_email: after.email.clone(),
            });
            state_change(before, after, &mut drift);
        }
    }
    gone.retain(|u| !moved.contains(u.id.as_str()));
    new.retain(|u| !moved.contains(u.id.as_str()));

    // Per email: a gone id and a new id are one re-creation; a new active id for a planned
    // create is that create, already applied; the rest were deleted or created.
    let mut by_email: HashMap<&str, (Vec<&ObservedUser>, Vec<&ObservedUser>)> = HashMap::new();
    for u in &gone {
        by_email.entry(u.email.as_str()).or_default().0.push(u);
    }
    for u in &new {
        by_email.entry(u.email.as_str()).or_default().1.push(u);
    }
    for (email, (gone, mut new)) in by_email {
        if planned_creates.contains(email)
            && let Some(i) = new.iter().position(|u| !u.banned)
        {
            new.remove(i);
        }
        let mut new = new.into_iter();
        for old in gone {
            match new.next() {
                Some(fresh) => drift.push(Drift::Recreated {
                    email: email.to_string(),
                    old_id: old.id.clone(),
                    new_id: fresh.id.clone(),
                }),
                None => drift.push(Drift::UserDeleted {
                    email: email.to_string(),
                    id: old.id.clone(),
                }),
            }
        }
        for fresh in new {
            drift.push(Drift::UserCreated {
                email: email.to_string(),
                id: fresh.id.clone(),
                banned: fresh.banned,
            });
        }
    }
    drift.sort_by(|x, y| x.sort_key().cmp(&y.sort_key()));

    // Each change on its own: is its effect in place in the fresh state? (One rule for
    // that, `effect_in_place`, shared with apply's look-up and check-read.)
    let mut holders: HashMap<String, Vec<&AuthUser>> = HashMap::new();
    if !planned_creates.is_empty() {
        for u in fresh_users.iter().filter(|u| !u.is_ignored()) {
            let email = u.email.as_deref().map(normalise_email).unwrap_or_default();
            if planned_creates.contains(email.as_str()) {
                holders.entry(email).or_default().push(u);
            }
        }
    }
    let mut already_applied = Vec::new();
    let mut pending = Vec::new();
    for change in &plan.changes {
        let done = match (change.action, change.user_id.as_deref()) {
            (ActionKind::Create, _) => holders.get(change.email.as_str()).is_some_and(|users| {
                users
                    .iter()
                    .any(|u| effect_in_place(ActionKind::Create, u, now))
            }),
            (action, Some(id)) => targets
                .get(id)
                .is_some_and(|u| effect_in_place(action, u, now)),
            // A parsed plan always has ids on bans and restores.
            (_, None) => false,
        };
        if done {
            already_applied.push(change.clone());
        } else {
            pending.push(change.clone());
        }
    }

    DriftReport {
        drift,
        already_applied,
        pending,
    }
}

/// Roster rows outside the fingerprints (invalid emails) that normalise to the email of a
/// user the plan bans. At plan time such a row makes a conflict that spares the user.
fn invalid_rows_naming_bans(plan: &Plan, fresh_roster: &[RosterEntry]) -> Vec<Drift> {
    let bans: HashSet<&str> = plan
        .changes
        .iter()
        .filter(|c| c.action == ActionKind::Ban)
        .map(|c| c.email.as_str())
        .collect();
    if bans.is_empty() {
        return Vec::new();
    }
    let mut found: Vec<Drift> = fresh_roster
        .iter()
        .filter_map(|row| row.email.as_deref())
        .filter(|given| Email::parse(given).is_err())
        .filter_map(|given| {
            let normalised = normalise_email(given);
            bans.contains(normalised.as_str())
                .then(|| Drift::RosterNamesBannedUser {
                    email: normalised,
                    given: given.to_string(),
                })
        })
        .collect();
    found.dedup();
    found
}

fn ids_of(plan: &Plan, action: ActionKind) -> HashSet<&str> {
    plan.changes
        .iter()
        .filter(|c| c.action == action)
        .filter_map(|c| c.user_id.as_deref())
        .collect()
}

/// Both lists sorted and distinct: one pass.
fn roster_drift(before: &[Email], after: &[Email]) -> Vec<Drift> {
    let mut drift = Vec::new();
    let (mut b, mut a) = (before.iter().peekable(), after.iter().peekable());
    loop {
        match (b.peek().copied(), a.peek().copied()) {
            (Some(x), Some(y)) => match x.cmp(y) {
                std::cmp::Ordering::Equal => {
                    b.next();
                    a.next();
                }
                std::cmp::Ordering::Less => {
                    drift.push(Drift::RosterRemoved { email: x.clone() });
                    b.next();
                }
                std::cmp::Ordering::Greater => {
                    drift.push(Drift::RosterAdded { email: y.clone() });
                    a.next();
                }
            },
            (Some(x), None) => {
                drift.push(Drift::RosterRemoved { email: x.clone() });
                b.next();
            }
            (None, Some(y)) => {
                drift.push(Drift::RosterAdded { email: y.clone() });
                a.next();
            }
            (None, None) => break,
        }
    }
    drift
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::RosterSource;
    use crate::planfile::PlanMeta;
    use crate::reconcile::tests::{active as user, rows as roster};
    use crate::reconcile::{Policy, reconcile};
    use time::macros::datetime;

    const ANN: &str = "9f2e0000-0000-4000-8000-00000000000a";
    const BOB: &str = "9f2e0000-0000-4000-8000-00000000000b";
    const CAROL: &str = "9f2e0000-0000-4000-8000-00000000000c";
    const ERIN: &str = "9f2e0000-0000-4000-8000-00000000000e";
    const NEW: &str = "41aa0000-0000-4000-8000-000000000001";

    fn now() -> OffsetDateTime {
        datetime!(2026-11-29 07:00 UTC)
    }

    /// Apply runs a while after the plan: drift is judged at that later moment.
    fn later() -> OffsetDateTime {
        now() + time::Duration::hours(2)
    }

    fn banned_for(id: &str, email: &str, days: i64) -> AuthUser {
        AuthUser {
            banned_until: Some(now() + time::Duration::days(days)),
            ..user(id, email)
        }
    }

    /// Roster ann, bob, dana, erin; users ann (active), bob (banned), carol (leaver),
    /// erin (active). Plan: create dana, restore bob, ban carol.
    fn state() -> (Vec<RosterEntry>, Vec<AuthUser>) {
        (
            roster(&[
                "ann@example.com",
                "bob@example.com",
                "dana@example.com",
                "erin@example.com",
            ]),
            vec![
                user(ANN, "ann@example.com"),
                banned_for(BOB, "bob@example.com", 36_500),
                user(CAROL, "carol@example.com"),
                user(ERIN, "erin@example.com"),
            ],
        )
    }

    fn plan_of(roster: &[RosterEntry], users: &[AuthUser]) -> Plan {
        crate::planfile::tests::plan_for(&reconcile(roster, users, now(), &Policy::default()))
    }

    fn find<'a>(users: &'a mut [AuthUser], id: &str) -> &'a mut AuthUser {
        users.iter_mut().find(|u| u.id == id).unwrap()
    }

    fn actions(changes: &[Change]) -> Vec<ActionKind> {
        changes.iter().map(|c| c.action).collect()
    }

    fn lines(report: &DriftReport) -> Vec<String> {
        report.drift.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn an_invalid_roster_row_naming_a_planned_ban_is_drift() {
        let (mut r, mut u) = state();
        u.push(user(
            "00000000-0000-0000-0000-0000000000aa",
            "root@localhost",
        ));
        let plan = plan_of(&r, &u);
        assert!(plan.changes.iter().any(|c| c.email == "root@localhost"));
        // Had this row been there at plan time, it would have been a conflict sparing
        // the user; the old plan must not ban them now.
        r.extend(roster(&[" Root@LocalHost"]));
        let report = check(&plan, &r, &u, later());
        assert_eq!(
            lines(&report),
            vec![
                "roster: a row ` Root@LocalHost` naming root@localhost, whom the plan bans, appeared since the plan"
            ]
        );
        let replanned = reconcile(&r, &u, now(), &Policy::default());
        assert!(
            replanned
                .changes
                .iter()
                .all(|c| c.email != "root@localhost")
        );
    }

    #[test]
    fn nothing_changed_means_no_drift_and_everything_pending() {
        let (r, u) = state();
        let plan = plan_of(&r, &u);
        assert_eq!(plan.changes.len(), 3);
        let report = check(&plan, &r, &u, later());
        assert_eq!(report.drift, vec![]);
        assert!(!report.has_drift());
        assert_eq!(report.pending, plan.changes);
        assert!(report.already_applied.is_empty());
    }

    #[test]
    fn everything_applied_means_no_drift_and_nothing_pending() {
        let (r, mut u) = state();
        let plan = plan_of(&r, &u);
        u.push(user(NEW, "dana@example.com"));
        find(&mut u, BOB).banned_until = None;
        find(&mut u, CAROL).banned_until = Some(later() + time::Duration::hours(876_000));
        let report = check(&plan, &r, &u, later());
        assert_eq!(report.drift, vec![]);
        assert!(report.pending.is_empty());
        assert_eq!(report.already_applied, plan.changes);
    }

    #[test]
    fn a_half_applied_plan_resumes() {
        let (r, mut u) = state();
        let plan = plan_of(&r, &u);
        // The create went through; the restore and the ban did not.
        u.push(user(NEW, "Dana@Example.com"));
        let report = check(&plan, &r, &u, later());
        assert_eq!(report.drift, vec![]);
        assert_eq!(actions(&report.already_applied), vec![ActionKind::Create]);
        assert_eq!(
            actions(&report.pending),
            vec![ActionKind::Restore, ActionKind::Ban]
        );
    }

    #[test]
    fn roster_emails_added_or_removed_are_drift_but_a_repeated_row_is_not() {
        let (mut r, u) = state();
        let plan = plan_of(&r, &u);
        r.retain(|row| row.email.as_deref() != Some("ann@example.com"));
        r.extend(roster(&[
            " EVE@example.com",
            "erin@example.com",
            "not-an-email",
        ]));
        let report = check(&plan, &r, &u, later());
        assert_eq!(
            lines(&report),
            vec![
                "roster: -ann@example.com removed since the plan",
                "roster: +eve@example.com added since the plan",
            ]
        );
    }

    #[test]
    fn a_user_banned_since_the_plan_is_drift() {
        let (r, mut u) = state();
        let plan = plan_of(&r, &u);
        find(&mut u, ERIN).banned_until = Some(now() + time::Duration::days(1));
        let report = check(&plan, &r, &u, later());
        assert_eq!(
            report.drift,
            vec![Drift::Banned {
                email: "erin@example.com".into(),
                id: ERIN.into()
            }]
        );
        assert_eq!(
            lines(&report),
            vec!["erin@example.com: active at plan time, now banned"]
        );
    }

    #[test]
    fn a_ban_that_expired_since_the_plan_is_drift() {
        let (r, mut u) = state();
        const ZED: &str = "9f2e0000-0000-4000-8000-0000000000ff";
        u.push(banned_for(ZED, "zed@example.com", 0));
        // Banned one hour past `now`: banned at plan time, expired by `later()`.
        find(&mut u, ZED).banned_until = Some(now() + time::Duration::hours(1));
        let plan = plan_of(&r, &u);
        let report = check(&plan, &r, &u, later());
        assert_eq!(
            lines(&report),
            vec!["zed@example.com: banned at plan time, now active"]
        );
    }

    #[test]
    fn a_ban_that_ended_a_few_hundred_milliseconds_before_the_read_is_drift() {
        let (r, mut u) = state();
        const ZED: &str = "9f2e0000-0000-4000-8000-0000000000ff";
        // The read happens at 07:00:00.700; the ban ended at 07:00:00.400.
        let read_at = now() + time::Duration::milliseconds(700);
        u.push(AuthUser {
            banned_until: Some(now() + time::Duration::milliseconds(400)),
            ..user(ZED, "zed@example.com")
        });
        let plan = plan_of(&r, &u);
        assert!(plan.observed.users.iter().any(|x| x.id == ZED && x.banned));
        let report = check(&plan, &r, &u, read_at);
        assert_eq!(
            lines(&report),
            vec!["zed@example.com: banned at plan time, now active"]
        );
    }

    #[test]
    fn a_short_ban_on_a_user_the_plan_bans_is_drift_not_applied() {
        let (r, mut u) = state();
        let plan = plan_of(&r, &u);
        find(&mut u, CAROL).banned_until = Some(datetime!(2027-01-01 00:00 UTC));
        let report = check(&plan, &r, &u, later());
        assert_eq!(
            lines(&report),
            vec![
                "carol@example.com: banned, but not by a decommission (banned until 2027-01-01T00:00:00Z)"
            ]
        );
        assert!(report.already_applied.is_empty());
        assert!(report.pending.iter().any(|c| c.action == ActionKind::Ban));
    }

    #[test]
    fn a_restore_someone_else_made_counts_as_applied() {
        let (r, mut u) = state();
        let plan = plan_of(&r, &u);
        find(&mut u, BOB).banned_until = Some(now() - time::Duration::days(1));
        let report = check(&plan, &r, &u, later());
        assert_eq!(report.drift, vec![]);
        assert_eq!(actions(&report.already_applied), vec![ActionKind::Restore]);
    }

    #[test]
    fn deleted_and_soft_deleted_users_are_drift() {
        let (r, mut u) = state();
        let plan = plan_of(&r, &u);
        u.retain(|x| x.id != ANN);
        find(&mut u, ERIN).deleted_at = Some(now());
        let report = check(&plan, &r, &u, later());
        assert_eq!(
            lines(&report),
            vec![
                "ann@example.com: user 9f2e0000… deleted since the plan",
                "erin@example.com: user 9f2e0000… deleted since the plan",
            ]
        );
    }

    #[test]
    fn a_re_created_user_is_one_difference() {
        let (r, mut u) = state();
        let plan = plan_of(&r, &u);
        u.retain(|x| x.id != CAROL);
        u.push(user(NEW, "carol@example.com"));
        let report = check(&plan, &r, &u, later());
        assert_eq!(
            report.drift,
            vec![Drift::Recreated {
                email: "carol@example.com".into(),
                old_id: CAROL.into(),
                new_id: NEW.into(),
            }]
        );
        assert_eq!(
            lines(&report),
            vec!["carol@example.com: user 9f2e0000… deleted and re-created as 41aa0000…"]
        );
        // The ban targets the old id, which is gone: it is not applied.
        assert!(report.pending.iter().any(|c| c.action == ActionKind::Ban));
    }

    #[test]
    fn a_user_created_since_the_plan_is_drift_unless_a_create_explains_it() {
        let (r, mut u) = state();
        let plan = plan_of(&r, &u);
        u.push(user(NEW, "fay@example.com"));
        let report = check(&plan, &r, &u, later());
        assert_eq!(
            lines(&report),
            vec!["fay@example.com: user 41aa0000… created since the plan"]
        );
        // A banned user under a planned create's email is not that create.
        let (r, mut u) = state();
        u.push(banned_for(NEW, "dana@example.com", 1));
        let report = check(&plan, &r, &u, later());
        assert_eq!(
            lines(&report),
            vec!["dana@example.com: user 41aa0000… created since the plan (banned)"]
        );
        assert_eq!(
            actions(&report.pending),
            vec![ActionKind::Create, ActionKind::Restore, ActionKind::Ban]
        );
    }

    #[test]
    fn an_email_changed_on_an_id_is_drift_but_a_case_change_is_not() {
        let (r, mut u) = state();
        let plan = plan_of(&r, &u);
        find(&mut u, ANN).email = Some("ANN@Example.com ".into());
        assert_eq!(check(&plan, &r, &u, later()).drift, vec![]);
        find(&mut u, ERIN).email = Some("erin@elsewhere.org".into());
        let report = check(&plan, &r, &u, later());
        assert_eq!(
            report.drift,
            vec![Drift::EmailChanged {
                id: ERIN.into(),
                old_email: "erin@example.com".into(),
                new_email: "erin@elsewhere.org".into(),
            }]
        );
        assert_eq!(
            lines(&report),
            vec!["erin@example.com: user 9f2e0000… now has the email erin@elsewhere.org"]
        );
    }

    #[test]
    fn users_without_email_are_not_covered() {
        let (r, mut u) = state();
        let plan = plan_of(&r, &u);
        u.push(AuthUser {
            email: None,
            ..user("phone", "")
        });
        assert_eq!(check(&plan, &r, &u, later()).drift, vec![]);
    }

    #[test]
    fn drift_is_listed_roster_first_then_by_email() {
        let (mut r, mut u) = state();
        let plan = plan_of(&r, &u);
        r.extend(roster(&["zoe@example.com"]));
        find(&mut u, ERIN).banned_until = Some(now() + time::Duration::days(1));
        u.retain(|x| x.id != ANN);
        let report = check(&plan, &r, &u, later());
        assert_eq!(
            lines(&report),
            vec![
                "roster: +zoe@example.com added since the plan",
                "ann@example.com: user 9f2e0000… deleted since the plan",
                "erin@example.com: active at plan time, now banned",
            ]
        );
    }

    #[test]
    fn display_sanitises_emails_and_ids() {
        let d = Drift::Recreated {
            email: "x\u{202e}@example.com".into(),
            old_id: "\u{1b}[31m".into(),
            new_id: "short".into(),
        };
        assert_eq!(
            d.to_string(),
            "x\\u{202e}@example.com: user \\u{1b}[31m deleted and re-created as short"
        );
    }

    proptest::proptest! {
        /// Resume: whatever part of a plan was applied, the rest is pending, the applied
        /// part is reported as such, and none of it is drift.
        #[test]
        fn any_applied_subset_is_resumable_without_drift(
            roster in crate::reconcile::tests::roster_strategy(),
            users in crate::reconcile::tests::users_strategy(),
            policy in crate::reconcile::tests::policy_strategy(),
            mask in proptest::collection::vec(proptest::bool::ANY, 24),
        ) {
            let rec = reconcile(&roster, &users, now(), &policy);
            let plan = Plan::new(&rec, PlanMeta {
                created_at: now(),
                expires_at: now(),
                target: "https://abcd.supabase.co".into(),
                roster_source: RosterSource::default_table(),
                generator_version: "0.1.0".into(),
            });
            let done: Vec<Change> = plan
                .changes
                .iter()
                .zip(mask.iter().chain(std::iter::repeat(&true)))
                .filter(|(_, applied)| **applied)
                .map(|(c, _)| c.clone())
                .collect();
            let after = crate::reconcile::tests::apply_effects(&users, &done);
            let report = check(&plan, &roster, &after, later());
            proptest::prop_assert_eq!(report.drift, vec![]);
            proptest::prop_assert_eq!(&report.already_applied, &done);
            proptest::prop_assert_eq!(
                report.pending.len() + report.already_applied.len(),
                plan.changes.len()
            );
        }
    }
}
