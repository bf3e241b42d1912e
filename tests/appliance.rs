//! The running appliance: `rampart run` between a client network and a server
//! network in namespaces, with real TCP, UDP, ICMP and IPv6 traffic from the
//! kernels' own stacks (spec sections 1-4 as a user sees them).

mod support;

use std::io::{Read, Write};
use std::time::Duration;

use nix::sys::signal::Signal;
use support::daemon::{run_to_end, Daemon};
use support::fixture::Fixture;
use support::netns::{self, connect, ping, serve_tcp, serve_udp, udp_exchange, Topology};

const BLOCKED: Duration = Duration::from_millis(1000);
const OPEN: Duration = Duration::from_secs(3);

/// client 198.18.0.1 / 2001:db8::1 (unprotected) and app-1 198.18.0.10 on
/// side A; web-1 198.18.0.20 / 2001:db8::20 and db-1 198.18.0.30 on side B.
const CONFIG: &str = r#"
[appliance]
port_a = "a0"
port_b = "b0"

[settings]
on_rule_change = "revalidate"

[[vpc]]
name = "t"

[[security_group]]
vpc = "t"
name = "web"
rules = [
  { direction = "ingress", protocol = "tcp", ports = "80" },
  { direction = "ingress", protocol = "udp", ports = "53" },
  { direction = "ingress", protocol = "icmp", icmp_type = 8 },
  { direction = "ingress", protocol = "icmpv6", icmp_type = 128 },
]

[[security_group]]
vpc = "t"
name = "db"
kind = "advanced"
rules = [{ direction = "ingress", protocol = "tcp", ports = "3306", remote = "group:app" }]

[[security_group]]
vpc = "t"
name = "app"
kind = "advanced"
rules = [{ direction = "egress", protocol = "tcp", ports = "3306", remote = "group:db" }]

[[interface]]
vpc = "t"
name = "web-1"
addresses = ["198.18.0.20", "2001:db8::20"]
groups = ["web"]

[[interface]]
vpc = "t"
name = "db-1"
addresses = ["198.18.0.30"]
groups = ["db"]

[[interface]]
vpc = "t"
name = "app-1"
addresses = ["198.18.0.10"]
groups = ["app"]
"#;

/// [`CONFIG`] with `on_rule_change` and, unless empty, `extra_rule` added to
/// the web group.
fn fixture(on_rule_change: &str, extra_rule: &str) -> Fixture {
    let f = Fixture::parse(CONFIG).set("settings", "on_rule_change", on_rule_change);
    if extra_rule.is_empty() {
        f
    } else {
        f.add_rule("web", extra_rule)
    }
}

fn config(on_rule_change: &str, extra_rule: &str) -> String {
    fixture(on_rule_change, extra_rule).text()
}

const PORT_8080: &str = r#"{ direction = "ingress", protocol = "tcp", ports = "8080" }"#;

/// The topology with its addresses and services.
fn network(tag: &str) -> Topology {
    network_with_queues(tag, 1)
}

fn network_with_queues(tag: &str, queues: u32) -> Topology {
    let t = Topology::with_queues(tag, queues);
    for cidr in ["198.18.0.1/24", "198.18.0.10/24", "2001:db8::1/64"] {
        t.address(&t.client, cidr);
    }
    for cidr in ["198.18.0.20/24", "198.18.0.30/24", "2001:db8::20/64"] {
        t.address(&t.server, cidr);
    }
    serve_tcp(&t.server, "198.18.0.20:80", "web\n");
    serve_tcp(&t.server, "[2001:db8::20]:80", "web6\n");
    serve_tcp(&t.server, "198.18.0.20:22", "ssh\n");
    serve_tcp(&t.server, "198.18.0.20:8080", "");
    serve_tcp(&t.server, "198.18.0.30:3306", "db\n");
    serve_udp(&t.server, "198.18.0.20:53");
    serve_udp(&t.server, "198.18.0.20:54");
    serve_tcp(&t.client, "198.18.0.1:8080", "client\n");
    t
}

