//! Executes the pending changes of a reviewed plan through the `AuthAdmin` trait, and
//! checks afterwards that each took effect. Always returns a report, even a partial one.
//! Decides nothing about *what* to change: that is the plan's.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::stream::{FuturesUnordered, StreamExt};
use time::OffsetDateTime;

use crate::error::{ApiFailure, FailureKind};
use crate::model::{
    ActionKind, AuthUser, BAN_DURATION, Change, UNBAN_DURATION, effect_in_place, normalise_email,
};
pub use crate::report::{ApplyReport, ChangeResult, Counters, Outcome};
use crate::supabase::{RetryPolicy, delay_before_retry, is_retryable_status};

/// The writes `apply` needs from Supabase. The real client implements it; unit tests use
/// an in-memory fake.
pub trait AuthAdmin: Send + Sync {
    /// One try; never retried blindly (a create is not idempotent).
    fn create_user(&self, email: &str)
    -> impl Future<Output = Result<AuthUser, ApiFailure>> + Send;
    /// Idempotent; the implementation retries.
    fn set_ban_duration(
        &self,
        id: &str,
        ban_duration: &str,
    ) -> impl Future<Output = Result<AuthUser, ApiFailure>> + Send;
    /// Users whose normalised email equals `email`.
    fn find_users_by_email(
        &self,
        email: &str,
    ) -> impl Future<Output = Result<Vec<AuthUser>, ApiFailure>> + Send;
}

/// Set by the Ctrl-C handler: no new change starts once it is raised.
#[derive(Debug, Clone, Default)]
pub struct StopFlag(Arc<AtomicBool>);

