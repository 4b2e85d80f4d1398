//! A faithful, in-memory, Supabase-compatible HTTP test double (GoTrue admin API and
//! PostgREST behind the gateway's key check), for tests, the quickstart and benchmarks.
//! It imitates the quirks in `supabase-api.md` rather than smoothing them over, and
//! writes its own wire types: nothing here may come from the client in `src/supabase`.
//!
//! # Using it
//!
//! ```no_run
//! use provision::sandbox::{NewUser, RosterRow, Sandbox};
//!
//! let sb = Sandbox::start(); // 127.0.0.1:<free port>, own thread and runtime
//! sb.set_roster(vec![RosterRow::new("dana@example.com", "Dana", "engineer")]);
//! let carol = sb.add_user(NewUser::email("carol@example.com"));
//! // point the tool at sb.url() with sb.service_role_key() …
//! assert!(sb.requests().iter().all(|r| !r.is_write()));
//! # let _ = carol;
//! ```
//!
//! * [`Sandbox::start`], [`Sandbox::start_with`] ([`SandboxConfig`], [`Seed`]; seeds from
//!   code, [`Seed::generate`] for bulk data, or [`Seed::from_fixture`]),
//!   [`Sandbox::try_start`] (an error instead of a panic), [`Sandbox::from_fixture`]
//!   (YAML/JSON, format in README.md); [`Sandbox::url`], [`Sandbox::port`],
//!   [`Sandbox::config`]. Dropping it stops the server.
//! * Keys: [`Sandbox::service_role_key`] and [`Sandbox::anon_key`] are real HS256 JWTs
//!   (with the default secret, the well-known local demo keys);
//!   [`Sandbox::secret_key`] and [`Sandbox::publishable_key`] are new-style keys;
//!   [`Sandbox::sign_jwt`] mints any other token (expired, a user's, another role).
//! * State (out of band: not logged): [`Sandbox::add_user`] ([`NewUser`]),
//!   [`Sandbox::users`] ([`UserRecord`]), [`Sandbox::user`], [`Sandbox::user_count`],
//!   [`Sandbox::user_by_email`], [`Sandbox::set_banned_until`], [`Sandbox::set_email`],
//!   [`Sandbox::delete_user`],
//!   [`Sandbox::set_roster`], [`Sandbox::add_roster_row`], [`Sandbox::remove_roster_email`],
//!   [`Sandbox::roster`].
//! * Faults: [`Sandbox::faults`] returns [`Faults`] (latency, failures per route with a
//!   count or a seeded rate, dropped connections, slow creates, lost bans, max-rows,
//!   inserts during a scan).
//! * Log: [`Sandbox::requests`] ([`LoggedRequest`]: method, path, query, selected
//!   headers, body, status, start/end `Instant`s, in-flight count; never credentials),
//!   [`Sandbox::clear_requests`], [`Sandbox::max_in_flight`].
//! * Over HTTP, without a key: `/_sandbox/requests`, `/_sandbox/faults`,
//!   `/_sandbox/state` (see README.md). Control requests are not logged or counted.

mod control;
mod delay;
mod duration;
mod faults;
mod fixture;
mod gateway;
mod gotrue;
mod jwt;
mod postgrest;
mod server;
mod state;
mod wire;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};
use time::OffsetDateTime;
use uuid::Uuid;

pub use duration::parse_go_duration;
pub use faults::{Failure, Faults, LoggedRequest, Times};
pub use fixture::{NewUser, Seed};
pub use jwt::DEFAULT_JWT_SECRET;
pub use state::RosterRow;

use server::{Running, Shared};
use state::{State, User, truncate_micros};

/// How the sandbox behaves where a real project is configurable.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// Port on 127.0.0.1; 0 picks a free one.
    pub port: u16,
    /// The project's JWT secret (HS256). The keys derive from it.
    pub jwt_secret: String,
    /// The roster table, `SCHEMA.TABLE`.
    pub roster_table: String,
    /// PostgREST's `db-schemas`; the first is the default profile.
    pub exposed_schemas: Vec<String>,
    /// PostgREST's `db-max-rows` (`None`: no cap).
    pub max_rows: Option<usize>,
    /// `GOTRUE_JWT_AUD`.
    pub aud: String,
    /// `GOTRUE_JWT_ADMIN_ROLES`.
    pub admin_roles: Vec<String>,
    /// Latency added to every non-control request from the start.
    pub latency: Duration,
    /// `GOTRUE_API_MAX_REQUEST_DURATION`: a GoTrue handler still running after this
    /// answers 504 `request_timeout` (the work it did stays done). Only a create slowed
    /// by [`Faults::delay_create_response`] can run that long here.
    pub max_request_duration: Duration,
}

