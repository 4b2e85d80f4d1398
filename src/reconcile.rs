//! The pure planner: roster rows + auth users + `now` + policy -> the changes, conflicts
//! and counts of a plan, and the one projection (`observe`) that both planning and the
//! drift check use. No I/O, no clock, no terminal; nothing here knows the plan's JSON.

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};

use time::OffsetDateTime;

use crate::lookalike::{self, LookAlike};
use crate::model::{
    ActionKind, AuthUser, Change, Conflict, Email, Observed, ObservedUser, Protection, RosterEntry,
    Summary, is_uuid_shaped, normalise_email,
};
use crate::sanitize::sanitize;

/// What the operator asked for beyond the roster itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    /// Accounts never banned (`--protect`).
    pub protection: Protection,
}

/// Something the operator should hear about on stderr; none of these stop the plan.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Warning {
    /// Several roster rows normalise to one email: they are one person.
    MergedRosterRows { email: Email, rows: usize },
    /// A conflict, as also listed in the plan.
    Conflict(Conflict),
    /// A planned create looks like a planned ban: probably one person and a typo.
    LookAlike(LookAlike),
}

impl fmt::Display for Warning {
    /// Sanitised: roster values and server emails may hold control or bidi characters.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Warning::MergedRosterRows { email, rows } => write!(
                f,
                "roster: `{}` appears in {rows} rows (after trimming and lower-casing); they are merged into one",
                sanitize(email.as_str())
            ),
            Warning::Conflict(c) => {
                write!(
                    f,
                    "conflict: `{}`: {}",
                    sanitize(&c.email),
                    sanitize(&c.reason)
                )?;
                if !c.user_ids.is_empty() {
                    let ids: Vec<String> = c.user_ids.iter().map(|id| sanitize(id)).collect();
                    write!(f, " (users {})", ids.join(", "))?;
                }
                f.write_str("; left alone")
            }
            Warning::LookAlike(pair) => write!(
                f,
                "create {} while banning {}: a typo in the roster?",
                sanitize(&pair.create),
                sanitize(&pair.ban)
            ),
        }
    }
}

/// Everything `plan` decides, before it is written down as a plan file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reconciliation {
    /// Sorted by action (create, restore, ban), then email, then user id.
    pub changes: Vec<Change>,
    /// Sorted (email, then reason, then ids).
    pub conflicts: Vec<Conflict>,
    pub summary: Summary,
    /// What the fingerprints cover; drift compares fresh state with it.
    pub observed: Observed,
    /// Each planned create that looks like a planned ban, with that ban; sorted.
    pub look_alikes: Vec<LookAlike>,
    /// Merged roster rows (by email), then one per conflict (in conflict order), then
    /// one per look-alike pair.
    pub warnings: Vec<Warning>,
    /// Active (not banned) users with an email, not ignored, conflicting ones included:
    /// the base of the default `--max-bans`.
    pub active_with_email: usize,
}

/// What the rules look at for one normalised email.
#[derive(Debug, Clone, Copy)]
pub struct EmailState<'a> {
    /// A valid roster row normalises to this email.
    pub on_roster: bool,
    /// The observed users (with an email, not soft-deleted) that have it, sorted by id.
    pub users: &'a [ObservedUser],
    /// A roster row with an invalid email normalises to it (that row names the person).
    pub held_by_invalid_row: bool,
}

/// What happens to one email, and which rule says so. `reconcile` applies it to every
/// email; `explain` to one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// On the roster, no auth user has it.
    Create,
    /// On the roster, its one user is banned.
    Restore,
    /// Not on the roster, its one user is active.
    Ban,
    /// On the roster, its one user is active.
    Unchanged,
    /// Not on the roster, its one user is banned already.
    AlreadyBanned,
    /// Would be banned, but `--protect` covers it.
    Protected,
    /// Not on the roster as a valid email, but an invalid roster row names it: a conflict.
    HeldByInvalidRow,
    /// Two or more users have it: a conflict, never guessed at.
    SharedEmail,
    /// A user with it has an id that is not a UUID: a conflict, never used in a request.
    BadUserId,
    /// Neither on the roster nor held by any user.
    NotFound,
}

/// The rules of the contract's table, for one email (normalised).
pub fn decide(email: &str, state: &EmailState<'_>, policy: &Policy) -> Decision {
    // An id that is not a UUID never goes into a request path: whoever holds this email
    // is left alone and listed, whatever the rest of the plan says.
    if state.users.iter().any(|u| !is_uuid_shaped(&u.id)) {
        return Decision::BadUserId;
    }
    match state.users {
        [] if state.on_roster => Decision::Create,
        [] => Decision::NotFound,
        [user] if state.on_roster => {
            if user.banned {
                Decision::Restore
            } else {
                Decision::Unchanged
            }
        }
        [user] if user.banned => Decision::AlreadyBanned,
        [_] if state.held_by_invalid_row => Decision::HeldByInvalidRow,
        [_] if policy.protection.covers(email) => Decision::Protected,
        [_] => Decision::Ban,
        _ => Decision::SharedEmail,
    }
}

/// The conflict reason of an email whose user has an id that is not a UUID.
pub const BAD_USER_ID_REASON: &str =
    "the server lists a user id that is not a UUID for this email; it is never used in a request";

