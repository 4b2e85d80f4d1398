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
fn man_page_documents_the_commands() {
    let world = World::empty();
    let run = world.run(&["man"]);
    run.code(0)
        .stdout_has(".TH provision")
        .stdout_has("plan")
        .stdout_has("apply");
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
                ["plan", "apply", "show"].contains(&sub.as_str()),
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
    assert_eq!(workflows.len(), 2);
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
