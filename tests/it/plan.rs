//! `provision plan` end to end against the in-process sandbox.

use provision::sandbox::{Failure, NewUser, RosterRow, Sandbox, SandboxConfig, Seed};

use crate::support::World;

fn row(email: &str) -> RosterRow {
    RosterRow::new(email, "Someone", "engineer")
}

/// A sandbox with `n` engineers, each on the roster and paired with an active user.
fn paired_world(n: usize) -> World {
    let mut seed = Seed::default();
    for i in 0..n {
        let email = format!("eng{i:04}@example.com");
        seed.roster.push(row(&email));
        seed.users.push(NewUser::email(&email));
    }
    World::new(Sandbox::start_with(SandboxConfig::default(), seed))
}

fn summary(world: &World) -> serde_json::Value {
    world.read_plan("plan.json")["summary"].clone()
}

#[test]
fn plan_of_the_seed_team_creates_four_bans_one_and_warns_of_the_merge() {
    let world = World::team();
    let run = world.plan(&[]);
    run.code(0)
        .stdout_has("Plan: 4 to create, 0 to restore, 1 to ban, 22 unchanged.")
        .stderr_has("merged");
    let plan = world.read_plan("plan.json");
    assert_eq!(plan["summary"]["create"], 4);
    assert_eq!(plan["summary"]["ban"], 1);
    assert_eq!(plan["summary"]["unchanged"], 22);
    assert_eq!(plan["summary"]["ignored"], 1);
    assert_eq!(plan["roster"]["count"], 26);
    assert_eq!(plan["auth_users"]["count"], 23);
    assert_eq!(
        plan["roster"]["source"],
        "table:activity.organization_people"
    );
    assert!(plan["digest"].as_str().unwrap().starts_with("sha256:"));
    // Planning writes nothing to Supabase.
    assert!(world.sandbox.requests().iter().all(|r| r.method == "GET"));
}

#[test]
fn plan_with_detailed_exitcode_says_whether_there_are_changes() {
    let world = World::team();
    world.plan(&["--detailed-exitcode"]).code(2);
    let quiet = World::new(Sandbox::start());
    quiet.sandbox.set_roster(vec![row("a@example.com")]);
    quiet.sandbox.add_user(NewUser::email("a@example.com"));
    quiet
        .plan(&["--detailed-exitcode"])
        .code(0)
        .stdout_has("0 to create");
}

#[test]
fn plan_restores_a_banned_roster_member_on_the_same_id() {
    let world = World::empty();
    world.sandbox.set_roster(vec![row("bob@example.com")]);
    let bob = world.sandbox.add_user(
        NewUser::email("bob@example.com")
            .banned_until(time::macros::datetime!(2126-01-01 0:00 UTC)),
    );
    world.plan(&[]).code(0);
    let plan = world.read_plan("plan.json");
    assert_eq!(plan["changes"][0]["action"], "restore");
    assert_eq!(plan["changes"][0]["user_id"], bob.id.to_string());
}

#[test]
fn plan_matches_mixed_case_and_space_padded_emails() {
    let world = World::empty();
    world
        .sandbox
        .set_roster(vec![row("  Dana@Example.COM "), row("eli@example.com")]);
    world.sandbox.add_user(NewUser::email("DANA@example.com"));
    world.sandbox.add_user(NewUser::email("Eli@Example.com"));
    world.plan(&[]).code(0);
    let s = summary(&world);
    assert_eq!(
        (
            s["create"].as_u64(),
            s["ban"].as_u64(),
            s["unchanged"].as_u64()
        ),
        (Some(0), Some(0), Some(2))
    );
}

#[test]
fn plan_reads_every_page_past_the_servers_row_caps() {
    let world = paired_world(2500);
    world.sandbox.faults().set_max_rows(Some(1000));
    world
        .plan(&[])
        .code(0)
        .stdout_has("0 to create, 0 to restore, 0 to ban, 2500 unchanged");
    let plan = world.read_plan("plan.json");
    assert_eq!(plan["roster"]["count"], 2500);
    assert_eq!(plan["auth_users"]["count"], 2500);
}

#[test]
fn plan_reads_every_roster_row_when_the_server_pages_by_fewer_than_asked() {
    let world = paired_world(2500);
    // PostgREST's max-rows below the 1000 rows each request asks for.
    world.sandbox.faults().set_max_rows(Some(300));
    world
        .plan(&[])
        .code(0)
        .stdout_has("0 to create, 0 to restore, 0 to ban, 2500 unchanged");
    let offsets: Vec<String> = world
        .sandbox
        .requests()
        .iter()
        .filter(|r| r.path.starts_with("/rest/v1/"))
        .filter_map(|r| r.query.clone())
        .collect();
    // One request per page of 300, none twice, whatever order they were sent in.
    assert_eq!(offsets.len(), 9, "{offsets:?}");
    for k in 0..9 {
        let offset = format!("offset={}", k * 300);
        assert_eq!(
            offsets
                .iter()
                .filter(|q| q.split('&').any(|p| p == offset))
                .count(),
            1,
            "{offset} in {offsets:?}"
        );
    }
}

