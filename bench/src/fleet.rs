//! A change to enforced on every node of a fleet, beside one standalone
//! appliance in the same run.
//!
//! It starts one etcd member in a namespace of its own and `nodes`
//! appliances (`rampart run`, the binary beside this one), each in its own
//! namespace between two veth pairs, linked to etcd over a management link
//! (198.19.`i`.0/30). With the model of [`crate::update`] in their config
//! files, first one standalone appliance (no `[cluster]`) answers `changes`
//! one-rule changes (added, then deleted) when its workers enforce each;
//! then the fleet answers the same changes through node 1 with
//! `?wait=fleet`, that is when every node's workers enforce each. Then the
//! standalone figure again, so that a drift of the machine shows. Needs root
//! and etcd (Debian's `etcd-server`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde::Serialize;
use serde_json::{json, Value};

use crate::api::{rampart_binary, start_daemon, Daemon};
use crate::classify::percentile;
use crate::netns::{ip, spawn_in, veth, Namespaces};
use crate::update::{self, Plan};

/// One result; the JSON line has exactly these fields.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// `single` (one appliance, no store) or `fleet`.
    pub setup: String,
    pub nodes: usize,
    pub groups: usize,
    pub rules: usize,
    pub interfaces: usize,
    pub changes: usize,
    /// From `rampart run` to "running", ms; for `fleet` the slowest node
    /// (node 1 seeds the empty store with the model, the others read it).
    pub start_ms: f64,
    /// One-rule change, call to enforced (on every node for `fleet`), ms.
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// p99 minus the mean of the single rows' p99 (0 for those rows).
    pub p99_over_single_ms: f64,
}

