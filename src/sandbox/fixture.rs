//! Seeds: what a sandbox starts with, from a fixture file (YAML or JSON, by extension),
//! from code ([`NewUser`], [`RosterRow`]) or generated in bulk for benchmarks. Owns the
//! fixture format and turning a [`NewUser`] into a stored user; refuses bad fixture
//! input with a message, never a panic.

use std::path::Path;

use serde::Deserialize;
use serde_json::{Map, Value};
use time::OffsetDateTime;
use uuid::Uuid;

use super::duration::parse_go_duration;
use super::gotrue::provider_metadata;
use super::state::{RosterRow, State, User, mix, truncate_micros};
use super::wire::parse_time;

/// A user to seed. Everything is optional; an email is stored exactly as given (not
/// lower-cased or trimmed), which is how legacy users with capitals are made.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NewUser {
    /// A UUID; a random one when absent.
    pub id: Option<String>,
    pub email: Option<String>,
    /// Digits as GoTrue stores them (no `+`).
    pub phone: Option<String>,
    pub banned_until: Option<OffsetDateTime>,
    /// Now when absent (strictly after the previous default, so seeded users never tie).
    pub created_at: Option<OffsetDateTime>,
    /// Soft-deleted at this time. The email is kept as given (a real soft delete
    /// obfuscates it; keeping it makes a tool that ignores `deleted_at` visibly wrong).
    pub deleted_at: Option<OffsetDateTime>,
    pub is_anonymous: bool,
    pub user_metadata: Map<String, Value>,
    pub app_metadata: Option<Map<String, Value>>,
    pub last_sign_in_at: Option<OffsetDateTime>,
    /// Leave the email unconfirmed (seeded email users are confirmed at `created_at`).
    pub unconfirmed: bool,
    /// The audience; the sandbox's (`authenticated`) when absent.
    pub aud: Option<String>,
}

impl NewUser {
    /// A user with this email.
    pub fn email(email: &str) -> NewUser {
        NewUser {
            email: Some(email.to_string()),
            ..NewUser::default()
        }
    }

    /// A phone-only user.
    pub fn phone(phone: &str) -> NewUser {
        NewUser {
            phone: Some(phone.to_string()),
            ..NewUser::default()
        }
    }

    /// An anonymous user (no email, no phone).
    pub fn anonymous() -> NewUser {
        NewUser {
            is_anonymous: true,
            ..NewUser::default()
        }
    }

    pub fn id(mut self, id: &str) -> NewUser {
        self.id = Some(id.to_string());
        self
    }

    pub fn banned_until(mut self, until: OffsetDateTime) -> NewUser {
        self.banned_until = Some(until);
        self
    }

    pub fn created_at(mut self, at: OffsetDateTime) -> NewUser {
        self.created_at = Some(at);
        self
    }

    pub fn deleted_at(mut self, at: OffsetDateTime) -> NewUser {
        self.deleted_at = Some(at);
        self
    }

    pub fn last_sign_in_at(mut self, at: OffsetDateTime) -> NewUser {
        self.last_sign_in_at = Some(at);
        self
    }

    /// Set `user_metadata.full_name` (which the list `filter` also searches).
    pub fn full_name(mut self, name: &str) -> NewUser {
        self.user_metadata
            .insert("full_name".into(), Value::String(name.to_string()));
        self
    }

    /// Build the stored user. `now` is the default `created_at` source.
    pub(crate) fn build(
        &self,
        state: &mut State,
        default_aud: &str,
        now: OffsetDateTime,
    ) -> Result<User, String> {
        let id = match &self.id {
            None => Uuid::new_v4(),
            Some(raw) => {
                Uuid::parse_str(raw).map_err(|_| format!("user id `{raw}` is not a UUID"))?
            }
        };
        if state.user(&id).is_some() {
            return Err(format!("a user with id `{id}` already exists"));
        }
        if let Some(e) = &self.email
            && state.exact_email_taken(e, &id)
        {
            return Err(format!(
                "a user with email `{e}` already exists (the unique index on auth.users.email forbids an exact duplicate; vary the case to make a legacy near-duplicate)"
            ));
        }
        let created = match self.created_at {
            Some(t) => truncate_micros(t),
            None => state.now_for_insert(truncate_micros(now)),
        };
        let aud = self.aud.as_deref().unwrap_or(default_aud);
        let mut user = User::new(id, aud, created);
        user.email = self.email.clone().filter(|e| !e.is_empty());
        user.phone = self.phone.clone().filter(|p| !p.is_empty());
        user.banned_until = self.banned_until.map(truncate_micros);
        user.deleted_at = self.deleted_at.map(truncate_micros);
        user.is_anonymous = self.is_anonymous;
        user.user_metadata = self.user_metadata.clone();
        user.last_sign_in_at = self.last_sign_in_at.map(truncate_micros);
        let mut providers = Vec::new();
        if let Some(e) = user.email.clone() {
            if !self.unconfirmed {
                user.email_confirmed_at = Some(created);
                user.user_metadata
                    .entry("email_verified")
                    .or_insert(Value::Bool(true));
            }
            let identity = user.email_identity(&e, created);
            user.identities.push(identity);
            providers.push("email");
        }
        if let Some(p) = user.phone.clone() {
            user.phone_confirmed_at = Some(created);
            let identity = user.phone_identity(&p, created);
            user.identities.push(identity);
            providers.push("phone");
        }
        user.app_metadata = match &self.app_metadata {
            Some(m) => m.clone(),
            None if providers.is_empty() => Map::new(),
            None => provider_metadata(&providers),
        };
        Ok(user)
    }
}

