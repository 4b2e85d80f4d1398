//! Approvals end to end, proven against the real OpenSSH: signatures made by
//! `ssh-keygen -Y sign` count in `provision`, signatures made by `provision approve` (key
//! files, and a real `ssh-agent` started here) verify with `ssh-keygen -Y verify`, and for
//! every reason an approval does not count, `ssh-keygen -Y verify` refuses it too.
//!
//! Without `ssh-keygen` these tests say so and pass, except under `CI=true`, where a
//! missing OpenSSH fails them (`.ci/run` installs it).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::support::World;

/// Whether OpenSSH's client tools can run here; under CI a missing one is a failure.
fn openssh_available() -> bool {
    let found = Command::new("ssh-keygen")
        .arg("-?")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !found {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "ssh-keygen is missing: CI must install OpenSSH's client tools (openssh-client)"
        );
        eprintln!("ssh-keygen is missing: approval interop tests not run");
    }
    found
}

macro_rules! require_openssh {
    () => {
        if !openssh_available() {
            return;
        }
    };
}

/// The key types the contract names, as `ssh-keygen -t` makes them, with the principal
/// each is listed for and the algorithm `provision` prints.
const KINDS: [(&str, &[&str], &str); 3] = [
    ("ed25519", &["-t", "ed25519"], "ssh-ed25519"),
    (
        "ecdsa",
        &["-t", "ecdsa", "-b", "256"],
        "ecdsa-sha2-nistp256",
    ),
    ("rsa", &["-t", "rsa", "-b", "2048"], "ssh-rsa"),
];

fn run_ok(cmd: &mut Command) -> std::process::Output {
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{cmd:?}: {out:?}");
    out
}

/// A new key pair `NAME` / `NAME.pub` in the world's directory.
fn keygen(world: &World, name: &str, type_args: &[&str], passphrase: &str) -> PathBuf {
    let path = world.path(name);
    run_ok(
        Command::new("ssh-keygen")
            .args(["-q", "-N", passphrase, "-C", name, "-f"])
            .arg(&path)
            .args(type_args)
            .stdin(Stdio::null()),
    );
    path
}

fn public_key(world: &World, name: &str) -> String {
    std::fs::read_to_string(world.path(&format!("{name}.pub")))
        .unwrap()
        .trim()
        .to_string()
}

/// `SHA256:…` as `ssh-keygen -l` prints it.
fn fingerprint(world: &World, name: &str) -> String {
    let out = run_ok(
        Command::new("ssh-keygen")
            .arg("-lf")
            .arg(world.path(&format!("{name}.pub"))),
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_string()
}

fn with_stdin(cmd: &mut Command, input: &str) -> std::process::Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // ssh-keygen may refuse (a malformed signature file) before it reads the message:
    // a closed pipe here is its answer, which the exit status carries.
    let _ = child.stdin.take().unwrap().write_all(input.as_bytes());
    child.wait_with_output().unwrap()
}

/// `printf '%s' MESSAGE | ssh-keygen -Y sign -f KEY -n NAMESPACE > OUT`.
fn ssh_sign(world: &World, key: &str, namespace: &str, message: &str, out: &str) {
    let output = with_stdin(
        Command::new("ssh-keygen")
            .args(["-q", "-Y", "sign", "-n", namespace, "-f"])
            .arg(world.path(key)),
        message,
    );
    assert!(output.status.success(), "{output:?}");
    std::fs::write(world.path(out), output.stdout).unwrap();
}

/// Whether `ssh-keygen -Y verify` accepts `sig` as `principal`'s approval of `message`.
fn ssh_verify(world: &World, principal: &str, sig: &str, message: &str) -> bool {
    with_stdin(
        Command::new("ssh-keygen")
            .args([
                "-Y",
                "verify",
                "-n",
                "provision-plan",
                "-I",
                principal,
                "-f",
            ])
            .arg(world.path("allowed_signers"))
            .arg("-s")
            .arg(world.path(sig)),
        message,
    )
    .status
    .success()
}

fn digest(world: &World) -> String {
    world.read_plan("plan.json")["digest"]
        .as_str()
        .unwrap()
        .to_string()
}

fn message(world: &World) -> String {
    format!("{}\n", digest(world))
}

fn allowed_signers(world: &World, text: &str) {
    std::fs::write(world.path("allowed_signers"), text).unwrap();
}