/// Whether process `pid` holds a CPU wake-up latency request open.
fn holds_wake_request(pid: u32) -> bool {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("proc fd")
        .filter_map(Result::ok)
        .any(|fd| {
            std::fs::read_link(fd.path()).is_ok_and(|l| l == std::path::Path::new("/dev/cpu_dma_latency"))
        })
}

/// Reads the service's first line, proving the reply crossed back.
fn banner(conn: std::io::Result<std::net::TcpStream>) -> Result<String, String> {
    let mut conn = conn.map_err(|e| e.to_string())?;
    let mut buf = [0u8; 64];
    let n = conn.read(&mut buf).map_err(|e| e.to_string())?;
    Ok(String::from_utf8_lossy(&buf[..n]).trim().to_owned())
}

/// One round trip on an open connection.
fn echo(conn: &mut std::net::TcpStream, msg: &str) -> Result<String, String> {
    conn.write_all(msg.as_bytes()).map_err(|e| e.to_string())?;
    let mut buf = [0u8; 64];
    let n = conn.read(&mut buf).map_err(|e| e.to_string())?;
    Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
}

/// What the model of [`CONFIG`] lets through, checked with real traffic:
/// the same expectations hold for rampart and for the kernel's nftables
/// ruleset exported from the same model.
fn enforced(t: &Topology) {
    let c = &t.client;

    // Allowed services answer, so their replies pass back statefully.
    assert_eq!(
        banner(connect(c, "198.18.0.1", "198.18.0.20:80", OPEN)),
        Ok("web".into())
    );
    assert_eq!(
        udp_exchange(c, "198.18.0.1", "198.18.0.20:53", b"query", OPEN).map_err(|e| e.to_string()),
        Ok(b"query".to_vec())
    );
    assert!(ping(c, "198.18.0.20"), "ping to web-1 (icmp echo allowed)");
    // IPv6: TCP and ICMPv6 (neighbour discovery passes, echo is allowed).
    assert_eq!(
        banner(connect(c, "2001:db8::1", "[2001:db8::20]:80", OPEN)),
        Ok("web6".into())
    );
    assert!(ping(c, "2001:db8::20"), "ping6 to web-1");

    // Denied ports: a listener is there, the SYN never reaches it.
    let ssh = connect(c, "198.18.0.1", "198.18.0.20:22", BLOCKED);
    assert!(ssh.is_err(), "ssh to web-1 must time out: {ssh:?}");
    assert!(
        udp_exchange(c, "198.18.0.1", "198.18.0.20:54", b"query", BLOCKED).is_err(),
        "udp 54 is not allowed"
    );

    // Group reference: db accepts 3306 from members of app only, and its
    // reply passes although db (advanced) allows no egress at all.
    assert_eq!(
        banner(connect(c, "198.18.0.10", "198.18.0.30:3306", OPEN)),
        Ok("db".into())
    );
    assert!(
        connect(c, "198.18.0.1", "198.18.0.30:3306", BLOCKED).is_err(),
        "client is not in app"
    );

    // Egress rules: app may open only 3306 to db, so web:80 (which web itself
    // would accept) is refused on the way out; db may open nothing.
    assert!(
        connect(c, "198.18.0.10", "198.18.0.20:80", BLOCKED).is_err(),
        "app's egress"
    );
    assert!(
        connect(&t.server, "198.18.0.30", "198.18.0.1:8080", BLOCKED).is_err(),
        "db's egress"
    );
}