/// The conflict reason of an email two or more users share.
pub fn shared_email_reason(users: usize, on_roster: bool) -> String {
    format!(
        "{users} auth users have this email (after trimming and lower-casing){}",
        if on_roster {
            ", and it is on the roster"
        } else {
            ""
        }
    )
}

/// Below this many rows + users, threads cost more than they save.
const PARALLEL_THRESHOLD: usize = 50_000;

/// A roster row that fails the contract's "Valid email" rules.
#[derive(Debug, Clone)]
struct InvalidRow {
    /// The value as given (empty when the row has no email at all).
    given: String,
    /// Trimmed and lower-cased: an auth user holding exactly this is left alone.
    normalised: String,
    reason: String,
}

/// Both sides after normalisation: what `reconcile` decides from and `drift` compares.
struct Projection {
    observed: Observed,
    /// Valid emails given by more than one roster row, with their row counts, sorted.
    merged: Vec<(Email, usize)>,
    invalid: Vec<InvalidRow>,
    /// Auth users without an email, or soft-deleted.
    ignored: usize,
    /// Two observed users may share an id (their id hashes collide).
    ids_may_repeat: bool,
}

/// The state as the plan's `observed` member and its fingerprints see it: distinct valid
/// normalised roster emails, and every auth user that has an email and is not
/// soft-deleted (`banned` as of `now`). The one projection `reconcile` and `drift` share.
pub fn observe(roster: &[RosterEntry], users: &[AuthUser], now: OffsetDateTime) -> Observed {
    project(roster, users, now).observed
}

fn project(roster: &[RosterEntry], users: &[AuthUser], now: OffsetDateTime) -> Projection {
    // The two sides are independent until the join; on big inputs each gets a core.
    let ((emails, merged, invalid), (observed_users, ignored, ids_may_repeat)) =
        if roster.len() + users.len() >= PARALLEL_THRESHOLD {
            std::thread::scope(|s| {
                let roster_side = s.spawn(|| project_roster(roster));
                let users_side = project_users(users, now);
                let roster_side = match roster_side.join() {
                    Ok(r) => r,
                    // A panic in the roster thread is a bug; surface it as one.
                    Err(panic) => std::panic::resume_unwind(panic),
                };
                (roster_side, users_side)
            })
        } else {
            (project_roster(roster), project_users(users, now))
        };
    Projection {
        observed: Observed {
            roster: emails,
            users: observed_users,
        },
        merged,
        invalid,
        ignored,
        ids_may_repeat,
    }
}

type RosterSide = (Vec<Email>, Vec<(Email, usize)>, Vec<InvalidRow>);

fn project_roster(roster: &[RosterEntry]) -> RosterSide {
    let mut valid: Vec<Email> = Vec::with_capacity(roster.len());
    let mut invalid = Vec::new();
    for row in roster {
        match row.email.as_deref() {
            Some(given) => match Email::parse(given) {
                Ok(email) => valid.push(email),
                Err(why) => invalid.push(InvalidRow {
                    given: given.to_string(),
                    normalised: normalise_email(given),
                    reason: format!("invalid email in roster ({}): {why}", row.origin),
                }),
            },
            None => invalid.push(InvalidRow {
                given: String::new(),
                normalised: String::new(),
                reason: format!("roster row without an email ({})", row.origin),
            }),
        }
    }
    let valid = sort_by_email(valid, Email::as_str);
    // Keep one of each run of equal emails, remembering the runs longer than one.
    let mut merged = Vec::new();
    let mut distinct: Vec<Email> = Vec::with_capacity(valid.len());
    let mut run = 0usize;
    for email in valid {
        if distinct.last() == Some(&email) {
            run += 1;
            continue;
        }
        if run > 1
            && let Some(last) = distinct.last()
        {
            merged.push((last.clone(), run));
        }
        distinct.push(email);
        run = 1;
    }
    if run > 1
        && let Some(last) = distinct.last()
    {
        merged.push((last.clone(), run));
    }
    (distinct, merged, invalid)
}

/// The users side: observed users sorted, the ignored count, and whether any id may
/// appear twice (a listing that changed while it was read).
fn project_users(users: &[AuthUser], now: OffsetDateTime) -> (Vec<ObservedUser>, usize, bool) {
    let mut observed = Vec::with_capacity(users.len());
    // Ids hashed while their bytes are in cache: sorting a million u64 is cheap, and equal
    // hashes are the only way two ids can be equal.
    let mut id_hashes = Vec::with_capacity(users.len());
    let mut ignored = 0;
    for user in users {
        match user.email.as_deref() {
            Some(email) if !user.is_ignored() => {
                let mut h = IdHasher::default();
                h.write(user.id.as_bytes());
                id_hashes.push(h.finish());
                observed.push(ObservedUser {
                    email: normalise_email(email),
                    id: user.id.clone(),
                    banned: user.is_banned(now),
                });
            }
            _ => ignored += 1,
        }
    }
    id_hashes.sort_unstable();
    let ids_may_repeat = id_hashes.windows(2).any(|w| w[0] == w[1]);
    // Derived order is (email, id, banned): by email then id, as the plan lists them.
    let observed = sort_by_email(observed, |u| &u.email);
    (observed, ignored, ids_may_repeat)
}

