//! `rampart-gen` against the running appliance in namespaces: streams that
//! the model must pass arrive (with their latency measured), streams it must
//! drop do not, a wrong expectation fails the run (exit 1, reported in the
//! JSON), and bad input is refused with the field named (exit 2).

mod support;

use std::process::Command;

use nix::sys::signal::Signal;
use rampart_bench::netns::{veth_queues, Namespaces};
use serde_json::Value;
use support::daemon::Daemon;

const GEN: &str = env!("CARGO_BIN_EXE_rampart-gen-under-test");

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
  { direction = "ingress", protocol = "udp", ports = "53", remote = "198.18.0.0/24" },
  { direction = "ingress", protocol = "udp", ports = "53", remote = "2001:db8::/64" },
  { direction = "ingress", protocol = "tcp", ports = "80" },
  { direction = "ingress", protocol = "icmp", icmp_type = 8 },
]

[[interface]]
vpc = "t"
name = "web-1"
addresses = ["198.18.0.20", "2001:db8::20"]
groups = ["web"]
"#;

const PROFILE: &str = r#"
[run]
seconds = 2
pps = 20000
loss_tolerance = 0.0

[[stream]]
name = "dns"
protocol = "udp"
src = "198.18.0.1-198.18.0.10"
dst = "198.18.0.20"
dst_ports = "53"
flows = 200
expect = "pass"

[[stream]]
name = "dns-imix"
protocol = "udp"
src = "198.18.0.1"
dst = "198.18.0.20"
dst_ports = "53"
flows = 30
size = "imix"
expect = "pass"

[[stream]]
name = "dns6"
protocol = "udp"
src = "2001:db8::1-2001:db8::4"
dst = "2001:db8::20"
dst_ports = "53"
flows = 40
expect = "pass"

[[stream]]
name = "syn-80"
protocol = "tcp-syn"
src = "198.18.0.1"
dst = "198.18.0.20"
dst_ports = "80"
flows = 500
expect = "pass"

[[stream]]
name = "sessions"
protocol = "tcp-session"
src = "198.18.0.1-198.18.0.2"
dst = "198.18.0.20"
dst_ports = "80"
flows = 100
expect = "pass"

[[stream]]
name = "ping"
protocol = "icmp-echo"
src = "198.18.0.1"
dst = "198.18.0.20"
flows = 10
expect = "pass"

[[stream]]
name = "blocked"
protocol = "udp"
src = "198.18.0.1"
dst = "198.18.0.20"
dst_ports = "54"
flows = 50
expect = "drop"

[[stream]]
name = "from-outside"
protocol = "udp"
src = "198.51.100.0-198.51.100.0"
dst = "198.18.0.20"
dst_ports = "53"
expect = "drop"
"#;

