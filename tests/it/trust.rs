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
    world.sandbox.faults().end_ban_at_read("zed@example.com", 0);
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
    world.sandbox.faults().end_ban_at_read("zed@example.com", 0);
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
fn the_check_read_sees_a_ban_that_ended_a_moment_before_it_as_over() {
    let world = World::empty();
    world
        .sandbox
        .set_roster(vec![provision::sandbox::RosterRow::email(
            "bob@example.com",
        )]);
    world.sandbox.add_user(
        NewUser::email("bob@example.com")
            .banned_until(OffsetDateTime::now_utc() + time::Duration::days(365 * 100)),
    );
    world.plan(&[]).code(0);
    // The restore is answered as done but not kept, and bob's ban then ends just before
    // the check-read (the drift read, one page, still sees him banned).
    world
        .sandbox
        .faults()
        .lose_unbans(provision::sandbox::Times::Next(1));
    world.sandbox.faults().end_ban_at_read("bob@example.com", 1);
    world
        .run(&["apply", "plan.json", "--yes"])
        .code(0)
        .stdout_has("restored: 1");
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

fn mkfifo(path: &std::path::Path) {
    let status = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success());
}

#[cfg(unix)]
fn is_char_device(path: &str) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::metadata(path)
        .unwrap()
        .file_type()
        .is_char_device()
}

#[test]
fn plan_refuses_an_out_path_that_is_not_a_regular_file_before_any_request() {
    let world = World::team();
    mkfifo(&world.path("fifo"));
    std::fs::create_dir(world.path("dir")).unwrap();
    // /dev/null must stay the system's device: it is refused, never replaced (the
    // tests may run as root, who could rename over it).
    for (out, what) in [
        ("fifo", "is a FIFO"),
        ("dir", "is a directory"),
        ("/dev/null", "is a character device"),
    ] {
        let run = world.run(&["plan", "--out", out]);
        run.code(1);
        assert_eq!(run.stdout, "");
        assert_eq!(
            run.stderr,
            format!(
                "error: `--out` `{out}` {what}, not a regular file; nothing was read or written\n\
                 Name a regular file, or a new path, other than the roster and plan files.\n"
            )
        );
    }
    assert!(world.sandbox.requests().is_empty(), "no request was sent");
    assert!(is_char_device("/dev/null"));
}

#[test]
fn plan_refuses_to_write_its_plan_over_the_roster_file() {
    let world = World::team();
    let roster = "- email: ada@example.com\n";
    std::fs::write(world.path("roster.yaml"), roster).unwrap();
    let run = world.run(&[
        "plan",
        "--roster-file",
        "roster.yaml",
        "--out",
        "./roster.yaml",
    ]);
    run.code(1);
    assert_eq!(
        run.stderr,
        "error: `--out` `./roster.yaml` is the roster file; nothing was read or written\n\
         Name a regular file, or a new path, other than the roster and plan files.\n"
    );
    assert_eq!(
        std::fs::read_to_string(world.path("roster.yaml")).unwrap(),
        roster
    );
    assert!(world.sandbox.requests().is_empty());
}

#[test]
fn plan_out_dash_writes_the_plan_json_to_stdout_and_no_file() {
    let world = World::team();
    let run = world.run(&["plan", "--out", "-", "--color", "never"]);
    run.code(0);
    let plan: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(plan["summary"]["create"], 4);
    assert!(
        run.stderr.contains(
            "they are merged into one\nPlan: 4 to create, 0 to restore, 1 to ban, 22 unchanged.\n"
        ),
        "the diff goes to stderr: {}",
        run.stderr
    );
    assert!(run.stderr.ends_with(&format!(
        "Plan written to stdout ({}).\n",
        plan["digest"].as_str().unwrap()
    )));
    assert_eq!(std::fs::read_dir(world.dir.path()).unwrap().count(), 0);
    // What stdout carried is a plan apply takes.
    std::fs::write(world.path("piped.json"), &run.stdout).unwrap();
    world.run(&["apply", "piped.json", "--yes"]).code(0);
}

