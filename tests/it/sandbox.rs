//! The sandbox's own contract: every quirk of `supabase-api.md` it imitates and every
//! fault knob, asserted over real HTTP with a small client written here (never the
//! tool's), so a quirk that silently disappears fails a test.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

use provision::sandbox::{Failure, Sandbox, Times};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::harness::{NewUser, RosterRow, SandboxConfig, Seed, fixture_path, sandbox};

// ---------------------------------------------------------------- a tiny HTTP client

struct Req {
    method: reqwest::Method,
    url: String,
    headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
}

struct Resp {
    status: u16,
    headers: reqwest::header::HeaderMap,
    text: String,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }

    fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
    }
}

/// A request with the service-role key in both `apikey` and `Authorization`, as the
/// contract says a client sends it.
fn req(sb: &Sandbox, method: &str, path: &str) -> Req {
    let key = sb.service_role_key();
    Req {
        method: reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
        url: format!("{}{}", sb.url(), path),
        headers: vec![
            ("apikey".into(), key.clone()),
            ("authorization".into(), format!("Bearer {key}")),
        ],
        body: None,
    }
}

impl Req {
    fn header(mut self, name: &str, value: &str) -> Req {
        let name = name.to_ascii_lowercase();
        self.headers.retain(|(k, _)| *k != name);
        self.headers.push((name, value.to_string()));
        self
    }

    fn without(mut self, name: &str) -> Req {
        self.headers.retain(|(k, _)| k != name);
        self
    }

    fn json(mut self, body: Value) -> Req {
        self.body = Some(body.to_string().into_bytes());
        self.header("content-type", "application/json")
    }

    fn raw(mut self, body: &[u8]) -> Req {
        self.body = Some(body.to_vec());
        self
    }

    fn v2024(self) -> Req {
        self.header("x-supabase-api-version", "2024-01-01")
    }

    async fn send(self) -> Resp {
        self.try_send().await.expect("request failed")
    }

    async fn try_send(self) -> Result<Resp, reqwest::Error> {
        // One client (and connection pool) per test thread: each #[tokio::test] has its
        // own thread and runtime, and building a client per request is slow.
        thread_local! {
            static CLIENT: reqwest::Client = reqwest::Client::new();
        }
        let client = CLIENT.with(Clone::clone);
        let mut rb = client.request(self.method, &self.url);
        for (k, v) in &self.headers {
            rb = rb.header(k.as_str(), v.as_str());
        }
        if let Some(b) = self.body {
            rb = rb.body(b);
        }
        let r = rb.send().await?;
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let text = r.text().await?;
        Ok(Resp {
            status,
            headers,
            text,
        })
    }
}

fn ts(s: &str) -> OffsetDateTime {
    OffsetDateTime::parse(s, &Rfc3339).unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn at(secs: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_700_000_000 + secs).unwrap()
}

fn emails(body: &Value) -> Vec<String> {
    body["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["email"].as_str().unwrap().to_string())
        .collect()
}

fn users_at_distinct_times(sb: &Sandbox, n: usize) {
    for i in 0..n {
        sb.add_user(NewUser::email(&format!("u{i:02}@example.com")).created_at(at(i as i64)));
    }
}

fn roster_rows(sb: &Sandbox, n: usize) {
    sb.set_roster(
        (0..n)
            .map(|i| RosterRow::new(&format!("p{i:04}@example.com"), "P", "engineer"))
            .collect(),
    );
}

fn roster_req(sb: &Sandbox, query: &str) -> Req {
    req(sb, "GET", &format!("/rest/v1/organization_people?{query}"))
        .header("accept-profile", "activity")
}

// ---------------------------------------------------------------- the Rust API

#[test]
fn start_gives_url_keys_and_state() {
    let sb = sandbox();
    assert!(sb.url().starts_with("http://127.0.0.1:"));
    assert!(sb.service_role_key().starts_with("eyJ"));
    assert!(sb.secret_key().starts_with("sb_secret_"));
    let u = sb.add_user(NewUser::email("Carol@Example.com"));
    assert_eq!(u.email.as_deref(), Some("Carol@Example.com"));
    assert_eq!(sb.users().len(), 1);
    assert_eq!(
        sb.user_by_email("carol@example.com").map(|r| r.id),
        Some(u.id.clone())
    );
    sb.set_banned_until(&u.id, Some(at(10)));
    assert_eq!(sb.user(&u.id).unwrap().banned_until, Some(at(10)));
    sb.delete_user(&u.id);
    assert!(sb.users().is_empty());
    sb.set_roster(vec![RosterRow::new("dana@example.com", "Dana", "engineer")]);
    assert_eq!(sb.add_roster_row(RosterRow::email("eve@example.com")), 2);
    sb.remove_roster_email(" DANA@example.com ");
    assert_eq!(sb.roster().len(), 1);
}

#[test]
fn a_sandbox_can_be_shared_across_threads_and_tasks() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Sandbox>();
    assert_send_sync::<provision::sandbox::Faults>();
}

#[test]
fn generated_seed_is_fast_for_a_hundred_thousand_users() {
    let t = Instant::now();
    let sb = Sandbox::start_with(SandboxConfig::default(), Seed::generate(100_000, 100_000));
    assert_eq!(sb.user_count(), 100_000);
    assert_eq!(sb.roster().len(), 100_000);
    assert!(
        t.elapsed() < Duration::from_secs(20),
        "seeding took {:?}",
        t.elapsed()
    );
}

// ---------------------------------------------------------------- GET /admin/users

