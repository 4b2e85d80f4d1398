//! The benchmark driver, shared by `examples/bench/main.rs` and the smoke test
//! (`tests/it/bench.rs`, through `#[path]`): starts the sandbox (a separate process, or
//! in-process for the test), runs the real `provision` binary and measures it, checks
//! that every run did what it should (counts, writes, exit codes), and renders the
//! report as one table or one JSON object. It asserts no time and judges no target.

// Each includer uses a part of it (the example never starts an in-process sandbox; the
// test never measures through the wrapper).
#![allow(dead_code)]

use std::ffi::OsString;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use nix::sys::resource::{UsageWho, getrusage};
use provision::model::{AuthUser, RosterEntry};
use provision::reconcile::{Policy, reconcile};
use provision::sandbox::{Sandbox, SandboxConfig, Seed};
use serde::Deserialize;
use serde_json::{Value, json};

/// `provision`'s default `--concurrency`, the `k` of the ideal `M·L/k`.
pub const DEFAULT_CONCURRENCY: usize = 8;

/// The sandbox's (and Supabase's) page size: PostgREST `max-rows`, our `per_page`.
const PAGE: usize = 1000;

/// What to measure.
#[derive(Debug, Clone)]
pub struct Options {
    /// Plan sizes: N auth users and N roster rows, all paired.
    pub users: Vec<usize>,
    /// Apply sizes: M changes, M/2 creates and M − M/2 bans (beside M paired people).
    pub changes: Vec<usize>,
    /// Injected per-request latency for the plan runs.
    pub plan_latency: Duration,
    /// Injected per-request latency for the apply runs.
    pub apply_latency: Duration,
    /// Runs per figure; each figure is the median.
    pub runs: usize,
    /// Reconcile core size: this many roster rows and as many users (0 skips it).
    pub core: usize,
    /// Look-alike size: this many roster rows and as many users, 10% of each a create
    /// or a ban (0 skips it).
    pub lookalikes: usize,
}

impl Options {
    /// The full run: N = 10k and 100k at 20 ms, M = 1k and 10k at 10 ms, the
    /// core at 1M × 1M, three runs each.
    pub fn full() -> Options {
        Options {
            users: vec![10_000, 100_000],
            changes: vec![1_000, 10_000],
            plan_latency: Duration::from_millis(20),
            apply_latency: Duration::from_millis(10),
            runs: 3,
            core: 1_000_000,
            lookalikes: 100_000,
        }
    }

    /// The smoke run `cargo test` makes: N = 2k, M = 200, L = 2 ms, core 10k × 10k.
    pub fn smoke() -> Options {
        Options {
            users: vec![2_000],
            changes: vec![200],
            plan_latency: Duration::from_millis(2),
            apply_latency: Duration::from_millis(2),
            runs: 1,
            core: 10_000,
            lookalikes: 10_000,
        }
    }
}

/// How to start the sandbox.
#[derive(Debug, Clone)]
pub enum SandboxKind {
    /// `examples/sandbox` as a separate process (the benchmark: server work never
    /// shares the client's cores' scheduler slots with the driver).
    Process(PathBuf),
    /// On a thread of this process (the smoke test, where no example binary is built).
    InProcess,
}

/// The programs the driver runs.
#[derive(Debug, Clone)]
pub struct Binaries {
    /// The `provision` binary under test.
    pub provision: PathBuf,
    pub sandbox: SandboxKind,
    /// A program that runs `measure_main` when its first argument is
    /// [`MEASURE_ARG`] (the bench example itself). With it, each `provision` run gets
    /// exact CPU time and peak RSS from `getrusage(RUSAGE_CHILDREN)` of a process whose
    /// only child it is. Without it, the driver takes the difference of its own
    /// children's usage around the run (exact CPU when nothing else of this process
    /// exits meanwhile; the peak RSS is then only an upper bound).
    pub measurer: Option<PathBuf>,
}

/// The first argument that turns the bench example into the measuring wrapper.
pub const MEASURE_ARG: &str = "__measure-child";

// ---------------------------------------------------------------------------------
// The report

