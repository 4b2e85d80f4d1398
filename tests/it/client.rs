//! The Supabase client against the sandbox: complete listings through pagination and
//! max-rows caps, scans that move under it, retries and their limits, error
//! classification, the key never leaking, the concurrency limit, and settling a create
//! whose answer came too late.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use provision::config::SecretKey;
use provision::error::{Error, FailureKind};
use provision::model::{BAN_DURATION, UNBAN_DURATION};
use provision::sandbox::{Failure, LoggedRequest, Sandbox, Times};
use provision::supabase::{Client, ClientConfig, RetryPolicy};
use time::OffsetDateTime;

use super::harness::{NewUser, RosterRow, SandboxConfig, Seed};

const USERS: &str = "/auth/v1/admin/users";
const ROSTER: &str = "/rest/v1/organization_people";

/// Small delays so retries are quick, generous timeouts so a slow CI box still passes.
fn config(sb: &Sandbox, key: String) -> ClientConfig {
    ClientConfig {
        base_url: url::Url::parse(&sb.url()).unwrap(),
        key: SecretKey::new(key),
        concurrency: 8,
        timeout: Duration::from_secs(20),
        retry: RetryPolicy {
            max_tries: 5,
            base_delay: Duration::from_millis(5),
            max_delay: Duration::from_millis(50),
            retry_after_cap: Duration::from_secs(10),
        },
    }
}

fn client(sb: &Sandbox) -> Client {
    Client::new(config(sb, sb.service_role_key())).unwrap()
}

fn started(users: usize, roster: usize) -> Sandbox {
    Sandbox::start_with(SandboxConfig::default(), Seed::generate(users, roster))
}

/// Logged requests with this method whose path is `path`.
fn log(sb: &Sandbox, method: &str, path: &str) -> Vec<LoggedRequest> {
    sb.requests()
        .into_iter()
        .filter(|r| r.method == method && r.path == path)
        .collect()
}

fn pages(requests: &[LoggedRequest]) -> Vec<String> {
    requests
        .iter()
        .map(|r| r.query_param("page").unwrap_or_default())
        .collect()
}

fn sandbox_ids(sb: &Sandbox) -> HashSet<String> {
    sb.users().into_iter().map(|u| u.id).collect()
}

// ------------------------------------------------------------------ complete listings

#[tokio::test]
async fn lists_all_2500_users_in_pages_of_1000_with_the_documented_parameters() {
    let sb = started(2500, 0);
    let users = client(&sb).list_users().await.unwrap();

    assert_eq!(users.len(), 2500);
    let ids: HashSet<String> = users.iter().map(|u| u.id.clone()).collect();
    assert_eq!(ids, sandbox_ids(&sb));

    let reqs = log(&sb, "GET", USERS);
    let mut seen = pages(&reqs);
    seen.sort();
    assert_eq!(seen, vec!["1", "2", "3"]);
    for r in &reqs {
        assert_eq!(r.query_param("per_page").as_deref(), Some("1000"));
        assert_eq!(r.query_param("sort").as_deref(), Some("created_at asc"));
        assert!(
            r.query.as_deref().unwrap().contains("created_at%20asc"),
            "{:?}",
            r.query
        );
        assert!(r.has_apikey && r.has_authorization);
        assert_eq!(r.headers["x-supabase-api-version"], "2024-01-01");
        assert!(r.headers["x-client-info"].starts_with("provision/"));
        assert!(r.headers["user-agent"].starts_with("provision/"));
    }
}

#[tokio::test]
async fn lists_users_of_every_kind_with_their_state() {
    let sb = Sandbox::start();
    let until = OffsetDateTime::now_utc() + time::Duration::days(365);
    let banned = sb.add_user(NewUser::email("Legacy@Example.com").banned_until(until));
    let phone = sb.add_user(NewUser::phone("15550100"));
    let anon = sb.add_user(NewUser::anonymous());
    let deleted =
        sb.add_user(NewUser::email("gone@example.com").deleted_at(OffsetDateTime::now_utc()));

    let users = client(&sb).list_users().await.unwrap();
    let by_id = |id: &str| users.iter().find(|u| u.id == id).unwrap();
    assert_eq!(users.len(), 4);
    let b = by_id(&banned.id);
    assert_eq!(b.email.as_deref(), Some("Legacy@Example.com"));
    assert!(b.is_banned(OffsetDateTime::now_utc()));
    assert_eq!(by_id(&phone.id).email, None);
    assert!(by_id(&anon.id).is_anonymous);
    assert!(by_id(&deleted.id).deleted_at.is_some());
}