#[test]
fn apply_log_refuses_a_fifo_or_a_device_before_any_request() {
    let world = World::team();
    world.plan(&[]).code(0);
    mkfifo(&world.path("log.fifo"));
    world.sandbox.clear_requests();
    for (log, what) in [
        ("log.fifo", "is a FIFO, not a regular file"),
        ("/dev/full", "is a character device, not a regular file"),
        ("./plan.json", "is the plan file"),
    ] {
        let run = world.run(&["apply", "plan.json", "--yes", "--log", log]);
        run.code(1);
        assert_eq!(
            run.stderr,
            format!(
                "error: `--log` `{log}` {what}; nothing was read or written\n\
                 Name a regular file, or a new path, other than the roster and plan files.\n"
            )
        );
    }
    assert!(world.sandbox.requests().is_empty());
}

/// The log's lines as JSON.
fn log_lines(world: &World, name: &str) -> Vec<serde_json::Value> {
    std::fs::read_to_string(world.path(name))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn apply_log_has_a_started_record_before_each_write_and_the_outcome_after() {
    let world = World::team();
    world.plan(&[]).code(0);
    world
        .run(&["apply", "plan.json", "--yes", "--log", "apply.log"])
        .code(0);
    let lines = log_lines(&world, "apply.log");
    assert_eq!(
        lines.len(),
        10,
        "a started and an outcome record per change"
    );
    let key = |l: &serde_json::Value| (l["action"].clone(), l["email"].clone());
    for (i, line) in lines.iter().enumerate() {
        let outcome = line["outcome"].as_str().unwrap();
        let earlier: Vec<&str> = lines[..i]
            .iter()
            .filter(|l| key(l) == key(line))
            .map(|l| l["outcome"].as_str().unwrap())
            .collect();
        match outcome {
            "started" => assert!(earlier.is_empty(), "{line}"),
            "applied" => assert_eq!(earlier, ["started"], "{line}"),
            other => panic!("unexpected outcome {other}: {line}"),
        }
        assert_eq!(line["plan_digest"], world.read_plan("plan.json")["digest"]);
    }
    // Every applied record comes after the last started one: outcomes follow the check-read.
    let last_started = lines
        .iter()
        .rposition(|l| l["outcome"] == "started")
        .unwrap();
    let first_applied = lines
        .iter()
        .position(|l| l["outcome"] == "applied")
        .unwrap();
    assert!(first_applied > last_started);

    // A re-run records each change once, as already applied, with nothing started.
    world
        .run(&["apply", "plan.json", "--yes", "--log", "apply.log"])
        .code(0);
    let again = &log_lines(&world, "apply.log")[10..];
    assert_eq!(again.len(), 5);
    assert!(again.iter().all(|l| l["outcome"] == "already_applied"));
}

/// Bytes in one block of `ulimit -f` for the shell that runs the test's commands.
fn ulimit_block() -> u64 {
    let dir = tempfile::tempdir().unwrap();
    let probe = dir.path().join("probe");
    std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -f 1; trap '' XFSZ; head -c 4096 /dev/zero > '{}'",
            probe.display()
        ))
        .status()
        .unwrap();
    std::fs::metadata(&probe).unwrap().len()
}