/// Sort into `T`'s own order, whose first key must be `email`. Each item carries the first
/// 16 bytes of its email inline (big-endian, zero-padded: ordered like the bytes), so most
/// comparisons never follow a pointer; a third faster on a million users.
fn sort_by_email<T: Ord>(items: Vec<T>, email: impl Fn(&T) -> &str) -> Vec<T> {
    let mut keyed: Vec<(u128, T)> = items
        .into_iter()
        .map(|t| {
            let bytes = email(&t).as_bytes();
            let mut prefix = [0u8; 16];
            let n = bytes.len().min(16);
            prefix[..n].copy_from_slice(&bytes[..n]);
            (u128::from_be_bytes(prefix), t)
        })
        .collect();
    keyed.sort_unstable_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
    keyed.into_iter().map(|(_, t)| t).collect()
}

/// Decide the plan. Pure and order-independent: the same rows and users in any order give
/// the same result.
///
/// What counts where (every observed user lands in at most one counter):
/// - `unchanged`: roster emails paired with exactly one active auth user;
/// - `restore` / `ban` / `create`: the changes themselves;
/// - `protected`: active users off the roster that `--protect` keeps from a ban;
/// - `ignored`: users without an email, or soft-deleted (not in `observed`);
/// - in no counter: banned users off the roster (already where a ban would put them) and
///   users caught in a conflict (except a user id the listing holds under two emails,
///   which may also count as `unchanged` or `protected` under its other email).
pub fn reconcile(
    roster: &[RosterEntry],
    users: &[AuthUser],
    now: OffsetDateTime,
    policy: &Policy,
) -> Reconciliation {
    let Projection {
        observed,
        merged,
        invalid,
        ignored,
        ids_may_repeat,
    } = project(roster, users, now);

    // Invalid roster values, by normalised form: an auth user that holds one is the person
    // that row meant, so it is neither banned nor guessed at (its id joins the conflict).
    let mut invalid_by_value: Vec<(&str, usize)> = invalid
        .iter()
        .enumerate()
        .filter(|(_, row)| !row.normalised.is_empty())
        .map(|(i, row)| (row.normalised.as_str(), i))
        .collect();
    invalid_by_value.sort_unstable();
    let mut invalid_iter = invalid_by_value.iter().peekable();
    let mut invalid_user_ids: Vec<Vec<String>> = vec![Vec::new(); invalid.len()];

    let mut creates = Vec::new();
    let mut restores = Vec::new();
    let mut bans = Vec::new();
    let mut conflicts = Vec::new();
    let mut summary = Summary {
        ignored,
        ..Summary::default()
    };
    let active_with_email = observed.users.iter().filter(|u| !u.banned).count();

    // Merge-join of two lists sorted by email: roster emails and groups of users.
    let mut roster_iter = observed.roster.iter().peekable();
    let mut rest = observed.users.as_slice();
    while !rest.is_empty() {
        let email = rest[0].email.as_str();
        let len = rest.iter().take_while(|u| u.email == email).count();
        let (group, tail) = rest.split_at(len);
        rest = tail;

        // Roster emails before this group have no auth user at all (`decide`: create).
        while let Some(r) = roster_iter.next_if(|r| r.as_str() < email) {
            creates.push(create(r));
        }
        let on_roster = roster_iter.next_if(|r| r.as_str() == email).is_some();

        // The invalid values are sorted too: walk them along.
        while invalid_iter.next_if(|(value, _)| *value < email).is_some() {}
        let mut held_by_invalid_row = false;
        while let Some((_, i)) = invalid_iter.next_if(|(value, _)| *value == email) {
            held_by_invalid_row = true;
            invalid_user_ids[*i].extend(group.iter().map(|u| u.id.clone()));
        }

        let state = EmailState {
            on_roster,
            users: group,
            held_by_invalid_row,
        };
        match (decide(email, &state, policy), group) {
            (Decision::Restore, [user]) => restores.push(change(ActionKind::Restore, user)),
            (Decision::Ban, [user]) => bans.push(change(ActionKind::Ban, user)),
            (Decision::Unchanged, _) => summary.unchanged += 1,
            (Decision::Protected, _) => summary.protected += 1,
            (Decision::BadUserId, _) => conflicts.push(Conflict {
                email: email.to_string(),
                reason: BAD_USER_ID_REASON.into(),
                user_ids: group.iter().map(|u| u.id.clone()).collect(),
            }),
            (Decision::SharedEmail, _) => conflicts.push(Conflict {
                email: email.to_string(),
                reason: shared_email_reason(group.len(), on_roster),
                user_ids: group.iter().map(|u| u.id.clone()).collect(),
            }),
            // Already banned, held by an invalid row (its conflict names the user), or
            // nothing to do.
            _ => {}
        }
    }
    creates.extend(roster_iter.map(create));

    // A listing that names one user id under two emails is not one we can act on for
    // that user: a ban under one email could hit a person on the roster under the other.
    // The client should never hand us such a listing; if it does, the id is a conflict.
    let repeated = if ids_may_repeat {
        repeated_ids(&observed.users, restores.iter().chain(&bans))
    } else {
        Vec::new()
    };
    for (id, emails) in repeated {
        restores.retain(|c| c.user_id.as_deref() != Some(id.as_str()));
        bans.retain(|c| c.user_id.as_deref() != Some(id.as_str()));
        conflicts.push(Conflict {
            email: emails[0].clone(),
            reason: format!(
                "the listing holds this user id {} times, under {}",
                emails.len(),
                emails.join(", ")
            ),
            user_ids: vec![id],
        });
    }

    for (row, mut user_ids) in invalid.into_iter().zip(invalid_user_ids) {
        user_ids.sort_unstable();
        conflicts.push(Conflict {
            email: row.given,
            reason: row.reason,
            user_ids,
        });
    }
    conflicts.sort_unstable();

    summary.create = creates.len();
    summary.restore = restores.len();
    summary.ban = bans.len();
    summary.conflicts = conflicts.len();

    // Each list was produced in (email, id) order, so the concatenation is already sorted
    // by action, then email.
    let mut changes = creates;
    changes.append(&mut restores);
    changes.append(&mut bans);

    // Only creates against bans: a look-alike warns, it changes no decision.
    let look_alikes = lookalike::pairs(&changes);
    let warnings = merged
        .into_iter()
        .map(|(email, rows)| Warning::MergedRosterRows { email, rows })
        .chain(conflicts.iter().cloned().map(Warning::Conflict))
        .chain(look_alikes.iter().cloned().map(Warning::LookAlike))
        .collect();

    Reconciliation {
        changes,
        conflicts,
        summary,
        observed,
        look_alikes,
        warnings,
        active_with_email,
    }
}