/// One configuration's medians.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Figures {
    pub concurrency: usize,
    /// Wall time of the whole `provision` process.
    pub wall_s: f64,
    /// User + system CPU time of the `provision` process.
    pub cpu_s: f64,
    pub user_s: f64,
    pub sys_s: f64,
    /// Peak resident set size of the `provision` process.
    pub peak_rss_mb: f64,
    /// Requests the sandbox served during the run.
    pub requests: usize,
    /// The most requests the sandbox saw in flight at once.
    pub max_in_flight: usize,
    /// CPU time the sandbox process spent during the run (process sandbox only).
    pub sandbox_cpu_s: Option<f64>,
    /// Apply only: from the first write's arrival to the last write's answer.
    pub write_phase_s: Option<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PlanResult {
    pub users: usize,
    pub roster_rows: usize,
    pub latency_ms: f64,
    pub default: Figures,
    pub sequential: Figures,
    /// Sequential wall time ÷ default wall time.
    pub speedup: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ApplyResult {
    pub changes: usize,
    pub creates: usize,
    pub bans: usize,
    /// Paired people beside the changes (listed by the reads, never written).
    pub paired: usize,
    pub latency_ms: f64,
    pub default: Figures,
    pub sequential: Figures,
    /// `--concurrency 1` wall time ÷ default wall time.
    pub speedup: f64,
    /// `M·L/k` with k = the default concurrency.
    pub ideal_s: f64,
    /// `ideal_s` ÷ the default wall time (the whole `apply`, reads included).
    pub ideal_fraction: f64,
    /// `ideal_s` ÷ the default run's write phase.
    pub write_phase_ideal_fraction: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CoreResult {
    pub roster_rows: usize,
    pub users: usize,
    /// Median wall time of one `reconcile` call.
    pub wall_s: f64,
    /// Median CPU time (all threads of this process) of one call.
    pub cpu_s: f64,
    pub creates: usize,
    pub restores: usize,
    pub bans: usize,
    pub unchanged: usize,
}

/// Finding look-alike pairs among a plan's creates and bans (`lookalike::pairs`, the
/// part of `reconcile` the look-alike warning adds).
#[derive(Debug, Clone, PartialEq)]
pub struct LookAlikeResult {
    pub roster_rows: usize,
    pub users: usize,
    pub creates: usize,
    pub bans: usize,
    /// Pairs found (the scenario plants `planted` typos among random names).
    pub pairs: usize,
    pub planted: usize,
    /// Median CPU time of one `pairs` call.
    pub cpu_s: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Machine {
    pub nproc: usize,
    pub cpu_model: String,
    pub memory_gib: f64,
    pub load_before: String,
    pub load_after: String,
}

impl Machine {
    pub fn read() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| {
                l.strip_prefix("model name")
                    .and_then(|rest| rest.split_once(':'))
                    .map(|(_, v)| v.trim().to_string())
            })
            .unwrap_or_else(|| "unknown".into());
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let mem_kb = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .unwrap_or(0.0);
        Machine {
            nproc: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu_model,
            memory_gib: mem_kb / (1024.0 * 1024.0),
            load_before: load_average(),
            load_after: String::new(),
        }
    }
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub machine: Machine,
    pub runs: usize,
    pub sandbox: &'static str,
    pub plan: Vec<PlanResult>,
    pub apply: Vec<ApplyResult>,
    pub core: Option<CoreResult>,
    pub lookalikes: Option<LookAlikeResult>,
}

impl Report {
    /// Look-alike CPU as a share of `plan`'s client CPU at the same size, when both were
    /// measured.
    pub fn lookalike_share(&self) -> Option<f64> {
        let l = self.lookalikes.as_ref()?;
        let p = self.plan.iter().find(|p| p.users == l.users)?;
        (p.default.cpu_s > 0.0).then(|| l.cpu_s / p.default.cpu_s)
    }

    /// The plan speedup at the largest N measured.
    pub fn plan_speedup(&self) -> Option<f64> {
        self.plan.iter().max_by_key(|p| p.users).map(|p| p.speedup)
    }

    /// The apply speedup at the largest M measured.
    pub fn apply_speedup(&self) -> Option<f64> {
        self.apply
            .iter()
            .max_by_key(|a| a.changes)
            .map(|a| a.speedup)
    }

    /// Every figure, for scripts.
    pub fn to_json(&self) -> Value {
        let figures = |f: &Figures| {
            json!({
                "concurrency": f.concurrency,
                "wall_s": f.wall_s,
                "cpu_s": f.cpu_s,
                "user_s": f.user_s,
                "sys_s": f.sys_s,
                "peak_rss_mb": f.peak_rss_mb,
                "requests": f.requests,
                "max_in_flight": f.max_in_flight,
                "sandbox_cpu_s": f.sandbox_cpu_s,
                "write_phase_s": f.write_phase_s,
            })
        };
        json!({
            "plan_speedup": self.plan_speedup(),
            "apply_speedup": self.apply_speedup(),
            "machine": {
                "nproc": self.machine.nproc,
                "cpu_model": self.machine.cpu_model,
                "memory_gib": self.machine.memory_gib,
                "load_before": self.machine.load_before,
                "load_after": self.machine.load_after,
            },
            "runs": self.runs,
            "sandbox": self.sandbox,
            "plan": self.plan.iter().map(|p| json!({
                "users": p.users,
                "roster_rows": p.roster_rows,
                "latency_ms": p.latency_ms,
                "default": figures(&p.default),
                "sequential": figures(&p.sequential),
                "speedup": p.speedup,
            })).collect::<Vec<_>>(),
            "apply": self.apply.iter().map(|a| json!({
                "changes": a.changes,
                "creates": a.creates,
                "bans": a.bans,
                "paired": a.paired,
                "latency_ms": a.latency_ms,
                "default": figures(&a.default),
                "sequential": figures(&a.sequential),
                "speedup": a.speedup,
                "ideal_s": a.ideal_s,
                "ideal_fraction": a.ideal_fraction,
                "write_phase_ideal_fraction": a.write_phase_ideal_fraction,
            })).collect::<Vec<_>>(),
            "core": self.core.as_ref().map(|c| json!({
                "roster_rows": c.roster_rows,
                "users": c.users,
                "wall_s": c.wall_s,
                "cpu_s": c.cpu_s,
                "creates": c.creates,
                "restores": c.restores,
                "bans": c.bans,
                "unchanged": c.unchanged,
            })),
            "lookalikes": self.lookalikes.as_ref().map(|l| json!({
                "roster_rows": l.roster_rows,
                "users": l.users,
                "creates": l.creates,
                "bans": l.bans,
                "pairs": l.pairs,
                "planted": l.planted,
                "cpu_s": l.cpu_s,
                "share_of_plan_cpu": self.lookalike_share(),
            })),
        })
    }

    /// One table, every figure in it.
    pub fn to_table(&self) -> String {
        let mut t = String::new();
        let m = &self.machine;
        let _ = writeln!(
            t,
            "machine: {} × {} ({:.1} GiB); load {} → {}; median of {} run(s); sandbox: {}",
            m.nproc,
            m.cpu_model,
            m.memory_gib,
            m.load_before,
            m.load_after,
            self.runs,
            self.sandbox
        );
        let _ = writeln!(
            t,
            "{:<40} {:>16} {:>16} {:>9}",
            "measure", "default (k=8)", "sequential (k=1)", "ratio"
        );
        let line = |t: &mut String, name: &str, a: String, b: String, r: String| {
            let _ = writeln!(t, "{name:<40} {a:>16} {b:>16} {r:>9}");
        };
        let secs = |s: f64| format!("{s:.3} s");
        let opt_secs = |s: Option<f64>| s.map_or("-".to_string(), secs);
        for p in &self.plan {
            let _ = writeln!(
                t,
                "plan: {} users × {} roster rows, L = {} ms",
                p.users, p.roster_rows, p.latency_ms
            );
            line(
                &mut t,
                "  wall",
                secs(p.default.wall_s),
                secs(p.sequential.wall_s),
                format!("{:.2}×", p.speedup),
            );
            line(
                &mut t,
                "  client CPU (user+sys)",
                secs(p.default.cpu_s),
                secs(p.sequential.cpu_s),
                String::new(),
            );
            line(
                &mut t,
                "  requests",
                p.default.requests.to_string(),
                p.sequential.requests.to_string(),
                String::new(),
            );
            line(
                &mut t,
                "  peak RSS",
                format!("{:.1} MB", p.default.peak_rss_mb),
                format!("{:.1} MB", p.sequential.peak_rss_mb),
                String::new(),
            );
            line(
                &mut t,
                "  most requests in flight",
                p.default.max_in_flight.to_string(),
                p.sequential.max_in_flight.to_string(),
                String::new(),
            );
            line(
                &mut t,
                "  sandbox CPU",
                opt_secs(p.default.sandbox_cpu_s),
                opt_secs(p.sequential.sandbox_cpu_s),
                String::new(),
            );
        }
        for a in &self.apply {
            let _ = writeln!(
                t,
                "apply: {} changes ({} creates + {} bans; {} paired), L = {} ms",
                a.changes, a.creates, a.bans, a.paired, a.latency_ms
            );
            line(
                &mut t,
                "  wall",
                secs(a.default.wall_s),
                secs(a.sequential.wall_s),
                format!("{:.2}×", a.speedup),
            );
            line(
                &mut t,
                "  write phase",
                opt_secs(a.default.write_phase_s),
                opt_secs(a.sequential.write_phase_s),
                String::new(),
            );
            line(
                &mut t,
                "  ideal M·L/k (k=8); fraction reached",
                secs(a.ideal_s),
                format!("{:.1}%", a.ideal_fraction * 100.0),
                String::new(),
            );
            line(
                &mut t,
                "  fraction of ideal, write phase alone",
                String::new(),
                format!("{:.1}%", a.write_phase_ideal_fraction * 100.0),
                String::new(),
            );
            line(
                &mut t,
                "  client CPU (user+sys)",
                secs(a.default.cpu_s),
                secs(a.sequential.cpu_s),
                String::new(),
            );
            line(
                &mut t,
                "  requests",
                a.default.requests.to_string(),
                a.sequential.requests.to_string(),
                String::new(),
            );
            line(
                &mut t,
                "  peak RSS",
                format!("{:.1} MB", a.default.peak_rss_mb),
                format!("{:.1} MB", a.sequential.peak_rss_mb),
                String::new(),
            );
            line(
                &mut t,
                "  most requests in flight",
                a.default.max_in_flight.to_string(),
                a.sequential.max_in_flight.to_string(),
                String::new(),
            );
            line(
                &mut t,
                "  sandbox CPU",
                opt_secs(a.default.sandbox_cpu_s),
                opt_secs(a.sequential.sandbox_cpu_s),
                String::new(),
            );
        }
        if let Some(c) = &self.core {
            let _ = writeln!(
                t,
                "reconcile core: {} roster rows × {} users (in-process, CPU only)",
                c.roster_rows, c.users
            );
            line(
                &mut t,
                "  wall",
                secs(c.wall_s),
                String::new(),
                String::new(),
            );
            line(
                &mut t,
                "  CPU (all threads)",
                secs(c.cpu_s),
                String::new(),
                String::new(),
            );
            line(
                &mut t,
                "  changes (create/restore/ban)",
                format!("{}/{}/{}", c.creates, c.restores, c.bans),
                String::new(),
                String::new(),
            );
        }
        if let Some(l) = &self.lookalikes {
            let _ = writeln!(
                t,
                "look-alikes: {} creates × {} bans ({} roster rows × {} users, in-process)",
                l.creates, l.bans, l.roster_rows, l.users
            );
            line(&mut t, "  CPU", secs(l.cpu_s), String::new(), String::new());
            line(
                &mut t,
                "  pairs found (planted)",
                format!("{} ({})", l.pairs, l.planted),
                String::new(),
                String::new(),
            );
            if let Some(share) = self.lookalike_share() {
                line(
                    &mut t,
                    "  share of plan's client CPU",
                    format!("{:.1}%", share * 100.0),
                    String::new(),
                    String::new(),
                );
            }
        }
        if let Some(s) = self.plan_speedup() {
            let _ = writeln!(t, "plan_speedup: {s:.2}");
        }
        if let Some(s) = self.apply_speedup() {
            let _ = writeln!(t, "apply_speedup: {s:.2}");
        }
        t
    }
}

// ---------------------------------------------------------------------------------
// Running it

/// Run everything `opts` asks for. Any inconsistency (a failed run, a wrong count, a
/// missing write) is an error: figures from a run that did the wrong thing are worthless.
pub fn run(
    opts: &Options,
    bins: &Binaries,
    progress: &mut dyn FnMut(&str),
) -> Result<Report, String> {
    let mut machine = Machine::read();
    let work = tempfile::tempdir().map_err(|e| format!("cannot make a temp dir: {e}"))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a runtime: {e}"))?;
    let ctx = Ctx {
        bins,
        dir: work.path(),
        runtime,
        http: reqwest::Client::new(),
    };
    let runs = opts.runs.max(1);
    let mut plan = Vec::new();
    for &n in opts.users.iter().filter(|&&n| n > 0) {
        plan.push(ctx.plan_scenario(n, opts.plan_latency, runs, progress)?);
    }
    let mut apply = Vec::new();
    for &m in opts.changes.iter().filter(|&&m| m > 0) {
        apply.push(ctx.apply_scenario(m, opts.apply_latency, runs, progress)?);
    }
    let core = if opts.core > 0 {
        progress(&format!("core: {0} × {0}", opts.core));
        Some(core_scenario(opts.core, runs)?)
    } else {
        None
    };
    let lookalikes = if opts.lookalikes > 0 {
        progress(&format!("look-alikes: {0} × {0}", opts.lookalikes));
        Some(lookalike_scenario(opts.lookalikes, runs)?)
    } else {
        None
    };
    machine.load_after = load_average();
    Ok(Report {
        machine,
        runs,
        sandbox: match bins.sandbox {
            SandboxKind::Process(_) => "separate process",
            SandboxKind::InProcess => "in-process (thread)",
        },
        plan,
        apply,
        core,
        lookalikes,
    })
}

struct Ctx<'a> {
    bins: &'a Binaries,
    dir: &'a Path,
    runtime: tokio::runtime::Runtime,
    http: reqwest::Client,
}