#[tokio::test]
async fn an_empty_project_lists_no_users() {
    let sb = Sandbox::start();
    assert!(client(&sb).list_users().await.unwrap().is_empty());
}

#[tokio::test]
async fn reads_2500_roster_rows_through_a_max_rows_cap_of_100() {
    let sb = started(0, 2500);
    sb.faults().set_max_rows(Some(100));
    let rows = client(&sb)
        .read_roster_table("activity", "organization_people")
        .await
        .unwrap();

    assert_eq!(rows.len(), 2500);
    let emails: HashSet<String> = rows.iter().filter_map(|r| r.email.clone()).collect();
    let expected: HashSet<String> = sb.roster().into_iter().filter_map(|r| r.email).collect();
    assert_eq!(emails, expected);
    assert_eq!(rows[0].origin, "activity.organization_people row 1");
    assert_eq!(rows[2499].origin, "activity.organization_people row 2500");

    let reqs = log(&sb, "GET", ROSTER);
    assert_eq!(reqs.len(), 25, "each page of the server's size read once");
    for r in &reqs {
        assert_eq!(r.headers["accept-profile"], "activity");
        assert_eq!(r.headers["prefer"], "count=exact");
        assert_eq!(r.query_param("select").as_deref(), Some("email"));
        assert_eq!(r.query_param("order").as_deref(), Some("email.asc"));
    }
    // Pages after the first are read concurrently, so in any order; the offsets step by
    // the rows the server really returns (100), not by the limit asked for.
    assert_eq!(reqs[0].query_param("offset").as_deref(), Some("0"));
    let mut offsets: Vec<usize> = reqs
        .iter()
        .map(|r| r.query_param("offset").unwrap().parse().unwrap())
        .collect();
    offsets.sort_unstable();
    assert_eq!(offsets, (0..25).map(|i| i * 100).collect::<Vec<_>>());
}

#[tokio::test]
async fn roster_rows_without_an_email_are_kept_as_none() {
    let sb = Sandbox::start();
    sb.set_roster(vec![
        RosterRow::email(" Dana@Example.com "),
        RosterRow::default(),
        RosterRow::email("eli@example.com"),
    ]);
    let rows = client(&sb)
        .read_roster_table("activity", "organization_people")
        .await
        .unwrap();
    let mut emails: Vec<Option<String>> = rows.into_iter().map(|r| r.email).collect();
    emails.sort();
    assert_eq!(
        emails,
        vec![
            None,
            Some(" Dana@Example.com ".to_string()),
            Some("eli@example.com".to_string())
        ]
    );
}

#[tokio::test]
async fn an_empty_roster_table_reads_as_no_rows() {
    let sb = Sandbox::start();
    let rows = client(&sb)
        .read_roster_table("activity", "organization_people")
        .await
        .unwrap();
    assert!(rows.is_empty());
}

// ------------------------------------------------------------- scans that move under us

#[tokio::test]
async fn a_scan_that_sees_users_inserted_midway_scans_again_and_returns_everyone() {
    let sb = started(2500, 0);
    sb.faults().insert_users_during_page(2, 7);
    let users = client(&sb).list_users().await.unwrap();

    assert_eq!(users.len(), 2507);
    let ids: HashSet<String> = users.iter().map(|u| u.id.clone()).collect();
    assert_eq!(ids, sandbox_ids(&sb));
    let first_pages = pages(&log(&sb, "GET", USERS))
        .into_iter()
        .filter(|p| p == "1")
        .count();
    assert_eq!(first_pages, 2, "one scan that did not add up, one that did");
}

