//! The command line itself: help, completions, the man page, and the CI recipe's use of
//! the flags.

use std::collections::BTreeSet;
use std::path::Path;

use clap::CommandFactory;
use provision::cli::Cli;

use crate::support::World;

#[test]
fn every_help_names_the_environment_and_exit_codes() {
    let world = World::empty();
    for args in [
        vec!["--help"],
        vec!["plan", "--help"],
        vec!["apply", "--help"],
    ] {
        let run = world.run(&args);
        run.code(0)
            .stdout_has("MAP_SUPABASE_URL")
            .stdout_has("Exit codes");
    }
    world
        .run(&["show", "--help"])
        .code(0)
        .stdout_has("offline")
        .stdout_has("Exit codes");
}

#[test]
fn completions_are_printed_for_each_shell() {
    let world = World::empty();
    let run = world.run(&["completions", "bash"]);
    run.code(0)
        .stdout_has("provision")
        .stdout_has("--expect-digest");
    world
        .run(&["completions", "zsh"])
        .code(0)
        .stdout_has("#compdef provision");
    world
        .run(&["completions", "fish"])
        .code(0)
        .stdout_has("complete -c provision");
    world.run(&["completions", "tcsh"]).code(64);
}

#[test]
fn man_pages_cover_every_command_one_page_each() {
    let world = World::empty();
    let top = world.run(&["man"]);
    top.code(0).stdout_has(".TH provision 1");
    for command in ["plan", "apply", "show", "approve", "completions", "man"] {
        // The top page points to each command's page, and that page exists.
        top.stdout_has(&format!("provision\\-{command}(1)"));
        let page = world.run(&["man", command]);
        page.code(0)
            .stdout_has(&format!(".TH provision-{command} 1"))
            .stdout_has(".SH SYNOPSIS");
    }
    world
        .run(&["man", "apply"])
        .stdout_has("\\-\\-expect\\-digest")
        .stdout_has("\\-\\-auto\\-approve")
        .stdout_has("\\-\\-concurrency");
    world.run(&["man", "nope"]).code(64);
}

#[test]
fn help_lists_global_options_under_their_own_heading_and_only_where_they_apply() {
    let world = World::empty();
    for command in ["plan", "apply"] {
        let run = world.run(&[command, "--help"]);
        run.code(0);
        let (own, global) = run.stdout.split_once("Global options:").unwrap();
        for flag in [
            "--concurrency",
            "--timeout",
            "--progress-interval",
            "--config",
            "--color",
        ] {
            assert!(
                global.contains(flag),
                "{command}: {flag} under Global options"
            );
            assert!(
                !own.contains(flag),
                "{command}: {flag} only under Global options"
            );
        }
    }
    for args in [
        vec!["show", "--help"],
        vec!["man", "--help"],
        vec!["completions", "--help"],
    ] {
        let run = world.run(&args);
        run.code(0);
        for flag in ["--concurrency", "--timeout", "--progress-interval"] {
            assert!(!run.stdout.contains(flag), "{args:?} lists {flag}");
        }
    }
    // Help is wrapped to the terminal: compare with whitespace collapsed.
    let flat = |args: &[&str]| {
        let run = world.run(args);
        run.stdout.split_whitespace().collect::<Vec<_>>().join(" ")
    };
    let apply = flat(&["apply", "--help"]);
    assert!(apply.contains("[alias: --auto-approve]"), "{apply}");
    assert!(
        apply.contains("--format json wins: its lines are still printed in full"),
        "{apply}"
    );
    let plan = flat(&["plan", "--help"]);
    assert!(plan.contains("--format json or markdown wins"), "{plan}");
    // Given before a command that does not take it: a usage error, nothing run.
    world
        .run(&["--timeout", "5", "show", "plan.json"])
        .code(64)
        .stderr_has("`--timeout` does not apply to `provision show`");
}

