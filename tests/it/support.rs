//! The CLI harness: a fresh sandbox and a clean environment per test, the real
//! `provision` binary, and a check on every run that the service-role key never appears
//! in what it printed or wrote.

use std::path::{Path, PathBuf};
use std::process::Output;

use provision::sandbox::Sandbox;

pub struct World {
    pub sandbox: Sandbox,
    pub dir: tempfile::TempDir,
    pub key: String,
    /// Extra environment for every run.
    pub env: Vec<(String, String)>,
}

/// What one run of the binary did.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl World {
    pub fn new(sandbox: Sandbox) -> World {
        let key = sandbox.service_role_key();
        World {
            sandbox,
            dir: tempfile::tempdir().expect("temp dir"),
            key,
            env: Vec::new(),
        }
    }

    /// The team fixture shipped with the examples (the contract's seed scenario).
    pub fn team() -> World {
        World::new(Sandbox::from_fixture(&fixture("team.yaml")).expect("team fixture"))
    }

    pub fn empty() -> World {
        World::new(Sandbox::start())
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn command(&self, args: &[&str]) -> assert_cmd::Command {
        assert_cmd::Command::from_std(self.std_command(args))
    }

    /// The binary with a clean environment pointed at this world's sandbox.
    pub fn std_command(&self, args: &[&str]) -> std::process::Command {
        self.program(assert_cmd::cargo::cargo_bin!("provision"), args)
    }

    /// `sh -c script` in this world's environment, `$PROVISION` naming the binary (for
    /// what only a shell sets up: resource limits, ignored signals).
    pub fn shell(&self, script: &str) -> Run {
        let mut cmd = self.program(Path::new("sh"), &["-c", script]);
        cmd.env("PROVISION", assert_cmd::cargo::cargo_bin!("provision"));
        self.finish(cmd.output().expect("run sh"))
    }

    fn program(&self, program: &Path, args: &[&str]) -> std::process::Command {
        let mut cmd = std::process::Command::new(program);
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("MAP_SUPABASE_URL", self.sandbox.url())
            .env("MAP_SUPABASE_SERVICE_ROLE_KEY", &self.key)
            .current_dir(self.dir.path())
            .args(args);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Run the binary and check the key appears nowhere in its output or files.
    pub fn run(&self, args: &[&str]) -> Run {
        let out = self.command(args).output().expect("run provision");
        self.finish(out)
    }

    pub fn finish(&self, out: Output) -> Run {
        let run = Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        self.assert_no_key_anywhere(&run);
        run
    }

    /// The service-role key must never be printed, logged or written.
    pub fn assert_no_key_anywhere(&self, run: &Run) {
        let needles = key_needles(&self.key);
        for needle in &needles {
            assert!(
                !run.stdout.contains(needle.as_str()),
                "key in stdout: {run:?}"
            );
            assert!(
                !run.stderr.contains(needle.as_str()),
                "key in stderr: {run:?}"
            );
        }
        for entry in walk(self.dir.path()) {
            let bytes = std::fs::read(&entry).unwrap_or_default();
            let text = String::from_utf8_lossy(&bytes);
            for needle in &needles {
                assert!(
                    !text.contains(needle.as_str()),
                    "key written to {}",
                    entry.display()
                );
            }
        }
    }

    pub fn plan(&self, extra: &[&str]) -> Run {
        let mut args = vec!["plan", "--out", "plan.json", "--color", "never"];
        args.extend_from_slice(extra);
        self.run(&args)
    }

    pub fn read_plan(&self, name: &str) -> serde_json::Value {
        let text = std::fs::read_to_string(self.path(name)).expect("plan file");
        serde_json::from_str(&text).expect("plan JSON")
    }

    /// Write an edited plan with a fresh digest, as someone who knows the format would.
    pub fn write_redigested(&self, name: &str, plan: serde_json::Value) {
        let text = serde_json::to_string_pretty(&redigest(plan)).unwrap();
        std::fs::write(self.path(name), text).unwrap();
    }

    /// Requests with this method the sandbox has seen.
    pub fn requests_with_method(&self, method: &str) -> usize {
        self.sandbox
            .requests()
            .iter()
            .filter(|r| r.method == method)
            .count()
    }

    /// Requests that write (POST, PUT, PATCH, DELETE) the sandbox has seen.
    pub fn writes(&self) -> usize {
        self.sandbox
            .requests()
            .iter()
            .filter(|r| r.is_write())
            .count()
    }
}

/// The key, and the parts of it that would betray it if printed (a JWT's signature).
fn key_needles(key: &str) -> Vec<String> {
    // The key cut short at either end betrays it too.
    let mut v = vec![key.to_string()];
    if key.len() > 24 {
        v.push(key[..key.len() - 4].to_string());
        v.push(key[4..].to_string());
    }
    if let Some(sig) = key
        .rsplit('.')
        .next()
        .filter(|s| s.len() >= 16 && *s != key)
    {
        v.push(sig.to_string());
    }
    v
}

/// The plan's digest recomputed over its canonical form (serde_json's `Value` keeps
/// members sorted by key, and its compact text is the canonical form).
pub fn redigest(mut plan: serde_json::Value) -> serde_json::Value {
    use sha2::Digest;
    let obj = plan.as_object_mut().unwrap();
    obj.remove("digest");
    let canonical = serde_json::to_string(&plan).unwrap();
    let hex: String = sha2::Sha256::digest(canonical.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    plan.as_object_mut()
        .unwrap()
        .insert("digest".into(), format!("sha256:{hex}").into());
    plan
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else if p.is_file() {
                // Only regular files: reading a FIFO a test made would block.
                out.push(p);
            }
        }
    }
    out
}

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join("fixtures")
        .join(name)
}

impl Run {
    #[track_caller]
    pub fn code(&self, expected: i32) -> &Run {
        assert_eq!(self.code, expected, "exit code; {self:#?}");
        self
    }

    #[track_caller]
    pub fn stdout_has(&self, needle: &str) -> &Run {
        assert!(
            self.stdout.contains(needle),
            "stdout lacks {needle:?}; {self:#?}"
        );
        self
    }

    #[track_caller]
    pub fn stderr_has(&self, needle: &str) -> &Run {
        assert!(
            self.stderr.contains(needle),
            "stderr lacks {needle:?}; {self:#?}"
        );
        self
    }
}