impl Default for SandboxConfig {
    fn default() -> SandboxConfig {
        SandboxConfig {
            port: 0,
            jwt_secret: DEFAULT_JWT_SECRET.to_string(),
            roster_table: "activity.organization_people".to_string(),
            // Supabase exposes `public, graphql_public` by default. `activity` is added
            // here because the tool's default roster source is
            // `activity.organization_people`, and a project using that default has had
            // to expose it (Dashboard → API → Exposed schemas).
            exposed_schemas: vec!["public".into(), "graphql_public".into(), "activity".into()],
            max_rows: Some(1000),
            aud: "authenticated".to_string(),
            admin_roles: vec!["service_role".into(), "supabase_admin".into()],
            latency: Duration::ZERO,
            max_request_duration: Duration::from_secs(10),
        }
    }
}

impl SandboxConfig {
    /// `(schema, table)` of the roster table (`public` when unqualified).
    pub(crate) fn roster_parts(&self) -> (&str, &str) {
        self.roster_table
            .split_once('.')
            .unwrap_or(("public", self.roster_table.as_str()))
    }
}

/// An auth user as stored (timestamps at database precision: microseconds).
#[derive(Debug, Clone, PartialEq)]
pub struct UserRecord {
    pub id: String,
    pub aud: String,
    pub role: String,
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
    pub last_sign_in_at: Option<OffsetDateTime>,
}

impl UserRecord {
    /// Banned at `now`: `banned_until` present and in the future (an expired one stays in
    /// the row).
    pub fn is_banned_at(&self, now: OffsetDateTime) -> bool {
        self.banned_until.is_some_and(|t| t > now)
    }

    /// Banned now, by the real clock.
    pub fn is_banned(&self) -> bool {
        self.is_banned_at(OffsetDateTime::now_utc())
    }
}

impl From<&User> for UserRecord {
    fn from(u: &User) -> UserRecord {
        UserRecord {
            id: u.id.to_string(),
            aud: u.aud.clone(),
            role: u.role.clone(),
            email: u.email.clone(),
            phone: u.phone.clone(),
            app_metadata: u.app_metadata.clone(),
            user_metadata: u.user_metadata.clone(),
            created_at: u.created_at,
            updated_at: u.updated_at,
            banned_until: u.banned_until,
            deleted_at: u.deleted_at,
            is_anonymous: u.is_anonymous,
            email_confirmed_at: u.email_confirmed_at,
            last_sign_in_at: u.last_sign_in_at,
        }
    }
}

/// A running sandbox. Dropping it stops the server (connections in flight are closed).
pub struct Sandbox {
    shared: Arc<Shared>,
    running: Running,
}

impl Sandbox {
    /// An empty sandbox with the default config. Panics if it cannot bind a port.
    pub fn start() -> Sandbox {
        Sandbox::start_with(SandboxConfig::default(), Seed::empty())
    }

    /// A sandbox with this config and seed. Panics if it cannot start (bad seed, port
    /// taken): it is a test fixture. [`Sandbox::try_start`] returns the error instead.
    pub fn start_with(config: SandboxConfig, seed: Seed) -> Sandbox {
        match Sandbox::try_start(config, seed) {
            Ok(sb) => sb,
            Err(e) => panic!("sandbox did not start: {e}"),
        }
    }

    /// Like [`Sandbox::start_with`], returning why it could not start.
    pub fn try_start(mut config: SandboxConfig, seed: Seed) -> Result<Sandbox, String> {
        if let Some(table) = &seed.roster_table {
            config.roster_table = table.clone();
        }
        if let Some(schemas) = &seed.exposed_schemas {
            config.exposed_schemas = schemas.clone();
        }
        let mut state = State::new(&config.aud);
        fixture::apply(&mut state, &seed, &config.aud)?;
        let port = config.port;
        let shared = Arc::new(Shared::new(config, state));
        let running = server::spawn(shared.clone(), port)?;
        Ok(Sandbox { shared, running })
    }

    /// A default sandbox seeded from a fixture file (`.yaml`, `.yml` or `.json`).
    pub fn from_fixture(path: &Path) -> Result<Sandbox, String> {
        Sandbox::try_start(SandboxConfig::default(), Seed::from_fixture(path)?)
    }

    /// `http://127.0.0.1:PORT`, the project URL (no trailing slash).
    pub fn url(&self) -> String {
        format!("http://{}", self.running.addr)
    }

    pub fn port(&self) -> u16 {
        self.running.addr.port()
    }

    /// The config in force (after fixture overrides).
    pub fn config(&self) -> &SandboxConfig {
        &self.shared.config
    }

    /// The legacy service-role key: an HS256 JWT with `role: service_role`.
    pub fn service_role_key(&self) -> String {
        self.shared.keys.service_role.clone()
    }

    /// The legacy anon key: an HS256 JWT with `role: anon`.
    pub fn anon_key(&self) -> String {
        self.shared.keys.anon.clone()
    }