/// The flags each subcommand really has, plus the common ones.
fn flags_of(sub: &str) -> BTreeSet<String> {
    let cmd = Cli::command();
    let mut flags: BTreeSet<String> = cmd
        .get_arguments()
        .filter_map(|a| a.get_long().map(|l| format!("--{l}")))
        .collect();
    flags.extend(["--help".to_string(), "--version".to_string()]);
    if let Some(sub) = cmd.find_subcommand(sub) {
        flags.extend(
            sub.get_arguments()
                .filter_map(|a| a.get_long().map(|l| format!("--{l}"))),
        );
    }
    flags
}

fn examples(dir: &str) -> Vec<std::path::PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(dir);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
}

/// Every `provision COMMAND …` in a recipe (continuation lines joined; comments and
/// prose — step names, descriptions — skipped): the command and the flags that follow
/// it on its line.
fn provision_commands(text: &str) -> Vec<(String, Vec<String>)> {
    let joined = text.replace("\\\n", " ");
    let mut found = Vec::new();
    for line in joined.lines() {
        let line = line.trim_start();
        let prose = ["#", "- name:", "name:", "description:", "Description="];
        if prose.iter().any(|p| line.starts_with(p)) {
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        for (i, w) in words.iter().enumerate() {
            let is_provision = *w == "provision" || w.ends_with("/provision");
            let Some(next) = words.get(i + 1) else {
                continue;
            };
            if !is_provision || !next.chars().all(|c| c.is_ascii_lowercase()) {
                continue;
            }
            let flags = words[i + 2..]
                .iter()
                .filter(|w| w.starts_with("--"))
                .map(|w| w.split('=').next().unwrap().to_string())
                .collect();
            found.push((next.to_string(), flags));
        }
    }
    found
}

#[test]
fn every_recipe_uses_only_real_commands_and_flags() {
    let mut checked = 0;
    for path in [examples("ci"), examples("cron"), examples("systemd")].concat() {
        let text = std::fs::read_to_string(&path).unwrap();
        for (sub, flags) in provision_commands(&text) {
            assert!(
                ["plan", "apply", "show", "approve"].contains(&sub.as_str()),
                "unknown command `{sub}` in {}",
                path.display()
            );
            let known = flags_of(&sub);
            for flag in flags {
                assert!(
                    known.contains(&flag),
                    "`provision {sub}` has no flag `{flag}` ({})",
                    path.display()
                );
                checked += 1;
            }
        }
    }
    assert!(
        checked >= 20,
        "the recipes should exercise the flags ({checked} checked)"
    );
}

#[test]
fn ci_workflows_parse_pin_their_actions_and_warn_about_personal_data() {
    let workflows: Vec<_> = examples("ci")
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "yml"))
        .collect();
    // Plan, apply, and apply with approvals (the approvals option).
    assert_eq!(workflows.len(), 3);
    for path in workflows {
        let text = std::fs::read_to_string(&path).unwrap();
        let yaml: serde_norway::Value = serde_norway::from_str(&text)
            .unwrap_or_else(|e| panic!("{} is not YAML: {e}", path.display()));
        assert!(yaml.get("jobs").is_some(), "{} has no jobs", path.display());
        assert!(
            text.contains("PRIVATE"),
            "{} must warn that plans hold personal data",
            path.display()
        );
        // Every action by commit SHA, with its tag in a comment.
        for line in text.lines().filter(|l| l.contains("uses: ")) {
            let (_, spec) = line.split_once("uses: ").unwrap();
            let (action, rest) = spec.split_once('@').unwrap();
            let (sha, comment) = rest.split_once(" # v").unwrap_or((rest, ""));
            assert!(
                sha.len() == 40 && sha.chars().all(|c| c.is_ascii_hexdigit()),
                "{action} is not pinned by commit SHA in {}",
                path.display()
            );
            assert!(!comment.is_empty(), "{action}'s tag comment is missing");
        }
        let on = &yaml["on"];
        assert!(
            on["pull_request"]["paths"].is_sequence() || on["push"]["paths"].is_sequence(),
            "{} runs only when the roster or the policy changes",
            path.display()
        );
        assert!(
            on.get("workflow_dispatch").is_some(),
            "{} can be run by hand",
            path.display()
        );
    }
}

