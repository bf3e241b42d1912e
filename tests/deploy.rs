//! The deployment kit's monitoring files are true: `promtool` accepts the
//! scrape config and the alerting rules, and a real Prometheus scraping a
//! running appliance (two workers, rampart-gen traffic, rule changes) returns data for
//! every PromQL expression of the Grafana dashboard and of the alert rules.
//! An expression that returns nothing fails the test.

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use rampart_control::api::types::{Enforced, RuleIds};
use serde_json::{json, Value};
use support::api::Client;
use support::daemon::Daemon;

use support::prometheus::Prometheus;

fn scripts() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts")
}

fn promtool(args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new("promtool")
        .args(args)
        .output()
        .expect("promtool (Debian package prometheus)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Every expression of the dashboard, with Grafana's variables given values.
fn dashboard_expressions() -> Vec<String> {
    let text = std::fs::read_to_string(scripts().join("grafana/rampart.json")).expect("dashboard");
    let dash: Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    let vars = dash["templating"]["list"].as_array().expect("variables");
    assert!(
        vars.iter()
            .any(|v| v["type"] == "datasource" && v["name"] == "datasource"),
        "a datasource variable"
    );
    let mut exprs = Vec::new();
    for panel in dash["panels"].as_array().expect("panels") {
        assert_eq!(panel["datasource"]["uid"], "${datasource}", "{}", panel["title"]);
        for t in panel["targets"].as_array().expect("targets") {
            let e = t["expr"].as_str().expect("expr");
            exprs.push(e.replace("$__rate_interval", "1m").replace("$__range", "5m"));
        }
    }
    exprs
}

/// The signals of the alert rules: each side of the rule's top-level
/// comparison that is not a bare number.
fn alert_signals() -> Vec<String> {
    let text = std::fs::read_to_string(scripts().join("prometheus/alerts.yml")).expect("alerts");
    let mut signals = Vec::new();
    for line in text.lines() {
        let Some(expr) = line.trim().strip_prefix("expr:") else {
            continue;
        };
        let expr = expr.trim();
        // The last comparison outside parentheses and braces.
        let (mut depth, mut cut) = (0i32, None);
        let bytes = expr.as_bytes();
        for (i, c) in bytes.iter().enumerate() {
            match c {
                b'(' | b'{' | b'[' => depth += 1,
                b')' | b'}' | b']' => depth -= 1,
                b'>' | b'<' if depth == 0 => cut = Some((i, 1)),
                b'=' if depth == 0 && i > 0 && bytes[i - 1] == b'=' => cut = Some((i - 1, 2)),
                _ => {}
            }
        }
        let (at, len) = cut.unwrap_or_else(|| panic!("no comparison in {expr}"));
        for side in [&expr[..at], &expr[at + len..]] {
            let side = side.trim();
            if side.parse::<f64>().is_err() {
                signals.push(side.to_owned());
            }
        }
    }
    assert!(signals.len() >= 5, "{signals:?}");
    signals
}

#[test]
fn promtool_accepts_the_scrape_config_and_the_alert_rules() {
    let (ok, text) = promtool(&[
        "check",
        "rules",
        scripts().join("prometheus/alerts.yml").to_str().expect("path"),
    ]);
    assert!(ok, "{text}");
    assert!(text.contains("5 rules found"), "{text}");
    let (ok, text) = promtool(&[
        "check",
        "rules",
        scripts()
            .join("prometheus/fleet-alerts.yml")
            .to_str()
            .expect("path"),
    ]);
    assert!(ok, "{text}");
    assert!(text.contains("3 rules found"), "{text}");
    let (ok, text) = promtool(&[
        "check",
        "config",
        scripts()
            .join("prometheus/prometheus.yml")
            .to_str()
            .expect("path"),
    ]);
    assert!(ok, "{text}");
}

const GEN: &str = env!("CARGO_BIN_EXE_rampart-gen-under-test");

const PROFILE: &str = r#"
[run]
seconds = 14
pps = 20000
queues = 2

[[stream]]
name = "dns"
protocol = "udp"
src = "198.18.0.1-198.18.0.40"
dst = "198.18.0.20"
dst_ports = "53"
flows = 400
expect = "pass"

[[stream]]
name = "sessions"
protocol = "tcp-session"
src = "198.18.0.1-198.18.0.40"
dst = "198.18.0.20"
dst_ports = "80"
flows = 400
expect = "pass"

[[stream]]
name = "denied"
protocol = "udp"
src = "198.18.0.1"
dst = "198.18.0.20"
dst_ports = "54"
weight = 0.1
expect = "drop"
"#;

const CONFIG: &str = r#"
[appliance]
port_a = "a0"
port_b = "b0"
workers = 2
cores = [0, 1]

[[vpc]]
name = "t"

[[security_group]]
vpc = "t"
name = "web"
rules = [
  { direction = "ingress", protocol = "tcp", ports = "80" },
  { direction = "ingress", protocol = "udp", ports = "53" },
]

[[interface]]
vpc = "t"
name = "web-1"
addresses = ["198.18.0.20"]
groups = ["web"]
"#;

#[test]
fn every_dashboard_and_alert_expression_returns_data_from_a_live_appliance() {
    rampart_testkit::require_root!("namespaces, AF_XDP");
    let exprs: Vec<String> = dashboard_expressions()
        .into_iter()
        .chain(alert_signals())
        .collect();
    let ns = rampart_bench::netns::Namespaces::create(
        &format!("rpt{}-dep", std::process::id() % 100_000),
        &["gen", "fw"],
    )
    .expect("namespaces");
    rampart_bench::netns::veth_queues(ns.get("gen"), "g0", None, ns.get("fw"), "a0", 2).expect("link a");
    rampart_bench::netns::veth_queues(ns.get("gen"), "g1", None, ns.get("fw"), "b0", 2).expect("link b");
    let fw = ns.get("fw").to_owned();
    let scratch = support::scratch("deploy");
    let dir = scratch.path();
    let mut d = Daemon::start(&fw, dir, CONFIG);
    let api = Client::new(&fw, dir);

    // The shipped scrape config, scraping every second, with its rules.
    let shipped = std::fs::read_to_string(scripts().join("prometheus/prometheus.yml")).expect("config");
    let config = shipped
        .replace("scrape_interval: 5s", "scrape_interval: 1s")
        .replace("evaluation_interval: 5s", "evaluation_interval: 1s");
    assert_ne!(config, shipped);
    std::fs::create_dir_all(dir.join("prometheus")).expect("dir");
    for rules in ["alerts.yml", "fleet-alerts.yml"] {
        std::fs::copy(
            scripts().join("prometheus").join(rules),
            dir.join("prometheus").join(rules),
        )
        .expect("rules");
    }
    let prom = Prometheus::start(&fw, dir, &config);

    // rampart-gen sends for 14 s on two queues (allowed UDP, denied UDP,
    // whole TCP sessions) while rules change through the API.
    let profile = dir.join("profile.toml");
    std::fs::write(&profile, PROFILE).expect("profile");
    let generator = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            ns.get("gen"),
            GEN,
            "--port-a",
            "g0",
            "--port-b",
            "g1",
            "--quiet",
            "--json",
            "--profile",
        ])
        .arg(&profile)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("rampart-gen");
    let started = Instant::now();
    let rules = "/v1/vpcs/t/security-groups/web/rules";
    while started.elapsed() < Duration::from_secs(13) {
        let added: Enforced<RuleIds> = api.change(
            "POST",
            rules,
            Some(&json!({ "direction": "ingress", "protocol": "udp", "ports": 5353 })),
        );
        api.changed("DELETE", &format!("{rules}/{}", added.answer.ids[0]), None);
        std::thread::sleep(Duration::from_millis(200));
    }
    let out = generator.wait_with_output().expect("rampart-gen ran");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "the generator's expectations: {text}");

    let mut empty = Vec::new();
    for e in &exprs {
        let values = prom
            .query_all(&fw, e)
            .unwrap_or_else(|| panic!("query failed: {e}"));
        if values.is_empty() || values.iter().all(|v| v.is_nan()) {
            empty.push(e.clone());
        }
    }
    let log = std::fs::read_to_string(prom.dir.join("log")).unwrap_or_default();
    assert!(empty.is_empty(), "expressions without data: {empty:#?}\n{log}");
    // The alert rules were loaded and evaluated (none firing on a healthy appliance).
    let firing = prom
        .query_all(&fw, "ALERTS{alertstate=\"firing\"}")
        .expect("ALERTS");
    assert!(
        firing.is_empty(),
        "alerts firing on a healthy appliance: {firing:?}"
    );
    drop(prom);
    assert!(d.stop(Signal::SIGTERM).success(), "{}", d.stderr());
}

