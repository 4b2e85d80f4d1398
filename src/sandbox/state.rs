//! The sandbox's data: auth users (with an email index and a cached `created_at` order,
//! so 100k users seed and page quickly) and the roster table. Plain data behind the one
//! lock in `server.rs`; no HTTP and no wire formats here.

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value};
use time::OffsetDateTime;
use uuid::Uuid;

/// One auth user as GoTrue stores it (`auth.users` plus its identities).
#[derive(Debug, Clone, PartialEq)]
pub struct User {
    pub id: Uuid,
    pub aud: String,
    pub role: String,
    /// `None` is SQL NULL (phone-only and anonymous users). Stored exactly as written:
    /// the API lower-cases on write, seeded legacy users may keep capitals.
    pub email: Option<String>,
    pub phone: Option<String>,
    pub app_metadata: Map<String, Value>,
    pub user_metadata: Map<String, Value>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    pub banned_until: Option<OffsetDateTime>,
    pub deleted_at: Option<OffsetDateTime>,
    pub is_anonymous: bool,
    pub email_confirmed_at: Option<OffsetDateTime>,
    pub phone_confirmed_at: Option<OffsetDateTime>,
    pub last_sign_in_at: Option<OffsetDateTime>,
    pub identities: Vec<Identity>,
}

/// A row of `auth.identities`.
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    pub identity_id: Uuid,
    pub provider_id: String,
    pub provider: String,
    pub identity_data: Map<String, Value>,
    pub email: Option<String>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    pub last_sign_in_at: Option<OffsetDateTime>,
}

impl User {
    /// A user with GoTrue's defaults for everything not given.
    pub fn new(id: Uuid, aud: &str, now: OffsetDateTime) -> User {
        User {
            id,
            aud: aud.to_string(),
            role: "authenticated".to_string(),
            email: None,
            phone: None,
            app_metadata: Map::new(),
            user_metadata: Map::new(),
            created_at: now,
            updated_at: now,
            banned_until: None,
            deleted_at: None,
            is_anonymous: false,
            email_confirmed_at: None,
            phone_confirmed_at: None,
            last_sign_in_at: None,
            identities: Vec::new(),
        }
    }

    /// The email identity GoTrue creates with every email user.
    pub fn email_identity(&self, email: &str, now: OffsetDateTime) -> Identity {
        let mut data = Map::new();
        data.insert("email".into(), Value::String(email.to_string()));
        data.insert(
            "email_verified".into(),
            Value::Bool(self.email_confirmed_at.is_some()),
        );
        data.insert("phone_verified".into(), Value::Bool(false));
        data.insert("sub".into(), Value::String(self.id.to_string()));
        Identity {
            identity_id: derived_id(&self.id, 1),
            provider_id: self.id.to_string(),
            provider: "email".into(),
            identity_data: data,
            email: Some(email.to_string()),
            created_at: now,
            updated_at: now,
            last_sign_in_at: Some(now),
        }
    }

    /// The phone identity GoTrue creates with every phone user.
    pub fn phone_identity(&self, phone: &str, now: OffsetDateTime) -> Identity {
        let mut data = Map::new();
        data.insert("phone".into(), Value::String(phone.to_string()));
        data.insert("email_verified".into(), Value::Bool(false));
        data.insert(
            "phone_verified".into(),
            Value::Bool(self.phone_confirmed_at.is_some()),
        );
        data.insert("sub".into(), Value::String(self.id.to_string()));
        Identity {
            identity_id: derived_id(&self.id, 2),
            provider_id: self.id.to_string(),
            provider: "phone".into(),
            identity_data: data,
            email: None,
            created_at: now,
            updated_at: now,
            last_sign_in_at: Some(now),
        }
    }
}

/// One row of the roster table. `id` is the table's serial key (a unique tiebreaker for
/// `order=`; 0 means "assign the next one"); `email` may be NULL, as in a real table;
/// `extra` holds any further columns.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RosterRow {
    pub id: i64,
    pub email: Option<String>,
    pub name: Option<String>,
    pub kind: Option<String>,
    pub extra: Map<String, Value>,
}

impl RosterRow {
    /// A row with an email, a name and a kind (e.g. `engineer`).
    pub fn new(email: &str, name: &str, kind: &str) -> RosterRow {
        RosterRow {
            email: Some(email.to_string()),
            name: Some(name.to_string()),
            kind: Some(kind.to_string()),
            ..RosterRow::default()
        }
    }

    /// A row with only an email.
    pub fn email(email: &str) -> RosterRow {
        RosterRow {
            email: Some(email.to_string()),
            ..RosterRow::default()
        }
    }

