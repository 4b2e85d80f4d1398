//! The GoTrue admin API (`/auth/v1/admin/users`): the verified-complete listing of every
//! auth user, the look-up by email, and the two writes (create; set `ban_duration`).
//! Parses the User JSON into `AuthUser`, strictly where reconciliation depends on it.

use std::collections::HashSet;
use std::sync::atomic::Ordering;

use futures::{StreamExt, TryStreamExt};
use reqwest::Method;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::failure::{Reading, classify};
use super::skim::{self, UserFields};
use super::{Client, RequestSpec, Retries};
use crate::error::{ApiFailure, Error};
use crate::model::{AuthUser, is_uuid_shaped, normalise_email};

/// Users per page. GoTrue has no maximum in offset mode; 1000 keeps each `COUNT` +
/// `OFFSET` query well inside the server's 10 s request deadline.
const PER_PAGE: u64 = 1000;

/// Scans of all users before a listing that does not add up is given up on.
const MAX_SCANS: usize = 3;

/// The most users (or roster rows) a listing may count: a larger total is absurd for
/// an engineering roster and is refused rather than paged through.
pub(crate) const MAX_TOTAL: u64 = 10_000_000;

const WHAT: &str = "auth users";

/// One page of `GET /admin/users`.
struct UsersPage {
    users: Vec<AuthUser>,
    /// `X-Total-Count`, when present and a number.
    total: Option<u64>,
}

/// How one full scan went.
enum Scan {
    Complete(Vec<AuthUser>),
    /// The pages did not add up (users created or deleted while scanning).
    Inconsistent(String),
}

impl Client {
    /// Every auth user, verified complete: the distinct ids across all pages must number
    /// exactly `X-Total-Count`, which must not move during the scan. Scans again when it
    /// does not add up (up to 3 scans), then fails with `Error::IncompleteRead`.
    pub async fn list_users(&self) -> Result<Vec<AuthUser>, Error> {
        let mut problems = Vec::new();
        for _ in 0..MAX_SCANS {
            match self.scan_users().await? {
                Scan::Complete(users) => return Ok(users),
                Scan::Inconsistent(why) => problems.push(why),
            }
        }
        Err(Error::IncompleteRead {
            what: WHAT,
            detail: format!(
                "{MAX_SCANS} scans in a row did not add up (users are being created or deleted while listing?); the last: {}",
                problems.last().map(String::as_str).unwrap_or("unknown")
            ),
        })
    }

    async fn scan_users(&self) -> Result<Scan, Error> {
        let first = self
            .users_page(1, None)
            .await
            .map_err(|f| classify(f, Reading::AuthUsers))?;
        let Some(total) = first.total else {
            return Err(Error::IncompleteRead {
                what: WHAT,
                detail: "the server sent no usable `X-Total-Count` header, so the listing cannot be checked for completeness".into(),
            });
        };
        if total > MAX_TOTAL {
            return Err(Error::IncompleteRead {
                what: WHAT,
                detail: format!(
                    "the server counts {total} users, more than the {MAX_TOTAL} provision reads; a total like that is not believed"
                ),
            });
        }
        // A first page shorter than the total says it should be: the total is wrong, or
        // users went away meanwhile. Either way the other pages cannot add up; scan again
        // rather than ask for every page a lying total names.
        let first_expected = total.min(PER_PAGE);
        if (first.users.len() as u64) < first_expected {
            return Ok(Scan::Inconsistent(format!(
                "page 1 held {} users where {first_expected} were expected",
                first.users.len()
            )));
        }
        // Pages the total allows: no more are ever asked for.
        let pages = total.div_ceil(PER_PAGE).max(1);
        // Later pages concurrently; the limiter bounds what is really in flight, and
        // `buffered` keeps the number of pending futures (and pages in memory) bounded.
        let rest: Vec<(u64, UsersPage)> = futures::stream::iter(2..=pages)
            .map(|page| async move { self.users_page(page, None).await.map(|p| (page, p)) })
            .buffered(self.inner.concurrency)
            .try_collect()
            .await
            .map_err(|f| classify(f, Reading::AuthUsers))?;

        let mut problems = Vec::new();
        let mut seen = HashSet::new();
        let mut users = Vec::new();
        for (page, got) in std::iter::once((1, first)).chain(rest) {
            if got.total != Some(total) {
                problems.push(format!(
                    "the total moved from {total} to {} during the scan",
                    got.total.map_or("(none)".into(), |t| t.to_string())
                ));
            }
            let expected = total.saturating_sub((page - 1) * PER_PAGE).min(PER_PAGE);
            if (got.users.len() as u64) < expected {
                problems.push(format!(
                    "page {page} held {} users where {expected} were expected",
                    got.users.len()
                ));
            }
            for user in got.users {
                if seen.insert(user.id.clone()) {
                    users.push(user);
                }
            }
        }
        if users.len() as u64 != total {
            problems.push(format!(
                "{} distinct users were listed but the server counts {total}",
                users.len()
            ));
        }
        if problems.is_empty() {
            self.inner.listed_total.store(total, Ordering::Relaxed);
            Ok(Scan::Complete(users))
        } else {
            Ok(Scan::Inconsistent(problems.join("; ")))
        }
    }

