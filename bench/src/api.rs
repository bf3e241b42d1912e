//! API call to enforced in the dataplane: the latency of one-rule changes
//! through the running appliance's REST API, on a model of `groups` x
//! `rules_per_group` rules (the model of [`crate::update`]).
//!
//! It runs the real daemon (`rampart run`, the binary built beside this one)
//! in a namespace between two veth pairs with the model in its config file
//! (timing the start-up, from the process's start to "running"), then times
//! `changes` requests of each kind of change of [`crate::update`]: a rule
//! added to a group and deleted again, an interface bound to one more group
//! and unbound again, one entry of the 1000-entry prefix list replaced. Each
//! answer comes only when every worker runs the new snapshot, so the time is
//! call-to-enforced. Once with `idle = adaptive` (workers asleep
//! between changes, woken by their doorbell) and once with `idle = busy`.
//! Needs root.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde::Serialize;
use serde_json::{json, Value};

use crate::classify::percentile;
use crate::netns::{spawn_in, veth, Namespaces};
use crate::update;

/// How to measure: the model of the update benchmark, changed through the API.
pub use crate::update::{Change, Plan, SetMix};

/// One result; the JSON line has exactly these fields.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub idle: String,
    pub change: Change,
    pub groups: usize,
    pub rules: usize,
    pub interfaces: usize,
    pub set_mix: SetMix,
    pub changes: usize,
    /// `rampart run` with the model in its config file, from the process's
    /// start to "running" (loaded, compiled, saved, workers up), ms.
    pub start_ms: f64,
    /// One-rule change, call to enforced answer, milliseconds.
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// The daemon's resident memory after the changes, MB.
    pub rss_mb: f64,
}

/// The `rampart` binary beside this one (`cargo build --release -p rampart-control`).
pub fn rampart_binary() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let bin = exe.with_file_name("rampart");
    if !bin.exists() {
        bail!(
            "{} not found: build it first (cargo build --release -p rampart-control)",
            bin.display()
        );
    }
    Ok(bin)
}