#[test]
fn the_ci_recipes_policy_file_and_roster_are_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/ci");
    let text = std::fs::read_to_string(dir.join("provision.toml")).unwrap();
    let policy = provision::policyfile::parse(&text, Path::new("provision.toml")).unwrap();
    assert_eq!(
        policy.roster,
        Some(provision::model::RosterSource::File("roster.yaml".into()))
    );
    assert!(!policy.protect.is_empty(), "the recipe protects its bots");
    let roster = provision::roster::read_roster_file(&dir.join("roster.yaml")).unwrap();
    assert_eq!(roster.len(), 2);
}

#[test]
fn apply_recipe_trusts_only_the_bots_plan_comment_and_never_the_artifacts_digest() {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/ci/provision-apply.yml"),
    )
    .unwrap();
    assert_eq!(
        text.matches("--expect-digest \"$DIGEST\"").count(),
        2,
        "both jobs apply the reviewed digest"
    );
    assert!(text.contains(r#"select(.user.login == "github-actions[bot]""#));
    assert!(
        !text.contains(".digest plan.json"),
        "never read the digest back from the artifact"
    );
    // The re-plan path waits for a reviewer in its own environment.
    let yaml: serde_norway::Value = serde_norway::from_str(&text).unwrap();
    assert_eq!(
        yaml["jobs"]["apply-replanned"]["environment"].as_str(),
        Some("provision-replan")
    );
    // The plan workflow keeps one comment: it updates the bot's own, else posts one.
    let plan = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/ci/provision-plan.yml"),
    )
    .unwrap();
    assert!(plan.contains("--method PATCH"));
    assert!(plan.contains(r#"select(.user.login == "github-actions[bot]""#));
}

#[test]
fn cron_and_systemd_recipes_apply_in_one_step_quietly_logged_and_locked() {
    for path in [
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/cron/provision-apply.sh"),
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/systemd/provision.service"),
    ] {
        let text = std::fs::read_to_string(&path).unwrap();
        let commands = provision_commands(&text);
        assert_eq!(commands.len(), 1, "{}", path.display());
        let (sub, flags) = &commands[0];
        assert_eq!(sub, "apply");
        for flag in ["--yes", "--quiet", "--log"] {
            assert!(
                flags.iter().any(|f| f == flag),
                "{flag} in {}",
                path.display()
            );
        }
        assert!(text.contains("flock --nonblock"), "{}", path.display());
    }
    let crontab = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/cron/crontab"),
    )
    .unwrap();
    let entries: Vec<&str> = crontab
        .lines()
        .filter(|l| !l.starts_with('#') && !l.contains('=') && !l.trim().is_empty())
        .collect();
    assert_eq!(entries.len(), 1);
    // cron.d: five time fields, the user, the command.
    let fields: Vec<&str> = entries[0].split_whitespace().collect();
    assert_eq!(fields.len(), 7, "{}", entries[0]);
    assert_eq!(fields[6], "/usr/local/lib/provision/provision-apply.sh");
}

/// `plan` on a pseudo-terminal with `TERM` set to `term`: what the terminal showed.
fn plan_on_a_terminal(world: &World, term: &str) -> String {
    let mut cmd = world.std_command(&["plan"]);
    cmd.env("TERM", term);
    let mut session = rexpect::session::spawn_command(cmd, Some(20_000)).unwrap();
    let screen = session.exp_eof().unwrap();
    assert!(!screen.contains(&world.key));
    screen
}

#[test]
fn term_dumb_gets_no_colour_on_a_terminal() {
    let world = World::team();
    let coloured = plan_on_a_terminal(&world, "xterm-256color");
    assert!(
        coloured.contains("\u{1b}[32m+ dana@example.com"),
        "{coloured:?}"
    );
    let dumb = plan_on_a_terminal(&world, "dumb");
    assert!(dumb.contains("+ dana@example.com"), "{dumb:?}");
    assert!(!dumb.contains('\u{1b}'), "{dumb:?}");
}
