//! One module per command: each wires configuration, the client, the core and rendering
//! for its command. What several commands share (the runtime, the client, reading the
//! state, the clock) lives here; `lib.rs` only dispatches.

pub mod apply;
pub mod docs;
pub mod explain;
pub mod plan;
pub mod show;

use std::path::Path;
use std::time::Duration;

use time::OffsetDateTime;

use crate::cli::Common;
use crate::config::Connection;
use crate::error::{Error, Exit};
use crate::model::{AuthUser, RosterEntry, RosterSource};
use crate::roster;
use crate::supabase::{Client, ClientConfig, RetryPolicy};

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

pub(crate) fn client_for(conn: &Connection, common: &Common) -> Result<Client, Error> {
    Client::new(ClientConfig {
        base_url: conn.url.clone(),
        key: conn.key.clone(),
        concurrency: common.concurrency as usize,
        timeout: Duration::from_secs(common.timeout),
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

pub(crate) fn now() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    // Plans record whole seconds; keep the in-memory value equal to the file's.
    now.replace_nanosecond(0).unwrap_or(now)
}
