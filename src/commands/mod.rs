//! One module per command: each wires configuration, the client, the core and rendering
//! for its command. What several commands share (the runtime, the client, reading the
//! state, the clock) lives here; `lib.rs` only dispatches.

pub mod apply;
pub mod approve;
pub mod docs;
pub mod explain;
pub mod plan;
pub mod show;

use std::path::Path;
use std::time::Duration;

use time::OffsetDateTime;

use crate::config::{ClientSettings, Connection};
use crate::error::{Error, Exit};
use crate::integrity;
use crate::model::{AuthUser, RosterEntry, RosterSource};
use crate::output::Output;
use crate::planfile::Plan;
use crate::roster;
use crate::supabase::{Client, ClientConfig, ReadCounts, RetryPolicy};
use crate::term::Progress;

/// Run a command's future on a runtime made for it.
pub(crate) fn with_runtime<F, Fut>(f: F) -> Result<Exit, Error>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<Exit, Error>>,
{
    // One thread: the work is requests in flight, not computation (reconciling big
    // states uses threads of its own). A multi-thread runtime drives connections on its
    // workers while this future runs on the calling thread, which costs two cross-thread
    // wake-ups per request: measured, 2-3% of an apply's wall time and a third of its CPU.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Internal(format!("cannot start the async runtime: {e}")))?;
    let result = rt.block_on(f());
    // Do not wait for a prompt still blocked on stdin after Ctrl-C.
    rt.shutdown_timeout(Duration::from_millis(200));
    result
}

pub(crate) fn client_for(conn: &Connection, settings: &ClientSettings) -> Result<Client, Error> {
    Client::new(ClientConfig {
        base_url: conn.url.clone(),
        key: conn.key.clone(),
        concurrency: settings.concurrency,
        timeout: settings.timeout,
        retry: RetryPolicy::default(),
    })
}

async fn read_roster(client: &Client, source: &RosterSource) -> Result<Vec<RosterEntry>, Error> {
    match source {
        RosterSource::Table { schema, table } => client.read_roster_table(schema, table).await,
        RosterSource::File(path) => roster::read_roster_file(Path::new(path)),
    }
}

/// Read the roster and every auth user at once; both must be complete. When both fail,
/// an authentication failure is the one reported: it is the root cause (an `anon` key,
/// say, also makes the roster table unreadable).
pub(crate) async fn read_state(
    client: &Client,
    source: &RosterSource,
) -> Result<(Vec<RosterEntry>, Vec<AuthUser>), Error> {
    match tokio::join!(read_roster(client, source), client.list_users()) {
        (Ok(roster), Ok(users)) => Ok((roster, users)),
        (Err(e), Ok(_)) | (Ok(_), Err(e)) => Err(e),
        (Err(roster), Err(users)) => Err(match (&roster, &users) {
            (_, Error::AuthFailed { .. }) => users,
            _ => roster,
        }),
    }
}

/// `read_state` with its progress on stderr: pages and rows so far, and the rate.
pub(crate) async fn read_state_shown(
    client: &Client,
    source: &RosterSource,
    out: &Output,
) -> Result<(Vec<RosterEntry>, Vec<AuthUser>), Error> {
    let table = matches!(source, RosterSource::Table { .. });
    let progress = reading_progress(client, out, "reading", table);
    let state = read_state(client, source).await;
    progress.finish(false);
    state
}

/// Progress of the listings `client` makes from now on.
pub(crate) fn reading_progress(
    client: &Client,
    out: &Output,
    label: &'static str,
    roster_table: bool,
) -> Progress {
    let counter = client.read_progress();
    let base = counter.counts();
    Progress::activity(out.progress, label, move |tally| {
        describe_reading(&base, &counter.counts(), roster_table, tally.elapsed)
    })
}

/// `auth users 12000/20000 (12 pages), roster 800/1000 rows, 2400 rows/s`
fn describe_reading(
    base: &ReadCounts,
    now: &ReadCounts,
    roster_table: bool,
    elapsed: Duration,
) -> String {
    let of = |done: u64, total: Option<u64>| match total {
        Some(total) => format!("{done}/{total}"),
        None => done.to_string(),
    };
    let pages = now.user_pages - base.user_pages;
    let users = now.users - base.users;
    let users_total = now.users_total.filter(|_| pages > 0);
    let mut text = format!(
        "auth users {} ({pages} {})",
        of(users, users_total),
        if pages == 1 { "page" } else { "pages" }
    );
    let mut rows = users;
    if roster_table {
        let roster = now.roster_rows - base.roster_rows;
        let roster_total = now
            .roster_total
            .filter(|_| now.roster_pages > base.roster_pages);
        text.push_str(&format!(", roster {} rows", of(roster, roster_total)));
        rows += roster;
    }
    let secs = elapsed.as_secs_f64();
    if secs > 0.0 {
        text.push_str(&format!(", {:.0} rows/s", rows as f64 / secs));
    }
    text
}

/// A parsed plan (digest verified) whose changes must also follow from its own
/// `observed` state: anything else is refused (exit 3) before any request.
pub(crate) fn checked(plan: Plan) -> Result<Plan, Error> {
    integrity::check(&plan).map_err(|v| Error::Integrity(v.to_string()))?;
    Ok(plan)
}

/// The clock every command judges by, at full precision: a ban that ended a few hundred
/// milliseconds ago is over. Only the times written to a plan file are cut to whole
/// seconds (`Plan` does that when it records them).
pub(crate) fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

/// A local date and time as an instant, the way OpenSSH's `mktime` reads an
/// allowed-signers timestamp written without `Z` (`TZ`, else the system's zone). `None`
/// for a time that does not exist locally (a daylight-saving gap); an ambiguous one (the
/// hour repeated in autumn) is its earlier instant.
pub(crate) fn local_time(at: time::PrimitiveDateTime) -> Option<OffsetDateTime> {
    use chrono::TimeZone;
    let date = chrono::NaiveDate::from_ymd_opt(
        at.year(),
        u32::from(u8::from(at.month())),
        u32::from(at.day()),
    )?;
    let naive = date.and_hms_opt(
        u32::from(at.hour()),
        u32::from(at.minute()),
        u32::from(at.second()),
    )?;
    let local = chrono::Local.from_local_datetime(&naive).earliest()?;
    OffsetDateTime::from_unix_timestamp(local.timestamp()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reading_is_described_from_the_start_of_the_phase() {
        let base = ReadCounts {
            user_pages: 2,
            users: 2000,
            users_total: Some(2000),
            ..ReadCounts::default()
        };
        let now = ReadCounts {
            user_pages: 3,
            users: 3000,
            users_total: Some(2000),
            roster_pages: 1,
            roster_rows: 1000,
            roster_total: Some(1500),
        };
        assert_eq!(
            describe_reading(&base, &now, true, Duration::from_secs(2)),
            "auth users 1000/2000 (1 page), roster 1000/1500 rows, 1000 rows/s"
        );
        assert_eq!(
            describe_reading(&now, &now, false, Duration::ZERO),
            "auth users 0 (0 pages)"
        );
    }
}