#[tokio::test]
async fn list_defaults_to_50_per_page_with_total_and_link() {
    let sb = sandbox();
    users_at_distinct_times(&sb, 60);
    let r = req(&sb, "GET", "/auth/v1/admin/users").send().await;
    assert_eq!(r.status, 200);
    let body = r.json();
    assert_eq!(body["users"].as_array().unwrap().len(), 50);
    assert_eq!(body["aud"], "authenticated");
    assert_eq!(r.header("x-total-count").as_deref(), Some("60"));
    assert_eq!(
        r.header("link").as_deref(),
        Some(r#"</admin/users?page=2>; rel="next", </admin/users?page=2>; rel="last""#)
    );
}

#[tokio::test]
async fn list_link_has_next_only_before_the_last_page() {
    let sb = sandbox();
    users_at_distinct_times(&sb, 5);
    let r = req(&sb, "GET", "/auth/v1/admin/users?page=1&per_page=2")
        .send()
        .await;
    assert_eq!(
        r.header("link").as_deref(),
        Some(
            r#"</admin/users?page=2&per_page=2>; rel="next", </admin/users?page=3&per_page=2>; rel="last""#
        )
    );
    let r = req(&sb, "GET", "/auth/v1/admin/users?per_page=2&page=3")
        .send()
        .await;
    assert_eq!(
        r.header("link").as_deref(),
        Some(r#"</admin/users?page=3&per_page=2>; rel="last""#)
    );
    assert_eq!(r.json()["users"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn empty_list_links_to_page_zero() {
    let sb = sandbox();
    let r = req(&sb, "GET", "/auth/v1/admin/users").send().await;
    assert_eq!(r.json(), json!({"users": [], "aud": "authenticated"}));
    assert_eq!(r.header("x-total-count").as_deref(), Some("0"));
    assert_eq!(
        r.header("link").as_deref(),
        Some(r#"</admin/users?page=0>; rel="last""#)
    );
}

#[tokio::test]
async fn per_page_zero_is_a_recovered_panic() {
    let sb = sandbox();
    users_at_distinct_times(&sb, 2);
    let r = req(&sb, "GET", "/auth/v1/admin/users?per_page=0")
        .send()
        .await;
    assert_eq!(r.status, 500);
    let body = r.json();
    assert_eq!(body["code"], 500);
    assert_eq!(body["error_code"], "unexpected_failure");
    assert_eq!(body["msg"], "Internal Server Error");
    assert!(body["error_id"].is_string());
    assert_eq!(r.header("x-sb-error-code"), None);
}

#[tokio::test]
async fn per_page_has_no_maximum() {
    let sb = sandbox();
    users_at_distinct_times(&sb, 60);
    let r = req(&sb, "GET", "/auth/v1/admin/users?per_page=100000")
        .send()
        .await;
    assert_eq!(r.json()["users"].as_array().unwrap().len(), 60);
}

#[tokio::test]
async fn non_integer_page_is_bad_pagination() {
    let sb = sandbox();
    let r = req(&sb, "GET", "/auth/v1/admin/users?page=abc")
        .send()
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error_code"], "validation_failed");
    assert_eq!(
        r.json()["msg"],
        r#"Bad Pagination Parameters: strconv.ParseUint: parsing "abc": invalid syntax"#
    );
    let r = req(&sb, "GET", "/auth/v1/admin/users?per_page=-1")
        .send()
        .await;
    assert_eq!(r.status, 400);
}

#[tokio::test]
async fn page_zero_serves_page_one() {
    let sb = sandbox();
    users_at_distinct_times(&sb, 5);
    let q = "sort=created_at%20asc&per_page=2";
    let zero = req(&sb, "GET", &format!("/auth/v1/admin/users?{q}&page=0"))
        .send()
        .await;
    let one = req(&sb, "GET", &format!("/auth/v1/admin/users?{q}&page=1"))
        .send()
        .await;
    assert_eq!(emails(&zero.json()), emails(&one.json()));
    // The Link header still counts from the page as sent.
    assert!(
        zero.header("link")
            .unwrap()
            .starts_with(r#"</admin/users?page=1&per_page=2&sort=created_at+asc>; rel="next""#)
    );
}

#[tokio::test]
async fn default_order_is_newest_first_and_sort_asc_is_oldest_first() {
    let sb = sandbox();
    users_at_distinct_times(&sb, 3);
    let r = req(&sb, "GET", "/auth/v1/admin/users").send().await;
    assert_eq!(
        emails(&r.json()),
        ["u02@example.com", "u01@example.com", "u00@example.com"]
    );
    let r = req(&sb, "GET", "/auth/v1/admin/users?sort=created_at%20asc")
        .send()
        .await;
    assert_eq!(
        emails(&r.json()),
        ["u00@example.com", "u01@example.com", "u02@example.com"]
    );
    let r = req(&sb, "GET", "/auth/v1/admin/users?sort=created_at+ASC")
        .send()
        .await;
    assert_eq!(emails(&r.json())[0], "u00@example.com");
}

#[tokio::test]
async fn sort_allows_only_created_at_asc_or_desc() {
    let sb = sandbox();
    let r = req(&sb, "GET", "/auth/v1/admin/users?sort=email%20asc")
        .send()
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json()["msg"],
        "Bad Sort Parameters: bad field for sort 'email'"
    );
    let r = req(&sb, "GET", "/auth/v1/admin/users?sort=created_at%20up")
        .send()
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json()["msg"],
        "Bad Sort Parameters: bad direction for sort 'up', only 'asc' and 'desc' allowed"
    );
}

#[tokio::test]
async fn created_at_ties_have_no_stable_order() {
    let sb = sandbox();
    for i in 0..30 {
        sb.add_user(NewUser::email(&format!("t{i}@example.com")).created_at(at(0)));
    }
    let mut orders = HashSet::new();
    for _ in 0..6 {
        let r = req(&sb, "GET", "/auth/v1/admin/users?per_page=30")
            .send()
            .await;
        orders.insert(emails(&r.json()));
    }
    assert!(orders.len() > 1, "ties came back in one stable order");
}

#[tokio::test]
async fn filter_is_case_sensitive_on_email_and_not_on_full_name() {
    let sb = sandbox();
    sb.add_user(NewUser::email("erin@example.com"));
    sb.add_user(NewUser::email("x@example.com").full_name("Frank Castle"));
    let count = |f: &'static str| {
        let sb = &sb;
        async move {
            let r = req(sb, "GET", &format!("/auth/v1/admin/users?filter={f}"))
                .send()
                .await;
            r.json()["users"].as_array().unwrap().len()
        }
    };
    assert_eq!(count("erin").await, 1);
    assert_eq!(count("ERIN").await, 0);
    assert_eq!(count("fRaNk").await, 1);
    // % and _ are not escaped: they are LIKE wildcards.
    assert_eq!(count("e_in").await, 1);
    assert_eq!(count("%25").await, 2);
}

#[tokio::test]
async fn list_items_have_null_identities_and_include_deleted_and_anonymous() {
    let sb = sandbox();
    sb.add_user(NewUser::email("a@example.com"));
    sb.add_user(NewUser::email("gone@example.com").deleted_at(at(5)));
    sb.add_user(NewUser::anonymous());
    let r = req(&sb, "GET", "/auth/v1/admin/users").send().await;
    let users = r.json()["users"].as_array().unwrap().clone();
    assert_eq!(users.len(), 3);
    for u in &users {
        assert!(u["identities"].is_null());
        assert!(u.get("factors").is_none());
        assert!(u.get("banned_until").is_none());
    }
    assert!(users.iter().any(|u| u["deleted_at"].is_string()));
    assert!(
        users
            .iter()
            .any(|u| u["is_anonymous"] == true && u["email"] == "")
    );
}

#[tokio::test]
async fn limit_and_cursor_without_page_stay_in_offset_mode() {
    let sb = sandbox();
    users_at_distinct_times(&sb, 3);
    let r = req(&sb, "GET", "/auth/v1/admin/users?limit=1&cursor=abc")
        .send()
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["users"].as_array().unwrap().len(), 3);
    assert_eq!(r.header("x-total-count").as_deref(), Some("3"));
    assert!(r.json().get("pagination").is_none());
}

// ---------------------------------------------------------------- one user

#[tokio::test]
async fn get_user_has_identities_and_unknown_or_bad_ids_are_two_404s() {
    let sb = sandbox();
    let u = sb.add_user(NewUser::email("dana@example.com"));
    let r = req(&sb, "GET", &format!("/auth/v1/admin/users/{}", u.id))
        .send()
        .await;
    assert_eq!(r.status, 200);
    let body = r.json();
    assert_eq!(body["identities"][0]["provider"], "email");
    assert_eq!(
        body["identities"][0]["identity_data"]["email"],
        "dana@example.com"
    );
    let r = req(
        &sb,
        "GET",
        "/auth/v1/admin/users/00000000-0000-4000-8000-000000000001",
    )
    .send()
    .await;
    assert_eq!(
        (r.status, r.json()["error_code"].clone()),
        (404, json!("user_not_found"))
    );
    let r = req(&sb, "PUT", "/auth/v1/admin/users/not-a-uuid")
        .json(json!({}))
        .send()
        .await;
    assert_eq!(
        (r.status, r.json()["error_code"].clone()),
        (404, json!("validation_failed"))
    );
    assert_eq!(r.json()["msg"], "user_id must be an UUID");
}

#[tokio::test]
async fn there_is_no_patch_route() {
    let sb = sandbox();
    let u = sb.add_user(NewUser::email("dana@example.com"));
    let r = req(&sb, "PATCH", &format!("/auth/v1/admin/users/{}", u.id))
        .json(json!({"ban_duration": "1h"}))
        .send()
        .await;
    assert_eq!(r.status, 405);
    assert!(sb.user(&u.id).unwrap().banned_until.is_none());
    // loadUser runs before the method is matched.
    let r = req(&sb, "PATCH", "/auth/v1/admin/users/nope").send().await;
    assert_eq!(r.status, 404);
}

#[tokio::test]
async fn delete_answers_empty_object() {
    let sb = sandbox();
    let u = sb.add_user(NewUser::email("dana@example.com"));
    let r = req(&sb, "DELETE", &format!("/auth/v1/admin/users/{}", u.id))
        .send()
        .await;
    assert_eq!((r.status, r.json()), (200, json!({})));
    assert!(sb.users().is_empty());
}

// ---------------------------------------------------------------- POST /admin/users

#[tokio::test]
async fn create_answers_200_lower_cases_and_confirms() {
    let sb = sandbox();
    let r = req(&sb, "POST", "/auth/v1/admin/users")
        .json(json!({"email": "New@Example.com", "email_confirm": true, "banned_until": "2100-01-01T00:00:00Z"}))
        .send()
        .await;
    assert_eq!(r.status, 200);
    let body = r.json();
    assert_eq!(body["email"], "new@example.com");
    assert!(body["email_confirmed_at"].is_string());
    assert_eq!(body["user_metadata"]["email_verified"], true);
    assert_eq!(
        body["app_metadata"],
        json!({"provider": "email", "providers": ["email"]})
    );
    assert_eq!(body["identities"].as_array().unwrap().len(), 1);
    // `banned_until` is not a body field: ignored.
    assert!(body.get("banned_until").is_none());
    assert!(
        sb.user_by_email("new@example.com")
            .unwrap()
            .banned_until
            .is_none()
    );
}

#[tokio::test]
async fn create_does_not_trim_the_email() {
    let sb = sandbox();
    let r = req(&sb, "POST", "/auth/v1/admin/users")
        .json(json!({"email": " a@example.com"}))
        .send()
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error_code"], "validation_failed");
    assert_eq!(
        r.json()["msg"],
        "Unable to validate email address: invalid format"
    );
    assert!(sb.users().is_empty());
}

#[tokio::test]
async fn create_checks_length_and_presence_first() {
    let sb = sandbox();
    let long = format!("{}@example.com", "a".repeat(250));
    let r = req(&sb, "POST", "/auth/v1/admin/users")
        .json(json!({"email": long}))
        .send()
        .await;
    assert_eq!(r.json()["msg"], "An email address is too long");
    let r = req(&sb, "POST", "/auth/v1/admin/users")
        .json(json!({"email_confirm": true}))
        .send()
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json()["msg"],
        "Cannot create a user without either an email or phone"
    );
}

#[tokio::test]
async fn create_refuses_a_duplicate_whatever_its_case() {
    let sb = sandbox();
    sb.add_user(NewUser::email("dana@example.com"));
    let r = req(&sb, "POST", "/auth/v1/admin/users")
        .json(json!({"email": "DANA@example.com"}))
        .send()
        .await;
    assert_eq!(r.status, 422);
    assert_eq!(r.json()["error_code"], "email_exists");
    assert_eq!(r.header("x-sb-error-code").as_deref(), Some("email_exists"));
    assert_eq!(sb.users().len(), 1);
}

#[tokio::test]
async fn wrong_json_types_and_malformed_bodies_are_bad_json() {
    let sb = sandbox();
    for body in [&br#"{"email": 5}"#[..], b"{not json", b"", b"[1]"] {
        let r = req(&sb, "POST", "/auth/v1/admin/users")
            .raw(body)
            .send()
            .await;
        assert_eq!(r.status, 400, "{}", String::from_utf8_lossy(body));
        assert_eq!(r.json()["error_code"], "bad_json");
    }
    let r = req(&sb, "POST", "/auth/v1/admin/users")
        .raw(br#"{"email": 5}"#)
        .send()
        .await;
    assert!(
        r.json()["msg"]
            .as_str()
            .unwrap()
            .contains("AdminUserParams.email of type string")
    );
}

#[tokio::test]
async fn create_with_ban_duration_bans() {
    let sb = sandbox();
    let r = req(&sb, "POST", "/auth/v1/admin/users")
        .json(json!({"email": "x@example.com", "ban_duration": "24h"}))
        .send()
        .await;
    let until = ts(r.json()["banned_until"].as_str().unwrap());
    let expected = OffsetDateTime::now_utc() + time::Duration::hours(24);
    assert!((until - expected).abs() < time::Duration::seconds(5));
    assert!(sb.user_by_email("x@example.com").unwrap().is_banned());
}

#[tokio::test]
async fn body_over_one_mebibyte_is_413() {
    let sb = sandbox();
    let big = json!({"email": "a@example.com", "user_metadata": {"pad": "x".repeat(1 << 20)}});
    let r = req(&sb, "POST", "/auth/v1/admin/users")
        .json(big)
        .send()
        .await;
    assert_eq!(r.status, 413);
    assert_eq!(r.json()["error_code"], "request_entity_too_large");
}

// ---------------------------------------------------------------- PUT /admin/users/{id}

async fn put(sb: &Sandbox, id: &str, body: Value) -> Resp {
    req(sb, "PUT", &format!("/auth/v1/admin/users/{id}"))
        .json(body)
        .send()
        .await
}

#[tokio::test]
async fn ban_duration_is_a_go_duration() {
    let sb = sandbox();
    let u = sb.add_user(NewUser::email("dana@example.com"));
    let r = put(&sb, &u.id, json!({"ban_duration": "1h30m"})).await;
    assert_eq!(r.status, 200);
    let until = ts(r.json()["banned_until"].as_str().unwrap());
    let expected = OffsetDateTime::now_utc() + time::Duration::minutes(90);
    assert!((until - expected).abs() < time::Duration::seconds(5));
    let r = put(&sb, &u.id, json!({"ban_duration": "1.5h"})).await;
    assert_eq!(r.status, 200);
    let r = put(&sb, &u.id, json!({"ban_duration": "876000h"})).await;
    assert!(ts(r.json()["banned_until"].as_str().unwrap()).year() >= 2120);
}

#[tokio::test]
async fn none_and_zero_unban_and_null_banned_until_is_omitted() {
    let sb = sandbox();
    let u = sb.add_user(NewUser::email("dana@example.com"));
    for unban in ["none", "0s"] {
        sb.set_banned_until(
            &u.id,
            Some(OffsetDateTime::now_utc() + time::Duration::days(3)),
        );
        let r = put(&sb, &u.id, json!({"ban_duration": unban})).await;
        assert_eq!(r.status, 200);
        assert!(r.json().get("banned_until").is_none(), "{unban}");
        assert!(sb.user(&u.id).unwrap().banned_until.is_none());
    }
}

#[tokio::test]
async fn days_and_years_are_unknown_units() {
    let sb = sandbox();
    let u = sb.add_user(NewUser::email("dana@example.com"));
    let r = put(&sb, &u.id, json!({"ban_duration": "100y"})).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error_code"], "validation_failed");
    assert_eq!(
        r.json()["msg"],
        r#"invalid format for ban duration: time: unknown unit "y" in duration "100y""#
    );
    let r = put(&sb, &u.id, json!({"ban_duration": "7d"})).await;
    assert_eq!(r.status, 400);
    let r = put(&sb, &u.id, json!({"ban_duration": "2562048h"})).await;
    assert_eq!(r.status, 400);
    assert!(sb.user(&u.id).unwrap().banned_until.is_none());
}

#[tokio::test]
async fn a_negative_ban_lands_in_the_past_and_expired_bans_stay() {
    let sb = sandbox();
    let u = sb.add_user(NewUser::email("dana@example.com"));
    let r = put(&sb, &u.id, json!({"ban_duration": "-1h"})).await;
    assert_eq!(r.status, 200);
    let until = ts(r.json()["banned_until"].as_str().unwrap());
    assert!(until < OffsetDateTime::now_utc());
    let r = req(&sb, "GET", &format!("/auth/v1/admin/users/{}", u.id))
        .send()
        .await;
    assert!(
        r.json()["banned_until"].is_string(),
        "an expired ban is not cleared"
    );
    assert!(!sb.user(&u.id).unwrap().is_banned());
}

#[tokio::test]
async fn write_responses_carry_nanoseconds_and_reads_microseconds() {
    let sb = sandbox();
    let u = sb.add_user(NewUser::email("dana@example.com"));
    let written =
        put(&sb, &u.id, json!({"ban_duration": "1h"})).await.json()["banned_until"].clone();
    let read = req(&sb, "GET", &format!("/auth/v1/admin/users/{}", u.id))
        .send()
        .await
        .json()["banned_until"]
        .clone();
    let frac = |v: &Value| {
        v.as_str()
            .unwrap()
            .split('.')
            .nth(1)
            .map_or(0, |f| f.trim_end_matches('Z').len())
    };
    assert!(frac(&read) <= 6);
    assert!(
        (ts(written.as_str().unwrap()) - ts(read.as_str().unwrap())).abs()
            < time::Duration::microseconds(1)
    );
}

#[tokio::test]
async fn an_empty_update_changes_nothing_not_even_updated_at() {
    let sb = sandbox();
    let u = sb.add_user(NewUser::email("dana@example.com").created_at(at(0)));
    let r = put(&sb, &u.id, json!({})).await;
    assert_eq!(r.status, 200);
    assert_eq!(sb.user(&u.id).unwrap(), u);
    put(&sb, &u.id, json!({"user_metadata": {}})).await;
    assert!(sb.user(&u.id).unwrap().updated_at > u.updated_at);
}

#[tokio::test]
async fn metadata_is_a_shallow_merge_where_null_deletes() {
    let sb = sandbox();
    let u = sb.add_user(NewUser::email("dana@example.com").full_name("Dana"));
    put(
        &sb,
        &u.id,
        json!({"user_metadata": {"team": {"a": 1}, "x": 1}}),
    )
    .await;
    let r = put(
        &sb,
        &u.id,
        json!({"user_metadata": {"team": {"b": 2}, "x": null}}),
    )
    .await;
    let meta = &r.json()["user_metadata"];
    assert_eq!(meta["team"], json!({"b": 2}));
    assert!(meta.get("x").is_none());
    assert_eq!(meta["full_name"], "Dana");
}

#[tokio::test]
async fn email_update_lower_cases_and_a_clash_is_500() {
    let sb = sandbox();
    let a = sb.add_user(NewUser::email("a@example.com"));
    sb.add_user(NewUser::email("b@example.com"));
    let r = put(&sb, &a.id, json!({"email": "A2@Example.com"})).await;
    assert_eq!(r.json()["email"], "a2@example.com");
    let r = put(
        &sb,
        &a.id,
        json!({"email": "B@example.com", "ban_duration": "1h"}),
    )
    .await;
    assert_eq!(r.status, 500);
    assert_eq!(r.json()["code"], "23505");
    assert_eq!(
        r.header("x-sb-error-code").as_deref(),
        Some("unexpected_failure")
    );
    let r = req(&sb, "PUT", &format!("/auth/v1/admin/users/{}", a.id))
        .v2024()
        .json(json!({"email": "b@example.com"}))
        .send()
        .await;
    assert_eq!(
        r.json(),
        json!({"code": "unexpected_failure", "message": "Error updating user"})
    );
    // The transaction rolled back whole: no ban either.
    assert!(sb.user(&a.id).unwrap().banned_until.is_none());
}

// ---------------------------------------------------------------- errors and auth

#[tokio::test]
async fn both_error_shapes_carry_x_sb_error_code() {
    let sb = sandbox();
    let legacy = req(&sb, "GET", "/auth/v1/admin/users/nope").send().await;
    assert_eq!(
        legacy.json(),
        json!({"code": 404, "error_code": "validation_failed", "msg": "user_id must be an UUID"})
    );
    assert_eq!(
        legacy.header("x-sb-error-code").as_deref(),
        Some("validation_failed")
    );
    assert_eq!(legacy.header("x-supabase-api-version"), None);
    let v2 = req(&sb, "GET", "/auth/v1/admin/users/nope")
        .v2024()
        .send()
        .await;
    assert_eq!(
        v2.json(),
        json!({"code": "validation_failed", "message": "user_id must be an UUID"})
    );
    assert_eq!(
        v2.header("x-sb-error-code").as_deref(),
        Some("validation_failed")
    );
    assert_eq!(
        v2.header("x-supabase-api-version").as_deref(),
        Some("2024-01-01")
    );
}

#[tokio::test]
async fn the_gateway_checks_the_apikey_first() {
    let sb = sandbox();
    let r = req(&sb, "GET", "/auth/v1/admin/users")
        .without("apikey")
        .send()
        .await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["message"], "No API key found in request");
    let r = req(&sb, "GET", "/auth/v1/admin/users")
        .header("apikey", "nope")
        .send()
        .await;
    assert_eq!(r.status, 401);
    assert_eq!(
        r.json(),
        json!({"message": "Invalid API key", "hint": "Double check your Supabase `anon` or `service_role` API key."})
    );
    let r = req(&sb, "GET", "/rest/v1/organization_people")
        .without("apikey")
        .send()
        .await;
    assert_eq!(r.status, 401);
    let key = sb.service_role_key();
    let r = req(&sb, "GET", &format!("/auth/v1/admin/users?apikey={key}"))
        .without("apikey")
        .send()
        .await;
    assert_eq!(r.status, 200, "the gateway also takes ?apikey=");
}

#[tokio::test]
async fn gotrue_reads_only_authorization() {
    let sb = sandbox();
    let r = req(&sb, "GET", "/auth/v1/admin/users")
        .without("authorization")
        .send()
        .await;
    assert_eq!(
        (r.status, r.json()["error_code"].clone()),
        (401, json!("no_authorization"))
    );
    let r = req(&sb, "GET", "/auth/v1/admin/users")
        .header("authorization", "Basic abc")
        .send()
        .await;
    assert_eq!(r.status, 401);
    let forged = provision::sandbox::Sandbox::start_with(
        SandboxConfig {
            jwt_secret: "another-secret-another-secret-another-secret".into(),
            ..SandboxConfig::default()
        },
        Seed::empty(),
    )
    .service_role_key();
    let r = req(&sb, "GET", "/auth/v1/admin/users")
        .header("authorization", &format!("Bearer {forged}"))
        .send()
        .await;
    assert_eq!(
        (r.status, r.json()["error_code"].clone()),
        (403, json!("bad_jwt"))
    );
    let anon = sb.anon_key();
    let r = req(&sb, "GET", "/auth/v1/admin/users")
        .header("apikey", &anon)
        .header("authorization", &format!("Bearer {anon}"))
        .send()
        .await;
    assert_eq!(
        (r.status, r.json()["error_code"].clone()),
        (403, json!("not_admin"))
    );
    assert_eq!(r.json()["msg"], "User not allowed");
    let expired = sb.sign_jwt(&json!({"role": "service_role", "exp": 1_600_000_000}));
    let r = req(&sb, "GET", "/auth/v1/admin/users")
        .header("authorization", &format!("Bearer {expired}"))
        .send()
        .await;
    assert_eq!(r.status, 403);
    assert!(
        r.json()["msg"]
            .as_str()
            .unwrap()
            .contains("token is expired")
    );
}

#[tokio::test]
async fn secret_keys_go_in_apikey_and_never_from_a_browser() {
    let sb = sandbox();
    let secret = sb.secret_key();
    let r = req(&sb, "GET", "/auth/v1/admin/users")
        .header("apikey", &secret)
        .without("authorization")
        .send()
        .await;
    assert_eq!(r.status, 200);
    let r = req(&sb, "GET", "/auth/v1/admin/users")
        .header("apikey", &secret)
        .header("authorization", &format!("Bearer {secret}"))
        .send()
        .await;
    assert_eq!(r.status, 200);
    let r = req(&sb, "GET", "/auth/v1/admin/users")
        .header("authorization", &format!("Bearer {secret}"))
        .send()
        .await;
    assert_eq!(
        r.status, 403,
        "a secret key in Authorization alone is not a JWT"
    );
    let r = req(&sb, "GET", "/auth/v1/admin/users")
        .header("apikey", &secret)
        .without("authorization")
        .header("user-agent", "Mozilla/5.0 (X11; Linux x86_64)")
        .send()
        .await;
    assert_eq!(r.status, 401);
    assert_eq!(
        r.json()["message"],
        "Forbidden use of secret API key in browser"
    );
}

#[tokio::test]
async fn unknown_routes_are_404() {
    let sb = sandbox();
    let r = req(&sb, "GET", "/nope").send().await;
    assert_eq!(r.status, 404);
    let r = req(&sb, "GET", "/auth/v1/nope").send().await;
    assert_eq!((r.status, r.text.as_str()), (404, "404 page not found\n"));
}

// ---------------------------------------------------------------- PostgREST

#[tokio::test]
async fn the_default_profile_is_public_so_the_roster_needs_accept_profile() {
    let sb = sandbox();
    roster_rows(&sb, 3);
    let r = req(&sb, "GET", "/rest/v1/organization_people?select=email")
        .send()
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["code"], "PGRST205");
    assert_eq!(
        r.json()["hint"],
        "Perhaps you meant the table 'activity.organization_people'"
    );
    let r = roster_req(&sb, "select=email").send().await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()[0], json!({"email": "p0000@example.com"}));
    let r = roster_req(&sb, "select=*").send().await;
    assert_eq!(
        r.json()[0],
        json!({"id": 1, "email": "p0000@example.com", "name": "P", "kind": "engineer"})
    );
    let r = roster_req(&sb, "select=mail").send().await;
    assert_eq!((r.status, r.json()["code"].clone()), (400, json!("42703")));
}

