//! `provision apply` and `provision show` end to end against the in-process sandbox.

use std::collections::BTreeMap;
use std::time::Duration;

use provision::sandbox::{Failure, NewUser, RosterRow, Sandbox, Times};
use time::OffsetDateTime;

use crate::support::World;

/// Every user as (email -> (id, banned now)): what idempotency compares.
fn state(world: &World) -> BTreeMap<String, (String, bool)> {
    let now = OffsetDateTime::now_utc();
    world
        .sandbox
        .users()
        .into_iter()
        .filter_map(|u| {
            let email = u.email.clone().filter(|e| !e.is_empty())?;
            Some((
                email,
                (u.id.to_string(), u.banned_until.is_some_and(|b| b > now)),
            ))
        })
        .collect()
}

/// Start `provision` with every request slowed by `latency`, and return once the sandbox
/// has seen `min_writes` writes (an observable event, not a guessed duration).
pub fn apply_in_background(
    world: &World,
    args: &[&str],
    latency: Duration,
    min_writes: usize,
) -> std::process::Child {
    world.sandbox.faults().set_latency(latency);
    world.sandbox.clear_requests();
    let child = world
        .std_command(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while world.writes() < min_writes {
        assert!(
            std::time::Instant::now() < deadline,
            "apply never started writing"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    child
}

/// Ctrl-C for a running `provision` (SIGINT, as a terminal sends it).
pub fn interrupt(child: &std::process::Child) {
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn apply_of_the_seed_plan_then_a_second_plan_has_no_changes() {
    let world = World::team();
    world.plan(&[]).code(0);
    let run = world.run(&["apply", "plan.json", "--yes"]);
    run.code(0)
        .stdout_has("created: 4\nrestored: 0\ndecommissioned: 1\nunchanged: 22\n")
        .stdout_has("Reconciliation complete");
    let after_first = state(&world);
    assert_eq!(after_first.len(), 27);

    world
        .plan(&["--detailed-exitcode"])
        .code(0)
        .stdout_has("0 to create, 0 to restore, 0 to ban, 26 unchanged");
    world
        .run(&["apply", "plan.json", "--yes"])
        .code(0)
        .stdout_has("created: 0");
    assert_eq!(
        state(&world),
        after_first,
        "same count, same id per email, same active state"
    );
}

#[test]
fn restore_keeps_the_users_id() {
    let world = World::empty();
    world
        .sandbox
        .set_roster(vec![RosterRow::new("bob@example.com", "Bob", "engineer")]);
    let bob = world.sandbox.add_user(
        NewUser::email("bob@example.com")
            .banned_until(time::macros::datetime!(2126-01-01 0:00 UTC)),
    );
    world.plan(&[]).code(0);
    world
        .run(&["apply", "plan.json", "--yes"])
        .code(0)
        .stdout_has("restored: 1");
    let after = world.sandbox.user_by_email("bob@example.com").unwrap();
    assert_eq!(after.id, bob.id);
    assert!(
        after
            .banned_until
            .is_none_or(|b| b <= OffsetDateTime::now_utc())
    );
}

#[test]
fn ban_keeps_the_row_and_bans_for_a_century() {
    let world = World::team();
    world.plan(&[]).code(0);
    let plan = world.read_plan("plan.json");
    let ban = plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["action"] == "ban")
        .unwrap()
        .clone();
    world.run(&["apply", "plan.json", "--yes"]).code(0);
    let user = world
        .sandbox
        .users()
        .into_iter()
        .find(|u| u.id == ban["user_id"])
        .unwrap();
    let until = user.banned_until.unwrap();
    assert!(until > OffsetDateTime::now_utc() + time::Duration::days(365 * 99));
}

/// Make the seed plan, change the sandbox behind its back, and check apply refuses
/// with exit 3, names the difference, and writes nothing.
fn assert_drift_refused(change: impl FnOnce(&World), expect: &str) {
    let world = World::team();
    world.plan(&[]).code(0);
    change(&world);
    world.sandbox.clear_requests();
    world
        .run(&["apply", "plan.json", "--yes"])
        .code(3)
        .stderr_has(expect)
        .stderr_has("Re-run `provision plan`");
    assert_eq!(world.writes(), 0, "a refused apply makes zero writes");
}

#[test]
fn apply_refuses_when_a_roster_row_was_added_after_the_plan() {
    assert_drift_refused(
        |w| {
            w.sandbox
                .add_roster_row(RosterRow::new("eve@example.com", "Eve", "engineer"));
        },
        "+eve@example.com",
    );
}

#[test]
fn apply_refuses_when_a_roster_row_was_removed_after_the_plan() {
    assert_drift_refused(
        |w| {
            let first = w.sandbox.roster()[0].email.clone().unwrap();
            w.sandbox.remove_roster_email(&first);
        },
        "removed since the plan",
    );
}

#[test]
fn apply_refuses_when_user_banned_after_plan() {
    assert_drift_refused(
        |w| {
            let u = w.sandbox.user_by_email("ada@example.com").unwrap();
            w.sandbox.set_banned_until(
                &u.id.to_string(),
                Some(OffsetDateTime::now_utc() + time::Duration::days(1)),
            );
        },
        "ada@example.com: active at plan time, now banned",
    );
}

#[test]
fn apply_refuses_when_a_user_was_deleted_and_recreated() {
    assert_drift_refused(
        |w| {
            let u = w.sandbox.user_by_email("ada@example.com").unwrap();
            w.sandbox.delete_user(&u.id.to_string());
            w.sandbox.add_user(NewUser::email("ada@example.com"));
        },
        "re-created",
    );
}

#[test]
fn apply_refuses_when_a_user_was_created_out_of_band() {
    assert_drift_refused(
        |w| {
            w.sandbox.add_user(NewUser::email("trudy@example.com"));
        },
        "trudy@example.com",
    );
}

#[test]
fn apply_refuses_when_a_short_ban_was_set_by_someone_else_on_a_planned_ban() {
    assert_drift_refused(
        |w| {
            let plan = w.read_plan("plan.json");
            let ban = plan["changes"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["action"] == "ban")
                .unwrap()
                .clone();
            w.sandbox.set_banned_until(
                ban["user_id"].as_str().unwrap(),
                Some(OffsetDateTime::now_utc() + time::Duration::hours(1)),
            );
        },
        "banned",
    );
}

#[test]
fn apply_refuses_a_tampered_plan() {
    let world = World::team();
    world.plan(&[]).code(0);
    let text = std::fs::read_to_string(world.path("plan.json")).unwrap();
    let tampered = text.replacen("\"action\": \"ban\"", "\"action\": \"restore\"", 1);
    assert_ne!(text, tampered);
    std::fs::write(world.path("plan.json"), tampered).unwrap();
    world
        .run(&["apply", "plan.json", "--yes"])
        .code(3)
        .stderr_has("digest");
    world
        .run(&["show", "plan.json"])
        .code(3)
        .stderr_has("digest");
    assert_eq!(world.writes(), 0);
}

#[test]
fn a_reindented_plan_stays_valid() {
    let world = World::team();
    world.plan(&[]).code(0);
    let value = world.read_plan("plan.json");
    std::fs::write(
        world.path("plan.json"),
        serde_json::to_string(&value).unwrap(),
    )
    .unwrap();
    world.run(&["show", "plan.json"]).code(0);
}

#[test]
fn apply_refuses_a_plan_for_another_target() {
    let world = World::team();
    world.plan(&[]).code(0);
    let other = Sandbox::start();
    let out = world
        .command(&["apply", "plan.json", "--yes"])
        .env("MAP_SUPABASE_URL", other.url())
        .output()
        .unwrap();
    world.finish(out).code(3).stderr_has("was made for");
    assert!(other.requests().is_empty());
}

#[test]
fn apply_refuses_an_expired_plan() {
    let world = World::team();
    world.plan(&["--expires-in", "1s"]).code(0);
    let plan = world.read_plan("plan.json");
    let expires = OffsetDateTime::parse(
        plan["expires_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    // Wait for the wall clock to pass the recorded expiry (not a synchronisation sleep:
    // expiry is defined by the clock).
    while OffsetDateTime::now_utc() <= expires + time::Duration::milliseconds(50) {
        std::thread::sleep(Duration::from_millis(100));
    }
    world.sandbox.clear_requests();
    world
        .run(&["apply", "plan.json", "--yes"])
        .code(3)
        .stderr_has("expired");
    assert!(world.sandbox.requests().is_empty());
}

#[test]
fn apply_refuses_a_digest_other_than_the_expected_one() {
    let world = World::team();
    world.plan(&[]).code(0);
    let wrong = format!("sha256:{}", "0".repeat(64));
    world
        .run(&["apply", "plan.json", "--yes", "--expect-digest", &wrong])
        .code(3)
        .stderr_has("expected");
    assert_eq!(world.writes(), 0);
    let right = world.read_plan("plan.json")["digest"]
        .as_str()
        .unwrap()
        .to_string();
    world
        .run(&["apply", "plan.json", "--yes", "--expect-digest", &right])
        .code(0);
}

#[test]
fn apply_without_a_terminal_needs_yes() {
    let world = World::team();
    world.plan(&[]).code(0);
    world
        .run(&["apply", "plan.json"])
        .code(3)
        .stderr_has("--yes");
    assert_eq!(world.writes(), 0);
}

#[test]
fn apply_of_a_file_that_is_not_a_plan_exits_1() {
    let world = World::team();
    std::fs::write(world.path("x.json"), "{\"hello\": 1}").unwrap();
    world
        .run(&["apply", "x.json", "--yes"])
        .code(1)
        .stderr_has("x.json");
    std::fs::write(world.path("y.json"), "not json").unwrap();
    world
        .run(&["apply", "y.json", "--yes"])
        .code(1)
        .stderr_has("y.json");
    world
        .run(&["apply", "nope.json", "--yes"])
        .code(1)
        .stderr_has("nope.json");
    std::fs::write(world.path("v2.json"), "{\"format_version\": 2}").unwrap();
    world
        .run(&["apply", "v2.json", "--yes"])
        .code(3)
        .stderr_has("format_version");
}

#[test]
fn failed_writes_exit_5_and_the_same_plan_resumes() {
    let world = World::team();
    world.plan(&[]).code(0);
    world.sandbox.faults().fail_always(
        "POST /auth/v1/admin/users",
        Failure::status(400).code("validation_failed"),
    );
    let run = world.run(&["apply", "plan.json", "--yes", "--log", "apply.log"]);
    run.code(5)
        .stdout_has("failed: 4")
        .stdout_has("decommissioned: 1")
        .stderr_has("validation_failed");
    world.sandbox.faults().clear();
    world
        .run(&["apply", "plan.json", "--yes", "--log", "apply.log"])
        .code(0)
        .stdout_has("created: 4")
        .stdout_has("already applied: 1")
        .stdout_has("Reconciliation complete");
    let log = std::fs::read_to_string(world.path("apply.log")).unwrap();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // First run: 5 started + 5 outcomes; second: 4 started + 5 outcomes (the ban is
    // already in effect, so no write and no started record for it).
    assert_eq!(lines.len(), 19, "every change logged by each run");
    for line in &lines {
        for field in [
            "time",
            "plan_digest",
            "target",
            "action",
            "email",
            "user_id",
            "outcome",
            "error_code",
        ] {
            assert!(line.get(field).is_some(), "{field} missing in {line}");
        }
    }
    assert_eq!(lines.iter().filter(|l| l["outcome"] == "failed").count(), 4);
}

#[test]
fn persistent_500s_on_some_writes_exit_5_and_a_rerun_completes() {
    let world = World::team();
    world.plan(&[]).code(0);
    world.sandbox.faults().fail_always(
        "PUT /auth/v1/admin/users/*",
        Failure::status(500).code("unexpected_failure"),
    );
    world
        .run(&["apply", "plan.json", "--yes"])
        .code(5)
        .stdout_has("failed: 1")
        .stdout_has("created: 4");
    world.sandbox.faults().clear();
    world
        .run(&["apply", "plan.json", "--yes"])
        .code(0)
        .stdout_has("decommissioned: 1")
        .stdout_has("already applied: 4");
}

#[test]
fn a_create_answered_after_the_timeout_makes_exactly_one_user() {
    let world = World::team();
    world.plan(&[]).code(0);
    world
        .sandbox
        .faults()
        .delay_create_response(Duration::from_secs(5), Times::Next(1));
    world
        .run(&["apply", "plan.json", "--yes", "--timeout", "1"])
        .code(0)
        .stdout_has("created: 4");
    let posts = world.requests_with_method("POST");
    assert_eq!(posts, 4, "no create was re-sent");
    let state = state(&world);
    assert_eq!(state.len(), 27);
}

#[test]
fn a_ban_accepted_but_not_stored_fails_the_apply() {
    let world = World::team();
    world.plan(&[]).code(0);
    world.sandbox.faults().lose_bans(Times::Always);
    world
        .run(&["apply", "plan.json", "--yes"])
        .code(5)
        .stderr_has("not_in_effect");
    // The records say so too: never `applied` for a change that did not take effect.
    let run = world.run(&[
        "apply",
        "plan.json",
        "--yes",
        "--format",
        "json",
        "--log",
        "a.log",
    ]);
    run.code(5);
    let ban_line = run
        .stdout
        .lines()
        .find(|l| l.contains("\"ban\""))
        .unwrap()
        .to_string();
    let ban: serde_json::Value = serde_json::from_str(&ban_line).unwrap();
    assert_eq!(ban["outcome"], "failed");
    assert_eq!(ban["error_code"], "not_in_effect");
    let log = std::fs::read_to_string(world.path("a.log")).unwrap();
    let logged: Vec<String> = log
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|l| l["action"] == "ban")
        .map(|l| l["outcome"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(logged, ["started", "failed"]);
}

#[test]
fn writes_ride_out_429_bursts_with_and_without_retry_after() {
    let world = World::team();
    world.plan(&[]).code(0);
    world.sandbox.faults().fail_next(
        "PUT /auth/v1/admin/users/*",
        1,
        Failure::status(429).retry_after("1"),
    );
    world
        .sandbox
        .faults()
        .fail_next("POST /auth/v1/admin/users", 1, Failure::status(429));
    // The ban is retried; the create is looked up, found absent, and only then re-sent.
    world
        .run(&["apply", "plan.json", "--yes"])
        .code(0)
        .stdout_has("decommissioned: 1")
        .stdout_has("created: 4");
    let posts = world.requests_with_method("POST");
    assert_eq!(posts, 5, "one create re-sent after its look-up");
}

#[test]
fn concurrency_never_exceeds_the_flag() {
    let world = World::empty();
    let rows: Vec<RosterRow> = (0..40)
        .map(|i| RosterRow::new(&format!("e{i}@example.com"), "E", "engineer"))
        .collect();
    world.sandbox.set_roster(rows);
    world.plan(&[]).code(0);
    world
        .sandbox
        .faults()
        .set_latency(Duration::from_millis(20));
    world.sandbox.clear_requests();
    world
        .run(&["apply", "plan.json", "--yes", "--concurrency", "3"])
        .code(0)
        .stdout_has("created: 40");
    let peak = world.sandbox.max_in_flight();
    assert!(peak <= 3, "peak {peak}");
    assert!(peak >= 2, "requests did run concurrently (peak {peak})");
}

#[test]
fn apply_json_prints_one_object_per_change_then_the_summary() {
    let world = World::team();
    world.plan(&[]).code(0);
    let run = world.run(&["apply", "plan.json", "--yes", "--format", "json"]);
    run.code(0);
    let lines: Vec<serde_json::Value> = run
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 6);
    assert!(lines[..5].iter().all(|l| l["outcome"] == "applied"));
    assert_eq!(lines[5]["summary"]["created"], 4);
    assert_eq!(lines[5]["summary"]["decommissioned"], 1);
    assert_eq!(lines[5]["summary"]["unchanged"], 22);
    assert_eq!(lines[5]["summary"]["failed"], 0);
}

#[test]
fn show_works_offline() {
    let world = World::team();
    world.plan(&[]).code(0);
    let out = world
        .command(&["show", "plan.json"])
        .env_remove("MAP_SUPABASE_URL")
        .env_remove("MAP_SUPABASE_SERVICE_ROLE_KEY")
        .output()
        .unwrap();
    world
        .finish(out)
        .code(0)
        .stdout_has("4 to create")
        .stdout_has("sha256:");
    let run = world.run(&["show", "plan.json", "--format", "json"]);
    assert_eq!(
        run.stdout,
        std::fs::read_to_string(world.path("plan.json")).unwrap()
    );
    world
        .run(&["show", "plan.json", "--format", "markdown"])
        .code(0)
        .stdout_has("| create |");
}

#[test]
fn ctrl_c_mid_apply_exits_130_and_a_rerun_completes() {
    let world = World::empty();
    let rows: Vec<RosterRow> = (0..30)
        .map(|i| RosterRow::new(&format!("e{i}@example.com"), "E", "engineer"))
        .collect();
    world.sandbox.set_roster(rows);
    world.plan(&[]).code(0);
    // Once writes have started, interrupt.
    let child = apply_in_background(
        &world,
        &["apply", "plan.json", "--yes", "--concurrency", "1"],
        Duration::from_millis(150),
        2,
    );
    interrupt(&child);
    let out = child.wait_with_output().unwrap();
    let run = world.finish(out);
    run.code(130).stderr_has("interrupted");
    let created = world.sandbox.users().len();
    assert!(
        (1..30).contains(&created),
        "{created} created before the interrupt"
    );
    world.sandbox.faults().set_latency(Duration::ZERO);
    world
        .run(&["apply", "plan.json", "--yes"])
        .code(0)
        .stdout_has("Reconciliation complete");
    assert_eq!(world.sandbox.users().len(), 30);
}

/// Run `apply` on a pseudo-terminal, answer the prompt, and return the exit status and
/// what the terminal showed.
fn apply_on_a_terminal(world: &World, answer: &str) -> (i32, String) {
    use rexpect::process::WaitStatus;
    let cmd = world.std_command(&["apply", "plan.json", "--color", "never"]);
    let mut session = rexpect::session::spawn_command(cmd, Some(20_000)).unwrap();
    let before = session.exp_string("Type `yes` to confirm").unwrap();
    session.send_line(answer).unwrap();
    let after = session.exp_eof().unwrap();
    let code = match session.process().wait().unwrap() {
        WaitStatus::Exited(_, code) => code,
        other => panic!("apply did not exit normally: {other:?}"),
    };
    (code, format!("{before}{after}"))
}

#[test]
fn apply_on_a_terminal_applies_when_the_operator_types_yes() {
    let world = World::team();
    world.plan(&[]).code(0);
    let (code, screen) = apply_on_a_terminal(&world, "yes");
    assert_eq!(code, 0, "{screen}");
    assert!(
        screen.contains("Plan: 4 to create, 0 to restore, 1 to ban"),
        "the prompt shows the changes: {screen}"
    );
    assert!(screen.contains("Reconciliation complete"), "{screen}");
    assert!(!screen.contains(&world.key));
    assert_eq!(world.sandbox.users().len(), 28);
}

#[test]
fn apply_on_a_terminal_refuses_any_answer_but_yes() {
    let world = World::team();
    world.plan(&[]).code(0);
    world.sandbox.clear_requests();
    let (code, screen) = apply_on_a_terminal(&world, "y");
    assert_eq!(code, 3, "{screen}");
    assert!(screen.contains("not confirmed"), "{screen}");
    assert_eq!(world.writes(), 0);
}

#[test]
fn ctrl_c_at_the_prompt_exits_130_and_writes_nothing() {
    use rexpect::process::WaitStatus;
    let world = World::team();
    world.plan(&[]).code(0);
    world.sandbox.clear_requests();
    let cmd = world.std_command(&["apply", "plan.json", "--color", "never"]);
    let mut session = rexpect::session::spawn_command(cmd, Some(20_000)).unwrap();
    session.exp_string("Type `yes` to confirm").unwrap();
    session.send_control('c').unwrap();
    let screen = session.exp_eof().unwrap();
    match session.process().wait().unwrap() {
        WaitStatus::Exited(_, code) => assert_eq!(code, 130, "{screen}"),
        other => panic!("apply did not exit normally: {other:?}"),
    }
    assert!(
        screen.contains("error: not confirmed (interrupted at the prompt); nothing was changed"),
        "{screen}"
    );
    assert!(!screen.contains("resume"), "nothing was sent: {screen}");
    assert_eq!(world.writes(), 0);
}

#[test]
fn a_failed_check_read_after_the_writes_exits_5_and_a_rerun_completes() {
    let world = World::team();
    world.plan(&[]).code(0);
    // Once writes are under way, every later listing fails: the check-read cannot run.
    let child = apply_in_background(
        &world,
        &["apply", "plan.json", "--yes", "--timeout", "5"],
        Duration::from_millis(100),
        1,
    );
    world.sandbox.faults().fail_always(
        "GET /auth/v1/admin/users",
        Failure::status(500).code("unexpected_failure"),
    );
    let run = world.finish(child.wait_with_output().unwrap());
    run.code(5)
        .stderr_has("could not check that the changes took effect");
    world.sandbox.faults().clear();
    world
        .run(&["apply", "plan.json", "--yes"])
        .code(0)
        .stdout_has("already applied: 5");
}