#[tokio::test]
async fn a_listing_that_never_adds_up_fails_as_incomplete() {
    let sb = started(2500, 0);
    sb.faults().set_latency(Duration::from_millis(5));
    // Keep re-arming the "insert while page 2 is served" knob until the listing ends:
    // every scan then sees the total move.
    let stop = Arc::new(AtomicBool::new(false));
    let faults = sb.faults();
    let rearm = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                faults.insert_users_during_page(2, 3);
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    };
    let result = client(&sb).list_users().await;
    stop.store(true, Ordering::SeqCst);
    rearm.join().unwrap();

    let err = result.unwrap_err();
    assert!(matches!(err, Error::IncompleteRead { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("3 scans"), "{text}");
    assert!(text.contains("moved"), "{text}");
}

#[tokio::test]
async fn roster_rows_added_while_reading_are_read_again() {
    let sb = started(0, 300);
    sb.faults().set_max_rows(Some(100));
    // Every request waits 600 ms before it is handled, so once the first page has been
    // answered the second is sitting in that wait: a row added now lands mid-read. (The
    // wait is the margin this test's thread has to add the row on a loaded machine.)
    sb.faults().set_latency(Duration::from_millis(600));
    let c = client(&sb);
    let read = tokio::spawn({
        let c = c.clone();
        async move { c.read_roster_table("activity", "organization_people").await }
    });
    wait_until(|| {
        log(&sb, "GET", ROSTER)
            .iter()
            .any(|r| (200..300).contains(&r.status))
    })
    .await;
    sb.add_roster_row(RosterRow::email("new@example.com"));

    let rows = read.await.unwrap().unwrap();
    assert_eq!(rows.len(), 301);
    let first_pages = log(&sb, "GET", ROSTER)
        .iter()
        .filter(|r| r.query_param("offset").as_deref() == Some("0"))
        .count();
    assert_eq!(first_pages, 2, "the read started over once");
}

/// Wait for something the sandbox will observably do (not for a guessed duration).
async fn wait_until(mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(std::time::Instant::now() < deadline, "gave up waiting");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

// --------------------------------------------------------------------------- retries

#[tokio::test]
async fn a_429_burst_without_retry_after_is_retried_with_backoff() {
    let sb = started(10, 0);
    sb.faults()
        .fail_next(&format!("GET {USERS}"), 3, Failure::status(429));
    let users = client(&sb).list_users().await.unwrap();
    assert_eq!(users.len(), 10);
    let statuses: Vec<u16> = log(&sb, "GET", USERS).iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![429, 429, 429, 200]);
}

#[tokio::test]
async fn a_503_with_retry_after_waits_as_told() {
    let sb = started(10, 0);
    sb.faults().fail_next(
        &format!("GET {USERS}"),
        1,
        Failure::status(503).retry_after("1"),
    );
    client(&sb).list_users().await.unwrap();
    let reqs = log(&sb, "GET", USERS);
    let statuses: Vec<u16> = reqs.iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![503, 200]);
    let waited = reqs[1].started.duration_since(reqs[0].finished.unwrap());
    assert!(
        waited >= Duration::from_millis(950),
        "retried after {waited:?}, before the 1 s Retry-After"
    );
}

#[tokio::test]
async fn retry_after_as_an_http_date_is_honoured() {
    let sb = Sandbox::start();
    sb.faults().fail_next(
        &format!("GET {ROSTER}"),
        2,
        // Long past: retry at once (never wait on a clock that disagrees with ours).
        Failure::status(503).retry_after("Sun, 06 Nov 1994 08:49:37 GMT"),
    );
    client(&sb)
        .read_roster_table("activity", "organization_people")
        .await
        .unwrap();
    let statuses: Vec<u16> = log(&sb, "GET", ROSTER).iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![503, 503, 200]);
}

#[tokio::test]
async fn a_persistent_503_fails_clearly_after_max_tries() {
    let sb = started(10, 0);
    sb.faults()
        .fail_always(&format!("GET {USERS}"), Failure::status(503));
    let err = client(&sb).list_users().await.unwrap_err();
    let Error::Api(failure) = &err else {
        panic!("expected Error::Api, got {err:?}");
    };
    assert_eq!(failure.status, Some(503));
    assert!(
        failure
            .request
            .starts_with("GET /auth/v1/admin/users?page=1")
    );
    assert_eq!(log(&sb, "GET", USERS).len(), 5, "exactly max_tries tries");
    assert!(err.to_string().contains("HTTP 503"), "{err}");
}