    /// `GET /auth/v1/admin/users?page=P&per_page=1000&sort=created_at asc[&filter=F]`.
    /// Always sends `page` and `per_page` (to stay in offset mode, which counts) and an
    /// ascending sort (so users created meanwhile land at the end, not on every page).
    async fn users_page(&self, page: u64, filter: Option<&str>) -> Result<UsersPage, ApiFailure> {
        let page_s = page.to_string();
        let per_page_s = PER_PAGE.to_string();
        let mut query = vec![
            ("page", page_s.as_str()),
            ("per_page", per_page_s.as_str()),
            ("sort", "created_at asc"),
        ];
        if let Some(f) = filter {
            query.push(("filter", f));
        }
        let url = self.endpoint(&["auth", "v1", "admin", "users"], &query);
        let spec = self.spec(Method::GET, url, vec![], None);
        let answer = self.send(&spec, Retries::Policy).await?;
        let total = answer
            .headers
            .get("x-total-count")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let body: skim::UsersPage = serde_json::from_slice(&answer.body)
            .map_err(|e| self.bad_response(&spec, format!("the answer is not JSON ({e})")))?;
        let Some(items) = body.users else {
            return Err(self.bad_response(&spec, "the answer has no `users` list"));
        };
        let users = items
            .into_iter()
            .enumerate()
            .map(|(i, item)| {
                let parsed = match item {
                    skim::Item::User(fields) => user_from_fields(fields),
                    skim::Item::NotAnObject => Err("a user is not a JSON object".into()),
                };
                parsed.map_err(|why| {
                    self.bad_response(&spec, format!("user {} of the page: {why}", i + 1))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.inner.progress.users_page(users.len(), total);
        Ok(UsersPage { users, total })
    }

    /// Users whose normalised email equals `email`'s. The server's `filter` is a
    /// case-sensitive substring match (with `%`/`_` as wildcards) that also searches full
    /// names, so it only narrows the search: equality is checked here, over all pages.
    /// The filter is sent lower-cased (as GoTrue stores emails since 2021), so a legacy
    /// user whose stored email has capitals is not found this way; `list_users` sees it.
    ///
    /// Bounded: at most as many pages as a full listing would read (by the last complete
    /// listing's total, or the largest total believed when none was made), plus one; a
    /// look-up still going after that fails rather than reading on.
    pub async fn find_users_by_email(&self, email: &str) -> Result<Vec<AuthUser>, ApiFailure> {
        let wanted = normalise_email(email);
        let mut found = Vec::new();
        let mut seen = HashSet::new();
        let mut listed: u64 = 0;
        let mut page = 1;
        let known = match self.inner.listed_total.load(Ordering::Relaxed) {
            0 => MAX_TOTAL,
            n => n,
        };
        let max_pages = known.div_ceil(PER_PAGE).max(1) + 1;
        loop {
            let got = self.users_page(page, Some(&wanted)).await?;
            let n = got.users.len() as u64;
            listed += n;
            for user in got.users {
                let matches = user
                    .email
                    .as_deref()
                    .is_some_and(|e| normalise_email(e) == wanted);
                if matches && seen.insert(user.id.clone()) {
                    found.push(user);
                }
            }
            // With a count, read until it is reached (a server that pages by fewer than
            // we asked still gets read to the end); without one, a short page is the last.
            let done = match got.total {
                Some(total) => listed >= total || n == 0,
                None => n < PER_PAGE,
            };
            if done {
                return Ok(found);
            }
            if page >= max_pages {
                let url = self.endpoint(&["auth", "v1", "admin", "users"], &[]);
                let spec = self.spec(Method::GET, url, vec![], None);
                return Err(self.bad_response(
                    &spec,
                    format!(
                        "looking up an email did not end within {max_pages} pages (a full listing needs fewer); the server's paging cannot be trusted"
                    ),
                ));
            }
            page += 1;
        }
    }

    /// `POST /auth/v1/admin/users {email, email_confirm: true}`: one try, never retried
    /// (after a timeout or 5xx the user may exist; use `find_users_by_email`). `email` is
    /// sent as given (the server does not trim it): pass the normalised email.
    pub async fn create_user(&self, email: &str) -> Result<AuthUser, ApiFailure> {
        let url = self.endpoint(&["auth", "v1", "admin", "users"], &[]);
        let body = json!({ "email": email, "email_confirm": true });
        let spec = self.spec(Method::POST, url, vec![], Some(body));
        let answer = self.send(&spec, Retries::Never).await?;
        self.user_from_answer(&spec, &answer.body)
    }

    /// `PUT /auth/v1/admin/users/{id} {ban_duration}`: retried per the policy, since
    /// setting the same duration again leaves the same state.
    pub async fn set_ban_duration(
        &self,
        id: &str,
        ban_duration: &str,
    ) -> Result<AuthUser, ApiFailure> {
        let url = self.endpoint(&["auth", "v1", "admin", "users", id], &[]);
        let body = json!({ "ban_duration": ban_duration });
        let spec = self.spec(Method::PUT, url, vec![], Some(body));
        // `endpoint` percent-encodes the id as one segment, but `.` and `..` (or `%2e`)
        // would still be read as dot-segments by every URL parser on the way: only a
        // UUID-shaped id is ever sent (reconciliation makes any other a conflict).
        if !is_uuid_shaped(id) {
            return Err(self.bad_response(
                &spec,
                "refusing to send a request for a user id that is not a UUID",
            ));
        }
        let answer = self.send(&spec, Retries::Policy).await?;
        self.user_from_answer(&spec, &answer.body)
    }

    fn user_from_answer(&self, spec: &RequestSpec, body: &[u8]) -> Result<AuthUser, ApiFailure> {
        let value: Value = serde_json::from_slice(body)
            .map_err(|e| self.bad_response(spec, format!("the answer is not JSON ({e})")))?;
        parse_user(&value).map_err(|why| self.bad_response(spec, why))
    }
}

/// One User object. Unknown fields are ignored; the fields reconciliation relies on
/// must be well-formed, because guessing (an unparsable `banned_until` read as "not
/// banned") would make the plan wrong.
fn parse_user(value: &Value) -> Result<AuthUser, String> {
    let Some(obj) = value.as_object() else {
        return Err("a user is not a JSON object".into());
    };
    let field = |name: &str| obj.get(name).cloned();
    user_from_fields(UserFields {
        id: field("id"),
        email: field("email"),
        banned_until: field("banned_until"),
        deleted_at: field("deleted_at"),
        is_anonymous: field("is_anonymous"),
        last_sign_in_at: field("last_sign_in_at"),
    })
}

fn user_from_fields(f: UserFields) -> Result<AuthUser, String> {
    let id = match f.id {
        Some(Value::String(id)) if !id.is_empty() => id,
        Some(Value::String(_)) => return Err("a user has an empty `id`".into()),
        Some(_) => return Err("a user's `id` is not a string".into()),
        None => return Err("a user has no `id`".into()),
    };
    let email = match f.email {
        None | Some(Value::Null) => None,
        Some(Value::String(e)) if e.is_empty() => None,
        Some(Value::String(e)) => Some(e),
        Some(_) => return Err(format!("user {id}: `email` is not a string")),
    };
    let is_anonymous = match f.is_anonymous {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => b,
        Some(_) => return Err(format!("user {id}: `is_anonymous` is not a boolean")),
    };
    Ok(AuthUser {
        banned_until: timestamp(f.banned_until.as_ref(), "banned_until", &id)?,
        deleted_at: timestamp(f.deleted_at.as_ref(), "deleted_at", &id)?,
        // Shown by `explain` only: an unreadable value is left out rather than failing a
        // read whose decisions never depend on it.
        last_sign_in_at: timestamp(f.last_sign_in_at.as_ref(), "last_sign_in_at", &id)
            .ok()
            .flatten(),
        id,
        email,
        is_anonymous,
    })
}

fn timestamp(
    value: Option<&Value>,
    field: &str,
    id: &str,
) -> Result<Option<OffsetDateTime>, String> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => OffsetDateTime::parse(s, &Rfc3339)
            .map(Some)
            .map_err(|e| format!("user {id}: `{field}` is not an RFC 3339 time ({e})")),
        Some(_) => Err(format!("user {id}: `{field}` is not a string")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn a_full_list_item_parses() {
        let v = json!({
            "id": "9f2e0000-0000-4000-8000-000000000001",
            "aud": "authenticated",
            "role": "authenticated",
            "email": "Dana@Example.com",
            "phone": "",
            "app_metadata": {"provider": "email"},
            "user_metadata": {},
            "identities": null,
            "created_at": "2026-01-01T00:00:00.123456Z",
            "updated_at": "2026-01-01T00:00:00.123456Z",
            "banned_until": "2126-01-01T00:00:00.123456789+00:00",
            "is_anonymous": false,
            "some_future_field": [1, 2, 3]
        });
        let u = parse_user(&v).unwrap();
        assert_eq!(u.id, "9f2e0000-0000-4000-8000-000000000001");
        assert_eq!(u.email.as_deref(), Some("Dana@Example.com"));
        assert_eq!(
            u.banned_until.unwrap().replace_nanosecond(0).unwrap(),
            datetime!(2126-01-01 00:00 UTC)
        );
        assert_eq!(u.deleted_at, None);
        assert!(!u.is_anonymous);
    }

    #[test]
    fn empty_email_is_none_and_missing_fields_default() {
        let u = parse_user(&json!({"id": "x", "email": "", "phone": "+15550100"})).unwrap();
        assert_eq!(u.email, None);
        assert_eq!(u.banned_until, None);
        assert!(!u.is_anonymous);
        let u = parse_user(&json!({
            "id": "y", "email": "gone@example.com", "is_anonymous": true,
            "deleted_at": "2026-02-03T04:05:06Z"
        }))
        .unwrap();
        assert!(u.is_anonymous);
        assert_eq!(u.deleted_at, Some(datetime!(2026-02-03 04:05:06 UTC)));
    }

    #[test]
    fn the_last_sign_in_is_read_and_an_unreadable_one_is_left_out_not_an_error() {
        let u = parse_user(&json!({"id": "x", "last_sign_in_at": "2026-11-20T09:15:30Z"}));
        assert_eq!(
            u.unwrap().last_sign_in_at,
            Some(datetime!(2026-11-20 09:15:30 UTC))
        );
        // Display-only: it never decides anything, so it never fails a read.
        for bad in [json!("yesterday"), json!(12), json!({})] {
            let u = parse_user(&json!({"id": "x", "last_sign_in_at": bad})).unwrap();
            assert_eq!(u.last_sign_in_at, None);
        }
    }

    #[test]
    fn malformed_users_are_errors_not_skipped() {
        for (v, want) in [
            (json!({"email": "a@example.com"}), "no `id`"),
            (json!({"id": 7}), "not a string"),
            (json!({"id": ""}), "empty `id`"),
            (json!({"id": "x", "email": 5}), "`email` is not a string"),
            (json!({"id": "x", "banned_until": "tomorrow"}), "RFC 3339"),
            (json!({"id": "x", "banned_until": 12}), "not a string"),
            (json!({"id": "x", "is_anonymous": "no"}), "not a boolean"),
            (json!("x"), "not a JSON object"),
        ] {
            let err = parse_user(&v).unwrap_err();
            assert!(err.contains(want), "{v}: {err}");
        }
    }
}