/// A started sandbox; dropping it stops it.
struct Running {
    url: String,
    key: String,
    pid: Option<u32>,
    guard: Guard,
}

enum Guard {
    Process(Child),
    InProcess(Box<Sandbox>),
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Guard::Process(child) = &mut self.guard {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One `provision` run as measured.
#[derive(Debug, Clone)]
struct Measured {
    wall: f64,
    user: f64,
    sys: f64,
    max_rss_kb: u64,
    code: i32,
    stdout: String,
    stderr: String,
}

/// The part of a logged request the driver reads.
#[derive(Debug, Deserialize)]
struct Logged {
    method: String,
    path: String,
    status: u16,
    started_ms: f64,
    finished_ms: Option<f64>,
}

#[derive(Debug, Deserialize)]
struct Log {
    requests: Vec<Logged>,
    max_in_flight: usize,
}

impl Ctx<'_> {
    fn start_sandbox(
        &self,
        users: usize,
        roster: usize,
        offset: usize,
        latency: Duration,
    ) -> Result<Running, String> {
        match &self.bins.sandbox {
            SandboxKind::InProcess => {
                let config = SandboxConfig {
                    latency,
                    ..SandboxConfig::default()
                };
                let sb = Sandbox::try_start(config, Seed::generate_from(users, roster, offset))?;
                Ok(Running {
                    url: sb.url(),
                    key: sb.service_role_key(),
                    pid: None,
                    guard: Guard::InProcess(Box::new(sb)),
                })
            }
            SandboxKind::Process(exe) => {
                let mut child = Command::new(exe)
                    .args(["--port", "0", "--latency-ms"])
                    .arg(latency.as_millis().to_string())
                    .arg("--generate-users")
                    .arg(users.to_string())
                    .arg("--generate-roster")
                    .arg(roster.to_string())
                    .arg("--roster-offset")
                    .arg(offset.to_string())
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::null())
                    .spawn()
                    .map_err(|e| format!("cannot start the sandbox `{}`: {e}", exe.display()))?;
                let pid = child.id();
                let stdout = child.stdout.take();
                let mut running = Running {
                    url: String::new(),
                    key: String::new(),
                    pid: Some(pid),
                    guard: Guard::Process(child),
                };
                if let Some(out) = stdout {
                    for line in BufReader::new(out).lines() {
                        let Ok(line) = line else { break };
                        if let Some(v) = line.strip_prefix("export MAP_SUPABASE_URL=") {
                            running.url = v.to_string();
                        } else if let Some(v) =
                            line.strip_prefix("export MAP_SUPABASE_SERVICE_ROLE_KEY=")
                        {
                            running.key = v.to_string();
                        }
                        if !running.url.is_empty() && !running.key.is_empty() {
                            return Ok(running);
                        }
                    }
                }
                Err("the sandbox process ended before printing its URL and key".into())
            }
        }
    }