#[tokio::test]
async fn a_schema_not_exposed_is_pgrst106() {
    let sb = sandbox();
    let r = req(&sb, "GET", "/rest/v1/organization_people")
        .header("accept-profile", "private")
        .send()
        .await;
    assert_eq!(r.status, 406);
    assert_eq!(
        r.json(),
        json!({
            "code": "PGRST106",
            "message": "Invalid schema: private",
            "details": null,
            "hint": "Only the following schemas are exposed: public, graphql_public, activity"
        })
    );
}

#[tokio::test]
async fn order_sorts_with_a_tiebreaker() {
    let sb = sandbox();
    sb.set_roster(vec![
        RosterRow::new("b@example.com", "B", "engineer"),
        RosterRow::new("a@example.com", "A2", "engineer"),
        RosterRow::new("a@example.com", "A1", "engineer"),
    ]);
    let r = roster_req(&sb, "select=name&order=email.asc,id.desc")
        .send()
        .await;
    assert_eq!(
        r.json(),
        json!([{"name": "A1"}, {"name": "A2"}, {"name": "B"}])
    );
    let r = roster_req(&sb, "select=name&order=email.desc,id.asc")
        .send()
        .await;
    assert_eq!(
        r.json(),
        json!([{"name": "B"}, {"name": "A2"}, {"name": "A1"}])
    );
}

