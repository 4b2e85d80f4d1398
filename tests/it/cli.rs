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

#[test]
fn ci_recipes_parse_and_use_only_real_flags() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/ci");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let yaml: serde_norway::Value = serde_norway::from_str(&text)
            .unwrap_or_else(|e| panic!("{} is not YAML: {e}", path.display()));
        assert!(yaml.get("jobs").is_some(), "{} has no jobs", path.display());
        assert!(
            text.contains("PRIVATE"),
            "{} must warn that plans hold personal data",
            path.display()
        );
        // Every `provision <command> …` line, continuation lines joined.
        let joined = text.replace("\\\n", " ");
        for line in joined.lines() {
            let Some(rest) = line.trim().strip_prefix("provision ") else {
                continue;
            };
            let mut words = rest.split_whitespace();
            let sub = words.next().unwrap();
            assert!(
                ["plan", "apply", "show", "approve"].contains(&sub),
                "unknown command `{sub}` in {}",
                path.display()
            );
            let known = flags_of(sub);
            for word in words.filter(|w| w.starts_with("--")) {
                let flag = word.split('=').next().unwrap();
                assert!(
                    known.contains(flag),
                    "`provision {sub}` has no flag `{flag}` ({})",
                    path.display()
                );
                checked += 1;
            }
        }
    }
    assert!(
        checked >= 8,
        "the recipes should exercise the flags ({checked} checked)"
    );
}

#[test]
fn apply_recipe_takes_the_digest_from_the_review_not_the_artifact() {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/ci/provision-apply.yml"),
    )
    .unwrap();
    assert!(text.contains("--expect-digest \"${{ steps.pr.outputs.digest }}\""));
    assert!(
        text.contains("gh pr view"),
        "the digest comes from the PR comment"
    );
    assert!(
        !text.contains("jq -r .digest plan.json"),
        "never read the digest back from the artifact"
    );
}