    fn control(&self, sb: &Running, method: reqwest::Method, path: &str) -> Result<Value, String> {
        let url = format!("{}{path}", sb.url);
        self.runtime.block_on(async {
            let resp = self
                .http
                .request(method, &url)
                .send()
                .await
                .map_err(|e| format!("sandbox control {path}: {e}"))?;
            resp.json::<Value>()
                .await
                .map_err(|e| format!("sandbox control {path}: {e}"))
        })
    }

    fn clear_log(&self, sb: &Running) -> Result<(), String> {
        self.control(sb, reqwest::Method::DELETE, "/_sandbox/requests")
            .map(|_| ())
    }

    fn log(&self, sb: &Running) -> Result<Log, String> {
        let v = self.control(sb, reqwest::Method::GET, "/_sandbox/requests")?;
        serde_json::from_value(v).map_err(|e| format!("the sandbox's request log: {e}"))
    }

    /// Run `provision ARGS` against `sb` in the work directory, measured.
    fn provision(&self, sb: &Running, args: &[&str]) -> Result<Measured, String> {
        let configure = |cmd: &mut Command| {
            cmd.env_clear()
                .env("PATH", std::env::var_os("PATH").unwrap_or_default())
                .env("MAP_SUPABASE_URL", &sb.url)
                .env("MAP_SUPABASE_SERVICE_ROLE_KEY", &sb.key)
                .env("NO_COLOR", "1")
                .current_dir(self.dir)
                .stdin(Stdio::null());
        };
        let prog = &self.bins.provision;
        match &self.bins.measurer {
            Some(wrapper) => {
                let out_file = self.dir.join("usage.json");
                let _ = std::fs::remove_file(&out_file);
                let mut cmd = Command::new(wrapper);
                cmd.arg(MEASURE_ARG).arg(&out_file).arg(prog).args(args);
                configure(&mut cmd);
                let out = cmd
                    .output()
                    .map_err(|e| format!("cannot run `{}`: {e}", wrapper.display()))?;
                let text = std::fs::read_to_string(&out_file)
                    .map_err(|e| format!("the measuring wrapper left no usage: {e}"))?;
                let u: Value = serde_json::from_str(&text)
                    .map_err(|e| format!("the measuring wrapper's usage: {e}"))?;
                let f = |k: &str| u[k].as_f64().unwrap_or(0.0);
                Ok(Measured {
                    wall: f("wall_s"),
                    user: f("user_s"),
                    sys: f("sys_s"),
                    max_rss_kb: u["max_rss_kb"].as_u64().unwrap_or(0),
                    code: u["code"].as_i64().map_or(-1, |c| c as i32),
                    stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
                    stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
                })
            }
            None => {
                let mut cmd = Command::new(prog);
                cmd.args(args);
                configure(&mut cmd);
                let before = children_usage()?;
                let start = Instant::now();
                let out = cmd
                    .output()
                    .map_err(|e| format!("cannot run `{}`: {e}", prog.display()))?;
                let wall = start.elapsed().as_secs_f64();
                let after = children_usage()?;
                Ok(Measured {
                    wall,
                    user: after.user - before.user,
                    sys: after.sys - before.sys,
                    max_rss_kb: after.max_rss_kb,
                    code: out.status.code().unwrap_or(-1),
                    stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
                    stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
                })
            }
        }
    }