#[test]
fn plan_rescans_when_users_are_inserted_while_listing() {
    let world = paired_world(2500);
    world.sandbox.faults().insert_users_during_page(2, 5);
    world.plan(&[]).code(0);
    let plan = world.read_plan("plan.json");
    // The listing that shifted under the scan was not used: the plan saw every user.
    assert_eq!(plan["auth_users"]["count"], 2505);
    assert_eq!(plan["summary"]["ban"], 5);
}

#[test]
fn plan_rides_out_429_and_503_bursts() {
    let world = World::team();
    let faults = world.sandbox.faults();
    faults.fail_next(
        "GET /auth/v1/admin/users",
        2,
        Failure::status(429).retry_after("1"),
    );
    faults.fail_next("GET /rest/v1/*", 2, Failure::status(503));
    world.plan(&[]).code(0).stdout_has("4 to create");
    let tries = world
        .sandbox
        .requests()
        .iter()
        .filter(|r| r.path == "/auth/v1/admin/users" && r.status == 429)
        .count();
    assert_eq!(tries, 2);
}

#[test]
fn plan_explains_a_schema_that_is_not_exposed() {
    let config = SandboxConfig {
        exposed_schemas: vec!["public".into(), "graphql_public".into()],
        ..SandboxConfig::default()
    };
    let world = World::new(Sandbox::start_with(config, Seed::default()));
    world
        .plan(&[])
        .code(1)
        .stderr_has("`activity` is not exposed")
        .stderr_has("Exposed schemas");
    assert!(!world.path("plan.json").exists());
}

#[test]
fn plan_with_a_wrong_key_fails_authentication_without_showing_it() {
    let mut world = World::team();
    world.key = world.sandbox.anon_key();
    world.plan(&[]).code(1).stderr_has("authentication failed");
    let mut world = World::team();
    world.key = format!("{}x", world.sandbox.service_role_key());
    world.plan(&[]).code(1).stderr_has("authentication failed");
}

#[test]
fn plan_works_with_an_sb_secret_key() {
    let mut world = World::team();
    world.key = world.sandbox.secret_key();
    world.plan(&[]).code(0).stdout_has("4 to create");
}

#[test]
fn plan_refuses_plain_http_to_a_remote_host() {
    let world = World::team();
    let out = world
        .command(&["plan"])
        .env("MAP_SUPABASE_URL", "http://abcd.supabase.co")
        .output()
        .unwrap();
    world.finish(out).code(1).stderr_has("http://");
    assert!(world.sandbox.requests().is_empty());
}

#[test]
fn plan_names_a_missing_variable() {
    let world = World::team();
    let out = world
        .command(&["plan"])
        .env_remove("MAP_SUPABASE_SERVICE_ROLE_KEY")
        .output()
        .unwrap();
    world
        .finish(out)
        .code(1)
        .stderr_has("MAP_SUPABASE_SERVICE_ROLE_KEY");
}

#[test]
fn plan_refuses_too_many_bans_and_leaves_the_old_plan_alone() {
    let world = World::team();
    std::fs::write(world.path("plan.json"), "old").unwrap();
    world
        .plan(&["--max-bans", "0"])
        .code(4)
        .stderr_has("would ban 1")
        .stderr_has("--max-bans");
    assert_eq!(
        std::fs::read_to_string(world.path("plan.json")).unwrap(),
        "old"
    );
    world.plan(&["--max-bans", "1"]).code(0);
}

#[test]
fn plan_default_max_bans_is_ten() {
    let world = World::empty();
    world.sandbox.set_roster(vec![row("keep@example.com")]);
    world.sandbox.add_user(NewUser::email("keep@example.com"));
    for i in 0..11 {
        world
            .sandbox
            .add_user(NewUser::email(&format!("gone{i}@example.com")));
    }
    world
        .plan(&[])
        .code(4)
        .stderr_has("would ban 11")
        .stderr_has("more than `--max-bans` 10");
    world.plan(&["--protect", "gone0@example.com"]).code(0);
    assert_eq!(summary(&world)["protected"], 1);
}