/// `plan.json.<first 8 of the fingerprint, url-safe>.sig`.
fn default_sig_name(fp: &str) -> String {
    let short: String = fp["SHA256:".len()..]
        .chars()
        .take(8)
        .map(|c| match c {
            '+' => '-',
            '/' => '_',
            c => c,
        })
        .collect();
    format!("plan.json.{short}.sig")
}

fn sig_files(world: &World) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(world.dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".sig"))
        .collect();
    names.sort();
    names
}

#[test]
fn signatures_made_by_ssh_keygen_count_in_show_and_apply_for_ed25519_ecdsa_and_rsa() {
    require_openssh!();
    let world = World::team();
    world.plan(&[]).code(0);
    let mut signers = String::from("# approvers of provision plans\n\n");
    let mut args = vec![];
    for (kind, type_args, _) in KINDS {
        keygen(&world, kind, type_args, "");
        signers.push_str(&format!(
            "{kind}@example.com namespaces=\"provision-plan\" {}\n",
            public_key(&world, kind)
        ));
        ssh_sign(
            &world,
            kind,
            "provision-plan",
            &message(&world),
            &format!("{kind}.sig"),
        );
        args.push("--approval".to_string());
        args.push(format!("{kind}.sig"));
    }
    allowed_signers(&world, &signers);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();

    let mut show = vec!["show", "plan.json", "--color", "never"];
    show.extend_from_slice(&args);
    show.extend_from_slice(&[
        "--allowed-signers",
        "allowed_signers",
        "--require-approvals",
        "3",
    ]);
    let run = world.run(&show);
    run.code(0);
    let expected = format!(
        "\nApprovals: 3 of 3 required\n  approved by ed25519@example.com ({}) in `ed25519.sig`\n  approved by ecdsa@example.com ({}) in `ecdsa.sig`\n  approved by rsa@example.com ({}) in `rsa.sig`\n",
        fingerprint(&world, "ed25519"),
        fingerprint(&world, "ecdsa"),
        fingerprint(&world, "rsa"),
    );
    assert!(run.stdout.ends_with(&expected), "{run:#?}");

    let mut apply = vec![
        "apply",
        "plan.json",
        "--yes",
        "--format",
        "json",
        "--log",
        "log.jsonl",
    ];
    apply.extend_from_slice(&args);
    apply.extend_from_slice(&[
        "--allowed-signers",
        "allowed_signers",
        "--require-approvals",
        "3",
    ]);
    let run = world.run(&apply);
    run.code(0);
    let principals = serde_json::json!([
        "ed25519@example.com",
        "ecdsa@example.com",
        "rsa@example.com"
    ]);
    let fingerprints = serde_json::json!([
        fingerprint(&world, "ed25519"),
        fingerprint(&world, "ecdsa"),
        fingerprint(&world, "rsa")
    ]);
    let last: serde_json::Value = serde_json::from_str(run.stdout.lines().last().unwrap()).unwrap();
    assert_eq!(last["summary"]["approved_by"], principals);
    assert_eq!(last["summary"]["approver_fingerprints"], fingerprints);
    let log = std::fs::read_to_string(world.path("log.jsonl")).unwrap();
    // At least one record per change (a `started` record may precede an outcome).
    assert!(log.lines().count() >= 5, "{log}");
    for line in log.lines() {
        let record: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(record["approved_by"], principals, "{line}");
        assert_eq!(record["approver_fingerprints"], fingerprints, "{line}");
    }
}

#[test]
fn provision_approve_with_a_key_file_verifies_in_ssh_keygen_for_ed25519_ecdsa_and_rsa() {
    require_openssh!();
    let world = World::team();
    world.plan(&[]).code(0);
    let mut signers = String::new();
    for (kind, type_args, _) in KINDS {
        keygen(&world, kind, type_args, "");
        signers.push_str(&format!(
            "{kind}@example.com {}\n",
            public_key(&world, kind)
        ));
    }
    allowed_signers(&world, &signers);
    for (kind, _, algorithm) in KINDS {
        let fp = fingerprint(&world, kind);
        let sig = default_sig_name(&fp);
        let run = world.run(&["approve", "plan.json", "--key", kind]);
        run.code(0);
        assert_eq!(
            run.stdout,
            format!(
                "approved {} with {fp} ({algorithm})\nwrote {sig}\n",
                digest(&world)
            )
        );
        assert_eq!(run.stderr, "");
        assert!(
            ssh_verify(
                &world,
                &format!("{kind}@example.com"),
                &sig,
                &message(&world)
            ),
            "{kind}"
        );
        // And provision agrees with OpenSSH.
        world
            .run(&[
                "show",
                "plan.json",
                "--approval",
                &sig,
                "--allowed-signers",
                "allowed_signers",
                "--require-approvals",
                "1",
            ])
            .code(0)
            .stdout_has(&format!(
                "Approvals: 1 of 1 required\n  approved by {kind}@example.com"
            ));
    }
}