    fn plan_scenario(
        &self,
        n: usize,
        latency: Duration,
        runs: usize,
        progress: &mut dyn FnMut(&str),
    ) -> Result<PlanResult, String> {
        progress(&format!(
            "plan: starting a sandbox with {n} users × {n} rows"
        ));
        let sb = self.start_sandbox(n, n, 0, latency)?;
        let expected_requests = 2 * n.div_ceil(PAGE).max(1);
        // One run first, not counted: both configurations then meet the same warm
        // server (its kept listings) and page cache.
        progress(&format!("plan {n}: warm-up run"));
        let warm = self.provision(&sb, &["plan", "--out", "plan.json"])?;
        if warm.code != 0 {
            return Err(format!(
                "plan {n} (warm-up) exited {}: {}",
                warm.code, warm.stderr
            ));
        }
        let mut samples: [Vec<Sample>; 2] = [Vec::new(), Vec::new()];
        // Alternate the two configurations, so a change of load hits both alike.
        for run in 0..runs {
            for (slot, concurrency) in [DEFAULT_CONCURRENCY, 1].into_iter().enumerate() {
                progress(&format!(
                    "plan {n}: run {}/{runs}, --concurrency {concurrency}",
                    run + 1
                ));
                self.clear_log(&sb)?;
                let cpu_before = sandbox_cpu(&sb);
                let c = concurrency.to_string();
                let m =
                    self.provision(&sb, &["plan", "--concurrency", &c, "--out", "plan.json"])?;
                let sandbox_cpu_s = delta(cpu_before, sandbox_cpu(&sb));
                if m.code != 0 {
                    return Err(format!(
                        "plan {n} (--concurrency {concurrency}) exited {}: {}",
                        m.code, m.stderr
                    ));
                }
                check_plan_summary(&self.dir.join("plan.json"), n, 0, 0)?;
                let log = self.log(&sb)?;
                if let Some(bad) = log
                    .requests
                    .iter()
                    .find(|r| !(200..300).contains(&r.status))
                {
                    return Err(format!(
                        "plan {n}: the sandbox answered {} to {} {}",
                        bad.status, bad.method, bad.path
                    ));
                }
                if log.requests.len() != expected_requests {
                    return Err(format!(
                        "plan {n}: {} requests, expected {expected_requests} (pages of {PAGE})",
                        log.requests.len()
                    ));
                }
                samples[slot].push(Sample {
                    concurrency,
                    m,
                    requests: log.requests.len(),
                    max_in_flight: log.max_in_flight,
                    sandbox_cpu_s,
                    write_phase_s: None,
                });
            }
        }
        drop(sb);
        let [default, sequential] = samples.map(|s| figures(&s));
        Ok(PlanResult {
            users: n,
            roster_rows: n,
            latency_ms: latency.as_secs_f64() * 1000.0,
            speedup: ratio(sequential.wall_s, default.wall_s),
            default,
            sequential,
        })
    }