#[tokio::test]
async fn statuses_outside_the_retry_list_are_not_retried() {
    let sb = started(10, 0);
    sb.faults().fail_next(
        &format!("GET {USERS}"),
        1,
        Failure::status(500).code("unexpected_failure"),
    );
    let err = client(&sb).list_users().await.unwrap_err();
    assert!(
        matches!(&err, Error::Api(f) if f.code.as_deref() == Some("unexpected_failure")),
        "{err:?}"
    );
    assert_eq!(log(&sb, "GET", USERS).len(), 1);
}

#[tokio::test]
async fn an_html_edge_error_is_retried_and_reported_readably() {
    let sb = started(1, 0);
    sb.faults().fail_always(
        &format!("GET {USERS}"),
        Failure::status(520).raw_body(
            "<html><head><title>520: Web server is returning an unknown error</title></head></html>",
        ),
    );
    let err = client(&sb).list_users().await.unwrap_err();
    let text = err.to_string();
    assert!(text.contains("HTTP 520"), "{text}");
    assert!(
        text.contains("Web server is returning an unknown error"),
        "{text}"
    );
    assert!(!text.contains("<title>"), "{text}");
    assert_eq!(log(&sb, "GET", USERS).len(), 5);
}

#[tokio::test]
async fn dropped_connections_are_retried_for_reads_and_bans() {
    let sb = started(10, 30);
    sb.faults().drop_next(&format!("GET {USERS}"), 2);
    sb.faults().drop_next(&format!("GET {ROSTER}"), 1);
    sb.faults().drop_next(&format!("PUT {USERS}/*"), 1);
    let c = client(&sb);

    assert_eq!(c.list_users().await.unwrap().len(), 10);
    assert_eq!(
        c.read_roster_table("activity", "organization_people")
            .await
            .unwrap()
            .len(),
        30
    );
    let id = sb.users()[0].id.clone();
    let user = c.set_ban_duration(&id, BAN_DURATION).await.unwrap();
    assert!(user.is_long_banned(OffsetDateTime::now_utc()));

    let dropped = |method, path| {
        log(&sb, method, path)
            .iter()
            .map(|r| r.dropped)
            .collect::<Vec<_>>()
    };
    assert_eq!(dropped("GET", USERS), vec![true, true, false]);
    assert_eq!(dropped("GET", ROSTER), vec![true, false]);
    assert_eq!(dropped("PUT", &format!("{USERS}/{id}")), vec![true, false]);
}

#[tokio::test]
async fn a_create_is_never_retried() {
    let sb = Sandbox::start();
    sb.faults().drop_next(&format!("POST {USERS}"), 1);
    let failure = client(&sb)
        .create_user("dana@example.com")
        .await
        .unwrap_err();
    assert_eq!(failure.kind, FailureKind::Network);
    assert_eq!(log(&sb, "POST", USERS).len(), 1);

    sb.faults()
        .fail_next(&format!("POST {USERS}"), 1, Failure::status(503));
    let failure = client(&sb)
        .create_user("eli@example.com")
        .await
        .unwrap_err();
    assert_eq!(failure.status, Some(503));
    assert_eq!(log(&sb, "POST", USERS).len(), 2);
}

// ------------------------------------------------------------------------------ writes

#[tokio::test]
async fn create_ban_and_restore() {
    let sb = Sandbox::start();
    let c = client(&sb);
    let created = c.create_user("dana@example.com").await.unwrap();
    assert_eq!(created.email.as_deref(), Some("dana@example.com"));
    assert!(!created.is_banned(OffsetDateTime::now_utc()));

    let post = &log(&sb, "POST", USERS)[0];
    assert_eq!(
        post.body_json().unwrap(),
        serde_json::json!({"email": "dana@example.com", "email_confirm": true})
    );
    assert!(post.headers["content-type"].starts_with("application/json"));

    let banned = c.set_ban_duration(&created.id, BAN_DURATION).await.unwrap();
    assert!(banned.is_long_banned(OffsetDateTime::now_utc()));
    assert!(sb.user(&created.id).unwrap().is_banned());

    let restored = c
        .set_ban_duration(&created.id, UNBAN_DURATION)
        .await
        .unwrap();
    assert_eq!(restored.banned_until, None);
    assert!(!sb.user(&created.id).unwrap().is_banned());
    let put = &log(&sb, "PUT", &format!("{USERS}/{}", created.id))[1];
    assert_eq!(
        put.body_json().unwrap(),
        serde_json::json!({"ban_duration": "none"})
    );
}