/// What a sandbox starts with.
#[derive(Debug, Clone, Default)]
pub struct Seed {
    pub users: Vec<NewUser>,
    pub roster: Vec<RosterRow>,
    /// From a fixture: overrides the config's roster table.
    pub roster_table: Option<String>,
    /// From a fixture: overrides the config's exposed schemas.
    pub exposed_schemas: Option<Vec<String>>,
}

impl Seed {
    /// Nothing: no users, an empty roster table.
    pub fn empty() -> Seed {
        Seed::default()
    }

    /// `users` auth users `engineer000000@example.com`, … (created a second apart, so no
    /// `created_at` ties; deterministic ids), and `roster` roster rows for the same
    /// emails in the same order: with `roster == users` every user is paired, with more
    /// roster rows the extra people need creating, with fewer the extra users are
    /// leavers. Fast enough for 100k.
    pub fn generate(users: usize, roster: usize) -> Seed {
        Seed::generate_from(users, roster, 0)
    }

    /// Like [`Seed::generate`], but the roster rows start at the `roster_offset`-th
    /// generated email: the first `roster_offset` users are then leavers (to ban) and
    /// the rows past the last user newcomers (to create). `generate_from(p + k, p + k, k)`
    /// leaves `k` creates and `k` bans pending beside `p` paired people.
    pub fn generate_from(users: usize, roster: usize, roster_offset: usize) -> Seed {
        let base = OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(1_700_000_000);
        let email = |i: usize| format!("engineer{i:06}@example.com");
        let users = (0..users)
            .map(|i| {
                let r = (u128::from(mix(i as u64)) << 64) | u128::from(mix(!(i as u64)));
                let id = uuid::Builder::from_random_bytes(r.to_be_bytes()).into_uuid();
                NewUser {
                    id: Some(id.to_string()),
                    email: Some(email(i)),
                    created_at: Some(base + time::Duration::seconds(i as i64)),
                    ..NewUser::default()
                }
            })
            .collect();
        let roster = (roster_offset..roster_offset.saturating_add(roster))
            .map(|i| RosterRow::new(&email(i), &format!("Engineer {i}"), "engineer"))
            .collect();
        Seed {
            users,
            roster,
            ..Seed::default()
        }
    }

    /// Read a fixture file: YAML (`.yaml`, `.yml`) or JSON (`.json`).
    pub fn from_fixture(path: &Path) -> Result<Seed, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read fixture `{}`: {e}", path.display()))?;
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or("")
            .to_ascii_lowercase();
        let fixture: FixtureFile = match ext.as_str() {
            "yaml" | "yml" => serde_norway::from_str(&text)
                .map_err(|e| format!("fixture `{}` is not valid: {e}", path.display()))?,
            "json" => serde_json::from_str(&text)
                .map_err(|e| format!("fixture `{}` is not valid: {e}", path.display()))?,
            other => {
                return Err(format!(
                    "fixture `{}`: unknown extension `{other}` (use .yaml, .yml or .json)",
                    path.display()
                ));
            }
        };
        fixture
            .into_seed(OffsetDateTime::now_utc())
            .map_err(|e| format!("fixture `{}`: {e}", path.display()))
    }

    /// The same as a fixture file's contents, already parsed as JSON (the control
    /// endpoint's body).
    pub fn from_json(value: Value) -> Result<Seed, String> {
        let fixture: FixtureFile = serde_json::from_value(value).map_err(|e| e.to_string())?;
        fixture.into_seed(OffsetDateTime::now_utc())
    }
}