    /// The new-style secret key (`sb_secret_…`): service role, not a JWT.
    pub fn secret_key(&self) -> String {
        self.shared.keys.secret.clone()
    }

    /// The new-style publishable key (`sb_publishable_…`): anon, not a JWT.
    pub fn publishable_key(&self) -> String {
        self.shared.keys.publishable.clone()
    }

    /// Sign any claims with the project's secret (e.g. an expired service-role token, or
    /// a user's access token).
    pub fn sign_jwt(&self, claims: &Value) -> String {
        jwt::sign(&self.shared.config.jwt_secret, claims)
    }

    /// Add a user directly (no request, no log entry). Panics on a malformed or
    /// duplicate id, or an exact duplicate email (the database forbids those).
    pub fn add_user(&self, user: NewUser) -> UserRecord {
        let mut inner = self.shared.lock();
        let aud = self.shared.config.aud.clone();
        match user.build(&mut inner.state, &aud, OffsetDateTime::now_utc()) {
            Ok(u) => {
                let record = UserRecord::from(&u);
                inner.state.insert_user(u);
                record
            }
            Err(e) => panic!("sandbox add_user: {e}"),
        }
    }

    /// Every user, oldest first.
    pub fn users(&self) -> Vec<UserRecord> {
        let mut inner = self.shared.lock();
        inner
            .state
            .users_sorted()
            .iter()
            .map(UserRecord::from)
            .collect()
    }

    /// The number of users.
    pub fn user_count(&self) -> usize {
        self.shared.lock().state.len()
    }

    pub fn user(&self, id: &str) -> Option<UserRecord> {
        let id = Uuid::parse_str(id).ok()?;
        self.shared.lock().state.user(&id).map(UserRecord::from)
    }

    /// The oldest user whose email equals `email` ignoring case.
    pub fn user_by_email(&self, email: &str) -> Option<UserRecord> {
        let inner = self.shared.lock();
        inner
            .state
            .user_by_email_ci(email)
            .first()
            .map(|u| UserRecord::from(*u))
    }

    /// Change `banned_until` out of band (bumps `updated_at`). Panics on an unknown id.
    pub fn set_banned_until(&self, id: &str, until: Option<OffsetDateTime>) {
        self.modify_user(id, |u| u.banned_until = until.map(truncate_micros));
    }

    /// Change a user's email out of band, exactly as given (bumps `updated_at`).
    pub fn set_email(&self, id: &str, email: Option<&str>) {
        let email = email.map(str::to_string);
        self.modify_user(id, |u| u.email = email);
    }

    fn modify_user(&self, id: &str, change: impl FnOnce(&mut User)) {
        let mut inner = self.shared.lock();
        let found = Uuid::parse_str(id)
            .ok()
            .and_then(|uid| inner.state.user(&uid).cloned());
        let Some(mut user) = found else {
            panic!("sandbox: no user with id `{id}`");
        };
        change(&mut user);
        user.updated_at = truncate_micros(OffsetDateTime::now_utc());
        inner.state.update_user(user);
    }

    /// Hard-delete a user out of band (no-op when absent).
    pub fn delete_user(&self, id: &str) {
        if let Ok(uid) = Uuid::parse_str(id) {
            self.shared.lock().state.remove_user(&uid);
        }
    }

    /// Replace the roster table's rows (ids reassigned from 1 where 0).
    pub fn set_roster(&self, rows: Vec<RosterRow>) {
        self.shared.lock().state.set_roster(rows);
    }

    /// Append a roster row; returns its id.
    pub fn add_roster_row(&self, row: RosterRow) -> i64 {
        self.shared.lock().state.push_row(row)
    }

    /// Remove every roster row whose email, trimmed and lower-cased, equals `email`
    /// trimmed and lower-cased.
    pub fn remove_roster_email(&self, email: &str) {
        let key = email.trim().to_lowercase();
        self.shared.lock().state.retain_rows(|r| {
            r.email
                .as_deref()
                .is_none_or(|e| e.trim().to_lowercase() != key)
        });
    }

    pub fn roster(&self) -> Vec<RosterRow> {
        self.shared.lock().state.roster().to_vec()
    }

    /// The fault knobs.
    pub fn faults(&self) -> Faults {
        Faults {
            shared: self.shared.clone(),
        }
    }

    /// Every non-control request so far, in arrival order.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.shared.lock().log.clone()
    }

    /// Forget the log and restart the in-flight peak from the current count.
    pub fn clear_requests(&self) {
        let mut inner = self.shared.lock();
        inner.log.clear();
        inner.max_in_flight = inner.in_flight;
    }

    /// The most non-control requests that were ever in flight at once.
    pub fn max_in_flight(&self) -> usize {
        self.shared.lock().max_in_flight
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if let Some(tx) = self.running.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.running.thread.take() {
            let _ = thread.join();
        }
    }
}
