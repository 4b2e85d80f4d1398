//! One-step apply (`provision apply` without PLAN) and `--quiet`, end to end against the
//! in-process sandbox.

use provision::sandbox::{NewUser, RosterRow, Sandbox};

use crate::support::World;

fn writes(world: &World) -> usize {
    world
        .sandbox
        .requests()
        .iter()
        .filter(|r| r.is_write())
        .count()
}

/// Two engineers on the roster, both paired with active users: nothing to do.
fn in_step() -> World {
    let world = World::new(Sandbox::start());
    world.sandbox.set_roster(vec![
        RosterRow::new("ann@example.com", "Ann", "engineer"),
        RosterRow::new("bob@example.com", "Bob", "engineer"),
    ]);
    world.sandbox.add_user(NewUser::email("ann@example.com"));
    world.sandbox.add_user(NewUser::email("bob@example.com"));
    world
}

const TEAM_COUNTERS: &str =
    "created: 4\nrestored: 0\ndecommissioned: 1\nunchanged: 22\nReconciliation complete\n";

#[test]
fn one_step_apply_plans_applies_verifies_and_keeps_the_executed_plan() {
    let world = World::team();
    let run = world.run(&[
        "apply",
        "--yes",
        "--out",
        "executed.json",
        "--log",
        "apply.jsonl",
        "--color",
        "never",
    ]);
    run.code(0);
    assert_eq!(run.stdout, TEAM_COUNTERS);
    assert_eq!(world.sandbox.users().len(), 28);

    // The plan it executed is kept, is a valid plan, and is the one the log refers to.
    let plan = world.read_plan("executed.json");
    assert_eq!(plan["summary"]["create"], 4);
    assert_eq!(plan["summary"]["ban"], 1);
    world.run(&["show", "executed.json"]).code(0);
    let log = std::fs::read_to_string(world.path("apply.jsonl")).unwrap();
    let outcomes: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|r| r["outcome"] != "started")
        .collect();
    assert_eq!(outcomes.len(), 5, "{log}");
    for r in &outcomes {
        assert_eq!(r["plan_digest"], plan["digest"], "{r}");
        assert_eq!(r["outcome"], "applied", "{r}");
    }

    // Nothing left to do: the same state a plan then an apply would leave.
    world
        .plan(&["--detailed-exitcode"])
        .code(0)
        .stdout_has("Plan: 0 to create, 0 to restore, 0 to ban, 26 unchanged.");
}

#[test]
fn one_step_apply_refused_by_a_guard_writes_nothing_and_names_the_bans() {
    let world = World::team();
    std::fs::write(world.path("executed.json"), "keep me").unwrap();
    let run = world.run(&[
        "apply",
        "--yes",
        "--max-bans",
        "0",
        "--out",
        "executed.json",
        "--color",
        "never",
    ]);
    run.code(4);
    assert_eq!(run.stdout, "");
    assert_eq!(
        run.stderr,
        "warning: roster: `carmen@example.com` appears in 2 rows (after trimming and lower-casing); they are merged into one\n\
         error: the plan would ban 1 users, more than `--max-bans` 0:\n  \
         - mallory@example.com\n\
         No plan was written. Check the roster source; if the bans are intended, pass `--max-bans 1`.\n"
    );
    assert_eq!(writes(&world), 0);
    assert_eq!(
        std::fs::read_to_string(world.path("executed.json")).unwrap(),
        "keep me"
    );
}

#[test]
fn one_step_apply_without_a_terminal_or_yes_is_not_confirmed() {
    let world = World::team();
    let run = world.run(&["apply", "--out", "executed.json", "--color", "never"]);
    run.code(3)
        .stderr_has("refusing to apply without confirmation");
    assert_eq!(writes(&world), 0);
    assert!(
        !world.path("executed.json").exists(),
        "a plan that was not executed is not kept"
    );
}