/// The fixture file format (documented in README.md, "The sandbox").
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FixtureFile {
    #[serde(default)]
    roster_table: Option<String>,
    #[serde(default)]
    exposed_schemas: Option<Vec<String>>,
    #[serde(default)]
    roster: Vec<Map<String, Value>>,
    #[serde(default)]
    users: Vec<FixtureUser>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FixtureUser {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    phone: Option<String>,
    #[serde(default)]
    banned_until: Option<String>,
    #[serde(default)]
    created_at: Option<String>,
    #[serde(default)]
    deleted_at: Option<String>,
    #[serde(default)]
    last_sign_in_at: Option<String>,
    #[serde(default)]
    is_anonymous: bool,
    #[serde(default)]
    unconfirmed: bool,
    #[serde(default)]
    full_name: Option<String>,
    #[serde(default)]
    user_metadata: Option<Map<String, Value>>,
    #[serde(default)]
    app_metadata: Option<Map<String, Value>>,
    #[serde(default)]
    aud: Option<String>,
}

/// A fixture time: RFC 3339, or a Go duration from now (`+876000h`, `-1h`).
fn fixture_time(raw: &str, now: OffsetDateTime) -> Result<OffsetDateTime, String> {
    if raw.starts_with('+') || raw.starts_with('-') {
        let nanos = parse_go_duration(raw)?;
        return Ok(now + time::Duration::nanoseconds(nanos));
    }
    parse_time(raw)
}

impl FixtureFile {
    fn into_seed(self, now: OffsetDateTime) -> Result<Seed, String> {
        let mut users = Vec::with_capacity(self.users.len());
        for (i, u) in self.users.into_iter().enumerate() {
            let at = |field: &str, v: &Option<String>| -> Result<Option<OffsetDateTime>, String> {
                v.as_deref()
                    .map(|raw| {
                        fixture_time(raw, now).map_err(|e| format!("users[{i}].{field}: {e}"))
                    })
                    .transpose()
            };
            let mut user_metadata = u.user_metadata.clone().unwrap_or_default();
            if let Some(name) = &u.full_name {
                user_metadata.insert("full_name".into(), Value::String(name.clone()));
            }
            if let Some(id) = &u.id
                && Uuid::parse_str(id).is_err()
            {
                return Err(format!("users[{i}].id: `{id}` is not a UUID"));
            }
            users.push(NewUser {
                id: u.id.clone(),
                email: u.email.clone(),
                phone: u.phone.clone(),
                banned_until: at("banned_until", &u.banned_until)?,
                created_at: at("created_at", &u.created_at)?,
                deleted_at: at("deleted_at", &u.deleted_at)?,
                last_sign_in_at: at("last_sign_in_at", &u.last_sign_in_at)?,
                is_anonymous: u.is_anonymous,
                unconfirmed: u.unconfirmed,
                user_metadata,
                app_metadata: u.app_metadata.clone(),
                aud: u.aud.clone(),
            });
        }
        let mut roster = Vec::with_capacity(self.roster.len());
        for (i, mut row) in self.roster.into_iter().enumerate() {
            // Postgres would store a non-text value in a text column as its text.
            let text = |row: &mut Map<String, Value>, key: &str| -> Option<String> {
                match row.remove(key) {
                    None | Some(Value::Null) => None,
                    Some(Value::String(s)) => Some(s),
                    Some(other) => Some(other.to_string()),
                }
            };
            let id = match row.remove("id") {
                None | Some(Value::Null) => 0,
                Some(Value::Number(n)) => n
                    .as_i64()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| format!("roster[{i}].id must be a positive integer"))?,
                Some(other) => {
                    return Err(format!(
                        "roster[{i}].id must be a positive integer, not {other}"
                    ));
                }
            };
            roster.push(RosterRow {
                id,
                email: text(&mut row, "email"),
                name: text(&mut row, "name"),
                kind: text(&mut row, "kind"),
                extra: row,
            });
        }
        if let Some(t) = &self.roster_table
            && t.split_once('.')
                .is_none_or(|(s, n)| s.is_empty() || n.is_empty())
        {
            return Err(format!("roster_table `{t}` must be SCHEMA.TABLE"));
        }
        Ok(Seed {
            users,
            roster,
            roster_table: self.roster_table,
            exposed_schemas: self.exposed_schemas,
        })
    }
}

/// Put a seed into a state (users first checked, so a bad one names itself).
pub(crate) fn apply(state: &mut State, seed: &Seed, default_aud: &str) -> Result<(), String> {
    let now = OffsetDateTime::now_utc();
    for (i, nu) in seed.users.iter().enumerate() {
        let user = nu
            .build(state, default_aud, now)
            .map_err(|e| format!("users[{i}]: {e}"))?;
        state.insert_user(user);
    }
    state.set_roster(seed.roster.clone());
    Ok(())
}
