//! The policy file `provision.toml` end to end: the same plan as the flags, and bad
//! files refused before any request.

use provision::sandbox::{NewUser, Sandbox};

use crate::support::World;

/// A roster file under `ops/`, and auth users: one to ban, two protected, one paired.
fn world_with_roster_file() -> World {
    let world = World::new(Sandbox::start());
    std::fs::create_dir(world.path("ops")).unwrap();
    std::fs::write(
        world.path("ops/roster.yaml"),
        "people:\n  - email: ann@example.com\n  - email: new@example.com\n",
    )
    .unwrap();
    for email in [
        "ann@example.com",
        "gone@example.com",
        "ci@bots.example.com",
        "ops@example.com",
    ] {
        world.sandbox.add_user(NewUser::email(email));
    }
    world
}

/// The plan without the members that depend on the moment it was made.
fn timeless(mut plan: serde_json::Value) -> serde_json::Value {
    let obj = plan.as_object_mut().unwrap();
    let created = time::OffsetDateTime::parse(
        obj["created_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let expires = time::OffsetDateTime::parse(
        obj["expires_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    for member in ["created_at", "expires_at", "digest"] {
        obj.remove(member);
    }
    obj.insert(
        "valid_for_seconds".into(),
        (expires - created).whole_seconds().into(),
    );
    plan
}

#[test]
fn a_config_driven_plan_equals_the_flag_driven_one() {
    let world = world_with_roster_file();
    world
        .run(&[
            "plan",
            "--out",
            "by-flags.json",
            "--roster-file",
            "ops/roster.yaml",
            "--protect",
            "@bots.example.com",
            "--protect",
            "ops@example.com",
            "--max-bans",
            "1",
            "--expires-in",
            "2w",
        ])
        .code(0);
    std::fs::write(
        world.path("ops/provision.toml"),
        "[roster]\nfile = \"roster.yaml\"\n\n[policy]\nprotect = [\"@bots.example.com\"]\nmax_bans = 1\nexpires_in = \"2w\"\n",
    )
    .unwrap();
    // The file's roster path is relative to the file; `--protect` adds to its list.
    world
        .run(&[
            "plan",
            "--out",
            "by-file.json",
            "--config",
            "ops/provision.toml",
            "--protect",
            "ops@example.com",
        ])
        .code(0);
    let by_flags = world.read_plan("by-flags.json");
    assert_eq!(by_flags["roster"]["source"], "file:ops/roster.yaml");
    assert_eq!(by_flags["summary"]["protected"], 2);
    assert_eq!(by_flags["summary"]["ban"], 1);
    assert_eq!(
        timeless(world.read_plan("by-file.json")),
        timeless(by_flags)
    );
}

#[test]
fn flags_win_over_the_policy_file() {
    let world = world_with_roster_file();
    std::fs::write(
        world.path("provision.toml"),
        "[roster]\nfile = \"ops/roster.yaml\"\n[policy]\nmax_bans = 0\n",
    )
    .unwrap();
    // From the working directory: the file's max_bans 0 refuses the one ban...
    world
        .plan(&[])
        .code(4)
        .stderr_has("more than `--max-bans` 0");
    // ...and the flag wins over it.
    world.plan(&["--max-bans", "3"]).code(0);
    assert_eq!(
        world.read_plan("plan.json")["roster"]["source"],
        "file:ops/roster.yaml"
    );
}

/// Run a plan with `text` as provision.toml; it must fail with exit 1 and `stderr`, having
/// sent no request.
fn refused_before_any_request(text: &str, stderr: &str) {
    let world = world_with_roster_file();
    std::fs::write(world.path("provision.toml"), text).unwrap();
    world.sandbox.clear_requests();
    let run = world.plan(&[]);
    run.code(1);
    assert_eq!(run.stdout, "");
    assert_eq!(run.stderr, stderr);
    assert!(world.sandbox.requests().is_empty(), "nothing was read");
    assert!(!world.path("plan.json").exists());
}

#[test]
fn a_malformed_policy_file_is_refused_naming_the_line_and_key() {
    refused_before_any_request(
        "[policy]\nmax_bans = \"ten\"\n",
        "error: `provision.toml` line 2, key `policy.max_bans`: invalid type: string \"ten\", expected usize\n\
         Fix the policy file and run the command again; nothing was read from Supabase.\n",
    );
    refused_before_any_request(
        "[policy]\nprotect = [\"ops@example.com\"]\nban_limit = 3\n",
        "error: `provision.toml` line 3, key `policy.ban_limit`: unknown field `ban_limit`, expected one of `protect`, `max_bans`, `allow_empty_roster`, `expires_in`\n\
         Fix the policy file and run the command again; nothing was read from Supabase.\n",
    );
    refused_before_any_request(
        "[policy\n",
        "error: `provision.toml` line 1: unclosed table, expected `]`\n\
         Fix the policy file and run the command again; nothing was read from Supabase.\n",
    );
}

#[test]
fn both_roster_sources_in_the_policy_file_are_refused() {
    refused_before_any_request(
        "[roster]\ntable = \"activity.organization_people\"\nfile = \"roster.yaml\"\n",
        "error: `provision.toml` line 3, key `roster.file`: `table` and `file` are both set; keep one roster source\n\
         Fix the policy file and run the command again; nothing was read from Supabase.\n",
    );
}

#[test]
fn a_missing_config_file_is_an_error_before_any_request() {
    let world = world_with_roster_file();
    world.sandbox.clear_requests();
    for cmd in [
        vec!["plan", "--config", "nope.toml"],
        vec!["apply", "--yes", "--config", "nope.toml"],
        vec!["--config", "nope.toml", "show", "plan.json"],
    ] {
        let run = world.run(&cmd);
        run.code(1);
        assert_eq!(
            run.stderr,
            "error: the policy file `nope.toml` given with `--config` does not exist\n\
             Check the path, or leave `--config` out to read `provision.toml` from the working directory when it is there.\n",
            "{cmd:?}"
        );
    }
    assert!(world.sandbox.requests().is_empty());
}