#[test]
fn security_groups_are_enforced_on_live_traffic() {
    rampart_testkit::require_root!("namespaces, AF_XDP");
    let t = network("sg");
    let scratch = support::scratch("sg");
    let dir = scratch.path();
    let mut d = Daemon::start(&t.fw, dir, &config("revalidate", ""));
    // Adaptive idle, the default: idle CPUs are kept quick to wake while it
    // runs.
    d.wait_for_output("stop with SIGINT", OPEN);
    assert!(
        d.stdout().contains(
            "wake-up     idle CPUs wake within 0 µs while rampart runs (/dev/cpu_dma_latency request held)"
        ),
        "{}",
        d.stdout()
    );
    assert!(holds_wake_request(d.pid()));
    enforced(&t);

    let status = d.stop(Signal::SIGTERM);
    let out = d.stdout();
    assert!(status.success(), "rampart exit {status:?}\n{out}\n{}", d.stderr());
    // The stop summary counts the denied first packets and the rules that decided.
    assert!(out.contains("denied"), "summary lists denied drops:\n{out}");
    // Light traffic: nothing lost in the rings, not even the first frames
    // after start (the fill rings are stocked as each socket opens).
    assert!(
        out.contains("rings: 0 frames dropped by the kernel")
            && out.contains("; 0 forwarded frames dropped on a full TX ring"),
        "{out}"
    );
    assert!(
        out.contains("db: ingress tcp port 3306 from group:app allow"),
        "{out}"
    );
    t.assert_detached();
}

/// Two workers on two queues: the kernel spreads each side's flows over both
/// queues by its own hash, so about half the replies arrive on the queue of
/// the worker that did not see the connection open. They must be passed to
/// the owner: a SYN-ACK decided by the other worker is an invalid first
/// packet and would be dropped.
#[test]
fn two_workers_on_two_queues_pass_frames_to_the_flow_owner() {
    rampart_testkit::require_root!("namespaces, AF_XDP");
    let t = network_with_queues("mq", 2);
    let scratch = support::scratch("mq");
    let dir = scratch.path();
    let two = fixture("revalidate", "")
        .set("appliance", "workers", 2)
        .set("appliance", "cores", vec![0, 1])
        .set("appliance", "wake_latency_us", "kernel")
        .text();
    let mut d = Daemon::start(&t.fw, dir, &two);
    d.wait_for_output("stop with SIGINT", OPEN);
    assert!(d.stdout().contains("workers     2"), "{}", d.stdout());
    assert!(
        d.stdout().contains("idle states left to the kernel"),
        "{}",
        d.stdout()
    );
    assert!(!holds_wake_request(d.pid()));
    let c = &t.client;
    for i in 0..24 {
        let (src, dst, want) = match i % 3 {
            0 => ("198.18.0.1", "198.18.0.20:80", "web"),
            1 => ("2001:db8::1", "[2001:db8::20]:80", "web6"),
            _ => ("198.18.0.10", "198.18.0.30:3306", "db"),
        };
        let mut conn = connect(c, src, dst, OPEN).unwrap_or_else(|e| panic!("connection {i} to {dst}: {e}"));
        assert_eq!(
            banner(Ok(conn.try_clone().unwrap())),
            Ok(want.to_owned()),
            "connection {i}"
        );
        assert_eq!(echo(&mut conn, "ping"), Ok("ping".to_owned()), "connection {i}");
    }
    assert!(ping(c, "198.18.0.20") && ping(c, "2001:db8::20"), "pings");
    assert!(
        connect(c, "198.18.0.1", "198.18.0.20:22", BLOCKED).is_err(),
        "ssh stays denied with two workers"
    );
    let status = d.stop(Signal::SIGTERM);
    let out = d.stdout();
    assert!(status.success(), "rampart exit {status:?}\n{out}\n{}", d.stderr());
    let passed: Vec<u64> = out
        .lines()
        .filter_map(|l| l.strip_prefix("handoff: worker "))
        .map(|l| {
            let n = l.split(" passed ").nth(1).and_then(|r| r.split(' ').next());
            n.and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("handoff line: {l}"))
        })
        .collect();
    assert_eq!(passed.len(), 2, "one handoff line per worker:\n{out}");
    assert!(
        passed.iter().sum::<u64>() > 0,
        "no frame crossed between workers:\n{out}"
    );
    assert_eq!(
        out.matches("dropped 0 on a full mailbox, 0 for want of a free frame")
            .count(),
        2,
        "{out}"
    );
    t.assert_detached();
}

