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