#[test]
fn apply_stops_new_changes_and_exits_5_when_the_log_cannot_be_written_mid_run() {
    let world = World::team();
    world.plan(&[]).code(0);
    // A log file whose writes start failing (EFBIG) after one more record: the file size
    // limit of the process, set by the shell, with the signal it raises ignored.
    let block = ulimit_block();
    let blocks = 4;
    let filler = (blocks * block - 400) as usize;
    std::fs::write(world.path("apply.log"), " ".repeat(filler - 1) + "\n").unwrap();
    world.sandbox.clear_requests();
    let run = world.shell(&format!(
        "ulimit -f {blocks}; trap '' XFSZ; exec \"$PROVISION\" apply plan.json --yes --concurrency 1 --log apply.log"
    ));
    run.code(5);
    assert_eq!(world.writes(), 1, "one change was started, then none");
    assert!(
        run.stderr
            .contains("error: cannot write the log `apply.log`: ")
            && run.stderr.contains("; no further change was started\n"),
        "{}",
        run.stderr
    );
    let text = std::fs::read_to_string(world.path("apply.log")).unwrap();
    let records: Vec<&str> = text.lines().skip(1).collect();
    assert_eq!(records.len(), 1, "{text}");
    assert!(records[0].contains(r#""outcome":"started""#), "{text}");
}

/// No raw control, separator, bidi or zero-width character in `text`.
fn assert_escaped(what: &str, text: &str) {
    let raw = text
        .chars()
        .find(|&c| provision::sanitize::needs_escape(c) && !matches!(c, '\n' | '\t' | '\r'));
    assert_eq!(raw, None, "{what}: {text}");
}

#[test]
fn every_json_output_escapes_controls_separators_and_bidi_characters() {
    let world = World::team();
    // The server holds what it holds: an active leaver whose email carries a bidi
    // override, a C1 control and a line separator.
    let evil = "admin\u{202e}moc\u{85}x\u{2028}@evil.com";
    world.sandbox.add_user(NewUser::email(evil));
    let run = world.run(&["plan", "--out", "plan.json", "--format", "json"]);
    run.code(0);
    assert_escaped("plan --format json", &run.stdout);
    assert!(
        run.stdout
            .contains(r#""email": "admin\u202emoc\u0085x\u2028@evil.com""#)
    );
    let file = std::fs::read_to_string(world.path("plan.json")).unwrap();
    assert_escaped("the plan file", &file);
    assert_eq!(file, run.stdout, "the same JSON as the file");

    // The digest covers the decoded values: the same plan written raw verifies too.
    let raw = serde_json::to_string_pretty(&world.read_plan("plan.json")).unwrap();
    assert!(raw.contains('\u{202e}'));
    std::fs::write(world.path("raw.json"), &raw).unwrap();
    let shown = world.run(&["show", "raw.json", "--format", "json"]);
    shown.code(0);
    assert_escaped("show --format json", &shown.stdout);
    let back: serde_json::Value = serde_json::from_str(&shown.stdout).unwrap();
    assert_eq!(back, world.read_plan("plan.json"));

    let run = world.run(&[
        "apply",
        "raw.json",
        "--yes",
        "--format",
        "json",
        "--log",
        "apply.log",
    ]);
    run.code(0);
    assert_escaped("apply --format json", &run.stdout);
    assert!(
        run.stdout
            .contains(r#""email":"admin\u202emoc\u0085x\u2028@evil.com""#)
    );
    assert_escaped(
        "--log",
        &std::fs::read_to_string(world.path("apply.log")).unwrap(),
    );
}

/// GET requests the sandbox saw for this path.
fn gets(world: &World, path: &str) -> usize {
    world
        .sandbox
        .requests()
        .iter()
        .filter(|r| r.method == "GET" && r.path == path)
        .count()
}

const USERS: &str = "/auth/v1/admin/users";
const ROSTER: &str = "/rest/v1/organization_people";

#[test]
fn plan_refuses_a_total_over_ten_million_without_paging_through_it() {
    let world = World::team();
    world.sandbox.faults().claim_total(1_000_000_000_000);
    let run = world.plan(&[]);
    run.code(1);
    assert!(
        run.stderr.contains(
            "counts 1000000000000 rows, more than the 10000000 provision reads; a total like that is not believed"
        ),
        "{}",
        run.stderr
    );
    assert!(!world.path("plan.json").exists());
    // One page of each listing, then the refusal.
    assert_eq!((gets(&world, USERS), gets(&world, ROSTER)), (1, 1));
}

#[test]
fn plan_with_a_lying_total_asks_for_a_bounded_number_of_pages_and_refuses() {
    let world = World::team();
    // 5,000 claimed; 27 users and 27 rows really there.
    world.sandbox.faults().claim_total(5_000);
    let run = world.plan(&[]);
    run.code(1);
    assert!(
        run.stderr.contains("error: incomplete listing of "),
        "{}",
        run.stderr
    );
    assert!(!world.path("plan.json").exists());
    // Users: three scans of one page each (page 1 already falls short of the total).
    assert_eq!(gets(&world, USERS), 3);
    // Roster: three reads of the first page and one window (4 per request slot, 8 slots).
    let roster = gets(&world, ROSTER);
    assert!(roster <= 3 * (1 + 32), "{roster} roster requests");
}

#[test]
fn an_endless_answer_is_cut_off_at_64_mib_and_named() {
    let world = World::team();
    world
        .sandbox
        .faults()
        .endless_body("GET /auth/v1/admin/users");
    let run = world.plan(&[]);
    run.code(1);
    assert!(
        run.stderr.contains(
            "GET /auth/v1/admin/users?page=1&per_page=1000&sort=created_at%20asc: the answer is longer than 64 MiB, the most provision reads of one answer; refusing to read more"
        ),
        "{}",
        run.stderr
    );
    // Not retried: the same request would get the same answer.
    assert_eq!(gets(&world, USERS), 1);
}

#[test]
fn the_key_is_redacted_whole_and_in_part_from_what_the_server_says() {
    let world = World::team();
    let key = world.key.clone();
    let sig = key.rsplit('.').next().unwrap().to_string();
    let partial = &key[..key.len() - 4];
    world.sandbox.faults().fail_always(
        "GET /auth/v1/admin/users",
        provision::sandbox::Failure::status(400)
            .code("validation_failed")
            .message(&format!("header was {partial}; signature {sig}")),
    );
    let run = world.plan(&[]);
    run.code(1);
    assert!(
        run.stderr
            .contains("validation_failed`: header was [redacted]; signature [redacted]"),
        "{}",
        run.stderr
    );
    for window in key.as_bytes().windows(16) {
        let window = std::str::from_utf8(window).unwrap();
        assert!(!run.stderr.contains(window), "{window} in {}", run.stderr);
    }
}

#[test]
fn a_loopback_target_never_goes_through_a_proxy() {
    let mut world = World::team();
    // A proxy that is not there: any request sent to it would fail.
    for var in [
        "HTTP_PROXY",
        "http_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
    ] {
        world.env.push((var.into(), "http://127.0.0.1:9".into()));
    }
    world.plan(&[]).code(0);
    assert_eq!(world.read_plan("plan.json")["summary"]["create"], 4);
}

#[test]
fn a_remote_target_goes_through_the_configured_proxy() {
    use std::io::{BufRead, BufReader, Write};
    // A stand-in proxy that records the first request line it gets, then refuses.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let proxy = format!("http://{}", listener.local_addr().unwrap());
    listener.set_nonblocking(true).unwrap();
    let seen = std::thread::spawn(move || {
        // Give up after a generous while (the test then fails on the empty line).
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let mut sock = loop {
            match listener.accept() {
                Ok((sock, _)) => break sock,
                Err(_) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(_) => return String::new(),
            }
        };
        sock.set_nonblocking(false).unwrap();
        let mut line = String::new();
        BufReader::new(sock.try_clone().unwrap())
            .read_line(&mut line)
            .unwrap();
        let _ = sock.write_all(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n");
        line
    });
    let mut world = World::team();
    world.env.push(("HTTPS_PROXY".into(), proxy));
    let run = world
        .command(&["plan"])
        .env("MAP_SUPABASE_URL", "https://abcd.supabase.example")
        .output()
        .unwrap();
    let run = world.finish(run);
    run.code(1);
    assert_eq!(
        seen.join().unwrap(),
        "CONNECT abcd.supabase.example:443 HTTP/1.1\r\n"
    );
}

#[test]
fn a_yaml_merge_key_never_leaves_its_person_to_be_banned() {
    let world = World::empty();
    world.sandbox.add_user(NewUser::email("alice@example.com"));
    world.sandbox.add_user(NewUser::email("bob@example.com"));
    std::fs::write(
        world.path("roster.yaml"),
        "defaults: &alice\n  email: alice@example.com\npeople:\n  - <<: *alice\n    name: Alice\n  - email: bob@example.com\n",
    )
    .unwrap();
    world.plan(&["--roster-file", "roster.yaml"]).code(0);
    let plan = world.read_plan("plan.json");
    assert_eq!(plan["changes"], serde_json::json!([]));
    assert_eq!(plan["summary"]["unchanged"], 2);
}

#[test]
fn a_roster_file_nested_100k_deep_is_refused_at_once() {
    let world = World::team();
    std::fs::write(world.path("deep.yaml"), "[".repeat(100_000)).unwrap();
    let started = std::time::Instant::now();
    let run = world.plan(&["--roster-file", "deep.yaml"]);
    run.code(1);
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(
        run.stderr,
        "error: `deep.yaml` line 1: the file nests deeper than 64 levels; a roster is a list of entries\n\
         Fix the roster file and run the command again.\n"
    );
    assert!(!world.path("plan.json").exists());
}

#[test]
fn a_plan_whose_target_carries_credentials_is_refused_as_another_target() {
    let world = World::team();
    world.plan(&[]).code(0);
    let mut plan = world.read_plan("plan.json");
    let url = plan["target"]["url"].as_str().unwrap().to_string();
    let with_creds = url.replacen("http://", "http://user:pass@", 1);
    plan["target"]["url"] = with_creds.clone().into();
    world.write_redigested("creds.json", plan);
    world.sandbox.clear_requests();
    world
        .run(&["apply", "creds.json", "--yes"])
        .code(3)
        .stderr_has(&format!("the plan was made for `{with_creds}`"));
    assert!(world.sandbox.requests().is_empty());
}

#[test]
fn a_format_version_too_large_for_an_integer_is_an_unknown_version() {
    let world = World::team();
    std::fs::write(
        world.path("big.json"),
        r#"{"format_version": 1180591620717411303424}"#,
    )
    .unwrap();
    for args in [["show", "big.json"], ["apply", "big.json"]] {
        world
            .run(&args)
            .code(3)
            .stderr_has("is not one this provision knows");
    }
}

#[test]
fn approve_refuses_a_redigested_plan_that_does_not_explain_itself() {
    let world = World::team();
    let plan = plan_banning_ada_as_mallory(&world);
    world.write_redigested("edited.json", plan);
    let run = world.run(&["approve", "edited.json", "--key", "no-such-key"]);
    run.code(3);
    assert!(
        run.stderr.starts_with(
            "error: the plan does not follow from its own observed state: `changes[4]`"
        ),
        "{}",
        run.stderr
    );
    assert_eq!(
        std::fs::read_dir(world.dir.path()).unwrap().count(),
        2,
        "no signature written"
    );
}

#[test]
fn after_ctrl_c_the_log_never_says_applied_for_an_unconfirmed_change() {
    let world = World::empty();
    let rows: Vec<provision::sandbox::RosterRow> = (0..20)
        .map(|i| provision::sandbox::RosterRow::email(&format!("e{i}@example.com")))
        .collect();
    world.sandbox.set_roster(rows);
    world.plan(&[]).code(0);
    let child = crate::apply::apply_in_background(
        &world,
        &[
            "apply",
            "plan.json",
            "--yes",
            "--concurrency",
            "1",
            "--log",
            "apply.log",
        ],
        Duration::from_millis(150),
        2,
    );
    crate::apply::interrupt(&child);
    world.finish(child.wait_with_output().unwrap()).code(130);
    let lines = log_lines(&world, "apply.log");
    let started = lines.iter().filter(|l| l["outcome"] == "started").count();
    assert!(started >= 2, "{lines:?}");
    // No check-read was made: no record says `applied`.
    assert!(lines.iter().all(|l| l["outcome"] == "started"), "{lines:?}");
}

#[test]
fn plan_and_roster_files_that_are_not_regular_files_are_refused_not_read_forever() {
    let world = World::team();
    mkfifo(&world.path("plan.fifo"));
    mkfifo(&world.path("roster.yaml"));
    // A FIFO would block the read; /dev/zero would fill memory: both refused at once.
    for plan in ["plan.fifo", "/dev/zero"] {
        for args in [
            vec!["show", plan],
            vec!["apply", plan, "--yes"],
            vec!["explain", "ann@example.com", plan],
        ] {
            let run = world.run(&args);
            run.code(1);
            assert_eq!(run.stdout, "", "{args:?}");
            assert_eq!(
                run.stderr,
                format!("error: cannot read `{plan}`: not a regular file\n"),
                "{args:?}"
            );
        }
    }
    let run = world.run(&["plan", "--roster-file", "roster.yaml", "--out", "p.json"]);
    run.code(1);
    assert_eq!(
        run.stderr,
        "error: cannot read `roster.yaml`: not a regular file\n"
    );
    assert!(!world.path("p.json").exists());
    assert!(
        world.sandbox.requests().iter().all(|r| r.method == "GET"),
        "nothing written"
    );
}
