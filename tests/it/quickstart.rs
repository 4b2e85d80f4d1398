//! The README's first command, `cargo run --example quickstart`, end to end. `cargo test`
//! builds the examples beside the test binaries; this runs the built one.

use std::path::PathBuf;
use std::process::Command;

fn example(name: &str) -> PathBuf {
    // target/debug/deps/it-… -> target/debug/examples/<name>
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(|d| d.parent()).unwrap();
    let path = dir.join("examples").join(name);
    assert!(
        path.exists(),
        "{} is missing: run the tests with `cargo test`, which builds the examples",
        path.display()
    );
    path
}

#[test]
fn quickstart_runs_the_whole_flow_and_ends_with_a_stale_refusal() {
    let out = Command::new(example("quickstart"))
        .env_clear()
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "quickstart failed:\n{stdout}\n{stderr}"
    );
    // Step 2: the plan.
    assert!(
        stdout.contains("Plan: 3 to create, 1 to restore, 3 to ban, 22 unchanged."),
        "{stdout}"
    );
    // The look-alike: warned on stderr, shown above the changes.
    assert!(
        stderr.contains(
            "warning: create fay@example.com while banning faye@example.com: a typo in the roster?\n"
        ),
        "{stderr}"
    );
    assert!(
        stdout.contains(
            "Warning: creates that look like bans in this plan:\n  \
             ! create fay@example.com while banning faye@example.com: a typo in the roster?\n"
        ),
        "{stdout}"
    );
    // Step 3: the Markdown.
    assert!(stdout.contains("<details>"), "{stdout}");
    // Step 3: explain the ban from the plan.
    assert!(
        stdout.contains(
            "Outcome: ban\n\
             Why: its auth user is active and it is not on the roster: the user is banned.\n\
             Look-alikes: fay@example.com\n"
        ),
        "{stdout}"
    );
    // Step 4: the counters.
    assert!(
        stdout.contains(
            "created: 3\nrestored: 1\ndecommissioned: 3\nunchanged: 22\nReconciliation complete"
        ),
        "{stdout}"
    );
    // Step 5: no changes.
    assert!(
        stdout.contains("Plan: 0 to create, 0 to restore, 0 to ban, 26 unchanged."),
        "{stdout}"
    );
    // Step 6: the stale refusal with its drift report.
    assert!(
        stderr.contains("ada@example.com: active at plan time, now banned"),
        "{stderr}"
    );
    assert!(stdout.contains("(exit 3)"), "{stdout}");
    // The key is never shown, not even by the quickstart.
    let key = provision::sandbox::Sandbox::start().service_role_key();
    assert!(!stdout.contains(&key) && !stderr.contains(&key));
}