/// A real `ssh-agent` on a socket of the test's own, killed (by its pid) when dropped.
struct Agent {
    sock: PathBuf,
    pid: String,
}

impl Agent {
    fn start(dir: &Path) -> Agent {
        let sock = dir.join("agent.sock");
        // `-s` forks the agent and returns once its socket is bound: no waiting needed.
        let out = run_ok(Command::new("ssh-agent").arg("-s").arg("-a").arg(&sock));
        let text = String::from_utf8(out.stdout).unwrap();
        let pid = text
            .split(';')
            .find_map(|part| part.trim().strip_prefix("SSH_AGENT_PID="))
            .unwrap()
            .to_string();
        Agent { sock, pid }
    }

    fn add(&self, key: &Path) {
        run_ok(
            Command::new("ssh-add")
                .arg("-q")
                .arg(key)
                .env("SSH_AUTH_SOCK", &self.sock)
                .stdin(Stdio::null()),
        );
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(&self.pid).status();
    }
}

#[test]
fn provision_approve_through_ssh_agent_verifies_in_ssh_keygen() {
    require_openssh!();
    let mut world = World::team();
    world.plan(&[]).code(0);
    let agent = Agent::start(world.dir.path());
    world.env.push((
        "SSH_AUTH_SOCK".into(),
        agent.sock.to_string_lossy().into_owned(),
    ));
    let mut signers = String::new();
    for (kind, type_args, _) in KINDS {
        keygen(&world, kind, type_args, "");
        signers.push_str(&format!(
            "{kind}@example.com {}\n",
            public_key(&world, kind)
        ));
    }
    keygen(&world, "stranger", &["-t", "ed25519"], "");
    allowed_signers(&world, &signers);

    // An agent with no key.
    let run = world.run(&["approve", "plan.json"]);
    run.code(1);
    assert_eq!(
        run.stderr,
        "error: ssh-agent holds no key\nAdd yours with `ssh-add`, or pass `--key` with your private key file.\n"
    );

    // One key: used without being named.
    agent.add(&world.path("ed25519"));
    let fp = fingerprint(&world, "ed25519");
    let run = world.run(&["approve", "plan.json"]);
    run.code(0);
    let sig = default_sig_name(&fp);
    assert_eq!(
        run.stdout,
        format!(
            "approved {} with {fp} (ssh-ed25519)\nwrote {sig}\n",
            digest(&world)
        )
    );
    assert!(ssh_verify(
        &world,
        "ed25519@example.com",
        &sig,
        &message(&world)
    ));

    // Several keys: the operator must say which.
    agent.add(&world.path("ecdsa"));
    agent.add(&world.path("rsa"));
    let run = world.run(&["approve", "plan.json", "--out", "which.sig"]);
    run.code(1);
    assert!(
        run.stderr
            .starts_with("error: ssh-agent holds 3 keys and no `--key` says which one signs:\n"),
        "{run:#?}"
    );
    assert!(
        run.stderr
            .ends_with("Pass `--key FILE.pub` with the public half of the key to sign with.\n")
    );
    assert!(!world.path("which.sig").exists());

    for (kind, _, algorithm) in KINDS {
        let out = format!("agent-{kind}.sig");
        let run = world.run(&[
            "approve",
            "plan.json",
            "--key",
            &format!("{kind}.pub"),
            "--out",
            &out,
        ]);
        run.code(0);
        assert_eq!(
            run.stdout,
            format!(
                "approved {} with {} ({algorithm})\nwrote {out}\n",
                digest(&world),
                fingerprint(&world, kind)
            )
        );
        assert!(
            ssh_verify(
                &world,
                &format!("{kind}@example.com"),
                &out,
                &message(&world)
            ),
            "{kind}"
        );
    }

    // A key the agent does not hold.
    let run = world.run(&["approve", "plan.json", "--key", "stranger.pub"]);
    run.code(1);
    assert_eq!(
        run.stderr,
        format!(
            "error: ssh-agent does not hold the key `stranger.pub` ({})\nAdd it with `ssh-add`, or pass `--key` with the private key file.\n",
            fingerprint(&world, "stranger")
        )
    );
}