/// `systemd-analyze verify` accepts the unit (every directive known, the
/// binaries it names present) without a warning.
#[test]
fn the_systemd_unit_verifies_cleanly() {
    let unit = std::fs::read_to_string(scripts().join("systemd/rampart.service")).expect("unit");
    assert!(
        unit.contains("Restart=on-failure")
            && unit.contains("AmbientCapabilities=")
            && unit.contains("NoNewPrivileges=yes")
    );
    let scratch = support::scratch("unit");
    let dir = scratch.path();
    // The installed binary's path, for verify to find it.
    let copy = dir.join("rampart.service");
    std::fs::write(
        &copy,
        unit.replace("/usr/local/bin/rampart", support::daemon::BIN),
    )
    .expect("write");
    let out = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .output()
        .expect("systemd-analyze (Debian package systemd, installed by scripts/install-deps.sh)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success() && text.trim().is_empty(), "{text}");
}

/// `host-prep.sh up` sets promiscuous mode and turns the offloads off (and
/// says what a veth cannot do), `down` restores exactly what was there.
#[test]
fn host_prep_up_then_down_restores_the_ports() {
    rampart_testkit::require_root!("namespaces, AF_XDP");
    let ns =
        rampart_bench::netns::Namespaces::create(&format!("rpt{}-hp", std::process::id() % 100_000), &["h"])
            .expect("namespace");
    let h = ns.get("h").to_owned();
    rampart_bench::netns::veth(&h, "x0", None, &h, "x1").expect("veth");
    let sh = |args: &[&str]| -> String {
        let out = std::process::Command::new("ip")
            .args(["netns", "exec", &h])
            .args(args)
            .output()
            .expect("run");
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };
    sh(&["ethtool", "-K", "x0", "gro", "on", "tso", "on"]);
    let scratch = support::scratch("hp");
    let state = scratch.path();
    let script = scripts().join("host-prep.sh");
    let script = script.to_str().expect("path");
    let features = |dev: &str| -> Vec<String> {
        sh(&["ethtool", "-k", dev])
            .lines()
            .filter(|l| {
                l.starts_with("generic-receive-offload:") || l.starts_with("tcp-segmentation-offload:")
            })
            .map(str::to_owned)
            .collect()
    };
    let promisc = |dev: &str| sh(&["ip", "-d", "link", "show", dev]).contains("PROMISC");
    let before = (features("x0"), promisc("x0"));
    assert!(before.0.iter().all(|l| l.ends_with(": on")), "{before:?}");

    let args = [
        "--port-a",
        "x0",
        "--port-b",
        "x1",
        "--state-dir",
        state.to_str().expect("path"),
    ];
    let up = sh(&[
        &["bash", script, "up"][..],
        &args,
        &["--workers", "1", "--cores", "1"],
    ]
    .concat());
    assert!(features("x0").iter().all(|l| l.ends_with(": off")), "{up}");
    assert!(promisc("x0") && promisc("x1"), "{up}");
    assert!(up.contains("x0: no interrupts of its own"), "{up}");
    assert!(
        up.contains("cannot take the symmetric RSS setup"),
        "veth has no RSS: {up}"
    );

    let down = sh(&[&["bash", script, "down"][..], &args].concat());
    assert_eq!((features("x0"), promisc("x0")), before, "{down}");
    assert!(!promisc("x1"), "{down}");
    let again = sh(&[&["bash", script, "down"][..], &args].concat());
    assert!(again.contains("nothing saved"), "{again}");
    let bad = sh(&[
        "bash",
        script,
        "up",
        "--port-a",
        "x0",
        "--port-b",
        "nope0",
        "--workers",
        "1",
        "--cores",
        "1",
    ]);
    assert!(bad.contains("no interface named 'nope0'"), "{bad}");
}