    /// One column's value, borrowed (no allocation: sorting 100k rows stays cheap).
    pub fn cell(&self, column: &str) -> Cell<'_> {
        fn text(v: &Option<String>) -> Cell<'_> {
            v.as_deref().map_or(Cell::Null, Cell::Text)
        }
        match column {
            "id" => Cell::Int(self.id),
            "email" => text(&self.email),
            "name" => text(&self.name),
            "kind" => text(&self.kind),
            other => match self.extra.get(other) {
                None | Some(Value::Null) => Cell::Null,
                Some(Value::String(s)) => Cell::Text(s),
                Some(v) => Cell::Json(v),
            },
        }
    }

    /// The row as PostgREST renders it with `select=*`.
    pub fn to_json(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("id".into(), Value::from(self.id));
        let opt = |v: &Option<String>| v.clone().map_or(Value::Null, Value::String);
        m.insert("email".into(), opt(&self.email));
        m.insert("name".into(), opt(&self.name));
        m.insert("kind".into(), opt(&self.kind));
        for (k, v) in &self.extra {
            m.insert(k.clone(), v.clone());
        }
        m
    }
}

/// A column value of a roster row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cell<'a> {
    Null,
    Int(i64),
    Text(&'a str),
    Json(&'a Value),
}

impl Cell<'_> {
    pub fn to_value(self) -> Value {
        match self {
            Cell::Null => Value::Null,
            Cell::Int(i) => Value::from(i),
            Cell::Text(s) => Value::String(s.to_string()),
            Cell::Json(v) => v.clone(),
        }
    }
}

/// Everything the servers read and write.
#[derive(Debug, Default)]
pub struct State {
    users: HashMap<Uuid, User>,
    /// Lower-cased email -> ids of users holding it (GoTrue's duplicate check is
    /// case-insensitive; the unique index on update is not, see `exact_email_taken`).
    by_email: HashMap<String, HashSet<Uuid>>,
    /// Users by `(created_at in µs, id)`, ascending. Rebuilt lazily after an insert or
    /// delete; `created_at` never changes after insert.
    order: Option<Vec<(i128, Uuid)>>,
    /// Users whose `aud` is not the default, so listing can skip the per-user aud check.
    other_aud: usize,
    default_aud: String,
    /// The last default `created_at` handed out, kept strictly increasing (see `now_for_insert`).
    last_created: Option<OffsetDateTime>,
    roster: Vec<RosterRow>,
    next_row_id: i64,
    /// Bumped on every roster change; keys PostgREST's cached row order.
    roster_version: u64,
    /// Each user's JSON as the listing renders it, made once and dropped when the user
    /// changes: at 100k users, rendering every page anew made the sandbox, not the
    /// client, the bottleneck of the benchmark.
    listed_json: HashMap<Uuid, String>,
}

/// Postgres keeps microseconds; so does every comparison and every read here.
pub fn micros(t: OffsetDateTime) -> i128 {
    t.unix_timestamp_nanos().div_euclid(1_000)
}

/// `t` truncated to microseconds, as a database read returns it.
pub fn truncate_micros(t: OffsetDateTime) -> OffsetDateTime {
    let nanos = micros(t) * 1_000;
    OffsetDateTime::from_unix_timestamp_nanos(nanos).unwrap_or(t)
}

impl State {
    pub fn new(default_aud: &str) -> State {
        State {
            default_aud: default_aud.to_string(),
            next_row_id: 1,
            ..State::default()
        }
    }

    /// A `created_at` for a user inserted now. Strictly increasing at microsecond
    /// precision, so that users created in a tight loop never tie by accident (ties are
    /// possible on a real server but rare; a test that wants them sets `created_at`).
    pub fn now_for_insert(&mut self, now: OffsetDateTime) -> OffsetDateTime {
        let mut t = now;
        if let Some(last) = self.last_created
            && micros(t) <= micros(last)
        {
            t = last + time::Duration::microseconds(1);
        }
        self.last_created = Some(t);
        t
    }

    pub fn insert_user(&mut self, user: User) {
        if let Some(old) = self.users.get(&user.id).cloned() {
            self.unindex(&old);
        }
        self.index(&user);
        self.listed_json.remove(&user.id);
        self.users.insert(user.id, user);
        self.order = None;
    }

    /// Replace a user whose `created_at` did not change (no reordering needed).
    pub fn update_user(&mut self, user: User) {
        if let Some(old) = self.users.get(&user.id).cloned() {
            self.unindex(&old);
        }
        self.index(&user);
        self.listed_json.remove(&user.id);
        self.users.insert(user.id, user);
    }

    pub fn remove_user(&mut self, id: &Uuid) -> Option<User> {
        let user = self.users.remove(id)?;
        self.listed_json.remove(id);
        self.unindex(&user);
        self.order = None;
        Some(user)
    }

    pub fn clear_users(&mut self) {
        self.users.clear();
        self.listed_json.clear();
        self.by_email.clear();
        self.order = None;
        self.other_aud = 0;
    }