/// `provision approve ARGS` is refused with `code` and exactly `stderr`, writing nothing.
#[track_caller]
fn assert_approve_refused(world: &World, args: &[&str], code: i32, stderr: &str) {
    let mut all = vec!["approve", "plan.json"];
    all.extend_from_slice(args);
    let run = world.run(&all);
    run.code(code);
    assert_eq!(run.stderr, stderr);
    assert_eq!(run.stdout, "");
    assert_eq!(sig_files(world), Vec::<String>::new());
}

#[test]
fn approve_without_a_key_or_an_agent_says_what_to_do() {
    let world = World::team();
    world.plan(&[]).code(0);
    assert_approve_refused(
        &world,
        &[],
        1,
        "error: no `--key` was given and no ssh-agent is reachable (`SSH_AUTH_SOCK` is not set)\nPass `--key` with your private key file, or start ssh-agent and add your key with `ssh-add`.\n",
    );
}

#[test]
fn approve_of_an_encrypted_key_without_a_terminal_is_refused_and_writes_nothing() {
    require_openssh!();
    let world = World::team();
    world.plan(&[]).code(0);
    keygen(&world, "locked", &["-t", "ed25519"], "correct horse");
    assert_approve_refused(
        &world,
        &["--key", "locked"],
        1,
        "error: `locked` is encrypted and there is no terminal to ask for its passphrase\nRun `provision approve` on a terminal, or add the key to ssh-agent (`ssh-add locked`) and pass `--key locked.pub`.\n",
    );
}

#[test]
fn approve_on_a_terminal_asks_for_the_passphrase_of_an_encrypted_key() {
    use rexpect::process::WaitStatus;
    require_openssh!();
    let world = World::team();
    world.plan(&[]).code(0);
    keygen(&world, "locked", &["-t", "ed25519"], "correct horse");
    allowed_signers(
        &world,
        &format!("carol@example.com {}\n", public_key(&world, "locked")),
    );

    let answer = |passphrase: &str| {
        let cmd = world.std_command(&["approve", "plan.json", "--key", "locked", "--out", "c.sig"]);
        let mut session = rexpect::session::spawn_command(cmd, Some(20_000)).unwrap();
        session.exp_string("Passphrase for `locked`").unwrap();
        session.send_line(passphrase).unwrap();
        let screen = session.exp_eof().unwrap();
        let code = match session.process().wait().unwrap() {
            WaitStatus::Exited(_, code) => code,
            other => panic!("approve did not exit normally: {other:?}"),
        };
        (code, screen)
    };

    let (code, screen) = answer("wrong");
    assert_eq!(code, 1, "{screen}");
    assert!(
        screen.contains("error: `locked` cannot sign: the passphrase does not decrypt it"),
        "{screen}"
    );
    assert!(
        !screen.contains("wrong"),
        "the passphrase is not echoed: {screen}"
    );
    assert!(!world.path("c.sig").exists());

    let (code, screen) = answer("correct horse");
    assert_eq!(code, 0, "{screen}");
    assert!(!screen.contains("correct horse"), "{screen}");
    assert!(ssh_verify(
        &world,
        "carol@example.com",
        "c.sig",
        &message(&world)
    ));
}

#[test]
fn approve_refuses_a_tampered_plan_with_exit_3_and_writes_nothing() {
    require_openssh!();
    let world = World::team();
    world.plan(&[]).code(0);
    keygen(&world, "k", &["-t", "ed25519"], "");
    let text = std::fs::read_to_string(world.path("plan.json")).unwrap();
    std::fs::write(
        world.path("plan.json"),
        text.replacen("\"action\": \"ban\"", "\"action\": \"restore\"", 1),
    )
    .unwrap();
    let run = world.run(&["approve", "plan.json", "--key", "k"]);
    run.code(3)
        .stderr_has("error: the plan's digest does not match its contents");
    assert_eq!(sig_files(&world), Vec::<String>::new());
}