#[test]
fn one_step_apply_on_a_terminal_refuses_any_answer_but_yes() {
    use rexpect::process::WaitStatus;
    let world = World::team();
    let cmd = world.std_command(&["apply", "--color", "never"]);
    let mut session = rexpect::session::spawn_command(cmd, Some(20_000)).unwrap();
    let before = session.exp_string("Type `yes` to confirm").unwrap();
    assert!(
        before.contains("Plan: 4 to create, 0 to restore, 1 to ban, 22 unchanged."),
        "the prompt shows the changes: {before}"
    );
    session.send_line("no").unwrap();
    let after = session.exp_eof().unwrap();
    match session.process().wait().unwrap() {
        WaitStatus::Exited(_, code) => assert_eq!(code, 3, "{after}"),
        other => panic!("apply did not exit normally: {other:?}"),
    }
    assert!(
        after.contains("not confirmed; nothing was changed"),
        "{after}"
    );
    assert_eq!(writes(&world), 0);
}

#[test]
fn quiet_one_step_apply_with_nothing_to_do_prints_nothing() {
    let world = in_step();
    let run = world.run(&["apply", "--yes", "--quiet"]);
    run.code(0);
    assert_eq!((run.stdout.as_str(), run.stderr.as_str()), ("", ""));
    assert_eq!(writes(&world), 0);
}

#[test]
fn quiet_one_step_apply_prints_only_the_counters_when_it_changes_something() {
    // The team's roster has a merged row: its warning is not printed under --quiet.
    let world = World::team();
    let run = world.run(&["apply", "--yes", "-q", "--color", "never"]);
    run.code(0);
    assert_eq!(run.stdout, TEAM_COUNTERS);
    assert_eq!(run.stderr, "");
}

#[test]
fn quiet_plan_prints_nothing_and_writes_the_plan() {
    let world = World::team();
    let run = world.plan(&["--quiet"]);
    run.code(0);
    assert_eq!((run.stdout.as_str(), run.stderr.as_str()), ("", ""));
    assert_eq!(world.read_plan("plan.json")["summary"]["create"], 4);
}

#[test]
fn format_json_wins_over_quiet() {
    let world = in_step();
    let run = world.run(&["apply", "--yes", "--quiet", "--format", "json"]);
    run.code(0);
    assert_eq!(
        run.stdout,
        "{\"summary\":{\"already_applied\":0,\"created\":0,\"decommissioned\":0,\"failed\":0,\"restored\":0,\"unchanged\":2}}\n"
    );
    assert_eq!(run.stderr, "");
    let run = world.plan(&["--quiet", "--format", "json"]);
    run.code(0);
    assert_eq!(run.stderr, "");
    let printed: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(printed, world.read_plan("plan.json"));
}

#[test]
fn one_step_apply_is_refused_when_the_policy_file_requires_approvals() {
    let world = World::team();
    std::fs::write(
        world.path("provision.toml"),
        "[approvals]\nallowed_signers = \"allowed_signers\"\nrequired = 2\n",
    )
    .unwrap();
    world.sandbox.clear_requests();
    let run = world.run(&["apply", "--yes"]);
    run.code(3);
    assert_eq!(
        run.stderr,
        "error: the policy file `provision.toml` requires 2 approval(s), so apply without a plan file is refused; nothing was changed\n\
         Run `provision plan`, have the plan approved, then `provision apply PLAN`.\n"
    );
    assert!(
        world.sandbox.requests().is_empty(),
        "nothing is read either"
    );
}

#[test]
fn plan_flags_beside_a_plan_and_expect_digest_without_one_are_usage_errors() {
    let world = World::team();
    world.plan(&[]).code(0);
    world.sandbox.clear_requests();
    for extra in [
        vec!["plan.json", "--protect", "@example.com"],
        vec!["plan.json", "--roster-file", "r.yaml"],
        vec!["plan.json", "--out", "x.json"],
        vec!["plan.json", "--allow-empty-roster"],
        vec![
            "--expect-digest",
            "sha256:0000000000000000000000000000000000000000000000000000000000000000",
        ],
    ] {
        let mut args = vec!["apply", "--yes"];
        args.extend(extra.iter().copied());
        let run = world.run(&args);
        run.code(64);
        assert_eq!(run.stdout, "", "{extra:?}");
    }
    assert!(world.sandbox.requests().is_empty());
}
