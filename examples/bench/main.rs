//! The benchmark (issue #6): `cargo run --release --example bench -- [options]`.
//! Builds the release `provision` binary and the sandbox example, then measures `plan`
//! and `apply` against the sandbox running as a separate process with an injected
//! latency, beside the sequential baseline (`--concurrency 1`), and the pure reconcile
//! core in-process. The work is in `driver.rs`, which the smoke test shares.

mod driver;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Duration;

use clap::Parser;

/// Measure plan and apply against a local sandbox, and the reconcile core.
#[derive(Parser)]
#[command(name = "bench")]
struct Args {
    /// Plan sizes: N users and N roster rows, all paired (comma-separated; 0 skips plan).
    #[arg(long, value_name = "N", value_delimiter = ',', default_values_t = [10_000, 100_000])]
    users: Vec<usize>,
    /// Apply sizes: M changes, half creates and half bans (comma-separated; 0 skips apply).
    #[arg(long, value_name = "M", value_delimiter = ',', default_values_t = [1_000, 10_000])]
    changes: Vec<usize>,
    /// Injected latency per request, for plan and apply alike [default: 20 for plan, 10
    /// for apply].
    #[arg(long, value_name = "L")]
    latency_ms: Option<u64>,
    /// Runs per figure (each figure is the median).
    #[arg(long, value_name = "R", default_value_t = 3)]
    runs: usize,
    /// Reconcile core size: this many roster rows × as many users (0 skips it).
    #[arg(long, value_name = "N", default_value_t = 1_000_000)]
    core: usize,
    /// Look-alike size: N roster rows × N users with 10% creates and 10% bans (0 skips it).
    #[arg(long, value_name = "N", default_value_t = 100_000)]
    lookalikes: usize,
    /// Print one JSON object with every figure instead of the table.
    #[arg(long)]
    json: bool,
    /// Also write that JSON object to FILE (the table still prints).
    #[arg(long, value_name = "FILE")]
    json_file: Option<PathBuf>,
    /// Use the binaries as they are, without `cargo build` first.
    #[arg(long)]
    no_build: bool,
}

fn main() -> ExitCode {
    let raw: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if raw.get(1).is_some_and(|a| a == driver::MEASURE_ARG) {
        return driver::measure_main(&raw[2..]);
    }
    let args = Args::parse();
    if cfg!(debug_assertions) {
        eprintln!("warning: a debug build; run with `--release` for figures worth keeping");
    }
    let bins = match binaries(!args.no_build) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let full = driver::Options::full();
    let opts = driver::Options {
        users: args.users,
        changes: args.changes,
        plan_latency: args
            .latency_ms
            .map_or(full.plan_latency, Duration::from_millis),
        apply_latency: args
            .latency_ms
            .map_or(full.apply_latency, Duration::from_millis),
        runs: args.runs,
        core: args.core,
        lookalikes: args.lookalikes,
    };
    let report = match driver::run(&opts, &bins, &mut |msg| eprintln!("bench: {msg}")) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(path) = &args.json_file
        && let Err(e) = std::fs::write(path, format!("{:#}\n", report.to_json()))
    {
        eprintln!("error: cannot write `{}`: {e}", path.display());
        return ExitCode::FAILURE;
    }
    if args.json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.to_table());
    }
    ExitCode::SUCCESS
}

/// The `provision` binary and the sandbox example of this build's profile, freshly
/// built: a stale binary would measure old code. The binary is built on its own so that
/// it carries no sandbox (building it beside an example unifies the dev-dependency's
/// `sandbox` feature into it).
fn binaries(build: bool) -> Result<driver::Binaries, String> {
    let me = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
    // target/<profile>/examples/bench
    let profile_dir = me
        .parent()
        .and_then(Path::parent)
        .ok_or("cannot find the target directory")?
        .to_path_buf();
    if build {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let release = (!cfg!(debug_assertions)).then_some("--release");
        for target in [["--bin", "provision"], ["--example", "sandbox"]] {
            let status = Command::new(&cargo)
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .arg("build")
                .args(release)
                .args(target)
                .status()
                .map_err(|e| format!("cannot run cargo: {e}"))?;
            if !status.success() {
                return Err(format!("`cargo build {}` failed", target.join(" ")));
            }
        }
    }
    let provision = profile_dir.join("provision");
    let sandbox = profile_dir.join("examples").join("sandbox");
    for p in [&provision, &sandbox] {
        if !p.exists() {
            return Err(format!("`{}` is missing", p.display()));
        }
    }
    Ok(driver::Binaries {
        provision,
        sandbox: driver::SandboxKind::Process(sandbox),
        measurer: Some(PathBuf::from(&me)),
    })
}
