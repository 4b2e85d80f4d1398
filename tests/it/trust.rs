//! Issue 9, end to end: plans that must explain themselves, `--out` and `--log` targets,
//! bounded reads, truthful counters, redaction, proxies, JSON escaping, roster files and
//! the clock. Every refusal is checked to send no write.

use std::time::Duration;

use provision::sandbox::NewUser;
use time::OffsetDateTime;

use crate::support::World;

/// The seed plan, with ban `mallory@example.com` turned into a ban of rostered ada: her
/// id under mallory's email, re-digested.
fn plan_banning_ada_as_mallory(world: &World) -> serde_json::Value {
    world.plan(&[]).code(0);
    let mut plan = world.read_plan("plan.json");
    let ada = world.sandbox.user_by_email("ada@example.com").unwrap();
    let ban = plan["changes"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|c| c["action"] == "ban")
        .unwrap();
    assert_eq!(ban["email"], "mallory@example.com");
    ban["user_id"] = ada.id.to_string().into();
    plan
}

#[test]
fn apply_and_show_refuse_a_redigested_plan_whose_ban_names_another_users_id() {
    let world = World::team();
    let plan = plan_banning_ada_as_mallory(&world);
    let ada = plan["changes"][4]["user_id"].as_str().unwrap().to_string();
    world.write_redigested("edited.json", plan);
    world.sandbox.clear_requests();

    let expected = format!(
        "error: the plan does not follow from its own observed state: `changes[4]` (ban mallory@example.com, user {ada}): the user is observed with the email ada@example.com, not this one\n\
         Nothing was changed. A plan edited by hand is not a reviewed plan, even with a fresh digest; re-run `provision plan`.\n"
    );
    let run = world.run(&["apply", "edited.json", "--yes"]);
    run.code(3);
    assert_eq!(run.stdout, "");
    assert_eq!(run.stderr, expected);
    assert!(world.sandbox.requests().is_empty(), "nothing sent at all");

    for format in ["markdown", "text", "json"] {
        let run = world.run(&["show", "edited.json", "--format", format]);
        run.code(3);
        assert_eq!(run.stdout, "", "{format}");
        assert_eq!(run.stderr, expected, "{format}");
    }
    let ada_now = world.sandbox.user_by_email("ada@example.com").unwrap();
    assert!(!ada_now.is_banned());
}

#[test]
fn apply_refuses_a_redigested_plan_that_repeats_a_ban_or_empties_an_id() {
    let world = World::team();
    world.plan(&[]).code(0);
    let original = world.read_plan("plan.json");

    // The same ban 50 times (summary adjusted so that only the repeat is wrong).
    let mut repeated = original.clone();
    let ban = repeated["changes"][4].clone();
    for _ in 0..49 {
        repeated["changes"]
            .as_array_mut()
            .unwrap()
            .push(ban.clone());
    }
    repeated["summary"]["ban"] = 50.into();
    world.write_redigested("repeated.json", repeated);

    let mut empty_id = original.clone();
    empty_id["changes"][4]["user_id"] = "".into();
    world.write_redigested("empty-id.json", empty_id);

    world.sandbox.clear_requests();
    world
        .run(&["apply", "repeated.json", "--yes"])
        .code(3)
        .stderr_has("`changes[5]` (ban mallory@example.com, user ")
        .stderr_has("an earlier change already names this email or user");
    world
        .run(&["apply", "empty-id.json", "--yes"])
        .code(3)
        .stderr_has("`changes[4]` (ban mallory@example.com, user ): the `user_id` is not a UUID");
    assert_eq!(world.writes(), 0);
}

/// An off-roster user whose ban ends just before each read (sandbox knob).
fn world_with_zed_banned() -> World {
    let world = World::team();
    world.sandbox.add_user(
        NewUser::email("zed@example.com")
            .banned_until(OffsetDateTime::now_utc() + time::Duration::days(1)),
    );
    world
}

#[test]
fn plan_sees_a_ban_that_ended_a_moment_before_the_read_as_over() {
    let world = world_with_zed_banned();
    world.sandbox.faults().end_ban_at_read("zed@example.com");
    world.plan(&[]).code(0);
    let plan = world.read_plan("plan.json");
    let bans: Vec<&str> = plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["action"] == "ban")
        .map(|c| c["email"].as_str().unwrap())
        .collect();
    assert_eq!(bans, ["mallory@example.com", "zed@example.com"]);
}

#[test]
fn apply_sees_a_ban_that_ended_a_moment_before_the_read_as_drift() {
    let world = world_with_zed_banned();
    world.plan(&[]).code(0);
    world.sandbox.faults().end_ban_at_read("zed@example.com");
    world.sandbox.clear_requests();
    let run = world.run(&["apply", "plan.json", "--yes", "--color", "never"]);
    run.code(3);
    assert_eq!(
        run.stderr,
        "The remote state changed since the plan was made (1 difference):\n  ! zed@example.com: banned at plan time, now active\n\
         error: the remote state changed since the plan was made; nothing was changed\n\
         Re-run `provision plan` and review the new plan.\n"
    );
    assert_eq!(world.writes(), 0);
}

#[test]
fn two_concurrent_applies_of_one_plan_count_each_create_once() {
    let world = World::team();
    world.plan(&[]).code(0);
    // Slow requests, so that both applies read the state before either writes.
    world
        .sandbox
        .faults()
        .set_latency(Duration::from_millis(40));
    let args = ["apply", "plan.json", "--yes", "--format", "json"];
    let children: Vec<_> = (0..2)
        .map(|_| {
            world
                .std_command(&args)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut created = 0;
    let mut already = 0;
    for child in children {
        let run = world.finish(child.wait_with_output().unwrap());
        run.code(0);
        let summary: serde_json::Value =
            serde_json::from_str(run.stdout.lines().last().unwrap()).unwrap();
        created += summary["summary"]["created"].as_u64().unwrap();
        already += summary["summary"]["already_applied"].as_u64().unwrap();
    }
    assert_eq!(created, 4, "each of the 4 creates counted once");
    assert!(already >= 4, "the other apply found them in effect");
    let posts = world.requests_with_method("POST");
    assert_eq!(
        world.sandbox.user_count(),
        28,
        "no duplicate user: {posts} POSTs"
    );
}