#[test]
fn plan_refuses_an_empty_roster_unless_allowed() {
    let world = World::empty();
    world
        .sandbox
        .add_user(NewUser::email("someone@example.com"));
    world.plan(&[]).code(4).stderr_has("--allow-empty-roster");
    assert!(!world.path("plan.json").exists());
    world.plan(&["--allow-empty-roster"]).code(0);
    assert_eq!(summary(&world)["ban"], 1);
}

#[test]
fn plan_protects_whole_domains_but_not_subdomains() {
    let world = World::empty();
    world.sandbox.set_roster(vec![row("keep@example.com")]);
    world.sandbox.add_user(NewUser::email("ops@corp.example"));
    world
        .sandbox
        .add_user(NewUser::email("dev@eu.corp.example"));
    world.plan(&["--protect", "@CORP.example"]).code(0);
    let plan = world.read_plan("plan.json");
    assert_eq!(plan["summary"]["protected"], 1);
    assert_eq!(plan["changes"][1]["email"], "dev@eu.corp.example");
}

#[test]
fn plan_reads_every_roster_file_format() {
    let world = World::empty();
    world.sandbox.add_user(NewUser::email("a@example.com"));
    let files = [
        (
            "r.yaml",
            "- email: a@example.com\n  name: A\n- email: b@example.com\n",
        ),
        (
            "p.yml",
            "people:\n  - {email: a@example.com}\n  - {email: b@example.com}\n",
        ),
        (
            "s.yaml",
            "roster:\n  - email: a@example.com\n  - email: b@example.com\n",
        ),
        (
            "r.json",
            r#"[{"email":"a@example.com"},{"email":"b@example.com","kind":"x"}]"#,
        ),
        ("r.csv", "name,email\nA,a@example.com\nB,b@example.com\n"),
    ];
    for (name, text) in files {
        std::fs::write(world.path(name), text).unwrap();
        world
            .plan(&["--roster-file", name])
            .code(0)
            .stdout_has("1 to create");
        let plan = world.read_plan("plan.json");
        assert_eq!(plan["roster"]["source"], format!("file:{name}"));
        assert_eq!(plan["changes"][0]["email"], "b@example.com");
    }
}

#[test]
fn plan_names_the_file_and_row_of_a_broken_roster() {
    let world = World::empty();
    std::fs::write(
        world.path("bad.yaml"),
        "- email: a@example.com\n- [not, a, mapping]\n",
    )
    .unwrap();
    world
        .plan(&["--roster-file", "bad.yaml"])
        .code(1)
        .stderr_has("bad.yaml");
    std::fs::write(world.path("bad.csv"), "name\nA\n").unwrap();
    world
        .plan(&["--roster-file", "bad.csv"])
        .code(1)
        .stderr_has("bad.csv")
        .stderr_has("email");
    world
        .plan(&["--roster-file", "missing.yaml"])
        .code(1)
        .stderr_has("missing.yaml");
    assert!(!world.path("plan.json").exists());
}