#[tokio::test]
async fn max_rows_truncates_silently() {
    let sb = sandbox();
    roster_rows(&sb, 1200);
    let r = roster_req(&sb, "select=email&limit=5000").send().await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json().as_array().unwrap().len(), 1000);
    assert_eq!(r.header("content-range").as_deref(), Some("0-999/*"));
    let r = roster_req(&sb, "select=email&limit=5000")
        .header("prefer", "count=exact")
        .send()
        .await;
    assert_eq!(r.status, 206);
    assert_eq!(r.header("content-range").as_deref(), Some("0-999/1200"));
}

#[tokio::test]
async fn range_header_is_intersected_with_limit() {
    let sb = sandbox();
    roster_rows(&sb, 40);
    let r = roster_req(&sb, "select=email")
        .header("range", "0-24")
        .send()
        .await;
    assert_eq!(r.json().as_array().unwrap().len(), 25);
    assert_eq!(r.header("content-range").as_deref(), Some("0-24/*"));
    let r = roster_req(&sb, "select=email&limit=10")
        .header("range", "5-24")
        .send()
        .await;
    assert_eq!(r.header("content-range").as_deref(), Some("5-9/*"));
    let r = roster_req(&sb, "select=email&offset=5&limit=10")
        .header("range", "0-24")
        .send()
        .await;
    assert_eq!(r.header("content-range").as_deref(), Some("5-14/*"));
    let r = roster_req(&sb, "select=email")
        .header("range", "9-3")
        .send()
        .await;
    assert_eq!(
        (r.status, r.json()["code"].clone()),
        (416, json!("PGRST103"))
    );
}