/// A running `rampart run` (the binary beside this one) in a namespace, its
/// state and output in `dir`; stopped with SIGTERM when dropped (the
/// directory is removed if `owns_dir`).
pub(crate) struct Daemon {
    child: Child,
    pub dir: PathBuf,
    owns_dir: bool,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(self.dir.join("state"));
        if self.owns_dir {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Starts `rampart run -c config --state-dir dir/state` in namespace `ns`
/// and waits until it runs.
pub(crate) fn start_daemon(
    bin: &Path,
    ns: &str,
    dir: &Path,
    config: &Path,
    owns_dir: bool,
) -> Result<Daemon> {
    let child = Command::new("ip")
        .args(["netns", "exec", ns])
        .arg(bin)
        .args(["run", "-c"])
        .arg(config)
        .arg("--state-dir")
        .arg(dir.join("state"))
        .stdout(Stdio::from(std::fs::File::create(dir.join("stdout"))?))
        .stderr(Stdio::from(std::fs::File::create(dir.join("stderr"))?))
        .spawn()
        .context("starting rampart")?;
    let mut d = Daemon {
        child,
        dir: dir.to_owned(),
        owns_dir,
    };
    let started = Instant::now();
    while !std::fs::read_to_string(dir.join("stdout"))?.contains("running") {
        if let Some(status) = d.child.try_wait()? {
            let err = std::fs::read_to_string(dir.join("stderr")).unwrap_or_default();
            bail!("rampart exited ({status}) before running: {err}");
        }
        if started.elapsed() > Duration::from_secs(30) {
            bail!("rampart did not start within 30 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(d)
}

/// Starts the daemon with `tables` (the model's config-file tables) in its
/// config file; answers it and its start-up time in ms.
fn start(bin: &Path, ns: &str, idle: &str, tables: &str) -> Result<(Daemon, f64)> {
    let dir = std::env::temp_dir().join(format!("rampart-bench-api-{}-{idle}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let config = dir.join("rampart.toml");
    std::fs::write(
        &config,
        format!("[appliance]\nport_a = \"a0\"\nport_b = \"b0\"\nidle = \"{idle}\"\n\n{tables}"),
    )?;
    let t = Instant::now();
    let daemon = start_daemon(bin, ns, &dir, &config, true)?;
    Ok((daemon, t.elapsed().as_secs_f64() * 1e3))
}

fn call(agent: &ureq::Agent, token: &str, method: &str, path: &str, body: Option<&Value>) -> Result<Value> {
    let url = format!("http://127.0.0.1:9740{path}");
    let auth = format!("Bearer {token}");
    let mut resp = match (method, body) {
        ("DELETE", _) => agent.delete(&url).header("Authorization", &auth).call(),
        ("PUT", Some(b)) => agent.put(&url).header("Authorization", &auth).send(b.to_string()),
        ("POST", Some(b)) => agent
            .post(&url)
            .header("Authorization", &auth)
            .send(b.to_string()),
        _ => agent.get(&url).header("Authorization", &auth).call(),
    }
    .map_err(|e| anyhow!("{method} {path}: {e}"))?;
    let status = resp.status().as_u16();
    let text = resp.body_mut().with_config().limit(256 << 20).read_to_string()?;
    if status != 200 {
        bail!("{method} {path}: {status} {text}");
    }
    Ok(serde_json::from_str(&text)?)
}

/// Runs the measurement.
pub fn run(plan: Plan) -> Result<Vec<Report>> {
    if plan.groups < 4 || plan.rules_per_group == 0 || plan.changes < 2 {
        bail!("--groups must be at least 4, --rules at least 1, --changes at least 2");
    }
    let bin = rampart_binary()?;
    let ns = Namespaces::create(&format!("rbapi{}", std::process::id() % 100_000), &["fw", "peer"])?;
    veth(ns.get("peer"), "p0", None, ns.get("fw"), "a0")?;
    veth(ns.get("peer"), "p1", None, ns.get("fw"), "b0")?;
    let tables = update::config_toml(plan);
    let mut reports = Vec::new();
    for idle in ["adaptive", "busy"] {
        let (daemon, start_ms) = start(&bin, ns.get("fw"), idle, &tables)?;
        let token = std::fs::read_to_string(daemon.dir.join("state/token"))?
            .trim()
            .to_owned();
        let timed = spawn_in(ns.get("fw"), None, move || {
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(Duration::from_secs(60)))
                .build()
                .into();
            let call =
                |method: &str, path: &str, body: Option<&Value>| call(&agent, &token, method, path, body);
            let timed = |method: &str, path: &str, body: Option<&Value>, times: &mut Vec<f64>| {
                let t = Instant::now();
                let answer = call(method, path, body)?;
                times.push(t.elapsed().as_secs_f64() * 1e3);
                Ok::<Value, anyhow::Error>(answer)
            };
            let mut all = Vec::new();
            for kind in Change::ALL {
                let mut times = Vec::with_capacity(plan.changes);
                for c in 0..plan.changes / 2 {
                    match kind {
                        Change::Rule => {
                            let rules =
                                format!("/v1/vpcs/prod/security-groups/g{}/rules", (c * 37) % plan.groups);
                            let rule =
                                json!({ "direction": "ingress", "protocol": "udp", "ports": 20000 + c });
                            let added = timed("POST", &rules, Some(&rule), &mut times)?;
                            let id = added["ids"][0]
                                .as_str()
                                .ok_or_else(|| anyhow!("no rule id in {added}"))?;
                            timed("DELETE", &format!("{rules}/{id}"), None, &mut times)?;
                        }
                        Change::Membership => {
                            let (iface, group) = update::membership_target(c, plan);
                            let path = format!("/v1/vpcs/prod/interfaces/{iface}/groups/{group}");
                            timed("PUT", &path, Some(&json!({})), &mut times)?;
                            timed("DELETE", &path, None, &mut times)?;
                        }
                        Change::PrefixList => {
                            for k in [2 * c, 2 * c + 1] {
                                let spec = serde_json::to_value(update::prefix_list(Some((k * 31, k))))?;
                                timed("PUT", "/v1/vpcs/prod/prefix-lists/pl", Some(&spec), &mut times)?;
                            }
                        }
                    }
                }
                all.push((kind, times));
            }
            Ok(all)
        })
        .join()
        .map_err(|_| anyhow!("client panicked"))??;
        let rss_mb = update::rss_mb_of(&daemon.child.id().to_string());
        drop(daemon);
        for (change, mut times) in timed {
            times.sort_by(f64::total_cmp);
            reports.push(Report {
                idle: idle.to_owned(),
                change,
                groups: plan.groups,
                rules: plan.groups * plan.rules_per_group,
                interfaces: plan.interfaces,
                set_mix: plan.set_mix,
                changes: times.len(),
                start_ms,
                p50_ms: percentile(&times, 0.5),
                p99_ms: percentile(&times, 0.99),
                max_ms: times[times.len() - 1],
                rss_mb,
            });
        }
    }
    Ok(reports)
}

/// The table.
pub fn render(reports: &[Report]) -> String {
    let mut s = String::from(
        "changes through the REST API of a running rampart, answered when every worker enforces them\n",
    );
    s.push_str(&format!(
        "{:<9} {:<12} {:>7} {:>7} {:>10} {:>7} {:>8} {:>10} {:>8} {:>8} {:>8}\n",
        "idle",
        "change",
        "groups",
        "rules",
        "interfaces",
        "sets",
        "changes",
        "start ms",
        "p50 ms",
        "p99 ms",
        "max ms"
    ));
    for r in reports {
        s.push_str(&format!(
            "{:<9} {:<12} {:>7} {:>7} {:>10} {:>7} {:>8} {:>10.1} {:>8.2} {:>8.2} {:>8.2} {:>8.0}\n",
            r.idle,
            r.change.name(),
            r.groups,
            r.rules,
            r.interfaces,
            format!("{:?}", r.set_mix).to_lowercase(),
            r.changes,
            r.start_ms,
            r.p50_ms,
            r.p99_ms,
            r.max_ms,
            r.rss_mb
        ));
    }
    s
}