#[tokio::test]
async fn write_failures_carry_the_servers_error_code() {
    let sb = Sandbox::start();
    sb.add_user(NewUser::email("dana@example.com"));
    let c = client(&sb);
    let f = c.create_user("Dana@Example.com").await.unwrap_err();
    assert_eq!(f.code.as_deref(), Some("email_exists"));
    assert_eq!(f.status, Some(422));
    assert_eq!(f.error_code(), "email_exists");

    let f = c
        .set_ban_duration("00000000-0000-4000-8000-000000000000", BAN_DURATION)
        .await
        .unwrap_err();
    assert_eq!(f.code.as_deref(), Some("user_not_found"));
    assert_eq!(f.status, Some(404));
}

#[tokio::test]
async fn a_create_answered_after_the_timeout_is_found_by_email() {
    let sb = Sandbox::start();
    sb.faults()
        .delay_create_response(Duration::from_secs(5), Times::Next(1));
    let mut cfg = config(&sb, sb.service_role_key());
    cfg.timeout = Duration::from_millis(500);
    let c = Client::new(cfg).unwrap();

    let failure = c.create_user("dana@example.com").await.unwrap_err();
    assert_eq!(failure.kind, FailureKind::Timeout, "{failure:?}");
    assert_eq!(failure.error_code(), "timeout");

    let found = c.find_users_by_email(" Dana@Example.com").await.unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].email.as_deref(), Some("dana@example.com"));
    assert_eq!(log(&sb, "POST", USERS).len(), 1, "the create was sent once");
}

#[tokio::test]
async fn find_by_email_keeps_only_exact_matches() {
    let sb = Sandbox::start();
    let dana = sb.add_user(NewUser::email("dana@example.com"));
    sb.add_user(NewUser::email("xdana@example.com"));
    sb.add_user(NewUser::email("dana@example.com.au"));
    sb.add_user(NewUser::email("other@example.com").full_name("dana@example.com"));
    // `_` is a LIKE wildcard server-side: `d_na@…` also matches `dana@…` there.
    sb.add_user(NewUser::email("d_na@example.com"));

    let c = client(&sb);
    let found = c.find_users_by_email("dana@example.com").await.unwrap();
    assert_eq!(
        found.iter().map(|u| u.id.clone()).collect::<Vec<_>>(),
        vec![dana.id]
    );
    let found = c.find_users_by_email("d_na@example.com").await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].email.as_deref(), Some("d_na@example.com"));
    assert!(
        c.find_users_by_email("nobody@example.com")
            .await
            .unwrap()
            .is_empty()
    );
    let get = &log(&sb, "GET", USERS)[0];
    assert_eq!(
        get.query_param("filter").as_deref(),
        Some("dana@example.com")
    );
}

#[tokio::test]
async fn find_by_email_reads_every_page_of_matches() {
    let sb = started(2500, 0);
    let found = client(&sb)
        .find_users_by_email("engineer002499@example.com")
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    // Every generated email contains `example.com`: the filter matches all 2500 users
    // (three pages), none of them equal.
    sb.clear_requests();
    let found = client(&sb)
        .find_users_by_email("example.com")
        .await
        .unwrap();
    assert!(found.is_empty());
    let mut seen = pages(&log(&sb, "GET", USERS));
    seen.sort();
    assert_eq!(seen, vec!["1", "2", "3"]);
}

// ------------------------------------------------------------------ errors and the key

#[tokio::test]
async fn a_schema_that_is_not_exposed_names_the_exposed_ones() {
    let sb = Sandbox::start_with(
        SandboxConfig {
            exposed_schemas: vec!["public".into(), "graphql_public".into()],
            ..SandboxConfig::default()
        },
        Seed::generate(0, 3),
    );
    let err = client(&sb)
        .read_roster_table("activity", "organization_people")
        .await
        .unwrap_err();
    let Error::SchemaNotExposed { schema, failure } = &err else {
        panic!("expected SchemaNotExposed, got {err:?}");
    };
    assert_eq!(schema, "activity");
    assert_eq!(failure.code.as_deref(), Some("PGRST106"));
    let text = err.to_string();
    assert!(
        text.contains("Only the following schemas are exposed: public, graphql_public"),
        "{text}"
    );
}