    fn apply_scenario(
        &self,
        m: usize,
        latency: Duration,
        runs: usize,
        progress: &mut dyn FnMut(&str),
    ) -> Result<ApplyResult, String> {
        let creates = m / 2;
        let bans = m - creates;
        let paired = m;
        let mut samples: [Vec<Sample>; 2] = [Vec::new(), Vec::new()];
        for run in 0..runs {
            for (slot, concurrency) in [DEFAULT_CONCURRENCY, 1].into_iter().enumerate() {
                progress(&format!(
                    "apply {m}: run {}/{runs}, --concurrency {concurrency}",
                    run + 1
                ));
                // A fresh state every run: each apply consumes its pending changes.
                let sb = self.start_sandbox(paired + bans, paired + creates, bans, latency)?;
                let max_bans = bans.to_string();
                let plan = self.provision(
                    &sb,
                    &["plan", "--max-bans", &max_bans, "--out", "apply-plan.json"],
                )?;
                if plan.code != 0 && plan.code != 2 {
                    return Err(format!(
                        "apply {m}: the plan exited {}: {}",
                        plan.code, plan.stderr
                    ));
                }
                check_plan_summary(&self.dir.join("apply-plan.json"), paired, creates, bans)?;
                self.clear_log(&sb)?;
                let cpu_before = sandbox_cpu(&sb);
                let c = concurrency.to_string();
                let got = self.provision(
                    &sb,
                    &["apply", "apply-plan.json", "--yes", "--concurrency", &c],
                )?;
                let sandbox_cpu_s = delta(cpu_before, sandbox_cpu(&sb));
                if got.code != 0 {
                    return Err(format!(
                        "apply {m} (--concurrency {concurrency}) exited {}: {}",
                        got.code, got.stderr
                    ));
                }
                let counter = |name: &str| -> Option<usize> {
                    got.stdout.lines().find_map(|l| {
                        l.strip_prefix(name)
                            .and_then(|v| v.strip_prefix(": "))
                            .and_then(|v| v.trim().parse().ok())
                    })
                };
                if counter("created") != Some(creates)
                    || counter("decommissioned") != Some(bans)
                    || counter("unchanged") != Some(paired)
                    || counter("failed").is_some()
                {
                    return Err(format!(
                        "apply {m}: expected {creates} created, {bans} decommissioned, {paired} unchanged; got:\n{}",
                        got.stdout
                    ));
                }
                let log = self.log(&sb)?;
                let writes: Vec<&Logged> =
                    log.requests.iter().filter(|r| r.method != "GET").collect();
                let posts = writes.iter().filter(|r| r.method == "POST").count();
                let puts = writes.iter().filter(|r| r.method == "PUT").count();
                if posts != creates
                    || puts != bans
                    || writes.len() != m
                    || writes.iter().any(|r| !(200..300).contains(&r.status))
                {
                    return Err(format!(
                        "apply {m}: the sandbox saw {posts} creates and {puts} bans ({} writes, {} failed); expected {creates} and {bans}",
                        writes.len(),
                        writes
                            .iter()
                            .filter(|r| !(200..300).contains(&r.status))
                            .count()
                    ));
                }
                let first = writes
                    .iter()
                    .map(|r| r.started_ms)
                    .fold(f64::INFINITY, f64::min);
                let last = writes
                    .iter()
                    .filter_map(|r| r.finished_ms)
                    .fold(f64::NEG_INFINITY, f64::max);
                let write_phase_s = (m > 0).then(|| ((last - first) / 1000.0).max(0.0));
                samples[slot].push(Sample {
                    concurrency,
                    m: got,
                    requests: log.requests.len(),
                    max_in_flight: log.max_in_flight,
                    sandbox_cpu_s,
                    write_phase_s,
                });
            }
        }
        let [default, sequential] = samples.map(|s| figures(&s));
        let ideal_s = m as f64 * latency.as_secs_f64() / DEFAULT_CONCURRENCY as f64;
        Ok(ApplyResult {
            changes: m,
            creates,
            bans,
            paired,
            latency_ms: latency.as_secs_f64() * 1000.0,
            speedup: ratio(sequential.wall_s, default.wall_s),
            ideal_s,
            ideal_fraction: ratio(ideal_s, default.wall_s),
            write_phase_ideal_fraction: ratio(ideal_s, default.write_phase_s.unwrap_or(0.0)),
            default,
            sequential,
        })
    }
}

struct Sample {
    concurrency: usize,
    m: Measured,
    requests: usize,
    max_in_flight: usize,
    sandbox_cpu_s: Option<f64>,
    write_phase_s: Option<f64>,
}