    fn index(&mut self, user: &User) {
        if let Some(email) = &user.email {
            self.by_email
                .entry(email.to_lowercase())
                .or_default()
                .insert(user.id);
        }
        if user.aud != self.default_aud {
            self.other_aud += 1;
        }
    }

    fn unindex(&mut self, user: &User) {
        if let Some(email) = &user.email {
            let key = email.to_lowercase();
            if let Some(ids) = self.by_email.get_mut(&key) {
                ids.remove(&user.id);
                if ids.is_empty() {
                    self.by_email.remove(&key);
                }
            }
        }
        if user.aud != self.default_aud {
            self.other_aud = self.other_aud.saturating_sub(1);
        }
    }

    pub fn user(&self, id: &Uuid) -> Option<&User> {
        self.users.get(id)
    }

    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// GoTrue's `IsDuplicatedEmail`: case-insensitive, within one audience.
    pub fn email_taken_ci(&self, email: &str, aud: &str) -> bool {
        self.by_email.get(&email.to_lowercase()).is_some_and(|ids| {
            ids.iter()
                .any(|id| self.users.get(id).is_some_and(|u| u.aud == aud))
        })
    }

    /// The unique index `users_email_partial_key`: exact bytes, any other user.
    pub fn exact_email_taken(&self, email: &str, except: &Uuid) -> bool {
        self.by_email.get(&email.to_lowercase()).is_some_and(|ids| {
            ids.iter().any(|id| {
                id != except
                    && self
                        .users
                        .get(id)
                        .is_some_and(|u| u.email.as_deref() == Some(email))
            })
        })
    }

    pub fn phone_taken(&self, phone: &str, aud: &str) -> bool {
        self.users
            .values()
            .any(|u| u.aud == aud && u.phone.as_deref() == Some(phone))
    }

    /// Every user, oldest first (ties by id), for the Rust API and the control endpoint.
    pub fn users_sorted(&mut self) -> Vec<User> {
        self.ensure_order();
        self.order
            .as_deref()
            .unwrap_or(&[])
            .iter()
            .filter_map(|(_, id)| self.users.get(id).cloned())
            .collect()
    }

    pub fn user_by_email_ci(&self, email: &str) -> Vec<&User> {
        let mut found: Vec<&User> = self
            .by_email
            .get(&email.to_lowercase())
            .map(|ids| ids.iter().filter_map(|id| self.users.get(id)).collect())
            .unwrap_or_default();
        found.sort_by_key(|u| (micros(u.created_at), u.id));
        found
    }

    fn ensure_order(&mut self) {
        if self.order.is_none() {
            let mut v: Vec<(i128, Uuid)> = self
                .users
                .values()
                .map(|u| (micros(u.created_at), u.id))
                .collect();
            v.sort_unstable();
            self.order = Some(v);
        }
    }

    /// One page of `GET /admin/users`: the filtered total and the users at
    /// `[offset, offset + limit)` in `created_at` order. Ties in `created_at` come back in
    /// an order that depends on `salt` (a request counter), because Postgres promises no
    /// order among them and GoTrue adds no id tiebreaker.
    pub fn list_page_ids(
        &mut self,
        aud: &str,
        filter: Option<&dyn Fn(&User) -> bool>,
        ascending: bool,
        offset: usize,
        limit: usize,
        salt: u64,
    ) -> (usize, Vec<Uuid>) {
        let need_scan = filter.is_some() || self.other_aud > 0 || aud != self.default_aud;
        self.ensure_order();
        let all = self.order.as_deref().unwrap_or(&[]);
        let filtered: Vec<(i128, Uuid)>;
        let keys: &[(i128, Uuid)] = if need_scan {
            filtered = all
                .iter()
                .filter(|(_, id)| {
                    self.users
                        .get(id)
                        .is_some_and(|u| u.aud == aud && filter.is_none_or(|f| f(u)))
                })
                .copied()
                .collect();
            &filtered
        } else {
            all
        };
        let n = keys.len();
        if offset >= n || limit == 0 {
            let page = Vec::new();
            return (n, page);
        }
        let end = n.min(offset.saturating_add(limit));
        // The ascending index range that holds the requested positions...
        let (mut lo, mut hi) = if ascending {
            (offset, end)
        } else {
            (n - end, n - offset)
        };
        // ...widened to whole runs of equal created_at, so ties can be shuffled.
        while lo > 0 && keys[lo - 1].0 == keys[lo].0 {
            lo -= 1;
        }
        while hi < n && keys[hi].0 == keys[hi - 1].0 {
            hi += 1;
        }
        let mut window: Vec<(i128, Uuid)> = keys[lo..hi].to_vec();
        if !ascending {
            window.reverse();
        }
        let tie_key =
            |id: &Uuid| mix(salt ^ mix(id.as_u128() as u64 ^ (id.as_u128() >> 64) as u64));
        let mut start = 0;
        while start < window.len() {
            let mut stop = start + 1;
            while stop < window.len() && window[stop].0 == window[start].0 {
                stop += 1;
            }
            if stop - start > 1 {
                window[start..stop].sort_by_key(|(_, id)| tie_key(id));
            }
            start = stop;
        }
        let base = if ascending { lo } else { n - hi };
        let ids = window[offset - base..end - base]
            .iter()
            .map(|(_, id)| *id)
            .collect();
        (n, ids)
    }