#[tokio::test]
async fn count_exact_gives_206_and_416() {
    let sb = sandbox();
    roster_rows(&sb, 30);
    let counted = |q: &str| roster_req(&sb, q).header("prefer", "count=exact");
    let r = counted("select=email&limit=10&offset=0").send().await;
    assert_eq!(
        (r.status, r.header("content-range")),
        (206, Some("0-9/30".into()))
    );
    let r = counted("select=email&limit=50").send().await;
    assert_eq!(
        (r.status, r.header("content-range")),
        (200, Some("0-29/30".into()))
    );
    let r = counted("select=email&limit=10&offset=30").send().await;
    assert_eq!(
        (r.status, r.header("content-range")),
        (206, Some("*/30".into()))
    );
    let r = counted("select=email&limit=10&offset=40").send().await;
    assert_eq!(r.status, 416);
    assert_eq!(
        r.json()["details"],
        "An offset of 40 was requested, but there are only 30 rows."
    );
    let r = roster_req(&sb, "select=email&limit=10&offset=40")
        .send()
        .await;
    assert_eq!(
        (r.status, r.header("content-range")),
        (200, Some("*/*".into()))
    );
    assert_eq!(r.json(), json!([]));
}

#[tokio::test]
async fn postgrest_jwt_and_grants() {
    let sb = sandbox();
    roster_rows(&sb, 1);
    let r = roster_req(&sb, "select=email")
        .header("authorization", "Bearer abc.def.ghi")
        .send()
        .await;
    assert_eq!(
        (r.status, r.json()["code"].clone()),
        (401, json!("PGRST301"))
    );
    let anon = sb.anon_key();
    let r = roster_req(&sb, "select=email")
        .header("apikey", &anon)
        .without("authorization")
        .send()
        .await;
    assert_eq!((r.status, r.json()["code"].clone()), (401, json!("42501")));
    assert_eq!(
        r.json()["message"],
        "permission denied for table organization_people"
    );
    // 401 or 403 depends on whether the role is db-anon-role, not on a token being sent.
    let r = roster_req(&sb, "select=email")
        .header("apikey", &anon)
        .header("authorization", &format!("Bearer {anon}"))
        .send()
        .await;
    assert_eq!(r.status, 401);
    let user = sb
        .sign_jwt(&json!({"role": "authenticated", "sub": "00000000-0000-4000-8000-000000000001"}));
    let r = roster_req(&sb, "select=email")
        .header("authorization", &format!("Bearer {user}"))
        .send()
        .await;
    assert_eq!((r.status, r.json()["code"].clone()), (403, json!("42501")));
    let r = roster_req(&sb, "select=email")
        .header("apikey", &sb.secret_key())
        .without("authorization")
        .send()
        .await;
    assert_eq!(r.status, 200);
}