fn figures(samples: &[Sample]) -> Figures {
    let med = |f: &dyn Fn(&Sample) -> f64| median(samples.iter().map(f).collect());
    let med_opt = |f: &dyn Fn(&Sample) -> Option<f64>| {
        let v: Vec<f64> = samples.iter().filter_map(f).collect();
        (!v.is_empty()).then(|| median(v))
    };
    Figures {
        concurrency: samples.first().map_or(0, |s| s.concurrency),
        wall_s: med(&|s| s.m.wall),
        cpu_s: med(&|s| s.m.user + s.m.sys),
        user_s: med(&|s| s.m.user),
        sys_s: med(&|s| s.m.sys),
        peak_rss_mb: med(&|s| s.m.max_rss_kb as f64 / 1024.0),
        requests: med(&|s| s.requests as f64).round() as usize,
        max_in_flight: samples.iter().map(|s| s.max_in_flight).max().unwrap_or(0),
        sandbox_cpu_s: med_opt(&|s| s.sandbox_cpu_s),
        write_phase_s: med_opt(&|s| s.write_phase_s),
    }
}

pub fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    }
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 { a / b } else { 0.0 }
}

fn delta(before: Option<f64>, after: Option<f64>) -> Option<f64> {
    Some(after? - before?)
}

/// CPU time the sandbox process's threads have used so far (the sum of
/// `/proc/PID/task/*/schedstat`, nanoseconds on CPU), when it is a process of its own.
fn sandbox_cpu(sb: &Running) -> Option<f64> {
    let pid = sb.pid?;
    let mut ns = 0.0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let Ok(task) = task else { continue };
        let Ok(text) = std::fs::read_to_string(task.path().join("schedstat")) else {
            continue;
        };
        ns += text
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0);
    }
    Some(ns / 1e9)
}

/// The plan file's `summary` must show exactly this.
fn check_plan_summary(
    path: &Path,
    unchanged: usize,
    create: usize,
    ban: usize,
) -> Result<(), String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the plan `{}`: {e}", path.display()))?;
    let plan: Value =
        serde_json::from_str(&text).map_err(|e| format!("the plan is not JSON: {e}"))?;
    let s = &plan["summary"];
    let get = |k: &str| s[k].as_u64().map(|v| v as usize);
    let want = [
        ("unchanged", unchanged),
        ("create", create),
        ("ban", ban),
        ("restore", 0),
        ("conflicts", 0),
    ];
    for (k, v) in want {
        if get(k) != Some(v) {
            return Err(format!(
                "the plan's summary has {k} = {}, expected {v}: {s}",
                s[k]
            ));
        }
    }
    Ok(())
}

struct Usage {
    user: f64,
    sys: f64,
    max_rss_kb: u64,
}

fn children_usage() -> Result<Usage, String> {
    let u = getrusage(UsageWho::RUSAGE_CHILDREN).map_err(|e| format!("getrusage: {e}"))?;
    let secs = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
    Ok(Usage {
        user: secs(u.user_time()),
        sys: secs(u.system_time()),
        // Linux reports kilobytes.
        max_rss_kb: u64::try_from(u.max_rss()).unwrap_or(0),
    })
}

fn self_cpu() -> f64 {
    getrusage(UsageWho::RUSAGE_SELF).map_or(0.0, |u| {
        let secs = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
        secs(u.user_time()) + secs(u.system_time())
    })
}

/// The measuring wrapper: `MEASURE_ARG OUT PROG ARGS…` runs PROG (its only child, with
/// this process's stdio and environment), then writes PROG's wall time, CPU time and
/// peak RSS to OUT as JSON, and exits as PROG did.
pub fn measure_main(args: &[OsString]) -> ExitCode {
    let [out, prog, rest @ ..] = args else {
        eprintln!("usage: {MEASURE_ARG} OUT PROG [ARGS…]");
        return ExitCode::from(64);
    };
    let start = Instant::now();
    let status = match Command::new(prog).args(rest).status() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("cannot run {}: {e}", Path::new(prog).display());
            return ExitCode::FAILURE;
        }
    };
    let wall = start.elapsed().as_secs_f64();
    let usage = match children_usage() {
        Ok(u) => u,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let code = status.code().unwrap_or(-1);
    let record = json!({
        "wall_s": wall,
        "user_s": usage.user,
        "sys_s": usage.sys,
        "max_rss_kb": usage.max_rss_kb,
        "code": code,
    });
    if let Err(e) = std::fs::write(out, record.to_string()) {
        eprintln!("cannot write {}: {e}", Path::new(out).display());
        return ExitCode::FAILURE;
    }
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

// ---------------------------------------------------------------------------------
// The pure core

/// `reconcile` alone over `n` roster rows and `n` users, in-process: 98% paired (some
/// with other capitals and spaces on the roster), 1% newcomers, 1% leavers, and 0.5% of
/// the paired people banned (to restore). Both inputs shuffled, as a roster file or a
/// users listing in `created_at` order would come.
pub fn core_scenario(n: usize, runs: usize) -> Result<CoreResult, String> {
    let now = time::OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000);
    let banned_until = Some(now + time::Duration::days(365 * 100));
    let leavers = n / 100;
    let newcomers = n / 100;
    let paired = n - newcomers;
    let mut restores = 0;
    let mut rng = SplitMix(0x5eed);
    let mut roster: Vec<RosterEntry> = (0..n)
        .map(|i| {
            // Roster people are 0..paired (paired) and then newcomers.
            let idx = if i < paired {
                i
            } else {
                n + leavers + (i - paired)
            };
            let email = if i % 7 == 0 {
                format!("  Person{idx:07}@Example.COM ")
            } else {
                format!("person{idx:07}@example.com")
            };
            RosterEntry {
                email: Some(email),
                origin: format!("roster row {}", i + 1),
            }
        })
        .collect();
    let mut users: Vec<AuthUser> = (0..n)
        .map(|i| {
            // Users are the paired people but the last `leavers`, replaced by leavers.
            let idx = if i < n - leavers {
                i
            } else {
                n + (i - (n - leavers))
            };
            let banned = i < paired && i < n - leavers && i % 200 == 0;
            AuthUser {
                id: format!("{:08x}-0000-4000-8000-{:012x}", rng.next() as u32, i),
                email: Some(format!("person{idx:07}@example.com")),
                banned_until: if banned { banned_until } else { None },
                deleted_at: None,
                is_anonymous: false,
                last_sign_in_at: None,
            }
        })
        .collect();
    for u in &users {
        if u.banned_until.is_some() {
            restores += 1;
        }
    }
    shuffle(&mut roster, &mut rng);
    shuffle(&mut users, &mut rng);
    // Paired: roster people 0..paired that still have a user (0..n-leavers).
    let still_paired = paired.min(n - leavers);
    let expect_creates = n - still_paired;
    let expect_bans = leavers;
    let expect_unchanged = still_paired - restores;

    let mut walls = Vec::new();
    let mut cpus = Vec::new();
    let mut last = None;
    for _ in 0..runs.max(1) {
        let cpu = self_cpu();
        let start = Instant::now();
        let rec = reconcile(&roster, &users, now, &Policy::default());
        walls.push(start.elapsed().as_secs_f64());
        cpus.push(self_cpu() - cpu);
        last = Some(rec.summary);
        drop(rec);
    }
    let Some(s) = last else {
        return Err("the core ran no time".into());
    };
    if (s.create, s.restore, s.ban, s.unchanged)
        != (expect_creates, restores, expect_bans, expect_unchanged)
        || s.conflicts != 0
    {
        return Err(format!(
            "core: got create {} restore {} ban {} unchanged {} conflicts {}; expected {expect_creates} {restores} {expect_bans} {expect_unchanged} 0",
            s.create, s.restore, s.ban, s.unchanged, s.conflicts
        ));
    }
    Ok(CoreResult {
        roster_rows: n,
        users: n,
        wall_s: median(walls),
        cpu_s: median(cpus),
        creates: s.create,
        restores: s.restore,
        bans: s.ban,
        unchanged: s.unchanged,
    })
}