#[test]
fn approve_refuses_an_expired_plan_with_exit_3_and_writes_nothing() {
    require_openssh!();
    let world = World::team();
    world.plan(&["--expires-in", "1s"]).code(0);
    keygen(&world, "k", &["-t", "ed25519"], "");
    let expires_at = world.read_plan("plan.json")["expires_at"]
        .as_str()
        .unwrap()
        .to_string();
    let expires =
        time::OffsetDateTime::parse(&expires_at, &time::format_description::well_known::Rfc3339)
            .unwrap();
    // Expiry is defined by the wall clock: wait for it to pass the recorded time.
    while time::OffsetDateTime::now_utc() <= expires + time::Duration::milliseconds(50) {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_approve_refused(
        &world,
        &["--key", "k"],
        3,
        &format!(
            "error: the plan expired at {expires_at}\nRe-run `provision plan` and review the new plan.\n"
        ),
    );
}

#[test]
fn approve_refuses_a_key_file_that_is_no_key() {
    let world = World::team();
    world.plan(&[]).code(0);
    std::fs::write(world.path("notakey"), "hello\n").unwrap();
    assert_approve_refused(
        &world,
        &["--key", "notakey"],
        1,
        "error: `notakey` cannot sign: it is neither an OpenSSH private key nor a public key\nPass your private key file (e.g. ~/.ssh/id_ed25519), or the `.pub` of a key in ssh-agent.\n",
    );
}

/// Apply with one required approval: refused (exit 3) with no request sent; the reason
/// shown must be `reason`, and `ssh-keygen -Y verify` must refuse the approval as well.
fn assert_refused_by_both(world: &World, sig: &str, principal: &str, reason: &str) {
    world.sandbox.clear_requests();
    let run = world.run(&[
        "apply",
        "plan.json",
        "--yes",
        "--approval",
        sig,
        "--allowed-signers",
        "allowed_signers",
        "--require-approvals",
        "1",
    ]);
    run.code(3);
    assert!(
        run.stderr.starts_with(
            "error: the plan has 0 of the 1 approvals it needs; nothing was changed\n  not counted: "
        ),
        "{run:#?}"
    );
    assert!(run.stderr.contains(reason), "{sig}: {run:#?}");
    assert!(
        world.sandbox.requests().is_empty(),
        "{sig}: no request is sent"
    );
    assert!(
        !ssh_verify(world, principal, sig, &message(world)),
        "{sig}: ssh-keygen accepted what provision refused"
    );
}

#[test]
fn every_reason_an_approval_does_not_count_is_shared_by_ssh_keygen() {
    require_openssh!();
    let world = World::team();
    world.plan(&[]).code(0);
    for name in ["alice", "bob", "carol", "dave", "eve", "alice2"] {
        keygen(&world, name, &["-t", "ed25519"], "");
    }
    allowed_signers(
        &world,
        &format!(
            "alice@example.com {}\nbob@example.com namespaces=\"git\" {}\ncarol@example.com valid-before=\"20200101Z\" {}\ndave@example.com valid-after=\"29990101Z\" {}\nalice@example.com {}\n",
            public_key(&world, "alice"),
            public_key(&world, "bob"),
            public_key(&world, "carol"),
            public_key(&world, "dave"),
            public_key(&world, "alice2"),
        ),
    );
    let msg = message(&world);
    let other = format!("sha256:{}\n", "0".repeat(64));
    // (signing key, namespace, message, file, principal asked of ssh-keygen, reason)
    let cases: [(&str, &str, &str, &str, &str, &str); 7] = [
        (
            "alice",
            "provision-plan",
            &other,
            "other-digest.sig",
            "alice@example.com",
            "bad signature",
        ),
        (
            "alice",
            "git",
            &msg,
            "git.sig",
            "alice@example.com",
            "is signed for the namespace `git`, not `provision-plan`",
        ),
        (
            "eve",
            "provision-plan",
            &msg,
            "unknown.sig",
            "alice@example.com",
            "its key is not in the allowed-signers file",
        ),
        (
            "bob",
            "provision-plan",
            &msg,
            "bob.sig",
            "bob@example.com",
            "its key is not allowed to sign `provision-plan`",
        ),
        (
            "carol",
            "provision-plan",
            &msg,
            "carol.sig",
            "carol@example.com",
            "its key is outside its validity (valid until 2020-01-01T00:00:00Z)",
        ),
        (
            "dave",
            "provision-plan",
            &msg,
            "dave.sig",
            "dave@example.com",
            "its key is outside its validity (valid from 2999-01-01T00:00:00Z)",
        ),
        ("alice", "provision-plan", &msg, "good.sig", "", ""),
    ];
    for (key, namespace, signed, file, principal, reason) in cases {
        ssh_sign(&world, key, namespace, signed, file);
        if !reason.is_empty() {
            assert_refused_by_both(&world, file, principal, reason);
        }
    }

    // One base64 character of a good signature's data changed (its last full line).
    let good = std::fs::read_to_string(world.path("good.sig")).unwrap();
    let mut lines: Vec<String> = good.lines().map(String::from).collect();
    let n = lines.len() - 3;
    lines[n] = lines[n]
        .chars()
        .enumerate()
        .map(|(i, c)| match (i, c) {
            (10, 'A') => 'B',
            (10, _) => 'A',
            _ => c,
        })
        .collect();
    std::fs::write(world.path("altered.sig"), lines.join("\n") + "\n").unwrap();
    assert_refused_by_both(&world, "altered.sig", "alice@example.com", "");

    std::fs::write(world.path("junk.sig"), "not a signature\n").unwrap();
    assert_refused_by_both(
        &world,
        "junk.sig",
        "alice@example.com",
        "is not an SSH signature",
    );

    // The same principal twice (two keys of alice's): OpenSSH accepts each on its own,
    // and provision counts them once.
    ssh_sign(&world, "alice2", "provision-plan", &msg, "alice2.sig");
    assert!(ssh_verify(&world, "alice@example.com", "good.sig", &msg));
    assert!(ssh_verify(&world, "alice@example.com", "alice2.sig", &msg));
    world.sandbox.clear_requests();
    let run = world.run(&[
        "apply",
        "plan.json",
        "--yes",
        "--approval",
        "good.sig",
        "--approval",
        "alice2.sig",
        "--allowed-signers",
        "allowed_signers",
        "--require-approvals",
        "2",
    ]);
    run.code(3);
    assert_eq!(
        run.stderr,
        format!(
            "error: the plan has 1 of the 2 approvals it needs; nothing was changed\n  counted: `good.sig` approved by `alice@example.com` ({})\n  not counted: `alice2.sig` ({}): same principal twice: `alice@example.com` already approved with `good.sig`\nCollect approvals with `provision approve PLAN` from approvers in the allowed-signers file, and pass each with `--approval FILE`.\n",
            fingerprint(&world, "alice"),
            fingerprint(&world, "alice2"),
        )
    );
    assert!(world.sandbox.requests().is_empty());
}

#[test]
fn a_bad_allowed_signers_line_is_an_error_naming_the_file_and_the_line() {
    let world = World::team();
    world.plan(&[]).code(0);
    std::fs::write(world.path("a.sig"), "x").unwrap();
    allowed_signers(
        &world,
        "# approvers\nalice@example.com cert-authority ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK91RNwOOvm3e4ISgBrcTuRCm7ol6AmKvkjWVloSjnVA\n",
    );
    world.sandbox.clear_requests();
    let run = world.run(&[
        "apply",
        "plan.json",
        "--yes",
        "--approval",
        "a.sig",
        "--allowed-signers",
        "allowed_signers",
        "--require-approvals",
        "1",
    ]);
    run.code(1);
    assert_eq!(
        run.stderr,
        "error: `allowed_signers` line 2: `cert-authority` lines are not supported: provision verifies plain keys only; list each approver's own public key\nFix the allowed-signers file (OpenSSH's format: `principals [options] keytype base64`) and run the command again.\n"
    );
    assert!(world.sandbox.requests().is_empty());
}

#[test]
fn required_approvals_without_an_allowed_signers_file_is_an_error() {
    let world = World::team();
    world.plan(&[]).code(0);
    world.sandbox.clear_requests();
    let run = world.run(&["apply", "plan.json", "--yes", "--require-approvals", "1"]);
    run.code(1);
    assert_eq!(
        run.stderr,
        "error: approvals are required, but no allowed-signers file says whose approvals count\nPass `--allowed-signers FILE` (OpenSSH's allowed-signers format).\n"
    );
    assert!(world.sandbox.requests().is_empty());
}

#[test]
fn a_timestamp_without_z_is_read_in_the_local_time_zone() {
    require_openssh!();
    let mut world = World::team();
    world.plan(&[]).code(0);
    keygen(&world, "alice", &["-t", "ed25519"], "");
    ssh_sign(&world, "alice", "provision-plan", &message(&world), "a.sig");
    // Two hours from now on a UTC clock: in the future read as UTC, an hour ago read
    // in a zone three hours east of UTC.
    let format = time::macros::format_description!("[year][month][day][hour][minute][second]");
    let at = (time::OffsetDateTime::now_utc() + time::Duration::hours(2))
        .format(&format)
        .unwrap();
    allowed_signers(
        &world,
        &format!(
            "alice valid-after=\"{at}\" {}\n",
            public_key(&world, "alice")
        ),
    );
    let args = [
        "show",
        "plan.json",
        "--approval",
        "a.sig",
        "--allowed-signers",
        "allowed_signers",
        "--require-approvals",
        "1",
    ];
    world.env.push(("TZ".into(), "UTC0".into()));
    world
        .run(&args)
        .code(0)
        .stdout_has("Approvals: 0 of 1 required\n  not counted: `a.sig` (")
        .stdout_has("its key is outside its validity (valid from ");
    world.env.pop();
    world.env.push(("TZ".into(), "<+03>-3".into()));
    world
        .run(&args)
        .code(0)
        .stdout_has("Approvals: 1 of 1 required\n  approved by alice (");
}

#[test]
fn approve_never_writes_over_the_plan() {
    require_openssh!();
    let world = World::team();
    world.plan(&[]).code(0);
    keygen(&world, "k", &["-t", "ed25519"], "");
    let before = std::fs::read(world.path("plan.json")).unwrap();
    let run = world.run(&["approve", "plan.json", "--key", "k", "--out", "./plan.json"]);
    run.code(1);
    assert_eq!(
        run.stderr,
        "error: cannot write `./plan.json`: it is the plan being approved\n"
    );
    assert_eq!(std::fs::read(world.path("plan.json")).unwrap(), before);
}

#[test]
fn approve_with_an_unreachable_agent_says_so() {
    require_openssh!();
    let mut world = World::team();
    world.plan(&[]).code(0);
    let sock = world.path("no-agent.sock");
    world
        .env
        .push(("SSH_AUTH_SOCK".into(), sock.to_string_lossy().into_owned()));
    let run = world.run(&["approve", "plan.json"]);
    run.code(1);
    assert!(
        run.stderr.starts_with(&format!(
            "error: ssh-agent: cannot reach the agent at `SSH_AUTH_SOCK`={}: ",
            sock.display()
        )),
        "{run:#?}"
    );
    assert!(run.stderr.ends_with(
        "\nCheck the agent (`ssh-add -L` lists its keys), or pass `--key` with your private key file.\n"
    ));
    assert_eq!(sig_files(&world), Vec::<String>::new());
}

#[test]
fn an_approval_that_is_a_fifo_is_not_counted_and_never_blocks() {
    let world = World::team();
    world.plan(&[]).code(0);
    // Outside the world's directory: the harness reads every file there.
    let fifo_dir = tempfile::tempdir().unwrap();
    let fifo = fifo_dir.path().join("pipe.sig");
    run_ok(Command::new("mkfifo").arg(&fifo));
    let fifo_arg = fifo.to_string_lossy().into_owned();
    allowed_signers(
        &world,
        "alice ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK91RNwOOvm3e4ISgBrcTuRCm7ol6AmKvkjWVloSjnVA\n",
    );
    world.sandbox.clear_requests();
    let run = world.run(&[
        "apply",
        "plan.json",
        "--yes",
        "--approval",
        &fifo_arg,
        "--allowed-signers",
        "allowed_signers",
        "--require-approvals",
        "1",
    ]);
    run.code(3);
    assert_eq!(
        run.stderr,
        format!(
            "error: the plan has 0 of the 1 approvals it needs; nothing was changed\n  not counted: `{fifo_arg}`: cannot be read: not a regular file\nCollect approvals with `provision approve PLAN` from approvers in the allowed-signers file, and pass each with `--approval FILE`.\n"
        )
    );
    assert!(world.sandbox.requests().is_empty());
}

#[test]
fn a_policy_files_approvals_are_required_and_flags_cannot_lower_or_swap_them() {
    require_openssh!();
    let world = World::team();
    world.plan(&[]).code(0);
    keygen(&world, "alice", &["-t", "ed25519"], "");
    keygen(&world, "bob", &["-t", "ed25519"], "");
    std::fs::create_dir(world.path("policy")).unwrap();
    std::fs::write(
        world.path("policy/allowed_signers"),
        format!(
            "alice@example.com {}\nbob@example.com {}\n",
            public_key(&world, "alice"),
            public_key(&world, "bob")
        ),
    )
    .unwrap();
    std::fs::write(
        world.path("provision.toml"),
        "[approvals]\nallowed_signers = \"policy/allowed_signers\"\nrequired = 2\n",
    )
    .unwrap();
    ssh_sign(&world, "alice", "provision-plan", &message(&world), "a.sig");
    ssh_sign(&world, "bob", "provision-plan", &message(&world), "b.sig");
    world.sandbox.clear_requests();

    // Required by the file, and a flag asking for fewer does not lower it.
    for extra in [&[][..], &["--require-approvals", "1"][..]] {
        let mut args = vec!["apply", "plan.json", "--yes", "--approval", "a.sig"];
        args.extend_from_slice(extra);
        let run = world.run(&args);
        run.code(3);
        assert_eq!(
            run.stderr,
            format!(
                "error: the plan has 1 of the 2 approvals it needs; nothing was changed\n  counted: `a.sig` approved by `alice@example.com` ({})\nCollect approvals with `provision approve PLAN` from approvers in the allowed-signers file, and pass each with `--approval FILE`.\n",
                fingerprint(&world, "alice")
            )
        );
    }
    // Another allowed-signers file cannot replace the policy's.
    std::fs::write(
        world.path("mine"),
        format!("alice@example.com {}\n", public_key(&world, "alice")),
    )
    .unwrap();
    let run = world.run(&[
        "apply",
        "plan.json",
        "--yes",
        "--approval",
        "a.sig",
        "--allowed-signers",
        "mine",
    ]);
    run.code(1);
    assert_eq!(
        run.stderr,
        "error: `--allowed-signers`: the policy file's `[approvals]` names `policy/allowed_signers`; a flag cannot replace the allowed signers a policy requires\n"
    );
    assert!(world.sandbox.requests().is_empty(), "nothing was sent");

    // `show` lists the file's requirement; two approvers apply.
    world
        .run(&["show", "plan.json", "--approval", "a.sig"])
        .code(0)
        .stdout_has("Approvals: 1 of 2 required\n")
        .stdout_has(
            "  missing: 1 more approval from another principal in the allowed-signers file\n",
        );
    world
        .run(&[
            "apply",
            "plan.json",
            "--yes",
            "--approval",
            "a.sig",
            "--approval",
            "b.sig",
        ])
        .code(0);
}

#[test]
fn show_json_keeps_the_plan_as_stored_and_says_who_approved_on_stderr() {
    require_openssh!();
    let world = World::team();
    world.plan(&[]).code(0);
    keygen(&world, "alice", &["-t", "ed25519"], "");
    allowed_signers(
        &world,
        &format!("alice@example.com {}\n", public_key(&world, "alice")),
    );
    ssh_sign(&world, "alice", "provision-plan", &message(&world), "a.sig");
    let args = |format: &'static str| {
        vec![
            "show",
            "plan.json",
            "--format",
            format,
            "--approval",
            "a.sig",
            "--allowed-signers",
            "allowed_signers",
        ]
    };
    let section = format!(
        "Approvals: 1\n  approved by alice@example.com ({}) in `a.sig`\n",
        fingerprint(&world, "alice")
    );
    let run = world.run(&args("json"));
    run.code(0);
    assert_eq!(
        run.stdout,
        std::fs::read_to_string(world.path("plan.json")).unwrap()
    );
    assert_eq!(run.stderr, section);
    let run = world.run(&args("markdown"));
    run.code(0);
    assert!(
        run.stdout.ends_with(&format!("\n```\n{section}```\n")),
        "{run:#?}"
    );
}
