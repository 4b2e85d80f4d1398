//! The sandbox's own contract: every quirk of `supabase-api.md` it imitates and every
//! fault knob, asserted over real HTTP with a client written here (never the tool's).

use super::harness::{NewUser, RosterRow, SandboxConfig, Seed, sandbox};
use provision::sandbox::Sandbox;

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
        Some(u.id)
    );
    sb.set_roster(vec![RosterRow::new("dana@example.com", "Dana", "engineer")]);
    assert_eq!(sb.roster().len(), 1);
    let seeded = Sandbox::start_with(SandboxConfig::default(), Seed::generate(10, 12));
    assert_eq!(seeded.users().len(), 10);
    assert_eq!(seeded.roster().len(), 12);
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