/// 802.1Q-tagged traffic crosses with its tag and is judged by the rules of
/// the VPC its VLAN maps to. This kernel has no VLAN interfaces, so the
/// client and the server are AF_XDP sockets on `c0` and `s0` that send and
/// capture whole frames, tags included.
#[test]
fn tagged_frames_keep_their_vlan_and_meet_their_vpcs_rules() {
    use rampart_dataplane::wire::headers::TCP_SYN;
    use rampart_dataplane::worker::BATCH;
    use rampart_dataplane::xdp::{FrameDesc, Io, PortOptions};
    use rampart_testkit::frames::Spec;
    rampart_testkit::require_root!("namespaces, AF_XDP");
    let t = network("vlan");
    let scratch = support::scratch("vlan");
    let dir = scratch.path();
    let tagged = fixture("revalidate", "")
        .with(
            r#"
[[vpc]]
name = "v100"
vlan = 100

[[security_group]]
vpc = "v100"
name = "web"
rules = [{ direction = "ingress", protocol = "tcp", ports = "80" }]

[[interface]]
vpc = "v100"
name = "web-100"
addresses = ["198.18.100.20"]
groups = ["web"]
"#,
        )
        .text();
    let mut d = Daemon::start(&t.fw, dir, &tagged);
    let (c, s) = ("198.18.100.1".parse().unwrap(), "198.18.100.20".parse().unwrap());
    let open = Spec::tcp(c, 40000, s, 80, TCP_SYN).vlan(100).build();
    let closed = Spec::tcp(c, 40001, s, 22, TCP_SYN).vlan(100).build();
    // The same SYN to 22 untagged belongs to VPC t, where 198.18.100.20 is
    // no interface: unprotected, so it crosses.
    let untagged = Spec::tcp(c, 40002, s, 22, TCP_SYN).build();
    let capture = Topology::within(&t.server, || {
        let mut io = Io::open(&["s0"], 0, 4096, &PortOptions::default()).expect("AF_XDP on s0");
        let mut got = Vec::new();
        let mut descs = [FrameDesc::default(); BATCH];
        let until = std::time::Instant::now() + Duration::from_secs(3);
        while std::time::Instant::now() < until {
            io.refill(0, 0);
            let n = io.receive(0, &mut descs);
            got.extend(descs[..n].iter().map(|d| io.data(d).to_vec()));
            io.release(&descs[..n]);
            if n == 0 {
                io.poke_rx(0);
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        got
    });
    std::thread::sleep(Duration::from_millis(500));
    let frames = [open.clone(), closed.clone(), untagged.clone()];
    netns::in_ns(&t.client, move || {
        let mut io = Io::open(&["c0"], 0, 8192, &PortOptions::default()).expect("AF_XDP on c0");
        for f in &frames {
            let desc = io.alloc(f).expect("a free frame");
            assert_eq!(io.transmit(0, &[desc]), 1);
            std::thread::sleep(Duration::from_millis(50));
            io.reap();
        }
        std::thread::sleep(Duration::from_millis(200));
    });
    let got = capture.join().expect("capture").expect("server namespace");
    let status = d.stop(Signal::SIGTERM);
    let out = d.stdout();
    assert!(status.success(), "rampart exit {status:?}\n{out}\n{}", d.stderr());
    assert!(
        got.contains(&open),
        "the tagged SYN to 80 arrived byte for byte, tag included:\n{out}"
    );
    assert!(
        !got.contains(&closed),
        "the tagged SYN to 22 crossed: VPC v100's rules were not applied"
    );
    assert!(
        got.contains(&untagged),
        "the untagged SYN to 22 crossed (unprotected in VPC t)"
    );
    assert!(out.contains("web: ingress tcp port 80 from any allow"), "{out}");
}

/// Frames longer than the appliance's MTU (plus Ethernet and two VLAN tags)
/// are dropped and counted as `oversize`, whatever the rules say; shorter
/// ones of the same flow pass. (Run with the other idle policy, `busy`, and
/// the busy-poll socket options.)
#[test]
fn frames_over_the_mtu_are_dropped_and_counted() {
    rampart_testkit::require_root!("namespaces, AF_XDP");
    let t = network("mtu");
    let scratch = support::scratch("mtu");
    let dir = scratch.path();
    let small = fixture("revalidate", "")
        .set("appliance", "mtu", 1280)
        .set("appliance", "idle", "busy")
        .set("appliance", "busy_poll", true)
        .text();
    let mut d = Daemon::start(&t.fw, dir, &small);
    d.wait_for_output("stop with SIGINT", OPEN);
    let summary = d.stdout();
    assert!(
        summary.contains("idle busy") && summary.matches("busy-poll on").count() == 2,
        "{summary}"
    );
    assert!(summary.contains("busy workers do not sleep"), "{summary}");
    assert!(!holds_wake_request(d.pid()));
    let c = &t.client;
    // 1000 bytes of UDP data: a 1042-byte frame, under 1280 + 22.
    let fits = vec![7u8; 1000];
    assert_eq!(
        udp_exchange(c, "198.18.0.1", "198.18.0.20:53", &fits, OPEN).map_err(|e| e.to_string()),
        Ok(fits)
    );
    // 1400 bytes: a 1442-byte frame (the links' MTU is 1500, so it leaves the
    // client whole and reaches the appliance).
    let over = vec![8u8; 1400];
    for _ in 0..3 {
        assert!(
            udp_exchange(c, "198.18.0.1", "198.18.0.20:53", &over, BLOCKED / 4).is_err(),
            "a frame over the MTU crossed"
        );
    }
    let status = d.stop(Signal::SIGTERM);
    let out = d.stdout();
    assert!(status.success(), "rampart exit {status:?}\n{out}\n{}", d.stderr());
    let oversize = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("oversize"))
        .map(|n| n.trim().parse::<u64>().expect("count"));
    assert_eq!(oversize, Some(3), "{out}");
}

#[test]
fn a_rule_change_applies_to_new_flows_and_with_revalidate_to_existing_ones() {
    rampart_testkit::require_root!("namespaces, AF_XDP");
    let t = network("rc");
    let scratch = support::scratch("rc");
    let dir = scratch.path();
    let c = &t.client;
    let mut d = Daemon::start(&t.fw, dir, &config("keep", PORT_8080));

    // keep: removing the rule refuses new connections, the open one lives on.
    let mut kept = connect(c, "198.18.0.1", "198.18.0.20:8080", OPEN).expect("8080 is allowed");
    assert_eq!(echo(&mut kept, "one"), Ok("one".into()));
    d.reload(&config("keep", ""));
    assert!(d.stderr().contains("generation 2"), "{}", d.stderr());
    assert!(
        connect(c, "198.18.0.1", "198.18.0.20:8080", BLOCKED).is_err(),
        "new flow after removal"
    );
    assert_eq!(
        echo(&mut kept, "two"),
        Ok("two".into()),
        "keep leaves the connection up"
    );

    // revalidate: the open connection is dropped at its next packet.
    d.reload(&config("revalidate", PORT_8080));
    let mut revalidated = connect(c, "198.18.0.1", "198.18.0.20:8080", OPEN).expect("allowed again");
    assert_eq!(echo(&mut revalidated, "three"), Ok("three".into()));
    d.reload(&config("revalidate", ""));
    assert!(
        echo(&mut revalidated, "four").is_err(),
        "revalidate drops the open connection"
    );
    assert!(connect(c, "198.18.0.1", "198.18.0.20:8080", BLOCKED).is_err());
    // Port 80 was never touched.
    assert_eq!(
        banner(connect(c, "198.18.0.1", "198.18.0.20:80", OPEN)),
        Ok("web".into())
    );

    // An invalid file is refused and the running model kept.
    d.reload("[appliance]\nport_a = 1\n");
    assert!(d.stderr().contains("reload refused"), "{}", d.stderr());
    assert_eq!(
        banner(connect(c, "198.18.0.1", "198.18.0.20:80", OPEN)),
        Ok("web".into())
    );

    assert!(d.stop(Signal::SIGINT).success(), "{}", d.stderr());
    // The revalidated connection was revoked (the summary's count, not its label).
    let out = d.stdout();
    let revoked: u64 = out
        .split_once(" revoked;")
        .and_then(|(before, _)| before.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no revoked count in:\n{out}"));
    assert!(revoked >= 1, "{out}");
    t.assert_detached();
}

#[test]
fn after_sigkill_the_next_start_removes_the_stale_program_and_forwards() {
    rampart_testkit::require_root!("namespaces, AF_XDP");
    let t = network("kill");
    let scratch = support::scratch("kill");
    let dir = scratch.path();
    let cfg = config("revalidate", "");
    let mut d = Daemon::start(&t.fw, dir, &cfg);
    assert!(ping(&t.client, "198.18.0.20"));
    // SIGKILL leaves the XDP programs attached: nothing can run at exit.
    d.stop(Signal::SIGKILL);
    assert!(!t.xdp_programs().is_empty(), "a killed run leaves its programs");
    assert!(
        !ping(&t.client, "198.18.0.20"),
        "nothing forwards while the programs point at a dead socket"
    );

    let mut d = Daemon::start(&t.fw, dir, &cfg);
    assert!(d.stderr().contains("removed XDP program"), "{}", d.stderr());
    assert!(ping(&t.client, "198.18.0.20"), "forwarding again after restart");
    assert!(d.stop(Signal::SIGTERM).success(), "{}", d.stderr());
    t.assert_detached();
}

#[test]
fn a_config_that_cannot_run_here_is_refused_and_touches_nothing() {
    rampart_testkit::require_root!("namespaces, AF_XDP");
    let t = network("bad");
    let example =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/examples/web-db-bastion.toml");
    let out = run_to_end(&t.fw, &example);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no [appliance] table"), "{err}");

    let scratch = support::scratch("bad");
    let dir = scratch.path();
    std::fs::create_dir_all(dir).expect("dir");
    let cfg = dir.join("rampart.toml");
    std::fs::write(
        &cfg,
        fixture("revalidate", "").set("appliance", "port_b", "b9").text(),
    )
    .expect("write");
    let out = run_to_end(&t.fw, &cfg);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("appliance.port_b: no interface named \"b9\""),
        "{err}"
    );
    t.assert_detached();
}

/// `rampart export nftables` of the same model, loaded on a Linux bridge with
/// br_netfilter and conntrack in place of rampart, lets exactly the same
/// traffic through (the kernel baseline of the end-to-end benchmark).
#[test]
fn the_exported_nftables_ruleset_enforces_the_same_model_in_the_kernel() {
    rampart_testkit::require_root!("namespaces, AF_XDP");
    let t = network("nft");
    let scratch = support::scratch("nft");
    let dir = scratch.path();
    std::fs::create_dir_all(dir).expect("dir");
    let cfg = dir.join("rampart.toml");
    std::fs::write(&cfg, config("revalidate", "")).expect("write");
    let out = std::process::Command::new(support::daemon::BIN)
        .args(["export", "nftables", "-c"])
        .arg(&cfg)
        .output()
        .expect("rampart export");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    std::fs::write(dir.join("rampart.nft"), &out.stdout).expect("write ruleset");
    let fw = t.fw.as_str();
    netns::run(&["ip", "-n", fw, "link", "add", "br0", "type", "bridge"]);
    for port in [netns::PORT_A, netns::PORT_B] {
        netns::run(&["ip", "-n", fw, "link", "set", port, "master", "br0"]);
    }
    netns::run(&["ip", "-n", fw, "link", "set", "br0", "up"]);
    netns::run(&[
        "ip",
        "netns",
        "exec",
        fw,
        "sysctl",
        "-q",
        "-w",
        "net.bridge.bridge-nf-call-iptables=1",
        "net.bridge.bridge-nf-call-ip6tables=1",
    ]);
    let ruleset = dir.join("rampart.nft");
    netns::run(&[
        "ip",
        "netns",
        "exec",
        fw,
        "nft",
        "-f",
        ruleset.to_str().expect("path"),
    ]);
    enforced(&t);
}