// ---------------------------------------------------------------- faults

#[tokio::test]
async fn latency_delays_every_request() {
    let sb = sandbox();
    sb.faults().set_latency(Duration::from_millis(150));
    let t = Instant::now();
    req(&sb, "GET", "/auth/v1/admin/users").send().await;
    assert!(t.elapsed() >= Duration::from_millis(150));
}

#[tokio::test]
async fn fail_next_fails_that_many_matching_requests_without_effect() {
    let sb = sandbox();
    let u = sb.add_user(NewUser::email("dana@example.com"));
    sb.faults().fail_next(
        "PUT /auth/v1/admin/users/*",
        2,
        Failure::status(503)
            .code("over_request_rate_limit")
            .retry_after("2"),
    );
    let ok_get = req(&sb, "GET", "/auth/v1/admin/users").send().await;
    assert_eq!(ok_get.status, 200, "GETs do not match the rule");
    for _ in 0..2 {
        let r = put(&sb, &u.id, json!({"ban_duration": "1h"})).await;
        assert_eq!(r.status, 503);
        assert_eq!(r.header("retry-after").as_deref(), Some("2"));
        assert_eq!(r.json()["error_code"], "over_request_rate_limit");
        assert!(sb.user(&u.id).unwrap().banned_until.is_none());
    }
    assert_eq!(
        put(&sb, &u.id, json!({"ban_duration": "1h"})).await.status,
        200
    );
}

#[tokio::test]
async fn fail_rate_is_deterministic_per_seed() {
    async fn pattern(seed: u64) -> Vec<u16> {
        let sb = sandbox();
        sb.faults()
            .fail_rate("GET /auth/v1/admin/users", 0.5, seed, Failure::status(502));
        let mut out = Vec::new();
        for _ in 0..20 {
            out.push(req(&sb, "GET", "/auth/v1/admin/users").send().await.status);
        }
        out
    }
    let a = pattern(42).await;
    assert_eq!(a, pattern(42).await);
    assert!(a.contains(&502) && a.contains(&200));
}

#[tokio::test]
async fn a_dropped_connection_gets_no_answer() {
    let sb = sandbox();
    sb.faults().drop_next("GET /auth/v1/admin/users", 1);
    let err = req(&sb, "GET", "/auth/v1/admin/users").try_send().await;
    assert!(err.is_err(), "expected a transport error");
    // The next one is answered again.
    assert_eq!(
        req(&sb, "GET", "/auth/v1/admin/users").send().await.status,
        200
    );

    // At the socket: the connection closes with not one byte of response.
    sb.faults().drop_next("GET /auth/v1/admin/users", 1);
    let addr = sb.url().trim_start_matches("http://").to_string();
    let key = sb.service_role_key();
    let bytes = tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        write!(
            s,
            "GET /auth/v1/admin/users HTTP/1.1\r\nHost: x\r\napikey: {key}\r\nAuthorization: Bearer {key}\r\n\r\n"
        )
        .unwrap();
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf);
        buf
    })
    .await
    .unwrap();
    assert!(
        bytes.is_empty(),
        "got {:?}",
        String::from_utf8_lossy(&bytes)
    );
    let log = sb.requests();
    assert_eq!(log.iter().filter(|r| r.dropped && r.status == 0).count(), 2);
}

#[tokio::test]
async fn after_commit_failures_keep_the_write() {
    let sb = sandbox();
    sb.faults().fail_next(
        "POST /auth/v1/admin/users",
        1,
        Failure::status(502).after_commit(),
    );
    let r = req(&sb, "POST", "/auth/v1/admin/users")
        .json(json!({"email": "x@example.com"}))
        .send()
        .await;
    assert_eq!(r.status, 502);
    assert!(sb.user_by_email("x@example.com").is_some());
    sb.faults().fail_next(
        "POST /auth/v1/admin/users",
        1,
        Failure::drop_connection().after_commit(),
    );
    let r = req(&sb, "POST", "/auth/v1/admin/users")
        .json(json!({"email": "y@example.com"}))
        .try_send()
        .await;
    assert!(r.is_err());
    assert!(sb.user_by_email("y@example.com").is_some());
}

