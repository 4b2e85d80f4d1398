//! The benchmark's smoke run (N = 2k, M = 200, L = 2 ms, core 10k × 10k): it runs, and
//! what it measured is consistent. Never a time: CI machines are noisy.

use super::bench_driver::{Binaries, Options, SandboxKind, run};

#[test]
fn benchmark_smoke_run_applies_every_change_and_counts_right() {
    let bins = Binaries {
        provision: assert_cmd::cargo::cargo_bin!("provision").to_path_buf(),
        sandbox: SandboxKind::InProcess,
        measurer: None,
    };
    let opts = Options::smoke();
    // `run` itself refuses a run whose plan summary, apply counters, request count or
    // writes are not exactly as expected.
    let report = run(&opts, &bins, &mut |_| {}).unwrap();

    let [plan] = report.plan.as_slice() else {
        panic!("one plan size")
    };
    assert_eq!((plan.users, plan.roster_rows), (2_000, 2_000));
    // Two pages of users and two of roster rows, whatever the concurrency.
    assert_eq!(plan.default.requests, 4);
    assert_eq!(plan.sequential.requests, 4);
    assert_eq!(plan.sequential.max_in_flight, 1);
    assert!(plan.default.max_in_flight >= 1);

    let [apply] = report.apply.as_slice() else {
        panic!("one apply size")
    };
    assert_eq!((apply.changes, apply.creates, apply.bans), (200, 100, 100));
    assert_eq!(apply.sequential.max_in_flight, 1);
    // The writes, plus the reads of the drift check and of the check-read after.
    assert!(apply.default.requests > 200 && apply.sequential.requests > 200);

    let core = report.core.as_ref().unwrap();
    assert_eq!((core.roster_rows, core.users), (10_000, 10_000));
    assert_eq!((core.creates, core.bans, core.restores), (100, 100, 50));
    assert_eq!(core.unchanged, 10_000 - 100 - 50);

    let json = report.to_json();
    for key in ["plan_speedup", "apply_speedup"] {
        assert!(json[key].as_f64().is_some(), "{key} in {json}");
    }
    assert_eq!(json["plan"][0]["default"]["requests"], 4);
    assert_eq!(json["apply"][0]["changes"], 200);
    assert_eq!(json["core"]["users"], 10_000);
    // The look-alike figure: 1k creates × 1k bans, the 10 planted typos found.
    let l = report.lookalikes.as_ref().unwrap();
    assert_eq!((l.creates, l.bans, l.planted), (1_000, 1_000, 10));
    assert!(l.pairs >= 10, "{l:?}");
    assert_eq!(json["lookalikes"]["planted"], 10);
    let table = report.to_table();
    for line in [
        "plan: 2000 users",
        "apply: 200 changes",
        "reconcile core",
        "look-alikes: 1000 creates × 1000 bans",
        "plan_speedup",
    ] {
        assert!(table.contains(line), "{line:?} in\n{table}");
    }
}