/// An etcd member, killed when dropped.
struct Etcd {
    child: Child,
    dir: PathBuf,
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn start_etcd(ns: &str) -> Result<Etcd> {
    let dir = std::env::temp_dir().join(format!("rampart-bench-etcd-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let child = Command::new("ip")
        .args(["netns", "exec", ns, "etcd", "--name", "m0", "--data-dir"])
        .arg(dir.join("data"))
        .args(["--listen-client-urls", "http://0.0.0.0:2379"])
        .args(["--advertise-client-urls", "http://127.0.0.1:2379"])
        .args(["--listen-peer-urls", "http://127.0.0.1:2380"])
        .args(["--initial-advertise-peer-urls", "http://127.0.0.1:2380"])
        .args(["--initial-cluster", "m0=http://127.0.0.1:2380"])
        .stdout(Stdio::null())
        .stderr(Stdio::from(std::fs::File::create(dir.join("log"))?))
        .spawn()
        .context("starting etcd (Debian's etcd-server package)")?;
    let etcd = Etcd { child, dir };
    let started = Instant::now();
    loop {
        let healthy = spawn_in(ns, None, || {
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .timeout_global(Some(Duration::from_secs(1)))
                .build()
                .into();
            Ok(agent
                .get("http://127.0.0.1:2379/health")
                .call()
                .ok()
                .and_then(|mut r| r.body_mut().read_to_string().ok())
                .is_some_and(|b| b.contains("true")))
        })
        .join()
        .map_err(|_| anyhow!("health check panicked"))??;
        if healthy {
            return Ok(etcd);
        }
        if started.elapsed() > Duration::from_secs(30) {
            bail!("etcd did not become healthy within 30 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Writes the config of a node (`cluster` its `[cluster]` table, or none)
/// into `dir` and starts it.
/// Answers it and its start-up time, ms.
fn start_node(bin: &Path, ns: &str, dir: &Path, cluster: &str, tables: &str) -> Result<(Daemon, f64)> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir)?;
    let config = dir.join("rampart.toml");
    std::fs::write(
        &config,
        format!("[appliance]\nport_a = \"a0\"\nport_b = \"b0\"\n\n{cluster}\n{tables}"),
    )?;
    let t = Instant::now();
    let d = start_daemon(bin, ns, dir, &config, true)?;
    Ok((d, t.elapsed().as_secs_f64() * 1e3))
}

/// Times `changes` rule changes through the API in namespace `ns` (the
/// token in `dir`), with `query` on each; answers the times, ms.
fn time_changes(ns: &str, dir: &Path, plan: Plan, query: &'static str) -> Result<Vec<f64>> {
    let token = std::fs::read_to_string(dir.join("state/token"))?
        .trim()
        .to_owned();
    spawn_in(ns, None, move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        let auth = format!("Bearer {token}");
        let call = |method: &str, path: &str, body: Option<&Value>| -> Result<Value> {
            let url = format!("http://127.0.0.1:9740{path}{query}");
            let mut resp = match body {
                Some(b) => agent
                    .post(&url)
                    .header("Authorization", &auth)
                    .send(b.to_string()),
                None => agent.delete(&url).header("Authorization", &auth).call(),
            }
            .map_err(|e| anyhow!("{method} {path}: {e}"))?;
            let status = resp.status().as_u16();
            let text = resp.body_mut().read_to_string()?;
            if status != 200 {
                bail!("{method} {path}: {status} {text}");
            }
            Ok(serde_json::from_str(&text)?)
        };
        let mut times = Vec::with_capacity(plan.changes);
        for c in 0..plan.changes / 2 {
            let rules = format!("/v1/vpcs/prod/security-groups/g{}/rules", (c * 37) % plan.groups);
            let rule = json!({ "direction": "ingress", "protocol": "udp", "ports": 20000 + c });
            let t = Instant::now();
            let added = call("POST", &rules, Some(&rule))?;
            times.push(t.elapsed().as_secs_f64() * 1e3);
            let id = added["ids"][0]
                .as_str()
                .ok_or_else(|| anyhow!("no rule id in {added}"))?;
            let t = Instant::now();
            call("DELETE", &format!("{rules}/{id}"), None)?;
            times.push(t.elapsed().as_secs_f64() * 1e3);
        }
        Ok(times)
    })
    .join()
    .map_err(|_| anyhow!("client panicked"))?
}

fn report(setup: &str, nodes: usize, plan: Plan, start_ms: f64, mut times: Vec<f64>) -> Report {
    times.sort_by(f64::total_cmp);
    Report {
        setup: setup.to_owned(),
        nodes,
        groups: plan.groups,
        rules: plan.groups * plan.rules_per_group,
        interfaces: plan.interfaces,
        changes: times.len(),
        start_ms,
        p50_ms: percentile(&times, 0.5),
        p99_ms: percentile(&times, 0.99),
        max_ms: times.last().copied().unwrap_or(0.0),
        p99_over_single_ms: 0.0,
    }
}

/// Runs the measurement with `nodes` appliances.
pub fn run(plan: Plan, nodes: usize) -> Result<Vec<Report>> {
    if !(1..=8).contains(&nodes) || plan.groups < 4 || plan.changes < 2 {
        bail!("--nodes must be 1-8, --groups at least 4, --changes at least 2");
    }
    let bin = rampart_binary()?;
    let prefix = format!("rbflt{}", std::process::id() % 100_000);
    let mut roles = vec!["etcd".to_owned()];
    for i in 0..nodes {
        roles.push(format!("fw{i}"));
        roles.push(format!("peer{i}"));
    }
    let roles: Vec<&str> = roles.iter().map(String::as_str).collect();
    let ns = Namespaces::create(&prefix, &roles)?;
    for i in 0..nodes {
        let (fw, peer) = (ns.get(&format!("fw{i}")), ns.get(&format!("peer{i}")));
        veth(peer, "p0", None, fw, "a0")?;
        veth(peer, "p1", None, fw, "b0")?;
        let dev = format!("n{i}");
        veth(fw, "m0", None, ns.get("etcd"), &dev)?;
        ip(&["-n", fw, "addr", "add", &format!("198.19.{i}.2/30"), "dev", "m0"])?;
        ip(&[
            "-n",
            ns.get("etcd"),
            "addr",
            "add",
            &format!("198.19.{i}.1/30"),
            "dev",
            &dev,
        ])?;
    }
    let _etcd = start_etcd(ns.get("etcd"))?;
    let tables = update::config_toml(plan);
    let base = std::env::temp_dir().join(format!("rampart-bench-fleet-{}", std::process::id()));
    let mut reports = Vec::new();

    let single = |reports: &mut Vec<Report>| -> Result<()> {
        let dir = base.join("single");
        let (d, start_ms) = start_node(&bin, ns.get("fw0"), &dir, "", &tables)?;
        let times = time_changes(ns.get("fw0"), &dir, plan, "")?;
        drop(d);
        reports.push(report("single", 1, plan, start_ms, times));
        Ok(())
    };
    single(&mut reports)?;
    let mut daemons = Vec::new();
    let mut start_ms: f64 = 0.0;
    for i in 0..nodes {
        let cluster = format!(
            "[cluster]\nendpoints = [\"http://198.19.{i}.1:2379\"]\nprefix = \"/bench/\"\nnode = \"node{}\"\n",
            i + 1
        );
        let dir = base.join(format!("node{i}"));
        let (d, ms) = start_node(&bin, ns.get(&format!("fw{i}")), &dir, &cluster, &tables)?;
        start_ms = start_ms.max(ms);
        daemons.push(d);
    }
    let times = time_changes(ns.get("fw0"), &base.join("node0"), plan, "?wait=fleet")?;
    drop(daemons);
    reports.push(report("fleet", nodes, plan, start_ms, times));
    single(&mut reports)?;
    let _ = std::fs::remove_dir_all(&base);

    let singles: Vec<f64> = reports
        .iter()
        .filter(|r| r.setup == "single")
        .map(|r| r.p99_ms)
        .collect();
    let baseline = singles.iter().sum::<f64>() / singles.len() as f64;
    for r in &mut reports {
        if r.setup == "fleet" {
            r.p99_over_single_ms = r.p99_ms - baseline;
        }
    }
    Ok(reports)
}

/// The table.
pub fn render(reports: &[Report]) -> String {
    let mut s = String::from(
        "one-rule changes through the REST API, answered when enforced: by one appliance (single), \
         by every node of a fleet sharing the model in etcd (fleet, ?wait=fleet through node 1)\n",
    );
    s.push_str(&format!(
        "{:<7} {:>5} {:>7} {:>7} {:>10} {:>8} {:>9} {:>8} {:>8} {:>8} {:>16}\n",
        "setup",
        "nodes",
        "groups",
        "rules",
        "interfaces",
        "changes",
        "start ms",
        "p50 ms",
        "p99 ms",
        "max ms",
        "p99 - single ms"
    ));
    for r in reports {
        s.push_str(&format!(
            "{:<7} {:>5} {:>7} {:>7} {:>10} {:>8} {:>9.0} {:>8.2} {:>8.2} {:>8.2} {:>16}\n",
            r.setup,
            r.nodes,
            r.groups,
            r.rules,
            r.interfaces,
            r.changes,
            r.start_ms,
            r.p50_ms,
            r.p99_ms,
            r.max_ms,
            if r.setup == "fleet" {
                format!("{:+.2}", r.p99_over_single_ms)
            } else {
                "-".to_owned()
            }
        ));
    }
    s
}
