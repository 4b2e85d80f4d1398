//! The pure drift check: a verified plan against freshly read roster rows and auth users.
//! Sorts each planned change into already applied or pending, and names every other
//! difference as drift. No I/O, no clock (takes `now`), no wording beyond `Display`.

use std::collections::{HashMap, HashSet};
use std::fmt;

use time::OffsetDateTime;

use crate::model::{ActionKind, AuthUser, Change, Email, ObservedUser, RosterEntry};
use crate::planfile::{Plan, format_time};
use crate::reconcile::observe;
use crate::render::sanitize;

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
            | Drift::ShortBan { email, .. } => email,
            Drift::EmailChanged { old_email, .. } => old_email,
        }
    }

    fn sort_key(&self) -> (bool, &str, &str) {
        let id = match self {
            Drift::RosterAdded { .. } | Drift::RosterRemoved { .. } => "",
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
            Drift::RosterAdded { .. } | Drift::RosterRemoved { .. }
        );
        (is_user, self.email(), id)
    }
}

/// The first 8 characters of an id and `…`: enough to tell users apart on a terminal.
fn short(id: &str) -> String {
    let mut chars = id.chars();
    let head: String = chars.by_ref().take(8).collect();
    let head = sanitize(&head);
    if chars.next().is_some() {
        format!("{head}…")
    } else {
        head
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
                short(id),
                if *banned { " (banned)" } else { "" }
            ),
            Drift::UserDeleted { email, id } => write!(
                f,
                "{}: user {} deleted since the plan",
                sanitize(email),
                short(id)
            ),
            Drift::Recreated {
                email,
                old_id,
                new_id,
            } => write!(
                f,
                "{}: user {} deleted and re-created as {}",
                sanitize(email),
                short(old_id),
                short(new_id)
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
                short(id),
                sanitize(new_email)
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

    // Each change on its own: is its effect in place in the fresh state?
    let mut already_applied = Vec::new();
    let mut pending = Vec::new();
    for change in &plan.changes {
        let done = match (change.action, change.user_id.as_deref()) {
            (ActionKind::Create, _) => has_active_user(&fresh.users, &change.email),
            (ActionKind::Ban, Some(id)) => targets.get(id).is_some_and(|u| u.is_long_banned(now)),
            (ActionKind::Restore, Some(id)) => targets.get(id).is_some_and(|u| !u.is_banned(now)),
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

fn ids_of(plan: &Plan, action: ActionKind) -> HashSet<&str> {
    plan.changes
        .iter()
        .filter(|c| c.action == action)
        .filter_map(|c| c.user_id.as_deref())
        .collect()
}

/// `users` is sorted by email: binary search for the run with this email.
fn has_active_user(users: &[ObservedUser], email: &str) -> bool {
    let start = users.partition_point(|u| u.email.as_str() < email);
    users[start..]
        .iter()
        .take_while(|u| u.email == email)
        .any(|u| !u.banned)
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