    /// A user's JSON as a listing renders it: `render`'s answer, kept until the user
    /// changes (every change goes through `insert_user`, `update_user`, `remove_user` or
    /// `clear_users`, which drop it). `None` for an unknown id.
    pub fn listed_json(&mut self, id: &Uuid, render: impl FnOnce(&User) -> String) -> Option<&str> {
        if !self.listed_json.contains_key(id) {
            let text = render(self.users.get(id)?);
            self.listed_json.insert(*id, text);
        }
        self.listed_json.get(id).map(String::as_str)
    }

    pub fn roster(&self) -> &[RosterRow] {
        &self.roster
    }

    pub fn roster_version(&self) -> u64 {
        self.roster_version
    }

    /// Remove the rows `keep` refuses.
    pub fn retain_rows(&mut self, keep: impl FnMut(&RosterRow) -> bool) {
        self.roster.retain(keep);
        self.roster_version += 1;
    }

    /// Append a roster row, giving it the next serial id.
    pub fn push_row(&mut self, mut row: RosterRow) -> i64 {
        if row.id <= 0 {
            row.id = self.next_row_id;
        }
        self.next_row_id = self.next_row_id.max(row.id + 1);
        let id = row.id;
        self.roster.push(row);
        self.roster_version += 1;
        id
    }

    pub fn set_roster(&mut self, rows: Vec<RosterRow>) {
        self.roster.clear();
        self.roster_version += 1;
        self.next_row_id = 1;
        for row in rows {
            self.push_row(row);
        }
    }
}

/// A v4-shaped UUID derived from another (identity ids): unique per (id, salt) in
/// practice, and without a system call per user, which keeps 100k-user seeds fast.
pub fn derived_id(id: &Uuid, salt: u64) -> Uuid {
    let v = id.as_u128();
    let hi = mix((v >> 64) as u64 ^ mix(salt));
    let lo = mix(v as u64 ^ hi);
    uuid::Builder::from_random_bytes(((u128::from(hi) << 64) | u128::from(lo)).to_be_bytes())
        .into_uuid()
}

/// splitmix64's finaliser: a cheap, well-spread hash for tie shuffling and fault rates.
pub fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user_at(state: &mut State, secs: i64) -> Uuid {
        let id = Uuid::new_v4();
        let t = OffsetDateTime::from_unix_timestamp(1_700_000_000 + secs).unwrap();
        state.insert_user(User::new(id, "authenticated", t));
        id
    }

    #[test]
    fn pages_cover_everyone_once_without_ties() {
        let mut s = State::new("authenticated");
        let ids: Vec<Uuid> = (0..25).map(|i| user_at(&mut s, i)).collect();
        for ascending in [true, false] {
            let mut seen = Vec::new();
            for page in 0..3 {
                let (total, page_ids) =
                    s.list_page_ids("authenticated", None, ascending, page * 10, 10, page as u64);
                assert_eq!(total, 25);
                seen.extend(page_ids);
            }
            let mut expected = ids.clone();
            if !ascending {
                expected.reverse();
            }
            assert_eq!(seen, expected);
        }
    }

    #[test]
    fn a_listed_users_json_is_dropped_when_the_user_changes() {
        let mut s = State::new("authenticated");
        let id = user_at(&mut s, 0);
        let first = s
            .listed_json(&id, |u| format!("{:?}", u.banned_until))
            .map(str::to_string);
        assert_eq!(first.as_deref(), Some("None"));
        let mut user = s.user(&id).cloned().unwrap();
        user.banned_until = Some(time::macros::datetime!(2126-01-01 0:00 UTC));
        s.update_user(user);
        let second = s.listed_json(&id, |u| format!("{:?}", u.banned_until.is_some()));
        assert_eq!(second, Some("true"), "a changed user is rendered anew");
        s.remove_user(&id);
        assert_eq!(s.listed_json(&id, |_| "x".into()), None);
    }

    #[test]
    fn ties_are_ordered_differently_per_request() {
        let mut s = State::new("authenticated");
        for _ in 0..20 {
            user_at(&mut s, 0);
        }
        let orders: HashSet<Vec<Uuid>> = (0..10)
            .map(|salt| s.list_page_ids("authenticated", None, false, 0, 20, salt).1)
            .collect();
        assert!(orders.len() > 1);
    }
}