/// Ids of `changes` that appear more than once in `users`, with their emails (sorted).
/// Only run when `project_users` saw colliding id hashes: it touches every user's id.
fn repeated_ids<'a>(
    users: &[ObservedUser],
    changes: impl Iterator<Item = &'a Change>,
) -> Vec<(String, Vec<String>)> {
    let mut seen: HashMap<&str, Vec<&str>, BuildHasherDefault<IdHasher>> = changes
        .filter_map(|c| c.user_id.as_deref())
        .map(|id| (id, Vec::new()))
        .collect();
    if seen.is_empty() {
        return Vec::new();
    }
    for u in users {
        if let Some(emails) = seen.get_mut(u.id.as_str()) {
            emails.push(&u.email);
        }
    }
    let mut repeated: Vec<(String, Vec<String>)> = seen
        .into_iter()
        .filter(|(_, emails)| emails.len() > 1)
        .map(|(id, emails)| {
            (
                id.to_string(),
                emails.into_iter().map(String::from).collect(),
            )
        })
        .collect();
    repeated.sort_unstable();
    repeated
}

/// A fast, non-cryptographic hasher (the multiply-rotate of rustc's FxHash) for user ids:
/// the repeated-id check must cost next to nothing on a million users. Collisions only
/// trigger the exact check; they never decide anything.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x517c_c1b7_2722_0a95;
        let mut chunks = bytes.chunks_exact(8);
        for chunk in chunks.by_ref() {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(word)).wrapping_mul(K);
        }
        for &b in chunks.remainder() {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(K);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

fn create(email: &Email) -> Change {
    Change {
        action: ActionKind::Create,
        email: email.as_str().to_string(),
        user_id: None,
    }
}

fn change(action: ActionKind, user: &ObservedUser) -> Change {
    Change {
        action,
        email: user.email.clone(),
        user_id: Some(user.id.clone()),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;
    use time::macros::datetime;

    pub(crate) fn now() -> OffsetDateTime {
        datetime!(2026-11-29 07:00 UTC)
    }

    pub(crate) fn rows(emails: &[&str]) -> Vec<RosterEntry> {
        emails
            .iter()
            .enumerate()
            .map(|(i, e)| RosterEntry {
                email: Some(e.to_string()),
                origin: format!("row {}", i + 2),
            })
            .collect()
    }

    /// A short test id as a UUID-shaped one (ids that are not UUIDs are conflicts):
    /// its bytes in hex, left-aligned and zero-padded, so the order of ids is kept.
    pub(crate) fn uid(id: &str) -> String {
        if is_uuid_shaped(id) {
            return id.to_string();
        }
        if id.len() <= 6 {
            let hex: String = id.bytes().map(|b| format!("{b:02x}")).collect();
            return format!("00000000-0000-4000-8000-{hex:0<12}");
        }
        // Longer ids: an FNV-1a hash of 48 bits (unique enough, order not kept).
        let h = id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        format!("00000000-0000-4000-9000-{:012x}", h & 0xffff_ffff_ffff)
    }

    pub(crate) fn active(id: &str, email: &str) -> AuthUser {
        AuthUser {
            id: uid(id),
            email: Some(email.into()),
            banned_until: None,
            deleted_at: None,
            is_anonymous: false,
            last_sign_in_at: None,
        }
    }

    fn banned(id: &str, email: &str) -> AuthUser {
        AuthUser {
            banned_until: Some(now() + time::Duration::days(365 * 100)),
            ..active(id, email)
        }
    }

    fn plan(roster: &[RosterEntry], users: &[AuthUser]) -> Reconciliation {
        reconcile(roster, users, now(), &Policy::default())
    }

    fn change(action: ActionKind, email: &str, id: Option<&str>) -> Change {
        Change {
            action,
            email: email.into(),
            user_id: id.map(uid),
        }
    }

    #[test]
    fn seed_scenario_matches_the_contract() {
        // 22 paired people, 4 newcomers; one paired person listed twice with other capitals
        // and spaces: 27 rows, 26 distinct emails.
        let mut emails: Vec<String> = (0..22).map(|i| format!("p{i:02}@example.com")).collect();
        emails.extend((0..4).map(|i| format!("new{i}@example.com")));
        emails.push("  P07@Example.COM ".into());
        let roster = rows(&emails.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(roster.len(), 27);
        // 22 paired users, 1 leaver, 1 phone-only user.
        let mut users: Vec<AuthUser> = (0..22)
            .map(|i| active(&format!("id-{i:02}"), &format!("p{i:02}@example.com")))
            .collect();
        users.push(active("id-leaver", "leaver@example.com"));
        users.push(AuthUser {
            email: None,
            ..active("id-phone", "")
        });

        let rec = plan(&roster, &users);

        assert_eq!(
            rec.summary,
            Summary {
                create: 4,
                restore: 0,
                ban: 1,
                unchanged: 22,
                protected: 0,
                ignored: 1,
                conflicts: 0,
            }
        );
        assert_eq!(rec.observed.roster.len(), 26);
        assert_eq!(rec.observed.users.len(), 23);
        assert_eq!(
            rec.changes.last(),
            Some(&change(
                ActionKind::Ban,
                "leaver@example.com",
                Some("id-leaver")
            ))
        );
        assert_eq!(
            rec.warnings,
            vec![Warning::MergedRosterRows {
                email: Email::parse("p07@example.com").unwrap(),
                rows: 2
            }]
        );
        assert_eq!(rec.active_with_email, 23);
    }

    #[test]
    fn emails_match_after_trimming_and_lower_casing_on_both_sides() {
        let rec = plan(
            &rows(&[" Dana@Example.com\t"]),
            &[active("1", "DANA@example.COM ")],
        );
        assert!(rec.changes.is_empty());
        assert_eq!(rec.summary.unchanged, 1);
        assert_eq!(rec.observed.users[0].email, "dana@example.com");
    }

    #[test]
    fn roster_email_without_user_is_created() {
        let rec = plan(&rows(&["dana@example.com"]), &[]);
        assert_eq!(
            rec.changes,
            vec![change(ActionKind::Create, "dana@example.com", None)]
        );
        assert_eq!(rec.summary.create, 1);
    }

    #[test]
    fn banned_roster_user_is_restored_and_active_one_unchanged() {
        let rec = plan(
            &rows(&["bob@example.com", "ann@example.com"]),
            &[
                banned("b", "bob@example.com"),
                active("a", "ann@example.com"),
            ],
        );
        assert_eq!(
            rec.changes,
            vec![change(ActionKind::Restore, "bob@example.com", Some("b"))]
        );
        assert_eq!(rec.summary.restore, 1);
        assert_eq!(rec.summary.unchanged, 1);
    }

    #[test]
    fn active_user_off_the_roster_is_banned_and_banned_one_left_alone() {
        let rec = plan(
            &rows(&["ann@example.com"]),
            &[
                active("a", "ann@example.com"),
                active("c", "carol@example.com"),
                banned("z", "zed@example.com"),
            ],
        );
        assert_eq!(
            rec.changes,
            vec![change(ActionKind::Ban, "carol@example.com", Some("c"))]
        );
        // The banned leaver lands in no counter.
        assert_eq!(
            rec.summary,
            Summary {
                ban: 1,
                unchanged: 1,
                ..Summary::default()
            }
        );
        assert_eq!(rec.active_with_email, 2);
    }

    #[test]
    fn expired_ban_counts_as_active() {
        let expired = AuthUser {
            banned_until: Some(now() - time::Duration::days(1)),
            ..active("e", "erin@example.com")
        };
        let on_roster = plan(&rows(&["erin@example.com"]), std::slice::from_ref(&expired));
        assert!(on_roster.changes.is_empty());
        assert_eq!(on_roster.summary.unchanged, 1);
        let off_roster = plan(&[], &[expired]);
        assert_eq!(
            off_roster.changes,
            vec![change(ActionKind::Ban, "erin@example.com", Some("e"))]
        );
    }

    #[test]
    fn protected_accounts_are_counted_not_banned() {
        let mut policy = Policy::default();
        policy.protection.add("@Ops.example.com");
        policy.protection.add("Root@Example.com");
        let rec = reconcile(
            &[],
            &[
                active("1", "root@example.com"),
                active("2", "x@ops.example.com"),
                banned("3", "y@ops.example.com"),
                active("4", "x@eu.ops.example.com"),
            ],
            now(),
            &policy,
        );
        assert_eq!(
            rec.changes,
            vec![change(ActionKind::Ban, "x@eu.ops.example.com", Some("4"))]
        );
        // Only active users that would have been banned count as protected.
        assert_eq!(rec.summary.protected, 2);
    }

    #[test]
    fn users_without_email_or_soft_deleted_are_ignored_and_unobserved() {
        let users = vec![
            AuthUser {
                email: None,
                ..active("phone", "")
            },
            active("blank", "   "),
            AuthUser {
                email: None,
                is_anonymous: true,
                last_sign_in_at: None,
                ..active("anon", "")
            },
            AuthUser {
                deleted_at: Some(now()),
                ..active("deleted", "gone@example.com")
            },
        ];
        let rec = plan(&rows(&["gone@example.com"]), &users);
        assert_eq!(rec.summary.ignored, 4);
        assert!(rec.observed.users.is_empty());
        // Soft-deleted users never pair: the roster email is simply missing.
        assert_eq!(
            rec.changes,
            vec![change(ActionKind::Create, "gone@example.com", None)]
        );
        assert_eq!(rec.active_with_email, 0);
    }

    #[test]
    fn invalid_roster_rows_are_conflicts_with_the_value_as_given() {
        let mut roster = rows(&["nobody", "ann@example.com", "a@localhost "]);
        roster.push(RosterEntry {
            email: None,
            origin: "row 9".into(),
        });
        let rec = plan(&roster, &[active("a", "ann@example.com")]);
        assert!(rec.changes.is_empty());
        assert_eq!(
            rec.conflicts,
            vec![
                Conflict {
                    email: String::new(),
                    reason: "roster row without an email (row 9)".into(),
                    user_ids: vec![],
                },
                Conflict {
                    email: "a@localhost ".into(),
                    reason: "invalid email in roster (row 4): email domain has no dot".into(),
                    user_ids: vec![],
                },
                Conflict {
                    email: "nobody".into(),
                    reason:
                        "invalid email in roster (row 2): email must have exactly one `@` (has 0)"
                            .into(),
                    user_ids: vec![],
                },
            ]
        );
        assert_eq!(rec.summary.conflicts, 3);
        assert_eq!(rec.observed.roster.len(), 1);
        assert_eq!(rec.warnings.len(), 3);
    }

    #[test]
    fn user_holding_an_invalid_roster_value_is_not_banned() {
        // The row means this person; we refuse to guess, but never ban them for it.
        let rec = plan(
            &rows(&["Admin@LocalHost"]),
            &[
                active("x", "admin@localhost"),
                active("y", "other@example.com"),
            ],
        );
        assert_eq!(
            rec.changes,
            vec![change(ActionKind::Ban, "other@example.com", Some("y"))]
        );
        assert_eq!(rec.conflicts.len(), 1);
        assert_eq!(rec.conflicts[0].email, "Admin@LocalHost");
        assert_eq!(rec.conflicts[0].user_ids, vec![uid("x")]);
    }

    #[test]
    fn users_sharing_an_email_are_one_conflict_and_nothing_touches_them() {
        let users = vec![
            active("b2", "Bob@example.com"),
            banned("b1", "bob@example.com "),
            active("c2", "carol@example.com"),
            active("c1", "CAROL@example.com"),
        ];
        // bob is on the roster: no restore, no create. carol is not: no ban.
        let rec = plan(&rows(&["bob@example.com"]), &users);
        assert!(rec.changes.is_empty());
        assert_eq!(rec.conflicts.len(), 2);
        assert_eq!(rec.conflicts[0].email, "bob@example.com");
        assert_eq!(rec.conflicts[0].user_ids, vec![uid("b1"), uid("b2")]);
        assert_eq!(rec.conflicts[1].email, "carol@example.com");
        assert_eq!(rec.conflicts[1].user_ids, vec![uid("c1"), uid("c2")]);
        // Counted in no other counter.
        assert_eq!(
            rec.summary,
            Summary {
                conflicts: 2,
                ..Summary::default()
            }
        );
        // Still observed (they are fingerprinted), and counted as active for --max-bans.
        assert_eq!(rec.observed.users.len(), 4);
        assert_eq!(rec.active_with_email, 3);
        assert!(matches!(&rec.warnings[0], Warning::Conflict(c) if c.email == "bob@example.com"));
    }

    #[test]
    fn a_user_whose_id_is_not_a_uuid_is_a_conflict_never_touched() {
        // An id of `.\t.` would send a ban to `PUT /auth/v1/admin/`.
        let odd = |id: &str, email: &str| AuthUser {
            id: id.into(),
            ..active("z", email)
        };
        let rec = plan(
            &rows(&["bob@example.com", "dana@example.com"]),
            &[
                odd(".\t.", "carol@example.com"),
                AuthUser {
                    banned_until: Some(now() + time::Duration::days(365 * 100)),
                    ..odd("7", "bob@example.com")
                },
                odd("", "dana@example.com"),
            ],
        );
        // No ban for carol, no restore for bob, and no second dana.
        assert!(rec.changes.is_empty(), "{:?}", rec.changes);
        let listed: Vec<(&str, &[String])> = rec
            .conflicts
            .iter()
            .map(|c| (c.email.as_str(), c.user_ids.as_slice()))
            .collect();
        assert_eq!(
            listed,
            vec![
                ("bob@example.com", &["7".to_string()][..]),
                ("carol@example.com", &[".\t.".to_string()][..]),
                ("dana@example.com", &[String::new()][..]),
            ]
        );
        assert!(rec.conflicts[0].reason.contains("not a UUID"));
        assert_eq!(rec.summary.conflicts, 3);
    }

    #[test]
    fn a_user_id_listed_under_two_emails_is_a_conflict_not_a_change() {
        // A listing that changed while it was read: the same id under an old and a new
        // email. Banning it for the old email would lock out a person on the roster.
        let rec = plan(
            &rows(&["new@example.com", "bob@example.com"]),
            &[
                active("x", "old@example.com"),
                active("x", "new@example.com"),
                banned("b", "bob@example.com"),
            ],
        );
        assert_eq!(
            rec.changes,
            vec![change(ActionKind::Restore, "bob@example.com", Some("b"))]
        );
        assert_eq!(
            rec.conflicts,
            vec![Conflict {
                email: "new@example.com".into(),
                reason:
                    "the listing holds this user id 2 times, under new@example.com, old@example.com"
                        .into(),
                user_ids: vec![uid("x")],
            }]
        );
        assert_eq!(rec.summary.ban, 0);
        assert_eq!(rec.summary.conflicts, 1);
    }

    #[test]
    fn the_repeated_id_check_runs_only_on_suspicion() {
        // Random-looking ids, as the server's v4 UUIDs are.
        let id = |i: u64| {
            let h = i.wrapping_mul(0x9e37_79b9_7f4a_7c15);
            format!(
                "{:08x}-{:04x}-4000-8000-{:012x}",
                h >> 32,
                (h >> 16) & 0xffff,
                h & 0xffff_ffff_ffff
            )
        };
        let distinct: Vec<AuthUser> = (0..1000)
            .map(|i| active(&id(i), &format!("u{i}@example.com")))
            .collect();
        assert!(!project_users(&distinct, now()).2);
        let mut repeated = distinct.clone();
        repeated.push(active(&id(7), "other@example.com"));
        assert!(project_users(&repeated, now()).2);
    }

    #[test]
    fn changes_are_sorted_by_action_then_email() {
        let rec = plan(
            &rows(&[
                "zoe@example.com",
                "amy@example.com",
                "bob@example.com",
                "yan@example.com",
            ]),
            &[
                banned("y", "yan@example.com"),
                banned("b", "bob@example.com"),
                active("q", "quinn@example.com"),
                active("c", "carl@example.com"),
            ],
        );
        let got: Vec<(ActionKind, &str)> = rec
            .changes
            .iter()
            .map(|c| (c.action, c.email.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                (ActionKind::Create, "amy@example.com"),
                (ActionKind::Create, "zoe@example.com"),
                (ActionKind::Restore, "bob@example.com"),
                (ActionKind::Restore, "yan@example.com"),
                (ActionKind::Ban, "carl@example.com"),
                (ActionKind::Ban, "quinn@example.com"),
            ]
        );
    }

    #[test]
    fn observed_holds_normalised_sorted_state() {
        let rec = plan(
            &rows(&["B@example.com", "a@example.com", "b@example.com"]),
            &[
                banned("2", "C@example.com"),
                active("1", "c@example.com"),
                active("0", "a@example.com"),
            ],
        );
        let roster: Vec<&str> = rec.observed.roster.iter().map(Email::as_str).collect();
        assert_eq!(roster, vec!["a@example.com", "b@example.com"]);
        let users: Vec<(&str, &str, bool)> = rec
            .observed
            .users
            .iter()
            .map(|u| (u.email.as_str(), u.id.as_str(), u.banned))
            .collect();
        assert_eq!(
            users,
            vec![
                ("a@example.com", uid("0").as_str(), false),
                ("c@example.com", uid("1").as_str(), false),
                ("c@example.com", uid("2").as_str(), true),
            ]
        );
    }

    #[test]
    fn warnings_are_sanitised_for_the_terminal() {
        let w = Warning::Conflict(Conflict {
            email: "evil\u{202e}moc.elpmaxe@x".into(),
            reason: "r\n".into(),
            user_ids: vec!["1".into()],
        });
        assert_eq!(
            w.to_string(),
            "conflict: `evil\\u{202e}moc.elpmaxe@x`: r\\u{a} (users 1); left alone"
        );
    }

    #[test]
    fn big_inputs_take_the_parallel_path_with_the_same_rules() {
        let n = PARALLEL_THRESHOLD;
        let emails: Vec<String> = (0..n).map(|i| format!("u{i}@example.com")).collect();
        let roster = rows(
            &emails[..n - 10]
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
        );
        let users: Vec<AuthUser> = emails[5..]
            .iter()
            .enumerate()
            .map(|(i, e)| active(&format!("id{i}"), e))
            .collect();
        let rec = plan(&roster, &users);
        assert_eq!(rec.summary.create, 5);
        assert_eq!(rec.summary.ban, 10);
        assert_eq!(rec.summary.unchanged, n - 15);
    }

    // ---- properties ----

    /// A small alphabet so that collisions (merges, duplicates, pairings) are common.
    fn raw_email() -> impl Strategy<Value = String> {
        (0..5usize, 0..2usize, any::<bool>(), any::<bool>(), 0..12u8).prop_map(
            |(local, domain, upper, pad, invalid)| {
                let local = ["ann", "bob", "cy", "dee", "eve"][local];
                let domain = ["example.com", "ops.example.com"][domain];
                let mut e = match invalid {
                    0 => local.to_string(),
                    1 => format!("{local}@localhost"),
                    _ => format!("{local}@{domain}"),
                };
                if upper {
                    e = e.to_uppercase();
                }
                if pad {
                    e = format!(" {e}\t");
                }
                e
            },
        )
    }

    pub(crate) fn roster_strategy() -> impl Strategy<Value = Vec<RosterEntry>> {
        prop::collection::vec(prop::option::weighted(0.95, raw_email()), 0..12).prop_map(|emails| {
            emails
                .into_iter()
                .enumerate()
                .map(|(i, email)| RosterEntry {
                    email,
                    origin: format!("row {i}"),
                })
                .collect()
        })
    }

    pub(crate) fn users_strategy() -> impl Strategy<Value = Vec<AuthUser>> {
        prop::collection::vec(
            (
                prop::option::weighted(0.9, raw_email()),
                0..4u8,
                prop::bool::weighted(0.1),
            ),
            0..12,
        )
        .prop_map(|users| {
            users
                .into_iter()
                .enumerate()
                .map(|(i, (email, ban, deleted))| AuthUser {
                    id: uid(&format!("id{i:02}")),
                    email,
                    banned_until: match ban {
                        0 => Some(now() - time::Duration::days(3)),
                        1 => Some(now() + time::Duration::days(3)),
                        2 => Some(now() + time::Duration::days(365 * 100)),
                        _ => None,
                    },
                    deleted_at: deleted.then(now),
                    is_anonymous: false,
                    last_sign_in_at: None,
                })
                .collect()
        })
    }

    pub(crate) fn policy_strategy() -> impl Strategy<Value = Policy> {
        (any::<bool>(), any::<bool>()).prop_map(|(domain, one)| {
            let mut policy = Policy::default();
            if domain {
                policy.protection.add("@ops.example.com");
            }
            if one {
                policy.protection.add("Eve@Example.com");
            }
            policy
        })
    }

    /// What `apply` would leave behind: create -> new active user, restore -> unban,
    /// ban -> banned for 100 years.
    pub(crate) fn apply_effects(users: &[AuthUser], changes: &[Change]) -> Vec<AuthUser> {
        let mut users = users.to_vec();
        for (i, c) in changes.iter().enumerate() {
            match c.action {
                ActionKind::Create => users.push(active(&format!("new{i}"), &c.email)),
                ActionKind::Restore | ActionKind::Ban => {
                    let id = c.user_id.as_deref().unwrap();
                    let user = users.iter_mut().find(|u| u.id == id).unwrap();
                    user.banned_until = match c.action {
                        ActionKind::Restore => None,
                        _ => Some(now() + time::Duration::days(365 * 100)),
                    };
                }
            }
        }
        users
    }

    proptest! {
        #[test]
        fn applying_the_plan_leaves_nothing_to_do(
            roster in roster_strategy(), users in users_strategy(), policy in policy_strategy()
        ) {
            let first = reconcile(&roster, &users, now(), &policy);
            let after = apply_effects(&users, &first.changes);
            let second = reconcile(&roster, &after, now(), &policy);
            prop_assert!(second.changes.is_empty(), "{:?}", second.changes);
            prop_assert_eq!(second.conflicts.len(), first.conflicts.len());
        }

        #[test]
        fn no_roster_email_and_no_protected_account_is_ever_banned(
            roster in roster_strategy(), users in users_strategy(), policy in policy_strategy()
        ) {
            let rec = reconcile(&roster, &users, now(), &policy);
            let on_roster: Vec<String> = roster
                .iter()
                .filter_map(|r| r.email.as_deref().map(normalise_email))
                .collect();
            for c in rec.changes.iter().filter(|c| c.action == ActionKind::Ban) {
                prop_assert!(!on_roster.contains(&c.email), "banned roster email {}", c.email);
                prop_assert!(!policy.protection.covers(&c.email), "banned protected {}", c.email);
            }
        }

        #[test]
        fn no_change_touches_a_conflict(
            roster in roster_strategy(), users in users_strategy(), policy in policy_strategy()
        ) {
            let rec = reconcile(&roster, &users, now(), &policy);
            for c in &rec.changes {
                for conflict in &rec.conflicts {
                    prop_assert_ne!(&c.email, &conflict.email);
                    if let Some(id) = &c.user_id {
                        prop_assert!(!conflict.user_ids.contains(id));
                    }
                }
            }
            prop_assert_eq!(rec.summary.conflicts, rec.conflicts.len());
        }

        #[test]
        fn sort_by_email_is_the_plain_sort(
            users in prop::collection::vec(
                ("[a\u{0}é@.]{0,20}", "[a-c]{0,3}", any::<bool>()),
                0..40,
            )
        ) {
            let users: Vec<ObservedUser> = users
                .into_iter()
                .map(|(email, id, banned)| ObservedUser { email, id, banned })
                .collect();
            let mut plain = users.clone();
            plain.sort_unstable();
            prop_assert_eq!(sort_by_email(users, |u| &u.email), plain);
        }

        #[test]
        fn result_does_not_depend_on_input_order(
            (roster, shuffled_roster) in roster_strategy()
                .prop_flat_map(|r| (Just(r.clone()), Just(r).prop_shuffle())),
            (users, shuffled_users) in users_strategy()
                .prop_flat_map(|u| (Just(u.clone()), Just(u).prop_shuffle())),
            policy in policy_strategy(),
        ) {
            let a = reconcile(&roster, &users, now(), &policy);
            let b = reconcile(&shuffled_roster, &shuffled_users, now(), &policy);
            prop_assert_eq!(a, b);
        }
    }
}
