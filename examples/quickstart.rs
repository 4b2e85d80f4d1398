//! The whole `provision` flow against a local sandbox, with the real code paths:
//! `cargo run --example quickstart`. Needs no Supabase account and no network.
//!
//! It starts the sandbox in-process from `examples/fixtures/quickstart.yaml`, then runs
//! `plan`, `show --format markdown`, `apply --yes`, a second `plan` (no changes), and
//! finally makes one out-of-band change and shows `apply` refusing the old plan as stale.

use std::collections::HashMap;
use std::path::Path;
use std::process::ExitCode;

use provision::error::Exit;
use provision::sandbox::Sandbox;

fn main() -> ExitCode {
    match quickstart() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("quickstart failed: {e}");
            ExitCode::FAILURE
        }
    }
}

fn quickstart() -> Result<(), String> {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/fixtures/quickstart.yaml");
    let dir = tempfile::tempdir().map_err(|e| format!("cannot make a temp dir: {e}"))?;
    let plan = dir.path().join("plan.json").to_string_lossy().into_owned();
    let second = dir
        .path()
        .join("plan-again.json")
        .to_string_lossy()
        .into_owned();

    step(
        1,
        "Start a local Supabase sandbox with a team that changed since the last run: \
         27 roster rows (26 people: one row repeats another with other capitals and spaces), \
         22 paired users, 1 banned engineer who is back, 2 leavers, 1 operator account, \
         1 phone-only user, and Fay's old account faye@example.com, which the roster \
         misspells as fay@example.com.",
    );
    let sandbox = Sandbox::from_fixture(&fixture)?;
    println!("    export MAP_SUPABASE_URL={}", sandbox.url());
    println!(
        "    export MAP_SUPABASE_SERVICE_ROLE_KEY=…  (the sandbox's service-role key; never printed by provision)"
    );
    let env = environment(&sandbox);

    step(
        2,
        "Plan: read the roster and every auth user, show the diff, write the plan. \
         The operator account is protected from the ban.",
    );
    expect(
        provision(
            &env,
            &["plan", "--out", &plan, "--protect", "ops@example.com"],
        ),
        Exit::Success,
        "plan",
    )?;

    step(
        3,
        "Show the saved plan as Markdown: what you paste into the pull request or change ticket.",
    );
    expect(
        provision(&env, &["show", &plan, "--format", "markdown"]),
        Exit::Success,
        "show",
    )?;
    println!();
    println!("    The plan warned that it creates fay@example.com while banning faye@example.com.");
    println!("    Ask why, from the plan alone (offline):");
    expect(
        provision(&env, &["explain", "faye@example.com", &plan]),
        Exit::Success,
        "explain",
    )?;

    step(
        4,
        "Apply exactly that plan (`--yes`: no terminal prompt). It re-reads the state first \
         and checks every change took effect afterwards.",
    );
    expect(
        provision(&env, &["apply", &plan, "--yes"]),
        Exit::Success,
        "apply",
    )?;

    step(
        5,
        "Plan again: the state now matches the roster, so there is nothing to do.",
    );
    expect(
        provision(
            &env,
            &[
                "plan",
                "--out",
                &second,
                "--protect",
                "ops@example.com",
                "--detailed-exitcode",
            ],
        ),
        Exit::Success,
        "second plan",
    )?;

    step(
        6,
        "Someone bans ada@example.com by hand in the dashboard. Applying the plan from step 2 \
         again is refused as stale (exit 3), with what changed, and nothing is written.",
    );
    let ada = sandbox
        .user_by_email("ada@example.com")
        .ok_or("the fixture has no ada@example.com")?;
    sandbox.set_banned_until(
        &ada.id,
        Some(time::OffsetDateTime::now_utc() + time::Duration::days(30)),
    );
    expect(
        provision(&env, &["apply", &plan, "--yes"]),
        Exit::Refused,
        "stale apply",
    )?;

    println!(
        "\nDone. The plan files were in {} (now removed).",
        dir.path().display()
    );
    Ok(())
}

fn step(n: usize, what: &str) {
    println!("\n=== Step {n}/6: {what}\n");
}

fn environment(sandbox: &Sandbox) -> HashMap<&'static str, String> {
    HashMap::from([
        ("MAP_SUPABASE_URL", sandbox.url()),
        ("MAP_SUPABASE_SERVICE_ROLE_KEY", sandbox.service_role_key()),
    ])
}

/// Run the real `provision` entry point with the sandbox's environment. Its output goes
/// to this process's stdout and stderr, as the binary's would.
fn provision(env: &HashMap<&'static str, String>, args: &[&str]) -> Exit {
    println!("$ provision {}\n", args.join(" "));
    let lookup = |name: &str| env.get(name).cloned();
    let exit = provision::run_with_env(
        std::iter::once("provision").chain(args.iter().copied()),
        &lookup,
    );
    println!("\n(exit {})", exit.code());
    exit
}

fn expect(got: Exit, want: Exit, what: &str) -> Result<(), String> {
    if got == want {
        Ok(())
    } else {
        Err(format!(
            "{what} exited {}, expected {}",
            got.code(),
            want.code()
        ))
    }
}
