//! Errors an operator can act on: each names what is wrong, where, and what to do.

use provision::sandbox::{NewUser, RosterRow};

use crate::support::World;

const URL_ADVICE: &str = "Set it to the project URL alone: `https://<project-ref>.supabase.co` (or `http://127.0.0.1:54321` for a local stack), with no path, query or credentials.\n";

#[test]
fn a_url_with_a_path_or_without_a_scheme_is_refused_before_any_request() {
    let mut world = World::team();
    let with_path = format!("{}/rest/v1", world.sandbox.url());
    for (url, reason) in [
        (
            with_path.as_str(),
            "it has a path (`/rest/v1`); provision adds `/auth/v1` and `/rest/v1` itself",
        ),
        (
            "127.0.0.1:54321",
            "`127.0.0.1:54321` has no scheme (`https://`)",
        ),
        ("https://abcd.supabase.co?x=1", "it has a query or fragment"),
    ] {
        world.env = vec![("MAP_SUPABASE_URL".into(), url.into())];
        world.sandbox.clear_requests();
        let run = world.plan(&[]);
        run.code(1);
        assert_eq!(
            run.stderr,
            format!("error: `MAP_SUPABASE_URL` is not a usable URL: {reason}\n{URL_ADVICE}")
        );
        assert!(world.sandbox.requests().is_empty(), "{url}");
    }
}

#[test]
fn an_unreachable_host_is_named_with_its_port_and_variable() {
    let mut world = World::team();
    // Nothing listens on port 1: the connection is refused at once.
    world.env = vec![("MAP_SUPABASE_URL".into(), "http://127.0.0.1:1".into())];
    let run = world.plan(&["--timeout", "2"]);
    run.code(1);
    let first = run.stderr.lines().next().unwrap();
    assert!(
        first.starts_with(
            "error: cannot reach `127.0.0.1:1`, the host and port of `MAP_SUPABASE_URL` (GET "
        ),
        "{run:?}"
    );
    assert_eq!(
        run.stderr.lines().nth(1),
        Some(
            "Nothing was changed. Check `MAP_SUPABASE_URL` for a typo, then the network (DNS, proxy, firewall), and run the command again."
        )
    );
    assert!(!world.path("plan.json").exists());
}

#[test]
fn a_plans_relative_roster_file_not_found_says_it_came_from_the_plan() {
    let world = World::empty();
    world
        .sandbox
        .set_roster(vec![RosterRow::new("unused@example.com", "U", "engineer")]);
    world.sandbox.add_user(NewUser::email("ann@example.com"));
    std::fs::write(
        world.path("roster.yaml"),
        "- email: ann@example.com\n- email: bob@example.com\n",
    )
    .unwrap();
    world.plan(&["--roster-file", "roster.yaml"]).code(0);
    // Apply from another directory: the plan's relative path does not resolve there.
    let sub = world.path("elsewhere");
    std::fs::create_dir(&sub).unwrap();
    world.sandbox.clear_requests();
    let mut cmd = world.std_command(&["apply", "../plan.json", "--yes"]);
    cmd.current_dir(&sub);
    let run = world.finish(cmd.output().unwrap());
    run.code(1);
    let dir = sub.canonicalize().unwrap();
    assert_eq!(
        run.stderr,
        format!(
            "error: cannot read the roster file `roster.yaml` named by the plan, resolved against the directory `{}`: No such file or directory (os error 2)\n\
             The plan records a relative roster path: run `provision apply` from the directory `provision plan` ran in, or re-run `provision plan` here.\n",
            dir.display()
        )
    );
    assert!(
        world.sandbox.requests().iter().all(|r| !r.is_write()),
        "nothing written"
    );
}