fn gen(ns: &str, args: &[&str]) -> (i32, String, String) {
    let out = Command::new("ip")
        .args([
            "netns", "exec", ns, GEN, "--port-a", "g0", "--port-b", "g1", "--quiet",
        ])
        .args(args)
        .output()
        .expect("run rampart-gen");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn rows(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[test]
fn the_generator_checks_a_ruleset_under_load() {
    rampart_testkit::require_root!("namespaces, AF_XDP");
    let ns = Namespaces::create(
        &format!("rpt{}-gen", std::process::id() % 100_000),
        &["gen", "fw"],
    )
    .expect("namespaces");
    veth_queues(ns.get("gen"), "g0", None, ns.get("fw"), "a0", 2).expect("link a");
    veth_queues(ns.get("gen"), "g1", None, ns.get("fw"), "b0", 2).expect("link b");
    let scratch = support::scratch("gen");
    let dir = scratch.path();
    let mut d = Daemon::start(ns.get("fw"), dir, CONFIG);
    let profile = dir.join("profile.toml");
    std::fs::write(&profile, PROFILE).expect("write profile");

    let (code, out, err) = gen(
        ns.get("gen"),
        &["--profile", profile.to_str().expect("path"), "--json"],
    );
    assert_eq!(code, 0, "{out}{err}");
    let rows = rows(&out);
    assert_eq!(rows.len(), 9, "eight streams and the summary:\n{out}");
    for r in &rows[..8] {
        assert_eq!(r["ok"], true, "{r}");
        let sent = r["sent"].as_u64().unwrap();
        assert!(sent > 1000, "{r}");
        match r["expect"].as_str() {
            Some("pass") => {
                assert_eq!(r["received"].as_u64(), Some(sent), "{r}");
                let (p50, p99) = (r["p50_us"].as_f64().unwrap(), r["p99_us"].as_f64().unwrap());
                assert!(0.0 < p50 && p50 <= p99, "{r}");
            }
            _ => assert_eq!(r["received"], 0, "{r}"),
        }
    }
    let imix = &rows[1];
    let mean = imix["sent_bytes"].as_f64().unwrap() / imix["sent"].as_f64().unwrap();
    assert!(
        (300.0..400.0).contains(&mean),
        "IMIX 7:4:1 of 64/570/1518 averages ~340 bytes: {imix}"
    );
    assert_eq!(rows[8]["summary"]["failed"], serde_json::json!([]));
    // Whole TCP sessions through rampart's connection tracking: handshake,
    // FIN both ways, last ACK; six frames each, every one arrived.
    let sessions = &rows[4];
    assert_eq!(sessions["stream"], "sessions");
    let (done, sent) = (
        sessions["sessions"].as_u64().unwrap(),
        sessions["sent"].as_u64().unwrap(),
    );
    assert!(
        done > 100 && done * 6 <= sent && sent <= done * 6 + 6 * 2000,
        "{sessions}"
    );

    // The appliance saw the same: its SYNs opened connections, the blocked
    // stream was denied.
    assert!(d.stop(Signal::SIGTERM).success(), "{}", d.stderr());
    let summary = d.stdout();
    assert!(
        summary.contains("web: ingress tcp port 80 from any allow"),
        "{summary}"
    );
    let mut d = Daemon::start(ns.get("fw"), dir, CONFIG);

    // Two queues on both sides (two generator threads, two rampart workers),
    // paced in bits per second: 64-byte frames at 5.12 Mbit/s are 10 kpps.
    let (code, out, err) = gen(
        ns.get("gen"),
        &[
            "--src",
            "198.18.0.1-198.18.0.50",
            "--dst",
            "198.18.0.20",
            "--dst-ports",
            "53",
            "--flows",
            "500",
            "--queues",
            "2",
            "--bps",
            "5120000",
            "--seconds",
            "1",
            "--expect",
            "pass",
            "--json",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    let r = &self::rows(&out)[0];
    let sent = r["sent"].as_u64().unwrap();
    assert!((8_000..=11_000).contains(&sent), "about 10 kpps for 1 s: {r}");
    assert_eq!(r["received"].as_u64(), Some(sent), "{r}");

    // A wrong expectation: exit 1, the stream's ok false, the reason listed.
    let (code, out, _) = gen(
        ns.get("gen"),
        &[
            "--src",
            "198.18.0.1",
            "--dst",
            "198.18.0.20",
            "--dst-ports",
            "54",
            "--expect",
            "pass",
            "--seconds",
            "1",
            "--pps",
            "5000",
            "--json",
        ],
    );
    assert_eq!(code, 1, "{out}");
    let rows = self::rows(&out);
    assert_eq!(
        (rows[0]["ok"].as_bool(), rows[0]["received"].as_u64()),
        (Some(false), Some(0)),
        "{out}"
    );
    assert!(
        rows[1]["summary"]["failed"][0]
            .as_str()
            .is_some_and(|f| f.contains("expected pass")),
        "{out}"
    );
    // The table names the failure too.
    let (code, out, _) = gen(
        ns.get("gen"),
        &[
            "--src",
            "198.18.0.1",
            "--dst",
            "198.18.0.20",
            "--dst-ports",
            "54",
            "--expect",
            "pass",
            "--seconds",
            "0.5",
            "--pps",
            "1000",
        ],
    );
    assert_eq!(code, 1);
    assert!(
        out.contains("pass: FAILED") && out.contains("FAILED: stream \"stream\""),
        "{out}"
    );

    // Bad input: exit 2 and the field.
    let (code, _, err) = gen(
        ns.get("gen"),
        &["--src", "198.18.0.1", "--dst", "198.18.0.20", "--size", "9000"],
    );
    assert_eq!(code, 2);
    assert!(err.contains("size: 9000 is out of range"), "{err}");
    let (code, _, err) = gen(ns.get("gen"), &["--src", "198.18.0.1", "--dst", "2001:db8::20"]);
    assert_eq!(code, 2);
    assert!(err.contains("different IP versions"), "{err}");
    assert!(d.stop(Signal::SIGTERM).success(), "{}", d.stderr());
}