/// `lookalike::pairs` over the changes of a plan of `n` roster rows × `n` users where 10%
/// of the roster are newcomers (creates) and 10% of the users leavers (bans): the most
/// bans the default `--max-bans` lets through. Names are random letters (sequential
/// numbers would all look alike), all in one domain as in a company's roster (every key
/// then shares its domain part), with `n / 1000` newcomers planted one letter away from
/// a leaver.
pub fn lookalike_scenario(n: usize, runs: usize) -> Result<LookAlikeResult, String> {
    let now = time::OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000);
    let churn = n / 10;
    let planted = n / 1000;
    let mut rng = SplitMix(0x100c);
    let mut name = || -> String {
        let len = 6 + (rng.next() % 6) as usize;
        (0..len)
            .map(|_| char::from(b'a' + (rng.next() % 26) as u8))
            .collect()
    };
    let paired: Vec<String> = (0..n - churn)
        .map(|i| format!("{}{i}@example.com", name()))
        .collect();
    let leavers: Vec<String> = (0..churn)
        .map(|i| format!("{}{i}x@example.com", name()))
        .collect();
    let newcomers: Vec<String> = (0..churn)
        .map(|i| {
            if i < planted {
                // One letter dropped from a leaver's local part: distance 1.
                leavers[i].replacen('x', "", 1)
            } else {
                format!("{}{i}y@example.com", name())
            }
        })
        .collect();
    let roster: Vec<RosterEntry> = paired
        .iter()
        .chain(&newcomers)
        .map(|e| RosterEntry {
            email: Some(e.clone()),
            origin: String::new(),
        })
        .collect();
    let users: Vec<AuthUser> = paired
        .iter()
        .chain(&leavers)
        .enumerate()
        .map(|(i, e)| AuthUser {
            id: format!("{:08x}-0000-4000-8000-{:012x}", rng.next() as u32, i),
            email: Some(e.clone()),
            banned_until: None,
            deleted_at: None,
            is_anonymous: false,
            last_sign_in_at: None,
        })
        .collect();
    let rec = reconcile(&roster, &users, now, &Policy::default());
    let (creates, bans) = (rec.summary.create, rec.summary.ban);
    if (creates, bans) != (churn, churn) {
        return Err(format!(
            "look-alikes: got {creates} creates and {bans} bans; expected {churn} of each"
        ));
    }
    let mut cpus = Vec::new();
    let mut pairs = 0;
    for _ in 0..runs.max(1) {
        let cpu = self_cpu();
        pairs = provision::lookalike::pairs(&rec.changes).len();
        cpus.push(self_cpu() - cpu);
    }
    if pairs < planted || pairs != rec.look_alikes.len() {
        return Err(format!(
            "look-alikes: found {pairs} pairs ({} in the plan); planted {planted}",
            rec.look_alikes.len()
        ));
    }
    Ok(LookAlikeResult {
        roster_rows: n,
        users: n,
        creates,
        bans,
        pairs,
        planted,
        cpu_s: median(cpus),
    })
}

/// splitmix64: deterministic inputs without a dependency on `rand`'s API.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

fn shuffle<T>(v: &mut [T], rng: &mut SplitMix) {
    for i in (1..v.len()).rev() {
        let j = (rng.next() % (i as u64 + 1)) as usize;
        v.swap(i, j);
    }
}
