//! The sandbox as a standalone server, for the quickstart, benchmarks and the conformance
//! check: `cargo run --example sandbox -- --port 54321 --fixture examples/fixtures/team.yaml`.
//! Prints the two `export` lines to paste, then serves until Ctrl-C.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use provision::sandbox::{Sandbox, SandboxConfig, Seed};

/// A local, in-memory, Supabase-compatible server (GoTrue admin API + PostgREST).
#[derive(Parser)]
#[command(name = "sandbox")]
struct Args {
    /// Port on 127.0.0.1 (0 picks a free one; the export line shows which).
    #[arg(long, default_value_t = 54321)]
    port: u16,
    /// Seed from a fixture file (.yaml, .yml or .json).
    #[arg(long)]
    fixture: Option<PathBuf>,
    /// Delay every request by this many milliseconds.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// PostgREST's db-max-rows (default 1000; 0 means no cap).
    #[arg(long)]
    max_rows: Option<usize>,
    /// Add N generated users (engineer000000@example.com, …).
    #[arg(long, default_value_t = 0)]
    generate_users: usize,
    /// Add N generated roster rows, for the same emails as the generated users.
    #[arg(long, default_value_t = 0)]
    generate_roster: usize,
    /// Start the generated roster rows at the K-th generated email: the first K
    /// generated users are then leavers (bans) and rows past the last user newcomers
    /// (creates). `--generate-users 15000 --generate-roster 15000 --roster-offset 5000`
    /// leaves 5000 creates and 5000 bans pending.
    #[arg(long, default_value_t = 0, value_name = "K")]
    roster_offset: usize,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let mut seed = match &args.fixture {
        Some(path) => match Seed::from_fixture(path) {
            Ok(seed) => seed,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        },
        None => Seed::empty(),
    };
    if args.generate_users > 0 || args.generate_roster > 0 {
        let generated = Seed::generate_from(
            args.generate_users,
            args.generate_roster,
            args.roster_offset,
        );
        seed.users.extend(generated.users);
        seed.roster.extend(generated.roster);
    }
    let mut config = SandboxConfig {
        port: args.port,
        latency: Duration::from_millis(args.latency_ms),
        ..SandboxConfig::default()
    };
    if let Some(max) = args.max_rows {
        config.max_rows = (max > 0).then_some(max);
    }
    let (users, rows) = (seed.users.len(), seed.roster.len());
    let sandbox = match Sandbox::try_start(config, seed) {
        Ok(sb) => sb,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("export MAP_SUPABASE_URL={}", sandbox.url());
    println!(
        "export MAP_SUPABASE_SERVICE_ROLE_KEY={}",
        sandbox.service_role_key()
    );
    eprintln!(
        "sandbox: {users} users, {rows} roster rows in `{}`, on {} (Ctrl-C to stop)",
        sandbox.config().roster_table,
        sandbox.url()
    );
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot wait for Ctrl-C: {e}");
            return ExitCode::FAILURE;
        }
    };
    let _ = runtime.block_on(tokio::signal::ctrl_c());
    drop(sandbox);
    ExitCode::SUCCESS
}