#[tokio::test]
async fn an_unknown_roster_table_is_a_roster_table_error() {
    let sb = Sandbox::start();
    let err = client(&sb)
        .read_roster_table("activity", "no_such_table")
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::RosterTable { table, .. } if table == "activity.no_such_table"),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_wrong_key_is_an_authentication_failure_that_never_shows_the_key() {
    let sb = started(3, 3);
    let wrong = sb.sign_jwt(&serde_json::json!({"role": "service_role", "iss": "elsewhere"}));
    let wrong = format!("{wrong}x"); // a bad signature
    for key in [
        wrong,
        "not-a-key-at-all-0123456789".to_string(),
        "sb_secret_wrongwrongwrong".to_string(),
        sb.anon_key(),
    ] {
        let c = Client::new(config(&sb, key.clone())).unwrap();
        let err = c.list_users().await.unwrap_err();
        assert!(matches!(err, Error::AuthFailed { .. }), "{err:?}");
        let shown = format!("{err} {err:?} {c:?}");
        assert!(!shown.contains(&key), "the key leaked: {shown}");
    }
    // A wrong key on the roster read is an authentication failure too.
    let c = Client::new(config(&sb, "not-a-key-at-all-0123456789".into())).unwrap();
    let err = c
        .read_roster_table("activity", "organization_people")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::AuthFailed { .. }), "{err:?}");
    // And the sandbox never saw a second try of a refused request.
    assert!(log(&sb, "GET", ROSTER).len() <= 1);
}

#[tokio::test]
async fn a_secret_key_works_and_goes_in_apikey_only() {
    let sb = started(5, 5);
    let c = Client::new(config(&sb, sb.secret_key())).unwrap();
    assert_eq!(c.list_users().await.unwrap().len(), 5);
    assert_eq!(
        c.read_roster_table("activity", "organization_people")
            .await
            .unwrap()
            .len(),
        5
    );
    let created = c.create_user("new@example.com").await.unwrap();
    c.set_ban_duration(&created.id, BAN_DURATION).await.unwrap();
    for r in sb.requests() {
        assert!(r.has_apikey, "{r:?}");
        assert!(!r.has_authorization, "{r:?}");
    }
}

// ------------------------------------------------------------------------- concurrency

#[tokio::test]
async fn requests_in_flight_never_exceed_the_configured_limit() {
    let sb = started(6000, 0);
    sb.faults().set_latency(Duration::from_millis(20));
    let mut cfg = config(&sb, sb.service_role_key());
    cfg.concurrency = 3;
    let c = Client::new(cfg).unwrap();

    // Reads: 6 pages, 5 of them concurrently.
    assert_eq!(c.list_users().await.unwrap().len(), 6000);
    // Writes and reads together, from clones of the client.
    let ids: Vec<String> = sb.users().into_iter().take(12).map(|u| u.id).collect();
    let bans = ids.iter().map(|id| {
        let c = c.clone();
        let id = id.clone();
        async move { c.set_ban_duration(&id, BAN_DURATION).await }
    });
    let (bans, listing) = tokio::join!(futures::future::join_all(bans), c.list_users());
    assert!(bans.iter().all(Result::is_ok));
    assert_eq!(listing.unwrap().len(), 6000);

    assert!(sb.max_in_flight() <= 3, "server saw {}", sb.max_in_flight());
    assert_eq!(
        c.peak_in_flight(),
        3,
        "the limit was used, and not exceeded"
    );
}

#[tokio::test]
async fn a_429_storm_under_concurrency_still_completes() {
    let sb = started(8000, 0);
    sb.faults().fail_rate(
        &format!("GET {USERS}"),
        0.3,
        7,
        Failure::status(429).retry_after("0"),
    );
    let mut cfg = config(&sb, sb.service_role_key());
    cfg.retry.max_tries = 10;
    let c = Client::new(cfg).unwrap();
    assert_eq!(c.list_users().await.unwrap().len(), 8000);
    assert!(log(&sb, "GET", USERS).iter().any(|r| r.status == 429));
    assert!(sb.max_in_flight() <= 8);
}