#[tokio::test]
async fn a_slow_create_exists_before_it_is_answered() {
    let sb = sandbox();
    // Long enough that the test sees the committed user well before the answer, even on
    // a loaded machine; nothing here waits on a guessed duration.
    sb.faults()
        .delay_create_response(Duration::from_secs(3), Times::Next(1));
    let started = Instant::now();
    let call = req(&sb, "POST", "/auth/v1/admin/users").json(json!({"email": "slow@example.com"}));
    let pending = tokio::spawn(call.send());
    while sb.user_by_email("slow@example.com").is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "never committed"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(!pending.is_finished(), "committed before the answer");
    let r = pending.await.unwrap();
    assert_eq!(r.status, 200);
    assert!(started.elapsed() >= Duration::from_secs(3));
    // Only the next one was slow.
    let t = Instant::now();
    req(&sb, "POST", "/auth/v1/admin/users")
        .json(json!({"email": "fast@example.com"}))
        .send()
        .await;
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "the second create was delayed too"
    );
}

#[tokio::test]
async fn a_create_slower_than_the_request_deadline_is_a_504_that_still_committed() {
    let sb = Sandbox::start_with(
        SandboxConfig {
            max_request_duration: Duration::from_millis(200),
            ..SandboxConfig::default()
        },
        Seed::empty(),
    );
    sb.faults()
        .delay_create_response(Duration::from_secs(5), Times::Always);
    let t = Instant::now();
    let r = req(&sb, "POST", "/auth/v1/admin/users")
        .json(json!({"email": "late@example.com"}))
        .send()
        .await;
    assert_eq!(
        (r.status, r.json()["error_code"].clone()),
        (504, json!("request_timeout"))
    );
    assert!(t.elapsed() < Duration::from_secs(2));
    assert!(sb.user_by_email("late@example.com").is_some());
}

#[tokio::test]
async fn a_lost_ban_is_answered_but_not_stored() {
    let sb = sandbox();
    let u = sb.add_user(NewUser::email("dana@example.com"));
    sb.faults().lose_bans(Times::Next(1));
    let r = put(&sb, &u.id, json!({"ban_duration": "876000h"})).await;
    assert_eq!(r.status, 200);
    assert!(r.json()["banned_until"].is_string());
    assert!(sb.user(&u.id).unwrap().banned_until.is_none());
    put(&sb, &u.id, json!({"ban_duration": "876000h"})).await;
    assert!(
        sb.user(&u.id).unwrap().is_banned(),
        "only the next ban was lost"
    );
}

#[tokio::test]
async fn max_rows_can_be_overridden() {
    let sb = sandbox();
    roster_rows(&sb, 30);
    sb.faults().set_max_rows(Some(7));
    let r = roster_req(&sb, "select=email&limit=20").send().await;
    assert_eq!(r.json().as_array().unwrap().len(), 7);
    sb.faults().set_max_rows(None);
    let r = roster_req(&sb, "select=email").send().await;
    assert_eq!(r.json().as_array().unwrap().len(), 30);
}

#[tokio::test]
async fn users_inserted_during_a_scan_shift_the_pages() {
    let sb = sandbox();
    users_at_distinct_times(&sb, 6);
    let page = |n: u32| {
        req(
            &sb,
            "GET",
            &format!("/auth/v1/admin/users?page={n}&per_page=3"),
        )
    };
    let first = emails(&page(1).send().await.json());
    sb.faults().insert_users_during_page(2, 2);
    let r = page(2).send().await;
    assert_eq!(r.header("x-total-count").as_deref(), Some("8"));
    let second = emails(&r.json());
    // Newest first: two new users pushed one of page 1's users onto page 2.
    assert!(
        second.iter().any(|e| first.contains(e)),
        "{first:?} / {second:?}"
    );
    assert_eq!(sb.user_count(), 8);
}

// ---------------------------------------------------------------- the log

#[tokio::test]
async fn the_log_records_requests_without_credentials() {
    let sb = sandbox();
    let u = sb.add_user(NewUser::email("dana@example.com"));
    req(&sb, "GET", "/auth/v1/admin/users?page=1&per_page=10")
        .header("x-client-info", "provision/0.1.0")
        .send()
        .await;
    put(&sb, &u.id, json!({"ban_duration": "876000h"})).await;
    let log = sb.requests();
    assert_eq!(log.len(), 2);
    assert_eq!(
        (log[0].method.as_str(), log[0].path.as_str()),
        ("GET", "/auth/v1/admin/users")
    );
    assert_eq!(log[0].query_param("per_page").as_deref(), Some("10"));
    assert_eq!(
        log[0].headers.get("x-client-info").map(String::as_str),
        Some("provision/0.1.0")
    );
    assert!(log[0].has_apikey && log[0].has_authorization);
    assert!(
        !log[0].headers.contains_key("apikey") && !log[0].headers.contains_key("authorization")
    );
    assert_eq!(log[1].status, 200);
    assert!(log[1].is_write());
    assert_eq!(log[1].body_json().unwrap()["ban_duration"], "876000h");
    assert!(log[1].finished.unwrap() >= log[1].started);
    assert!(log[0].started <= log[1].started);
    sb.clear_requests();
    assert!(sb.requests().is_empty());
}

#[tokio::test]
async fn max_in_flight_counts_concurrent_requests() {
    let sb = sandbox();
    sb.faults().set_latency(Duration::from_millis(200));
    let calls: Vec<_> = (0..5)
        .map(|_| tokio::spawn(req(&sb, "GET", "/auth/v1/admin/users").send()))
        .collect();
    for c in calls {
        c.await.unwrap();
    }
    assert_eq!(sb.max_in_flight(), 5);
    assert_eq!(
        sb.requests().iter().map(|r| r.in_flight_at_start).max(),
        Some(5)
    );
    sb.clear_requests();
    req(&sb, "GET", "/auth/v1/admin/users").send().await;
    req(&sb, "GET", "/auth/v1/admin/users").send().await;
    assert_eq!(sb.max_in_flight(), 1);
}

// ---------------------------------------------------------------- the control endpoint