#[test]
fn plan_lists_invalid_roster_rows_and_duplicate_users_as_conflicts() {
    let world = World::empty();
    world.sandbox.set_roster(vec![
        row("not-an-email"),
        row("ok@example.com"),
        row("dup@example.com"),
    ]);
    let a = world.sandbox.add_user(NewUser::email("dup@example.com"));
    let b = world.sandbox.add_user(NewUser::email("DUP@example.com"));
    world
        .plan(&[])
        .code(0)
        .stderr_has("not-an-email")
        .stderr_has("dup@example.com");
    let plan = world.read_plan("plan.json");
    assert_eq!(plan["summary"]["conflicts"], 2);
    assert_eq!(plan["summary"]["create"], 1);
    let dup = plan["conflicts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["email"] == "dup@example.com")
        .unwrap();
    let mut ids = vec![a.id.to_string(), b.id.to_string()];
    ids.sort();
    assert_eq!(dup["user_ids"], serde_json::json!(ids));
}

#[test]
fn plan_json_format_prints_the_plan_file_itself() {
    let world = World::team();
    let run = world.plan(&["--format", "json"]);
    run.code(0);
    let file = std::fs::read_to_string(world.path("plan.json")).unwrap();
    assert_eq!(run.stdout, file);
}

#[test]
fn plan_markdown_format_is_fit_for_a_pull_request() {
    let world = World::team();
    world
        .plan(&["--format", "markdown"])
        .code(0)
        .stdout_has("| create |");
}

#[test]
fn plan_file_is_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let world = World::team();
    world.plan(&[]).code(0);
    let mode = std::fs::metadata(world.path("plan.json"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn usage_errors_exit_64_and_help_exits_0_without_the_key() {
    let world = World::team();
    world.run(&["plan", "--no-such-flag"]).code(64);
    world.run(&["plan", "--max-bans", "-1"]).code(64);
    world.run(&["plan", "--expires-in", "0s"]).code(64);
    world.run(&["--concurrency", "0", "plan"]).code(64);
    world
        .run(&["plan", "--roster-table", "a.b", "--roster-file", "x.yaml"])
        .code(64);
    world.run(&[]).code(64);
    for cmd in [
        vec!["--help"],
        vec!["plan", "--help"],
        vec!["apply", "--help"],
        vec!["show", "--help"],
    ] {
        world.run(&cmd).code(0).stdout_has("Exit codes");
    }
    world
        .run(&["--version"])
        .code(0)
        .stdout_has(env!("CARGO_PKG_VERSION"));
}

#[test]
fn plan_names_a_roster_table_that_does_not_exist() {
    let world = World::team();
    world
        .plan(&["--roster-table", "activity.nope"])
        .code(1)
        .stderr_has("activity.nope");
}

#[test]
fn colour_only_when_asked_or_on_a_terminal() {
    let world = World::team();
    let run = world.run(&["plan", "--out", "plan.json", "--color", "always"]);
    run.code(0);
    assert!(
        run.stdout.contains("\u{1b}["),
        "--color always colours: {run:?}"
    );
    let mut world = World::team();
    world.env.push(("NO_COLOR".into(), "1".into()));
    let run = world.run(&["plan", "--out", "plan.json", "--color", "always"]);
    assert!(
        run.stdout.contains("\u{1b}["),
        "--color always wins over NO_COLOR"
    );
    // Not a terminal (a pipe), `auto`: plain.
    let run = world.run(&["plan", "--out", "plan.json"]);
    assert!(!run.stdout.contains('\u{1b}'), "{run:?}");
    let run = world.run(&["plan", "--out", "plan.json", "--color", "never"]);
    assert!(!run.stdout.contains('\u{1b}'));
}

#[test]
fn hostile_emails_are_escaped_before_they_reach_the_terminal() {
    let world = World::empty();
    // A right-to-left override and an escape sequence in untrusted data.
    let hostile = "eve\u{202e}moc.elpmaxe@evil.example";
    let ansi = "mallory\u{1b}[2J@example.com";
    world.sandbox.set_roster(vec![row("ok@example.com")]);
    world.sandbox.add_user(NewUser::email(hostile));
    world.sandbox.add_user(NewUser::email(ansi));
    let run = world.plan(&["--format", "text"]);
    run.code(0);
    for text in [&run.stdout, &run.stderr] {
        assert!(
            !text.contains('\u{202e}'),
            "bidi override reached the terminal: {text}"
        );
        assert!(
            !text.contains('\u{1b}'),
            "escape sequence reached the terminal: {text}"
        );
    }
    assert!(run.stdout.contains("\\u{202e}"), "{run:?}");
}

#[test]
fn plan_warns_of_a_create_that_looks_like_a_ban_records_it_and_show_renders_it() {
    let world = World::empty();
    world
        .sandbox
        .set_roster(vec![row("jon@example.com"), row("ann@example.com")]);
    world.sandbox.add_user(NewUser::email("ann@example.com"));
    world.sandbox.add_user(NewUser::email("john@example.com"));
    let run = world.plan(&[]);
    run.code(0);
    assert_eq!(
        run.stderr,
        "warning: create jon@example.com while banning john@example.com: a typo in the roster?\n"
    );
    let warning = "Warning: creates that look like bans in this plan:\n  \
                   ! create jon@example.com while banning john@example.com: a typo in the roster?\n\n\
                   Auth users, before → after:\n";
    assert!(run.stdout.contains(warning), "{}", run.stdout);
    let plan = world.read_plan("plan.json");
    assert_eq!(
        plan["look_alikes"],
        serde_json::json!([{"create": "jon@example.com", "ban": "john@example.com"}])
    );
    // The pair changes no decision.
    assert_eq!(
        (
            plan["summary"]["create"].as_u64(),
            plan["summary"]["ban"].as_u64()
        ),
        (Some(1), Some(1))
    );

    let show = world.run(&["show", "plan.json", "--color", "never"]);
    show.code(0);
    assert!(show.stdout.contains(warning), "{}", show.stdout);
    let md = world.run(&["show", "plan.json", "--format", "markdown"]);
    md.code(0);
    assert!(
        md.stdout.contains(
            "> [!WARNING]\n> 1 create looks like a ban in this plan: a typo in the roster?\n\
             > - create jon\\@example.com while banning john\\@example.com\n"
        ),
        "{}",
        md.stdout
    );
}