impl StopFlag {
    pub fn raise(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    pub fn is_raised(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// What the executor tells the caller as it goes: the `--log` record and the progress
/// bar live behind it.
pub trait Journal {
    /// Called before `change`'s write is sent. `false` (the record could not be kept)
    /// stops the executor from starting this or any further change.
    fn started(&mut self, change: &Change) -> bool;
    /// Called as each change finishes, with what its answer said (before the
    /// check-read confirms it).
    fn finished(&mut self, result: &ChangeResult);
}

/// A journal that keeps nothing and never stops the run.
pub struct NoJournal;

impl Journal for NoJournal {
    fn started(&mut self, _: &Change) -> bool {
        true
    }

    fn finished(&mut self, _: &ChangeResult) {}
}

/// Run `pending` with at most `concurrency` changes under way, telling `journal` as each
/// starts and finishes. Stops starting new changes once `stop` is raised or the journal
/// refuses a start; those in flight finish. Returns the results and how many changes
/// were never started.
pub async fn execute<A: AuthAdmin>(
    admin: &A,
    pending: Vec<Change>,
    concurrency: usize,
    now: OffsetDateTime,
    stop: &StopFlag,
    journal: &mut impl Journal,
) -> (Vec<ChangeResult>, usize) {
    let mut queue = pending.into_iter().peekable();
    let mut running = FuturesUnordered::new();
    let mut results = Vec::new();
    let mut refused = false;
    loop {
        while running.len() < concurrency.max(1) && !stop.is_raised() && !refused {
            match queue.peek() {
                Some(change) if !journal.started(change) => refused = true,
                Some(_) => {
                    if let Some(change) = queue.next() {
                        running.push(run_one(admin, change, now));
                    }
                }
                None => break,
            }
        }
        match running.next().await {
            Some(result) => {
                journal.finished(&result);
                results.push(result);
            }
            None => break,
        }
    }
    (results, queue.count())
}

async fn run_one<A: AuthAdmin>(admin: &A, change: Change, now: OffsetDateTime) -> ChangeResult {
    match change.action {
        ActionKind::Create => create(admin, change, now).await,
        ActionKind::Ban | ActionKind::Restore => set_ban(admin, change, now).await,
    }
}

/// Tries of one create, counting the first: a create is re-sent only after a look-up
/// showed the email still has no user (the server's duplicate check makes that safe).
const CREATE_TRIES: u32 = 5;

/// Create, and never re-send blindly: when the answer is lost (timeout, network, 5xx),
/// refused for load (429) or says the email exists, look the email up to learn whether
/// the create happened; re-send only a create that did not happen and may succeed later.
async fn create<A: AuthAdmin>(admin: &A, change: Change, now: OffsetDateTime) -> ChangeResult {
    let mut attempt = 0;
    let (user_id, outcome) = loop {
        attempt += 1;
        match admin.create_user(&change.email).await {
            Ok(user) => break check_created(&change, user),
            Err(failure) if answer_may_be_lost(&failure) => {
                match resolve_create(admin, &change, &failure, now).await {
                    Resolved::Done(id, outcome) => break (id, outcome),
                    Resolved::Absent if is_transient(&failure) && attempt < CREATE_TRIES => {
                        // The client's retry rules: its backoff, or the server's
                        // `Retry-After` (capped) when it sent one.
                        let delay = delay_before_retry(
                            &RetryPolicy::default(),
                            attempt - 1,
                            failure.retry_after,
                        );
                        tokio::time::sleep(delay).await;
                    }
                    Resolved::Absent => break (None, failure_outcome(&failure)),
                }
            }
            Err(failure) => break (None, failure_outcome(&failure)),
        }
    };
    ChangeResult {
        change,
        user_id,
        outcome,
    }
}

fn check_created(change: &Change, user: AuthUser) -> (Option<String>, Outcome) {
    let email = user.email.as_deref().map(normalise_email);
    if email.as_deref() == Some(change.email.as_str()) && user.banned_until.is_none() {
        (Some(user.id), Outcome::Applied)
    } else {
        (
            Some(user.id),
            Outcome::failed(
                "unexpected_response",
                "the server's answer does not show an active user with this email",
            ),
        )
    }
}

/// Worth another try later: a lost connection, or a status the retry rules retry (the
/// client's one list: load shedding and gateway trouble).
fn is_transient(f: &ApiFailure) -> bool {
    matches!(f.kind, FailureKind::Network | FailureKind::Timeout)
        || f.status.is_some_and(is_retryable_status)
}

/// Whether a failed create may have happened anyway, or may still happen on a re-send.
fn answer_may_be_lost(f: &ApiFailure) -> bool {
    matches!(
        f.kind,
        FailureKind::Network | FailureKind::Timeout | FailureKind::BadResponse
    ) || f.status.is_some_and(|s| s >= 500 || s == 429)
        || f.code.as_deref() == Some("email_exists")
}

enum Resolved {
    /// The look-up settled it.
    Done(Option<String>, Outcome),
    /// No user holds the email: the create did not happen.
    Absent,
}

/// Look the email up after a create whose answer was lost or said `email_exists`. One
/// active user holding it: the create is in effect — `applied` when our own answer was
/// lost (the create was most likely ours), `already applied` when the server said the
/// email exists (someone else got there first, e.g. another apply of the same plan, on
/// any try), so that counters add up across concurrent applies.
async fn resolve_create<A: AuthAdmin>(
    admin: &A,
    change: &Change,
    original: &ApiFailure,
    now: OffsetDateTime,
) -> Resolved {
    let found = match admin.find_users_by_email(&change.email).await {
        Ok(users) => users,
        Err(lookup) => {
            return Resolved::Done(
                None,
                Outcome::failed(
                    &original.error_code(),
                    format!("{original}; looking the email up to check failed too: {lookup}"),
                ),
            );
        }
    };
    let live: Vec<&AuthUser> = found.iter().filter(|u| u.deleted_at.is_none()).collect();
    match live.as_slice() {
        [] => Resolved::Absent,
        [user] if effect_in_place(ActionKind::Create, user, now) => {
            let outcome = if original.code.as_deref() == Some("email_exists") {
                Outcome::AlreadyApplied
            } else {
                Outcome::Applied
            };
            Resolved::Done(Some(user.id.clone()), outcome)
        }
        [user] => Resolved::Done(
            Some(user.id.clone()),
            Outcome::failed(
                "exists_banned",
                "a user with this email exists but is banned; re-run `provision plan`",
            ),
        ),
        _ => Resolved::Done(
            None,
            Outcome::failed(
                "duplicate_email",
                format!(
                    "{} users now hold this email; re-run `provision plan`",
                    live.len()
                ),
            ),
        ),
    }
}

async fn set_ban<A: AuthAdmin>(admin: &A, change: Change, now: OffsetDateTime) -> ChangeResult {
    let Some(id) = change.user_id.clone() else {
        return ChangeResult {
            change,
            user_id: None,
            outcome: Outcome::failed("internal", "the plan has no user id for this change"),
        };
    };
    let duration = if change.action == ActionKind::Ban {
        BAN_DURATION
    } else {
        UNBAN_DURATION
    };
    let outcome = match admin.set_ban_duration(&id, duration).await {
        Ok(user) if user.id != id => Outcome::failed(
            "unexpected_response",
            "the server answered for another user id",
        ),
        Ok(user) if !effect_in_place(change.action, &user, now) => match change.action {
            ActionKind::Ban => Outcome::failed(
                "not_banned",
                "the server's answer does not show the user banned",
            ),
            _ => Outcome::failed(
                "still_banned",
                "the server's answer still shows the user banned",
            ),
        },
        Ok(_) => Outcome::Applied,
        Err(failure) => failure_outcome(&failure),
    };
    ChangeResult {
        change,
        user_id: Some(id),
        outcome,
    }
}

fn failure_outcome(f: &ApiFailure) -> Outcome {
    Outcome::Failed {
        code: f.error_code(),
        message: f.to_string(),
    }
}

/// After the writes: re-check every change that was reported done against a fresh,
/// complete listing. A write the server answered with success but did not keep fails.
pub fn verify_effects(results: &mut [ChangeResult], fresh: &[AuthUser], now: OffsetDateTime) {
    // Indexed once: looking each change up in the whole listing is quadratic, and at
    // 10k changes over 20k users that was seconds of CPU.
    let creates: HashSet<&str> = results
        .iter()
        .filter(|r| r.change.action == ActionKind::Create)
        .map(|r| r.change.email.as_str())
        .collect();
    let mut holders: HashMap<String, Vec<&AuthUser>> = HashMap::new();
    let mut by_id: HashMap<&str, &AuthUser> = HashMap::with_capacity(fresh.len());
    for u in fresh.iter().filter(|u| u.deleted_at.is_none()) {
        // The first in the listing, as a search would find it.
        by_id.entry(u.id.as_str()).or_insert(u);
        if let Some(email) = u.email.as_deref().map(normalise_email)
            && creates.contains(email.as_str())
        {
            holders.entry(email).or_default().push(u);
        }
    }
    for r in results.iter_mut() {
        if matches!(r.outcome, Outcome::Failed { .. }) {
            continue;
        }
        let action = r.change.action;
        let in_effect = match action {
            ActionKind::Create => holders
                .get(r.change.email.as_str())
                .is_some_and(|users| users.iter().any(|u| effect_in_place(action, u, now))),
            ActionKind::Ban | ActionKind::Restore => r
                .user_id
                .as_deref()
                .and_then(|id| by_id.get(id))
                .is_some_and(|u| effect_in_place(action, u, now)),
        };
        if !in_effect {
            r.outcome = Outcome::failed(
                "not_in_effect",
                "the server answered with success, but a fresh read shows the change is not in effect",
            );
        }
    }
}

impl AuthAdmin for crate::supabase::Client {
    fn create_user(
        &self,
        email: &str,
    ) -> impl Future<Output = Result<AuthUser, ApiFailure>> + Send {
        crate::supabase::Client::create_user(self, email)
    }

    fn set_ban_duration(
        &self,
        id: &str,
        ban_duration: &str,
    ) -> impl Future<Output = Result<AuthUser, ApiFailure>> + Send {
        crate::supabase::Client::set_ban_duration(self, id, ban_duration)
    }

    fn find_users_by_email(
        &self,
        email: &str,
    ) -> impl Future<Output = Result<Vec<AuthUser>, ApiFailure>> + Send {
        crate::supabase::Client::find_users_by_email(self, email)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::sync::Mutex;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-11-29 07:00 UTC);

    /// An in-memory admin API with scripted failures.
    #[derive(Default)]
    struct Fake {
        users: Mutex<Vec<AuthUser>>,
        /// email -> failure to answer a create with (after committing it when `commit`)
        create_fail: Mutex<HashMap<String, (ApiFailure, bool)>>,
        /// ids whose ban is answered but not stored
        ban_not_kept: Mutex<Vec<String>>,
        in_flight: Mutex<(usize, usize)>,
    }

    fn failure(kind: FailureKind, status: Option<u16>, code: Option<&str>) -> ApiFailure {
        ApiFailure {
            request: "test".into(),
            kind,
            status,
            code: code.map(str::to_string),
            message: "boom".into(),
            retry_after: None,
        }
    }

    impl Fake {
        fn with_user(self, id: &str, email: &str, banned: bool) -> Fake {
            self.users.lock().unwrap().push(AuthUser {
                id: id.into(),
                email: Some(email.into()),
                banned_until: banned.then_some(datetime!(2126-01-01 00:00 UTC)),
                deleted_at: None,
                is_anonymous: false,
                last_sign_in_at: None,
            });
            self
        }

        async fn enter(&self) {
            {
                let mut f = self.in_flight.lock().unwrap();
                f.0 += 1;
                f.1 = f.1.max(f.0);
            }
            tokio::task::yield_now().await;
        }

        fn leave(&self) {
            self.in_flight.lock().unwrap().0 -= 1;
        }
    }

    impl AuthAdmin for Fake {
        async fn create_user(&self, email: &str) -> Result<AuthUser, ApiFailure> {
            self.enter().await;
            let scripted = self.create_fail.lock().unwrap().remove(email);
            let user = AuthUser {
                id: format!("id-{email}"),
                email: Some(email.into()),
                banned_until: None,
                deleted_at: None,
                is_anonymous: false,
                last_sign_in_at: None,
            };
            let result = match scripted {
                Some((f, commit)) => {
                    if commit {
                        self.users.lock().unwrap().push(user);
                    }
                    Err(f)
                }
                None => {
                    self.users.lock().unwrap().push(user.clone());
                    Ok(user)
                }
            };
            self.leave();
            result
        }

        async fn set_ban_duration(&self, id: &str, d: &str) -> Result<AuthUser, ApiFailure> {
            self.enter().await;
            let keep = !self.ban_not_kept.lock().unwrap().iter().any(|x| x == id);
            let mut users = self.users.lock().unwrap();
            let result = match users.iter_mut().find(|u| u.id == id) {
                None => Err(failure(
                    FailureKind::Http,
                    Some(404),
                    Some("user_not_found"),
                )),
                Some(u) => {
                    let until = (d == BAN_DURATION).then_some(datetime!(2126-11-29 07:00 UTC));
                    let mut answer = u.clone();
                    answer.banned_until = until;
                    if keep {
                        u.banned_until = until;
                    }
                    Ok(answer)
                }
            };
            drop(users);
            self.leave();
            result
        }

        async fn find_users_by_email(&self, email: &str) -> Result<Vec<AuthUser>, ApiFailure> {
            Ok(self
                .users
                .lock()
                .unwrap()
                .iter()
                .filter(|u| u.email.as_deref() == Some(email))
                .cloned()
                .collect())
        }
    }

    fn change(action: ActionKind, email: &str, id: Option<&str>) -> Change {
        Change {
            action,
            email: email.into(),
            user_id: id.map(str::to_string),
        }
    }

    async fn run(fake: &Fake, pending: Vec<Change>) -> Vec<ChangeResult> {
        let (mut results, not_started) =
            execute(fake, pending, 4, NOW, &StopFlag::default(), &mut NoJournal).await;
        assert_eq!(not_started, 0);
        results.sort_by(|a, b| a.change.cmp(&b.change));
        results
    }

    #[tokio::test]
    async fn applies_each_kind_and_counts_it() {
        let fake = Fake::default()
            .with_user("b", "bob@example.com", true)
            .with_user("c", "carol@example.com", false);
        let results = run(
            &fake,
            vec![
                change(ActionKind::Create, "dana@example.com", None),
                change(ActionKind::Restore, "bob@example.com", Some("b")),
                change(ActionKind::Ban, "carol@example.com", Some("c")),
            ],
        )
        .await;
        assert!(
            results.iter().all(|r| r.outcome == Outcome::Applied),
            "{results:?}"
        );
        assert_eq!(results[0].user_id.as_deref(), Some("id-dana@example.com"));
        let report = ApplyReport {
            results,
            unchanged: 22,
            ..ApplyReport::default()
        };
        let c = report.counters();
        assert_eq!(
            (c.created, c.restored, c.decommissioned, c.unchanged),
            (1, 1, 1, 22)
        );
    }

    #[tokio::test]
    async fn create_answered_late_is_found_by_email_not_resent() {
        let fake = Fake::default();
        fake.create_fail.lock().unwrap().insert(
            "dana@example.com".into(),
            (failure(FailureKind::Timeout, None, None), true),
        );
        let results = run(
            &fake,
            vec![change(ActionKind::Create, "dana@example.com", None)],
        )
        .await;
        assert_eq!(results[0].outcome, Outcome::Applied);
        assert_eq!(fake.users.lock().unwrap().len(), 1, "exactly one user");
    }

    #[tokio::test]
    async fn create_that_did_not_happen_fails_with_the_server_code() {
        let fake = Fake::default();
        fake.create_fail.lock().unwrap().insert(
            "dana@example.com".into(),
            (
                failure(FailureKind::Http, Some(500), Some("unexpected_failure")),
                false,
            ),
        );
        let results = run(
            &fake,
            vec![change(ActionKind::Create, "dana@example.com", None)],
        )
        .await;
        assert_eq!(results[0].outcome.error_code(), Some("unexpected_failure"));
    }

    #[tokio::test]
    async fn create_refused_for_load_is_resent_after_a_lookup_finds_nothing() {
        let fake = Fake::default();
        fake.create_fail.lock().unwrap().insert(
            "dana@example.com".into(),
            (failure(FailureKind::Http, Some(429), None), false),
        );
        let results = run(
            &fake,
            vec![change(ActionKind::Create, "dana@example.com", None)],
        )
        .await;
        assert_eq!(results[0].outcome, Outcome::Applied);
        assert_eq!(fake.users.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn create_answered_email_exists_for_an_active_user_is_already_applied() {
        // Another apply of the same plan created dana first: this one did not.
        let fake = Fake::default();
        fake.create_fail.lock().unwrap().insert(
            "dana@example.com".into(),
            (
                failure(FailureKind::Http, Some(422), Some("email_exists")),
                true,
            ),
        );
        let results = run(
            &fake,
            vec![change(ActionKind::Create, "dana@example.com", None)],
        )
        .await;
        assert_eq!(results[0].outcome, Outcome::AlreadyApplied);
        assert_eq!(results[0].user_id.as_deref(), Some("id-dana@example.com"));
        let c = ApplyReport {
            results,
            ..ApplyReport::default()
        }
        .counters();
        assert_eq!((c.created, c.already_applied), (0, 1));
    }

    #[test]
    fn the_check_read_judges_bans_at_full_precision() {
        // Read at 07:00:00.700; bob's ban ended at 07:00:00.400: the restore took effect,
        // and a ban of erin that runs out then did not.
        let read_at = NOW + time::Duration::milliseconds(700);
        let ended = Some(NOW + time::Duration::milliseconds(400));
        let user = |id: &str, email: &str| AuthUser {
            id: id.into(),
            email: Some(email.into()),
            banned_until: ended,
            deleted_at: None,
            is_anonymous: false,
            last_sign_in_at: None,
        };
        let fresh = vec![user("b", "bob@example.com"), user("e", "erin@example.com")];
        let applied = |action, email: &str, id: &str| ChangeResult {
            change: change(action, email, Some(id)),
            user_id: Some(id.into()),
            outcome: Outcome::Applied,
        };
        let mut results = vec![
            applied(ActionKind::Restore, "bob@example.com", "b"),
            applied(ActionKind::Ban, "erin@example.com", "e"),
        ];
        verify_effects(&mut results, &fresh, read_at);
        assert_eq!(results[0].outcome, Outcome::Applied);
        assert_eq!(results[1].outcome.error_code(), Some("not_in_effect"));
    }

    #[tokio::test]
    async fn a_create_refused_for_load_waits_the_servers_retry_after_before_the_resend() {
        let fake = Fake::default();
        let refused = ApiFailure {
            retry_after: Some(std::time::Duration::from_millis(400)),
            ..failure(FailureKind::Http, Some(503), None)
        };
        fake.create_fail
            .lock()
            .unwrap()
            .insert("dana@example.com".into(), (refused, false));
        let started = std::time::Instant::now();
        let results = run(
            &fake,
            vec![change(ActionKind::Create, "dana@example.com", None)],
        )
        .await;
        assert_eq!(results[0].outcome, Outcome::Applied);
        // Our own backoff would have been 100-200 ms.
        assert!(started.elapsed() >= std::time::Duration::from_millis(400));
    }

    #[tokio::test]
    async fn validation_errors_are_not_looked_up() {
        let fake = Fake::default();
        fake.create_fail.lock().unwrap().insert(
            "dana@example.com".into(),
            (
                failure(FailureKind::Http, Some(400), Some("validation_failed")),
                true,
            ),
        );
        let results = run(
            &fake,
            vec![change(ActionKind::Create, "dana@example.com", None)],
        )
        .await;
        assert_eq!(results[0].outcome.error_code(), Some("validation_failed"));
    }

    #[tokio::test]
    async fn ban_answered_but_not_kept_fails_the_check_read() {
        let fake = Fake::default().with_user("c", "carol@example.com", false);
        fake.ban_not_kept.lock().unwrap().push("c".into());
        let mut results = run(
            &fake,
            vec![change(ActionKind::Ban, "carol@example.com", Some("c"))],
        )
        .await;
        assert_eq!(
            results[0].outcome,
            Outcome::Applied,
            "the answer looked right"
        );
        let fresh = fake.users.lock().unwrap().clone();
        verify_effects(&mut results, &fresh, NOW);
        assert_eq!(results[0].outcome.error_code(), Some("not_in_effect"));
    }

    #[test]
    fn the_check_read_judges_each_change_by_email_or_id() {
        let user = |id: &str, email: &str, banned_until: Option<OffsetDateTime>| AuthUser {
            id: id.into(),
            email: Some(email.into()),
            banned_until,
            deleted_at: None,
            is_anonymous: false,
            last_sign_in_at: None,
        };
        let long = Some(NOW + time::Duration::days(365 * 100));
        let short = Some(NOW + time::Duration::days(1));
        let fresh = vec![
            user("a", " Ann@Example.com", None),
            user("b", "bob@example.com", short),
            AuthUser {
                deleted_at: Some(NOW),
                ..user("c", "cy@example.com", None)
            },
            user("d", "dee@example.com", long),
            user("e", "eve@example.com", None),
        ];
        let applied = |action, email: &str, id: Option<&str>| ChangeResult {
            change: change(action, email, id),
            user_id: id.map(String::from),
            outcome: Outcome::Applied,
        };
        let mut results = vec![
            applied(ActionKind::Create, "ann@example.com", None),
            applied(ActionKind::Create, "bob@example.com", None),
            applied(ActionKind::Create, "cy@example.com", None),
            applied(ActionKind::Ban, "dee@example.com", Some("d")),
            applied(ActionKind::Ban, "bob@example.com", Some("b")),
            applied(ActionKind::Ban, "cy@example.com", Some("c")),
            applied(ActionKind::Restore, "eve@example.com", Some("e")),
            applied(ActionKind::Restore, "bob@example.com", Some("b")),
            applied(ActionKind::Restore, "zed@example.com", Some("z")),
        ];
        results.push(ChangeResult {
            outcome: Outcome::failed("http_500", "kept"),
            ..applied(ActionKind::Restore, "eve@example.com", Some("e"))
        });
        verify_effects(&mut results, &fresh, NOW);
        let codes: Vec<Option<&str>> = results.iter().map(|r| r.outcome.error_code()).collect();
        let gone = Some("not_in_effect");
        assert_eq!(
            codes,
            [
                None,
                gone,
                gone,
                None,
                gone,
                gone,
                None,
                gone,
                gone,
                Some("http_500")
            ]
        );
    }

    #[tokio::test]
    async fn unknown_user_fails_with_its_code() {
        let fake = Fake::default();
        let results = run(
            &fake,
            vec![change(ActionKind::Ban, "x@example.com", Some("gone"))],
        )
        .await;
        assert_eq!(results[0].outcome.error_code(), Some("user_not_found"));
    }

    #[tokio::test]
    async fn concurrency_is_bounded_and_stop_leaves_the_rest() {
        let fake = Fake::default();
        let pending: Vec<Change> = (0..20)
            .map(|i| change(ActionKind::Create, &format!("u{i}@example.com"), None))
            .collect();
        /// Raises the stop flag once five changes have finished.
        struct StopAfterFive<'a>(usize, &'a StopFlag);
        impl Journal for StopAfterFive<'_> {
            fn started(&mut self, _: &Change) -> bool {
                true
            }
            fn finished(&mut self, _: &ChangeResult) {
                self.0 += 1;
                if self.0 == 5 {
                    self.1.raise();
                }
            }
        }
        let stop = StopFlag::default();
        let (results, not_started) =
            execute(&fake, pending, 3, NOW, &stop, &mut StopAfterFive(0, &stop)).await;
        assert!(fake.in_flight.lock().unwrap().1 <= 3);
        assert!(
            results.len() >= 5 && results.len() <= 7,
            "{}",
            results.len()
        );
        assert_eq!(results.len() + not_started, 20);
    }

    #[tokio::test]
    async fn a_journal_that_cannot_record_a_start_stops_new_changes() {
        // The log fails on the fourth `started` record: three writes were sent, the
        // fourth change and the rest never start.
        struct FailsAt(usize, Vec<String>);
        impl Journal for FailsAt {
            fn started(&mut self, change: &Change) -> bool {
                if self.1.len() + 1 == self.0 {
                    return false;
                }
                self.1.push(change.email.clone());
                true
            }
            fn finished(&mut self, _: &ChangeResult) {}
        }
        let fake = Fake::default();
        let pending: Vec<Change> = (0..10)
            .map(|i| change(ActionKind::Create, &format!("u{i}@example.com"), None))
            .collect();
        let mut journal = FailsAt(4, Vec::new());
        let (results, not_started) =
            execute(&fake, pending, 2, NOW, &StopFlag::default(), &mut journal).await;
        assert_eq!(
            journal.1,
            ["u0@example.com", "u1@example.com", "u2@example.com"]
        );
        assert_eq!(results.len(), 3);
        assert_eq!(not_started, 7);
        assert_eq!(
            fake.users.lock().unwrap().len(),
            3,
            "only started changes were sent"
        );
    }
}