#[tokio::test]
async fn the_control_endpoint_sets_faults_and_reads_the_log() {
    let sb = sandbox();
    let base = sb.url();
    let client = reqwest::Client::new();
    let r = client
        .post(format!("{base}/_sandbox/faults"))
        .body(
            json!({"failures": [{"route": "GET /auth/v1/admin/users", "status": 429, "times": 1}]})
                .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(
        req(&sb, "GET", "/auth/v1/admin/users").send().await.status,
        429
    );
    assert_eq!(
        req(&sb, "GET", "/auth/v1/admin/users").send().await.status,
        200
    );
    let log: Value = client
        .get(format!("{base}/_sandbox/requests"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let statuses: Vec<u64> = log["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, [429, 200], "control requests are not logged");
    let bad = client
        .post(format!("{base}/_sandbox/faults"))
        .body("{nope")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status().as_u16(), 400);
    let r = client
        .delete(format!("{base}/_sandbox/faults"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
}

#[tokio::test]
async fn the_readme_fault_example_is_accepted_and_typos_are_not() {
    let sb = sandbox();
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme.find("```json\n{\n  \"latency_ms\"").unwrap() + "```json\n".len();
    let example = &readme[start..start + readme[start..].find("```").unwrap()];
    let client = reqwest::Client::new();
    let post = |body: String| {
        client
            .post(format!("{}/_sandbox/faults", sb.url()))
            .body(body)
            .send()
    };
    let r = post(example.to_string()).await.unwrap();
    assert_eq!(r.status().as_u16(), 200, "{}", r.text().await.unwrap());
    let knobs: Value = client
        .get(format!("{}/_sandbox/faults", sb.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(knobs["failures"].as_array().unwrap().len(), 4);
    assert_eq!(knobs["lose_unbans"], "always");
    assert_eq!(knobs["claimed_total"], 5000);
    assert_eq!(knobs["endless_body"], "GET /auth/v1/admin/users");
    assert_eq!(
        knobs["end_ban_at_read"],
        json!({"email": "bob@example.com", "skip": 1})
    );
    let typo = json!({"failures": [{"route": "GET /x", "statuss": 500}]}).to_string();
    assert_eq!(post(typo).await.unwrap().status().as_u16(), 400);
    let typo = json!({"latency": 5}).to_string();
    assert_eq!(post(typo).await.unwrap().status().as_u16(), 400);
}

#[tokio::test]
async fn the_control_endpoint_replaces_state() {
    let sb = sandbox();
    sb.add_user(NewUser::email("old@example.com"));
    let client = reqwest::Client::new();
    let body = json!({
        "roster": [{"email": "dana@example.com", "name": "Dana", "kind": "engineer"}],
        "users": [{"email": "carol@example.com", "banned_until": "+876000h"}]
    });
    let r = client
        .post(format!("{}/_sandbox/state", sb.url()))
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let users = sb.users();
    assert_eq!(users.len(), 1);
    assert!(users[0].is_banned());
    assert_eq!(sb.roster()[0].email.as_deref(), Some("dana@example.com"));
    let state: Value = client
        .get(format!("{}/_sandbox/state", sb.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(state["users"][0]["email"], "carol@example.com");
}

// ---------------------------------------------------------------- fixtures

#[test]
fn the_team_fixture_loads() {
    let sb = Sandbox::from_fixture(&fixture_path("team.yaml")).unwrap();
    assert_eq!(sb.roster().len(), 27);
    let distinct: HashSet<String> = sb
        .roster()
        .iter()
        .map(|r| r.email.as_deref().unwrap().trim().to_lowercase())
        .collect();
    assert_eq!(distinct.len(), 26);
    let users = sb.users();
    assert_eq!(users.len(), 24);
    let with_email: Vec<_> = users.iter().filter(|u| u.email.is_some()).collect();
    assert_eq!(with_email.len(), 23);
    let paired = with_email
        .iter()
        .filter(|u| distinct.contains(&u.email.as_deref().unwrap().to_lowercase()))
        .count();
    assert_eq!(paired, 22);
    assert!(users.iter().any(|u| u.email.is_none() && u.phone.is_some()));
}

#[test]
fn the_quickstart_fixture_has_a_returner_two_leavers_an_operator_and_a_look_alike() {
    let sb = Sandbox::from_fixture(&fixture_path("quickstart.yaml")).unwrap();
    let roster: HashSet<String> = sb
        .roster()
        .iter()
        .map(|r| r.email.as_deref().unwrap().trim().to_lowercase())
        .collect();
    let users = sb.users();
    let on_roster = |u: &&provision::sandbox::UserRecord| {
        roster.contains(&u.email.as_deref().unwrap_or("").to_lowercase())
    };
    let banned_returners = users
        .iter()
        .filter(|u| u.is_banned() && on_roster(u))
        .count();
    let off_roster: Vec<_> = users
        .iter()
        .filter(|u| u.email.is_some() && !on_roster(u))
        .map(|u| u.email.clone().unwrap())
        .collect();
    assert_eq!(banned_returners, 1);
    // mallory, trent, ops, and faye (Fay's old account: a look-alike of fay@).
    assert_eq!(off_roster.len(), 4, "{off_roster:?}");
    assert!(off_roster.iter().any(|e| e.starts_with("ops@")));
}

#[test]
fn a_bad_fixture_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(
        &path,
        "users:\n  - {email: a@example.com, banned_until: tomorrow}\n",
    )
    .unwrap();
    let err = Sandbox::from_fixture(&path).err().unwrap();
    assert!(err.contains("banned_until"), "{err}");
    std::fs::write(&path, "userz: []\n").unwrap();
    assert!(Sandbox::from_fixture(&path).is_err());
    let json_path = dir.path().join("ok.json");
    std::fs::write(
        &json_path,
        r#"{"users": [{"email": "a@example.com", "id": "11111111-1111-4111-8111-111111111111"}]}"#,
    )
    .unwrap();
    let sb = Sandbox::from_fixture(&json_path).unwrap();
    assert_eq!(sb.users()[0].id, "11111111-1111-4111-8111-111111111111");
}

#[tokio::test]
async fn junk_input_never_takes_the_server_down() {
    let sb = sandbox();
    let u = sb.add_user(NewUser::email("dana@example.com"));
    let junk: &[(&str, &str, &[u8])] = &[
        ("POST", "/auth/v1/admin/users", b"\xff\xfe\x00"),
        (
            "PUT",
            &format!("/auth/v1/admin/users/{}", u.id),
            b"{\"email\": \"\xc3\x28\"}",
        ),
        (
            "GET",
            "/auth/v1/admin/users?page=99999999999999999999999",
            b"",
        ),
        (
            "GET",
            "/auth/v1/admin/users?per_page=18446744073709551615&page=18446744073709551615",
            b"",
        ),
        ("GET", "/auth/v1/admin/users?filter=%ZZ&sort=", b""),
        ("GET", "/rest/v1/organization_people?limit=-1&order=.x", b""),
        (
            "GET",
            "/rest/v1/organization_people?offset=18446744073709551615&limit=18446744073709551615",
            b"",
        ),
    ];
    for (method, path, body) in junk {
        let r = req(&sb, method, path)
            .header("accept-profile", "activity")
            .raw(body)
            .send()
            .await;
        assert!(r.status < 600);
    }
    let r = roster_req(&sb, "select=email")
        .header("range", "18446744073709551615-")
        .send()
        .await;
    assert!(r.status < 600);
    assert_eq!(
        req(&sb, "GET", "/auth/v1/admin/users").send().await.status,
        200
    );
}

#[test]
fn generated_roster_can_start_past_the_first_users() {
    // 3 leavers (users 0..3 off the roster), 7 paired (3..10), 3 newcomers (10..13).
    let seed = Seed::generate_from(10, 10, 3);
    let users: Vec<_> = seed.users.iter().filter_map(|u| u.email.clone()).collect();
    let rows: Vec<_> = seed.roster.iter().filter_map(|r| r.email.clone()).collect();
    assert_eq!(
        users.first().map(String::as_str),
        Some("engineer000000@example.com")
    );
    assert_eq!(
        rows.first().map(String::as_str),
        Some("engineer000003@example.com")
    );
    assert_eq!(
        rows.last().map(String::as_str),
        Some("engineer000012@example.com")
    );
    let paired = rows.iter().filter(|r| users.contains(r)).count();
    assert_eq!(paired, 7);
    assert_eq!(
        Seed::generate(4, 4).roster,
        Seed::generate_from(4, 4, 0).roster
    );
}
