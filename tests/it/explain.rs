//! `provision explain EMAIL [PLAN]` end to end: live against the sandbox (read-only) and
//! offline from a plan.

use provision::sandbox::{NewUser, RosterRow};

use crate::support::World;

const ANN: &str = "0b1e6c4a-0000-4000-8000-000000000001";
const JOHN: &str = "0b1e6c4a-0000-4000-8000-000000000002";
const OPS: &str = "0b1e6c4a-0000-4000-8000-000000000003";

/// Roster: jon (a typo for john), Ann. Users: ann, John (active), ops (protected).
fn world() -> World {
    let world = World::empty();
    world.sandbox.set_roster(vec![
        RosterRow::new("jon@example.com", "Jon", "engineer"),
        RosterRow::new(" Ann@Example.com", "Ann", "engineer"),
    ]);
    world
        .sandbox
        .add_user(NewUser::email("ann@example.com").id(ANN));
    world.sandbox.add_user(
        NewUser::email("John@example.com")
            .id(JOHN)
            .last_sign_in_at(time::macros::datetime!(2026-11-20 09:15:30 UTC)),
    );
    world
        .sandbox
        .add_user(NewUser::email("ops@example.com").id(OPS));
    world
}

fn files(world: &World) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(world.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn explain_live_shows_the_ban_its_user_and_the_roster_look_alike_and_writes_nothing() {
    let world = world();
    let run = world.run(&[
        "explain",
        "JOHN@example.com ",
        "--protect",
        "ops@example.com",
    ]);
    run.code(0);
    assert_eq!(
        run.stdout,
        format!(
            "Email: JOHN@example.com \n\
             Normalised: john@example.com\n\
             Roster: not on the roster\n\
             Auth users:\n  {JOHN} John@example.com (active, last sign-in 2026-11-20T09:15:30Z)\n\
             Outcome: ban\n\
             Why: its auth user is active and it is not on the roster: the user is banned.\n\
             Look-alikes: jon@example.com\n"
        )
    );
    assert_eq!(run.stderr, "");
    // Read-only: GETs only, and no file left behind.
    assert!(world.sandbox.requests().iter().all(|r| r.method == "GET"));
    assert!(files(&world).is_empty(), "{:?}", files(&world));
}

#[test]
fn explain_live_names_the_protect_rule_in_json() {
    let world = world();
    let run = world.run(&[
        "explain",
        "ops@example.com",
        "--protect",
        "@Example.com",
        "--format",
        "json",
    ]);
    run.code(0);
    let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(
        v,
        serde_json::json!({
            "email": "ops@example.com",
            "normalised": "ops@example.com",
            "roster_entries": [],
            "users": [{"id": OPS, "email": "ops@example.com", "state": "active", "banned_until": null, "last_sign_in_at": null}],
            "outcome": "protected",
            "reason": "it is not on the roster, but `--protect @example.com` keeps its active user from a ban.",
            "look_alikes": [],
        })
    );
}

#[test]
fn explain_from_a_plan_is_offline_and_agrees_with_the_plan() {
    let world = world();
    world.plan(&["--protect", "ops@example.com"]).code(0);
    let before = world.sandbox.requests().len();
    // No environment needed: offline.
    let mut cmd = world.command(&[
        "explain",
        "jon@example.com",
        "plan.json",
        "--format",
        "json",
    ]);
    cmd.env_remove("MAP_SUPABASE_URL")
        .env_remove("MAP_SUPABASE_SERVICE_ROLE_KEY");
    let out = cmd.output().unwrap();
    let run = world.finish(out);
    run.code(0);
    let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(
        v,
        serde_json::json!({
            "email": "jon@example.com",
            "normalised": "jon@example.com",
            "roster_entries": [{"email": "jon@example.com", "origin": "the plan's observed roster"}],
            "users": [],
            "outcome": "create",
            "reason": "it is on the roster and no auth user has it: an account is created.",
            "look_alikes": ["john@example.com"],
        })
    );
    let run = world.run(&["explain", "ops@example.com", "plan.json"]);
    run.code(0);
    assert_eq!(
        run.stdout,
        format!(
            "Email: ops@example.com\n\
             Normalised: ops@example.com\n\
             Roster: not on the roster\n\
             Auth users:\n  {OPS} ops@example.com (active)\n\
             Outcome: protected\n\
             Why: it is not on the roster, but the plan bans no one with it: a `--protect` rule of the run that made the plan kept it.\n\
             Look-alikes: none\n"
        )
    );
    assert_eq!(
        world.sandbox.requests().len(),
        before,
        "no request from the plan"
    );
    assert_eq!(files(&world), vec!["plan.json".to_string()]);
}

#[test]
fn explain_refuses_an_edited_plan_with_3_an_unreadable_one_with_1_and_flags_beside_a_plan_with_64()
{
    let world = world();
    world.plan(&[]).code(0);
    let text = std::fs::read_to_string(world.path("plan.json")).unwrap();
    std::fs::write(
        world.path("edited.json"),
        text.replace("\"create\": 1", "\"create\": 2"),
    )
    .unwrap();
    let run = world.run(&["explain", "jon@example.com", "edited.json"]);
    run.code(3);
    assert_eq!(run.stdout, "");
    let run = world.run(&["explain", "jon@example.com", "missing.json"]);
    run.code(1);
    assert_eq!(run.stdout, "");
    world
        .run(&[
            "explain",
            "jon@example.com",
            "plan.json",
            "--protect",
            "@example.com",
        ])
        .code(64);
}

#[test]
fn explain_an_invalid_email_found_nowhere_says_why_it_would_be_a_conflict() {
    let world = world();
    let run = world.run(&["explain", "nobody-at-all"]);
    run.code(0);
    assert!(
        run.stdout.ends_with(
            "Outcome: conflict\n\
             Why: it is not a valid email (email must have exactly one `@` (has 0)): a roster row holding it would be a conflict, left alone.\n\
             Look-alikes: none\n"
        ),
        "{}",
        run.stdout
    );
}
