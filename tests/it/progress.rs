//! Progress off a terminal: plain lines at most once per interval while reading, writing
//! and checking, none under `--quiet` or `--format json`, and the last count shown is the
//! one the counters report, also after Ctrl-C.

use std::time::{Duration, Instant};

use provision::sandbox::RosterRow;

use crate::support::{Run, World};

/// `n` engineers on the roster and no users: a plan of `n` creates.
fn world_to_create(n: usize) -> World {
    let world = World::empty();
    let rows: Vec<RosterRow> = (0..n)
        .map(|i| RosterRow::new(&format!("e{i:02}@example.com"), "E", "engineer"))
        .collect();
    world.sandbox.set_roster(rows);
    world.plan(&[]).code(0);
    world
}

/// The lines of `stderr` that start with `label: `.
fn progress_lines<'a>(stderr: &'a str, label: &str) -> Vec<&'a str> {
    let prefix = format!("{label}: ");
    stderr.lines().filter(|l| l.starts_with(&prefix)).collect()
}

/// `applying: 12/30 changes, …` -> 12.
fn applied_count(line: &str) -> u64 {
    let rest = line.strip_prefix("applying: ").unwrap();
    rest.split('/').next().unwrap().parse().unwrap()
}

/// `apply plan.json --yes` of `n` creates, one at a time, every request taking
/// `latency_ms`, with `extra` flags.
fn slow_apply(n: usize, latency_ms: u64, extra: &[&str]) -> Run {
    let world = world_to_create(n);
    world
        .sandbox
        .faults()
        .set_latency(Duration::from_millis(latency_ms));
    let mut args = vec!["apply", "plan.json", "--yes", "--concurrency", "1"];
    args.extend_from_slice(extra);
    world.run(&args)
}

#[test]
fn a_slow_apply_off_a_terminal_prints_a_progress_line_per_interval() {
    let started = Instant::now();
    let run = slow_apply(30, 40, &["--progress-interval", "0.2"]);
    let wall = started.elapsed().as_secs_f64();
    run.code(0).stdout_has("created: 30\n");
    let lines = progress_lines(&run.stderr, "applying");
    assert!(lines.len() >= 2, "a 1.2 s apply at 0.2 s: {run:?}");
    // At most one line per interval, plus the closing one.
    assert!(
        lines.len() as f64 <= wall / 0.2 + 1.0,
        "{} lines in {wall:.2}s: {run:?}",
        lines.len()
    );
    for line in &lines {
        assert!(line.contains("/30 changes, "), "{line}");
        assert!(line.ends_with("s elapsed]"), "{line}");
    }
    let counts: Vec<u64> = lines.iter().map(|l| applied_count(l)).collect();
    assert!(counts.windows(2).all(|w| w[0] <= w[1]), "{counts:?}");
    assert_eq!(
        counts.last(),
        Some(&30),
        "the closing line is the final count"
    );
    assert!(
        lines[lines.len() - 2].contains(", about "),
        "a line while writing says the time left: {lines:?}"
    );
}

#[test]
fn reading_and_the_check_read_show_progress_off_a_terminal() {
    let run = slow_apply(3, 300, &["--progress-interval", "0.1"]);
    run.code(0);
    let reading = progress_lines(&run.stderr, "reading");
    assert!(!reading.is_empty(), "{run:?}");
    assert!(
        reading
            .last()
            .unwrap()
            .starts_with("reading: auth users 0/0 (1 page), roster 3/3 rows, "),
        "{reading:?}"
    );
    let checking = progress_lines(&run.stderr, "checking");
    assert!(
        checking
            .last()
            .unwrap()
            .starts_with("checking: auth users 3/3 (1 page), "),
        "{checking:?}"
    );
}

/// A slow apply of six creates, one at a time, with `extra` flags.
fn slow_apply_of_six(extra: &[&str]) -> crate::support::Run {
    let world = world_to_create(6);
    world
        .sandbox
        .faults()
        .set_latency(Duration::from_millis(60));
    let mut args = vec![
        "apply",
        "plan.json",
        "--yes",
        "--concurrency",
        "1",
        "--progress-interval",
        "0.05",
    ];
    args.extend_from_slice(extra);
    world.run(&args)
}

#[test]
fn quiet_and_json_runs_print_no_progress() {
    let run = slow_apply_of_six(&["--quiet"]);
    run.code(0);
    assert_eq!(run.stderr, "");
    assert_eq!(
        run.stdout,
        "created: 6\nrestored: 0\ndecommissioned: 0\nunchanged: 0\nReconciliation complete\n"
    );

    let run = slow_apply_of_six(&["--format", "json"]);
    run.code(0);
    for label in ["reading", "applying", "checking"] {
        assert!(progress_lines(&run.stderr, label).is_empty(), "{run:?}");
    }
    assert_eq!(run.stdout.lines().count(), 7, "six changes and the summary");
}

#[test]
fn after_ctrl_c_the_last_progress_line_agrees_with_the_counters() {
    let world = world_to_create(30);
    world
        .sandbox
        .faults()
        .set_latency(Duration::from_millis(100));
    world.sandbox.clear_requests();
    let child = world
        .std_command(&[
            "apply",
            "plan.json",
            "--yes",
            "--concurrency",
            "2",
            "--progress-interval",
            "0.1",
            "--color",
            "never",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while world
        .sandbox
        .requests()
        .iter()
        .filter(|r| r.is_write())
        .count()
        < 4
    {
        assert!(Instant::now() < deadline, "apply never started writing");
        std::thread::sleep(Duration::from_millis(10));
    }
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let run = world.finish(child.wait_with_output().unwrap());
    run.code(130);
    let created: u64 = run
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("created: "))
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..30).contains(&created), "{run:?}");
    let last = *progress_lines(&run.stderr, "applying").last().unwrap();
    assert_eq!(applied_count(last), created, "{run:?}");
    assert_eq!(world.sandbox.users().len() as u64, created);
}
