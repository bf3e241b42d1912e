//! Spec sections 4 and 5 end to end: a configuration is compiled into a snapshot
//! the way the daemon does it, and frames built byte for byte go through
//! `Worker::process_batch` with a fake clock.

mod support;

use rampart_control::compile::Compiler;
use rampart_control::config::Config;
use rampart_dataplane::conntrack::{Seed, State, NANOS};
use rampart_dataplane::reason::DropReason;
use rampart_dataplane::snapshot::Snapshot;
use rampart_dataplane::wire::headers::{TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN};
use rampart_dataplane::worker::{Config as WorkerConfig, Fate, Side, Worker};
use rampart_testkit::frames::{arp_request, ip, tcp, Spec, L4};
use support::fixture::Fixture;

const SYN: u8 = TCP_SYN;
const SYNACK: u8 = TCP_SYN | TCP_ACK;
const ACK: u8 = TCP_ACK;
const FIN: u8 = TCP_FIN | TCP_ACK;

/// web-1 (198.18.1.10, 2001:db8:1::10) serves 80 and answers ping; db-1
/// (198.18.2.10) is advanced: 3306 from web only, nothing out; dns-1
/// (198.18.4.10) is in a stateless group open for UDP 53 only inbound.
const BASE: &str = r#"
[settings]
on_rule_change = "revalidate"
tcp_pickup = false

[[vpc]]
name = "prod"

[[vpc]]
name = "lab"
vlan = 20

[[security_group]]
vpc = "prod"
name = "web"
rules = [
  { direction = "ingress", protocol = "tcp", ports = "80" },
  { direction = "ingress", protocol = "udp", ports = "5000-5100" },
  { direction = "ingress", protocol = "icmp", icmp_type = 8 },
  { direction = "ingress", protocol = "icmpv6", icmp_type = 128 },
  { direction = "ingress", protocol = "tcp", ports = "8080", remote = "2001:db8::/32" },
]

[[security_group]]
vpc = "prod"
name = "db"
kind = "advanced"
rules = [{ direction = "ingress", protocol = "tcp", ports = "3306", remote = "group:web" }]

[[security_group]]
vpc = "prod"
name = "dns"
stateful = false
kind = "advanced"
rules = [
  { direction = "ingress", protocol = "udp", ports = "53" },
  { direction = "ingress", protocol = "tcp", ports = "53" },
]

[[security_group]]
vpc = "lab"
name = "closed"
kind = "advanced"
rules = []

[[interface]]
vpc = "prod"
name = "web-1"
addresses = ["198.18.1.10", "2001:db8:1::10"]
groups = ["web"]

[[interface]]
vpc = "prod"
name = "db-1"
addresses = ["198.18.2.10"]
groups = ["db"]

[[interface]]
vpc = "prod"
name = "dns-1"
addresses = ["198.18.4.10"]
groups = ["dns"]

[[interface]]
vpc = "lab"
name = "lab-1"
addresses = ["198.18.1.10"]
groups = ["closed"]
"#;

/// [`BASE`] with `on_rule_change` and `tcp_pickup` set.
fn fixture(on_rule_change: &str, pickup: bool) -> Fixture {
    Fixture::parse(BASE)
        .set("settings", "on_rule_change", on_rule_change)
        .set("settings", "tcp_pickup", pickup)
}

fn config(on_rule_change: &str, pickup: bool) -> String {
    fixture(on_rule_change, pickup).text()
}

const CLIENT: &str = "198.18.0.1";
const WEB: &str = "198.18.1.10";
const DB: &str = "198.18.2.10";
const DNS: &str = "198.18.4.10";

struct Harness {
    compiler: Compiler,
    snap: Snapshot,
    worker: Worker,
    now: u64,
}

impl Harness {
    fn new(text: &str) -> Harness {
        Harness::with_capacity(text, 4096)
    }

    fn with_capacity(text: &str, capacity: usize) -> Harness {
        Harness::with_seed(text, capacity, 7)
    }

    fn with_seed(text: &str, capacity: usize, seed: u64) -> Harness {
        let cfg = Config::parse(text, "test").expect("a valid configuration");
        let mut compiler = Compiler::new();
        let (snap, _) = compiler.compile(&cfg.model, &cfg.settings);
        let worker = Worker::new(WorkerConfig {
            seed: Seed::fixed(seed),
            ..WorkerConfig::for_capacity(capacity)
        });
        Harness {
            compiler,
            snap,
            worker,
            now: NANOS,
        }
    }

    /// Publishes a new configuration, as a rule change does.
    fn reload(&mut self, text: &str) {
        let cfg = Config::parse(text, "test").expect("a valid configuration");
        self.snap = self.compiler.compile(&cfg.model, &cfg.settings).0;
    }

    fn send(&mut self, from: Side, frame: &[u8]) -> Fate {
        let mut out = [Fate::Drop(DropReason::Denied)];
        self.worker
            .process_batch(&self.snap, self.now, from, &[frame], &mut out);
        out[0]
    }

    /// Sends a frame from the client side (A).
    fn a(&mut self, spec: &Spec) -> Fate {
        self.send(Side::A, &spec.build())
    }

    /// Sends a frame from the server side (B).
    fn b(&mut self, spec: &Spec) -> Fate {
        self.send(Side::B, &spec.build())
    }

    fn advance(&mut self, secs: u64) {
        self.now += secs * NANOS;
    }

    fn states(&self) -> Vec<State> {
        self.worker.flows().iter().map(|f| f.state).collect()
    }

    fn drops(&self, reason: DropReason) -> u64 {
        self.worker.counters().drop_count(reason)
    }
}

const TO_B: Fate = Fate::Forward(Side::B);
const TO_A: Fate = Fate::Forward(Side::A);

fn drop(reason: DropReason) -> Fate {
    Fate::Drop(reason)
}

#[test]
fn tcp_session_through_every_state() {
    let mut h = Harness::new(&config("revalidate", false));
    assert_eq!(h.a(&tcp(CLIENT, 40000, WEB, 80, SYN)), TO_B);
    assert_eq!(h.states(), [State::SynSent]);
    assert_eq!(h.b(&tcp(WEB, 80, CLIENT, 40000, SYNACK)), TO_A);
    assert_eq!(h.states(), [State::SynReceived]);
    assert_eq!(h.a(&tcp(CLIENT, 40000, WEB, 80, ACK).payload(100)), TO_B);
    assert_eq!(h.states(), [State::Established]);
    assert_eq!(h.b(&tcp(WEB, 80, CLIENT, 40000, ACK).payload(1000)), TO_A);
    assert_eq!(h.a(&tcp(CLIENT, 40000, WEB, 80, FIN)), TO_B);
    assert_eq!(h.states(), [State::FinWait]);
    assert_eq!(h.b(&tcp(WEB, 80, CLIENT, 40000, FIN)), TO_A);
    assert_eq!(h.states(), [State::LastAck]);
    assert_eq!(h.a(&tcp(CLIENT, 40000, WEB, 80, ACK)), TO_B);
    assert_eq!(h.states(), [State::TimeWait]);
    let c = h.worker.counters();
    assert_eq!(c.flows_created.get(), 1);
    assert_eq!(c.ports[0].forwarded_packets.get(), 4);
    assert_eq!(c.ports[1].forwarded_packets.get(), 3);
    // TIME_WAIT lasts 120 s; then the key is free.
    h.advance(119);
    assert_eq!(h.states(), [State::TimeWait]);
    h.advance(2);
    assert_eq!(
        h.b(&tcp(WEB, 80, CLIENT, 40000, ACK)),
        drop(DropReason::TcpInvalid)
    );
    assert_eq!(c.flows_expired.get(), 1);
    // A new SYN on a closed connection's key opens a new connection.
    assert_eq!(h.a(&tcp(CLIENT, 40001, WEB, 80, SYN)), TO_B);
    assert_eq!(h.b(&tcp(WEB, 80, CLIENT, 40001, TCP_RST | TCP_ACK)), TO_A);
    assert_eq!(h.states(), [State::Reset]);
    assert_eq!(h.a(&tcp(CLIENT, 40001, WEB, 80, SYN)), TO_B);
    assert_eq!(h.states(), [State::SynSent]);
    assert_eq!(c.flows_created.get(), 3);
}

#[test]
fn timeouts_per_state() {
    // Each state's timeout, checked just before it runs out.
    let mut h = Harness::new(&config("revalidate", false));
    h.a(&tcp(CLIENT, 40000, WEB, 80, SYN));
    h.advance(119);
    assert_eq!(
        h.b(&tcp(WEB, 80, CLIENT, 40000, SYNACK)),
        TO_A,
        "SYN_SENT lives 120 s"
    );
    h.advance(59);
    assert_eq!(
        h.a(&tcp(CLIENT, 40000, WEB, 80, ACK)),
        TO_B,
        "SYN_RECEIVED lives 60 s"
    );
    h.advance(431_999);
    assert_eq!(
        h.b(&tcp(WEB, 80, CLIENT, 40000, ACK)),
        TO_A,
        "ESTABLISHED lives 5 days"
    );
    h.advance(432_001);
    assert_eq!(
        h.b(&tcp(WEB, 80, CLIENT, 40000, ACK)),
        drop(DropReason::TcpInvalid)
    );

    let mut h = Harness::new(&config("revalidate", false));
    h.a(&tcp(CLIENT, 1, WEB, 80, SYN));
    h.advance(61);
    h.b(&tcp(WEB, 80, CLIENT, 1, SYNACK));
    h.advance(61);
    assert_eq!(
        h.a(&tcp(CLIENT, 1, WEB, 80, ACK)),
        drop(DropReason::TcpInvalid),
        "SYN_RECEIVED expired"
    );

    // RST state lives 10 s.
    let mut h = Harness::new(&config("revalidate", false));
    h.a(&tcp(CLIENT, 1, WEB, 80, SYN));
    h.b(&tcp(WEB, 80, CLIENT, 1, TCP_RST | TCP_ACK));
    h.advance(9);
    assert_eq!(h.states(), [State::Reset]);
    h.advance(2);
    assert_eq!(h.a(&tcp(CLIENT, 1, WEB, 80, ACK)), drop(DropReason::TcpInvalid));

    // UDP: 30 s unreplied, 180 s replied.
    let mut h = Harness::new(&config("revalidate", false));
    let req = Spec::udp(ip(CLIENT), 7000, ip(WEB), 5000);
    let rep = Spec::udp(ip(WEB), 5000, ip(CLIENT), 7000);
    assert_eq!(h.a(&req), TO_B);
    assert_eq!(h.states(), [State::UdpUnreplied]);
    h.advance(29);
    assert_eq!(h.states(), [State::UdpUnreplied]);
    h.advance(2);
    // Expired: web's answer is a new flow of its own (its egress allows it).
    assert_eq!(h.b(&rep), TO_A);
    let c = h.worker.counters();
    assert_eq!((c.flows_expired.get(), c.flows_created.get()), (1, 2));
}

#[test]
fn udp_replies_and_icmp_echo() {
    let mut h = Harness::new(&config("revalidate", false));
    let req = Spec::udp(ip(CLIENT), 7000, ip(WEB), 5000);
    let rep = Spec::udp(ip(WEB), 5000, ip(CLIENT), 7000);
    assert_eq!(h.a(&req), TO_B);
    assert_eq!(h.b(&rep), TO_A);
    assert_eq!(h.states(), [State::UdpReplied]);
    h.advance(179);
    assert_eq!(h.a(&req), TO_B);
    assert_eq!(h.states(), [State::UdpReplied]);
    // Echo: the request opens, the reply (which no ingress rule allows) passes.
    for (client, web) in [(CLIENT, WEB), ("2001:db8:9::1", "2001:db8:1::10")] {
        let mut h = Harness::new(&config("revalidate", false));
        let reply = Spec::echo(ip(web), ip(client), false, 77);
        // An unsolicited reply from web is evaluated (web's egress allows it)
        // and opens nothing.
        assert_eq!(h.b(&reply), TO_A);
        assert_eq!(h.worker.flows().len(), 0);
        assert_eq!(h.a(&Spec::echo(ip(client), ip(web), true, 77)), TO_B);
        assert_eq!(h.b(&reply), TO_A);
        assert_eq!(h.states(), [State::IcmpEcho]);
        // An echo reply to web without a request is evaluated: web's ingress
        // allows only echo requests.
        assert_eq!(
            h.a(&Spec::echo(ip(client), ip(web), false, 78)),
            drop(DropReason::Denied)
        );
        h.advance(31);
        assert_eq!(
            h.worker.flows().iter().filter(|f| f.deadline > h.now).count(),
            0,
            "echo lives 30 s"
        );
    }
}

#[test]
fn replies_pass_whatever_the_rules_and_first_packets_are_checked_both_ways() {
    let mut h = Harness::new(&config("revalidate", false));
    // web -> db 3306: db's ingress allows group web, web's egress allows all.
    assert_eq!(h.a(&tcp(WEB, 50000, DB, 3306, SYN)), TO_B);
    // db's egress allows nothing, yet its reply passes.
    assert_eq!(h.b(&tcp(DB, 3306, WEB, 50000, SYNACK)), TO_A);
    // A connection db opens is denied by db's (advanced, empty) egress.
    assert_eq!(h.b(&tcp(DB, 50000, WEB, 80, SYN)), drop(DropReason::Denied));
    // SSH to web is denied; no state is created for it.
    assert_eq!(h.a(&tcp(CLIENT, 40000, WEB, 22, SYN)), drop(DropReason::Denied));
    assert_eq!(h.worker.flows().len(), 1);
    // VLAN 20 selects the lab VPC, where 198.18.1.10 is a closed interface.
    assert_eq!(
        h.a(&tcp(CLIENT, 40000, WEB, 80, SYN).vlan(20)),
        drop(DropReason::Denied)
    );
    // IPv6 to web: 8080 only from 2001:db8::/32.
    assert_eq!(h.a(&tcp("2001:db8:9::1", 1, "2001:db8:1::10", 8080, SYN)), TO_B);
    assert_eq!(
        h.b(&tcp("2001:db8:1::10", 8080, "2001:db8:9::1", 1, SYNACK)),
        TO_A
    );
    // Rule hits: first packets counted per deciding rule.
    let c = h.worker.counters();
    assert!(
        c.rules.iter().count() >= 3,
        "{:?}",
        c.rules.iter().collect::<Vec<_>>()
    );
    assert_eq!(c.drop_count(DropReason::Denied), 3);
}

#[test]
fn invalid_first_packets_and_pickup() {
    let mut h = Harness::new(&config("revalidate", false));
    for flags in [ACK, SYNACK, FIN, TCP_RST, TCP_SYN | TCP_FIN] {
        assert_eq!(
            h.a(&tcp(CLIENT, 40000, WEB, 80, flags)),
            drop(DropReason::TcpInvalid),
            "flags {flags:#x}"
        );
    }
    assert_eq!(h.worker.flows().len(), 0);
    assert_eq!(h.drops(DropReason::TcpInvalid), 5);
    // A denied one is denied first.
    assert_eq!(h.a(&tcp(CLIENT, 40000, WEB, 22, ACK)), drop(DropReason::Denied));

    let mut h = Harness::new(&config("revalidate", true));
    assert_eq!(h.a(&tcp(CLIENT, 40000, WEB, 80, ACK)), TO_B, "picked up");
    assert_eq!(h.states(), [State::Established]);
    assert_eq!(h.b(&tcp(WEB, 80, CLIENT, 40000, ACK)), TO_A);
    assert_eq!(
        h.a(&tcp(CLIENT, 40000, WEB, 22, ACK)),
        drop(DropReason::Denied),
        "only allowed flows"
    );
}

fn icmp_error(from: &str, to: &str, v6: bool, quoted: &Spec) -> Spec {
    let kind = if v6 { 1 } else { 3 };
    Spec::new(
        ip(from),
        ip(to),
        L4::Icmp {
            kind,
            code: if v6 { 4 } else { 3 },
            body: quoted.ip_packet(),
        },
    )
}

#[test]
fn icmp_errors_related_in_both_families_and_directions() {
    for (client, web, v6) in [(CLIENT, WEB, false), ("2001:db8:9::1", "2001:db8:1::10", true)] {
        let mut h = Harness::new(&config("revalidate", false));
        let (port, syn) = if v6 {
            (8080, tcp(client, 40000, web, 8080, SYN))
        } else {
            (80, tcp(client, 40000, web, 80, SYN))
        };
        let synack = tcp(web, port, client, 40000, SYNACK);
        assert_eq!(h.a(&syn), TO_B);
        // web reports an error about the client's segment: related.
        assert_eq!(h.b(&icmp_error(web, client, v6, &syn)), TO_A, "v6 {v6}");
        // The client reports an error about web's segment: also related, though
        // web's ingress allows no ICMP errors.
        assert_eq!(h.a(&icmp_error(client, web, v6, &synack)), TO_B, "v6 {v6}");
        assert_eq!(h.worker.counters().related.get(), 2);
        // An error about a flow that does not exist is evaluated: denied.
        let other = tcp(client, 40001, web, port, SYN);
        assert_eq!(
            h.a(&icmp_error(client, web, v6, &other)),
            drop(DropReason::Denied),
            "v6 {v6}"
        );
        // Errors do not refresh or create connections.
        assert_eq!(h.worker.flows().len(), 1);
    }
}

#[test]
fn fragments_follow_their_first() {
    let mut h = Harness::new(&config("revalidate", false));
    let allowed = Spec::udp(ip(CLIENT), 7000, ip(WEB), 5000).payload(200);
    let frags = allowed.fragments(64);
    assert!(frags.len() >= 3);
    for f in &frags {
        assert_eq!(h.send(Side::A, f), TO_B);
    }
    // Later fragments alone: no first fragment known.
    let mut lone = Spec::udp(ip(CLIENT), 7000, ip(WEB), 5000).payload(200);
    lone.ident = 99;
    let lone = lone.fragments(64);
    assert_eq!(h.send(Side::A, &lone[1]), drop(DropReason::FragmentWithoutFirst));
    // A denied first fragment takes its datagram with it.
    let mut denied = Spec::udp(ip(CLIENT), 7000, ip(WEB), 9999).payload(200);
    denied.ident = 100;
    let denied = denied.fragments(64);
    assert_eq!(h.send(Side::A, &denied[0]), drop(DropReason::Denied));
    assert_eq!(h.send(Side::A, &denied[1]), drop(DropReason::FragmentDenied));
    // Verdicts last the fragment timeout (2 s).
    let mut late = Spec::udp(ip(CLIENT), 7001, ip(WEB), 5000).payload(200);
    late.ident = 101;
    let late = late.fragments(64);
    assert_eq!(h.send(Side::A, &late[0]), TO_B);
    h.advance(3);
    assert_eq!(h.send(Side::A, &late[1]), drop(DropReason::FragmentWithoutFirst));
    // A first fragment too short for the ports.
    let tiny = Spec::udp(ip(CLIENT), 7000, ip(WEB), 5000).payload(40);
    let mut f = tiny.fragments(8)[0].clone();
    // Cut it to hold 4 bytes of UDP (the builder pads; mark the total length).
    f[16..18].copy_from_slice(&24u16.to_be_bytes());
    assert_eq!(h.send(Side::A, &f), drop(DropReason::FirstFragmentTooShort));
    // IPv6 fragments.
    let v6 = Spec::tcp(ip("2001:db8:9::1"), 1, ip("2001:db8:1::10"), 8080, SYN).payload(100);
    for f in v6.fragments(48) {
        assert_eq!(h.send(Side::A, &f), TO_B);
    }
}

#[test]
fn rule_change_revalidate_or_keep() {
    let without_80 = |mode: &str| {
        fixture(mode, false)
            .remove_rule(
                "web",
                r#"{ direction = "ingress", protocol = "tcp", ports = "80" }"#,
            )
            .text()
    };
    for (mode, expected) in [("revalidate", drop(DropReason::Revoked)), ("keep", TO_B)] {
        let mut h = Harness::new(&config(mode, false));
        h.a(&tcp(CLIENT, 40000, WEB, 80, SYN));
        h.b(&tcp(WEB, 80, CLIENT, 40000, SYNACK));
        assert_eq!(h.a(&tcp(CLIENT, 40000, WEB, 80, ACK)), TO_B);
        // UDP flow still allowed after the change.
        assert_eq!(h.a(&Spec::udp(ip(CLIENT), 7000, ip(WEB), 5000)), TO_B);
        h.reload(&without_80(mode));
        assert_eq!(h.a(&tcp(CLIENT, 40000, WEB, 80, ACK)), expected, "{mode}");
        // New flows see the new rules at once, in both modes.
        assert_eq!(
            h.a(&tcp(CLIENT, 40001, WEB, 80, SYN)),
            drop(DropReason::Denied),
            "{mode}"
        );
        // A connection the new rules still allow lives on.
        assert_eq!(h.b(&Spec::udp(ip(WEB), 5000, ip(CLIENT), 7000)), TO_A, "{mode}");
        let revoked = h.worker.counters().flows_revoked.get();
        assert_eq!(revoked, u64::from(mode == "revalidate"));
    }
}

#[test]
fn full_table_evicts_handshakes_never_established() {
    let mut h = Harness::with_capacity(&config("revalidate", false), 1);
    let cap = h.worker.flows().capacity() as u16;
    // Fill with established connections.
    for p in 0..cap {
        h.a(&tcp(CLIENT, 1000 + p, WEB, 80, SYN));
        h.b(&tcp(WEB, 80, CLIENT, 1000 + p, SYNACK));
        h.a(&tcp(CLIENT, 1000 + p, WEB, 80, ACK));
    }
    assert_eq!(h.worker.flows().len(), usize::from(cap));
    assert_eq!(
        h.a(&tcp(CLIENT, 9000, WEB, 80, SYN)),
        drop(DropReason::FlowTableFull)
    );
    assert_eq!(h.drops(DropReason::FlowTableFull), 1);
    // Every established connection still passes.
    for p in 0..cap {
        assert_eq!(h.b(&tcp(WEB, 80, CLIENT, 1000 + p, ACK)), TO_A);
    }
    // Close one; its slot (RST state) is not evictable until it expires...
    h.a(&tcp(CLIENT, 1000, WEB, 80, TCP_RST));
    assert_eq!(
        h.a(&tcp(CLIENT, 9001, WEB, 80, SYN)),
        drop(DropReason::FlowTableFull)
    );
    // ...10 s later it is reclaimed, and the new handshake fits.
    h.advance(11);
    assert_eq!(h.a(&tcp(CLIENT, 9002, WEB, 80, SYN)), TO_B);
    // A table full of handshakes: new SYNs evict them.
    let mut h = Harness::with_capacity(&config("revalidate", false), 1);
    for p in 0..cap {
        assert_eq!(h.a(&tcp(CLIENT, 1000 + p, WEB, 80, SYN)), TO_B);
    }
    assert_eq!(h.a(&tcp(CLIENT, 9000, WEB, 80, SYN)), TO_B);
    assert_eq!(h.worker.counters().flows_evicted.get(), 1);
    assert_eq!(h.worker.flows().len(), usize::from(cap));
}

#[test]
fn stateless_groups_evaluate_every_packet_in_its_direction() {
    let mut h = Harness::new(&config("revalidate", false));
    let query = Spec::udp(ip(CLIENT), 7000, ip(DNS), 53);
    let answer = Spec::udp(ip(DNS), 53, ip(CLIENT), 7000);
    assert_eq!(h.a(&query), TO_B);
    assert_eq!(h.worker.flows().len(), 0, "no connection for a stateless group");
    // The answer is checked against dns's egress, which (advanced, no rules)
    // allows nothing.
    assert_eq!(h.b(&answer), drop(DropReason::Denied));
    // And TCP without SYN is not "invalid" there: just evaluated.
    assert_eq!(h.a(&tcp(CLIENT, 1, DNS, 53, ACK)), TO_B);
    assert_eq!(h.a(&tcp(CLIENT, 1, DNS, 54, ACK)), drop(DropReason::Denied));
    assert_eq!(h.worker.flows().len(), 0);
}

#[test]
fn arp_neighbour_discovery_and_non_ip() {
    let mut h = Harness::new(&config("revalidate", false));
    assert_eq!(
        h.send(Side::A, &arp_request([198, 18, 0, 1], [198, 18, 1, 10])),
        TO_B
    );
    let ns = Spec::new(
        ip("2001:db8:9::1"),
        ip("2001:db8:1::10"),
        L4::Icmp {
            kind: 135,
            code: 0,
            body: vec![0; 20],
        },
    );
    assert_eq!(h.a(&ns), TO_B);
    assert_eq!(h.worker.counters().unevaluated.get(), 2);
    let mut lldp = arp_request([0; 4], [0; 4]);
    lldp[12..14].copy_from_slice(&0x88ccu16.to_be_bytes());
    assert_eq!(h.send(Side::A, &lldp), drop(DropReason::NonIp));
    let forwarding = fixture("revalidate", false)
        .set("settings", "non_ip", "forward")
        .text();
    h.reload(&forwarding);
    assert_eq!(h.send(Side::A, &lldp), TO_B);
    // Malformed frames are dropped by reason and counted per port.
    let mut bad = tcp(CLIENT, 1, WEB, 80, SYN).build();
    bad[14] = 0x44;
    assert_eq!(h.send(Side::B, &bad), drop(DropReason::Ipv4IhlTooSmall));
    let c = h.worker.counters();
    assert_eq!(c.ports[1].dropped_packets.get(), 1);
    assert_eq!(c.ports[1].dropped_bytes.get(), bad.len() as u64);
}

#[test]
fn a_batch_with_two_packets_of_one_new_flow_opens_it_once() {
    let mut h = Harness::new(&config("revalidate", false));
    let q = Spec::udp(ip(CLIENT), 7000, ip(WEB), 5000).build();
    let syn = tcp(CLIENT, 1, WEB, 80, SYN).build();
    let mut out = [Fate::Drop(DropReason::Denied); 4];
    h.worker
        .process_batch(&h.snap, h.now, Side::A, &[&q, &q, &syn, &syn], &mut out);
    assert_eq!(out, [TO_B; 4]);
    assert_eq!(h.worker.flows().len(), 2);
    assert_eq!(h.worker.counters().flows_created.get(), 2);
}

#[test]
fn a_batch_that_closes_and_reopens_a_connection() {
    let mut h = Harness::new(&config("revalidate", false));
    let syn = tcp(CLIENT, 1, WEB, 80, SYN).build();
    let rst = tcp(WEB, 80, CLIENT, 1, TCP_RST | TCP_ACK).build();
    let mut out = [Fate::Drop(DropReason::Denied); 3];
    // Opened, reset by the server and reopened, all within one batch.
    h.worker
        .process_batch(&h.snap, h.now, Side::A, &[&syn, &rst, &syn], &mut out);
    assert_eq!(out, [TO_B; 3]);
    assert_eq!(h.states(), [State::SynSent], "the second SYN opened it anew");
    // A reset connection reopened by two SYNs of one batch: one new connection,
    // nothing counted as expired.
    h.b(&tcp(WEB, 80, CLIENT, 1, TCP_RST | TCP_ACK));
    h.worker
        .process_batch(&h.snap, h.now, Side::A, &[&syn, &syn], &mut out[..2]);
    assert_eq!(out[..2], [TO_B; 2]);
    assert_eq!(h.states(), [State::SynSent]);
    let c = h.worker.counters();
    assert_eq!((c.flows_created.get(), c.flows_expired.get()), (3, 0));
}

#[test]
fn frames_longer_than_the_ports_largest_are_dropped_as_oversize() {
    let cfg = Config::parse(&config("revalidate", false), "test").expect("a valid configuration");
    let (snap, _) = Compiler::new().compile(&cfg.model, &cfg.settings);
    // A 1500-byte MTU: 1500 + 14 (Ethernet) + 8 (two VLAN tags).
    let mut worker = Worker::new(WorkerConfig {
        max_frame: 1522,
        seed: Seed::fixed(7),
        ..WorkerConfig::for_capacity(1024)
    });
    let fits = tcp(CLIENT, 40000, WEB, 80, SYN).payload(1522 - 54).build();
    let over = tcp(CLIENT, 40001, WEB, 80, SYN).payload(1523 - 54).build();
    assert_eq!((fits.len(), over.len()), (1522, 1523));
    let mut out = [drop(DropReason::Denied); 2];
    worker.process_batch(&snap, NANOS, Side::A, &[&fits, &over], &mut out);
    assert_eq!(out, [TO_B, drop(DropReason::Oversize)]);
    assert_eq!(worker.counters().drop_count(DropReason::Oversize), 1);
}

/// Sends `frames` as one batch from `from`; the action for each.
fn burst(h: &mut Harness, from: Side, frames: &[Vec<u8>]) -> Vec<Fate> {
    let refs: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
    let mut out = vec![drop(DropReason::Denied); frames.len()];
    h.worker.process_batch(&h.snap, h.now, from, &refs, &mut out);
    out
}

/// The fragments of one datagram arrive back to back, so they usually share
/// a burst: the later ones take the verdict of the first fragment of the same
/// burst, in both families; a later fragment ahead of its first in the burst
/// is still one without a first, as it would be alone.
#[test]
fn fragments_in_the_burst_of_their_first() {
    // web allows UDP 5000 from anywhere, TCP 8080 from 2001:db8::/32.
    let v4 = Spec::udp(ip(CLIENT), 7000, ip(WEB), 5000);
    let v6 = tcp("2001:db8:9::1", 7000, "2001:db8:1::10", 8080, SYN);
    for (client, web, allowed) in [(CLIENT, WEB, v4), ("2001:db8:9::1", "2001:db8:1::10", v6)] {
        let mut h = Harness::new(&config("revalidate", false));
        let allowed = allowed.payload(3000);
        let frags = allowed.fragments(1000);
        assert!(frags.len() >= 4, "{client}");
        assert_eq!(
            burst(&mut h, Side::A, &frags),
            vec![TO_B; frags.len()],
            "{client}"
        );
        // Denied: the later fragments of the burst follow the first.
        let mut denied = Spec::udp(ip(client), 7000, ip(web), 9999).payload(3000);
        denied.ident = 77;
        let frags = denied.fragments(1000);
        let out = burst(&mut h, Side::A, &frags);
        assert_eq!(out[0], drop(DropReason::Denied), "{client}");
        assert!(
            out[1..].iter().all(|&a| a == drop(DropReason::FragmentDenied)),
            "{client}: {out:?}"
        );
        // Out of order within one burst: the last fragment ahead of the first.
        let mut shuffled = allowed.clone();
        shuffled.ident = 78;
        let mut frags = shuffled.fragments(1000);
        let last = frags.pop().expect("fragments");
        frags.insert(0, last);
        let out = burst(&mut h, Side::A, &frags);
        assert_eq!(out[0], drop(DropReason::FragmentWithoutFirst), "{client}");
        assert!(out[1..].iter().all(|&a| a == TO_B), "{client}: {out:?}");
        assert_eq!(h.drops(DropReason::FragmentWithoutFirst), 1, "{client}");
    }
}

/// A non-first IPv6 fragment holds data after its fragment header, whatever
/// that header's next-header field says (here 60, destination options in the
/// fragmentable part): its fate is its first fragment's, never the data's.
#[test]
fn ipv6_later_fragments_are_not_parsed_past_the_fragment_header() {
    let mut h = Harness::new(&config("revalidate", false));
    for (ident, dst_port, expected) in [(5, 8080, TO_B), (6, 9999, drop(DropReason::FragmentDenied))] {
        let mut spec = tcp("2001:db8:9::1", 7000, "2001:db8:1::10", dst_port, SYN).payload(600);
        spec.ident = ident;
        let frags = spec.fragments_with_destination_options(96);
        assert!(frags.len() >= 5);
        // One at a time and, for another datagram, in one burst.
        let first = h.send(Side::A, &frags[0]);
        assert_eq!(first == TO_B, expected == TO_B, "{dst_port}");
        for f in &frags[1..] {
            assert_eq!(h.send(Side::A, f), expected, "{dst_port}");
        }
        spec.ident += 100;
        let out = burst(&mut h, Side::A, &spec.fragments_with_destination_options(96));
        assert!(out[1..].iter().all(|&a| a == expected), "{dst_port}: {out:?}");
    }
    assert_eq!(h.drops(DropReason::Ipv6ExtensionTruncated), 0);
}

/// Replies right behind their opening packet in one batch (as a capture of
/// both directions replays, or a test sends): a reply, not a first packet.
#[test]
fn replies_in_the_batch_of_their_opening_packet() {
    for (client, web, port) in [(CLIENT, WEB, 80), ("2001:db8:9::1", "2001:db8:1::10", 8080)] {
        let v6 = port == 8080;
        let mut h = Harness::new(&config("revalidate", false));
        let syn = tcp(client, 40000, web, port, SYN);
        let synack = tcp(web, port, client, 40000, SYNACK);
        let frames = [
            syn.build(),
            synack.build(),
            tcp(client, 40000, web, port, ACK).build(),
            // web's answer to a UDP query web sends: web's ingress allows no
            // UDP from port 53, but it is a reply.
            Spec::udp(ip(web), 5353, ip(client), 53).build(),
            Spec::udp(ip(client), 53, ip(web), 5353).build(),
            // An error about the connection the batch opened: related.
            icmp_error(client, web, v6, &synack).build(),
        ];
        let out = burst(&mut h, Side::A, &frames);
        let forwarded = out.iter().filter(|&&a| a == TO_B).count();
        assert_eq!(forwarded, frames.len(), "v6 {v6}: {out:?}");
        let mut states = h.states();
        states.sort_by_key(|s| *s as u8);
        assert_eq!(states, [State::Established, State::UdpReplied], "v6 {v6}");
        let c = h.worker.counters();
        assert_eq!((c.flows_created.get(), c.related.get()), (2, 1), "v6 {v6}");
        // Only the two opening packets were decided by the rules.
        assert_eq!(c.rules.iter().map(|(_, n)| n).sum::<u64>(), 2, "v6 {v6}");
    }
}

/// A full table with one connection in its handshake among established
/// ones: a new SYN evicts it, whatever the hash seed; with none left, the
/// SYN is refused, whatever the seed.
#[test]
fn full_table_eviction_does_not_depend_on_the_hash_seed() {
    for seed in 0..12 {
        let mut h = Harness::with_seed(&config("revalidate", false), 1024, seed);
        let cap = h.worker.flows().capacity() as u16;
        let lone = 1000 + (seed as u16 * 37) % cap;
        for step in [SYN, SYNACK, ACK] {
            let frames: Vec<Vec<u8>> = (1000..1000 + cap)
                .filter(|&p| step == SYN || p != lone)
                .map(|p| match step {
                    SYNACK => tcp(WEB, 80, CLIENT, p, SYNACK).build(),
                    s => tcp(CLIENT, p, WEB, 80, s).build(),
                })
                .collect();
            let from = if step == SYNACK { Side::B } else { Side::A };
            for chunk in frames.chunks(64) {
                let out = burst(&mut h, from, chunk);
                assert!(out.iter().all(|a| matches!(a, Fate::Forward(_))), "seed {seed}");
            }
        }
        assert_eq!(h.worker.flows().len(), usize::from(cap));
        assert_eq!(h.worker.flows().half_open(), 1, "seed {seed}");
        assert_eq!(h.a(&tcp(CLIENT, 9000, WEB, 80, SYN)), TO_B, "seed {seed}");
        assert_eq!(h.worker.counters().flows_evicted.get(), 1, "seed {seed}");
        // The half-open one left is the new one: complete it, and the table
        // holds established connections only.
        h.b(&tcp(WEB, 80, CLIENT, 9000, SYNACK));
        h.a(&tcp(CLIENT, 9000, WEB, 80, ACK));
        assert_eq!(h.worker.flows().half_open(), 0, "seed {seed}");
        assert_eq!(
            h.a(&tcp(CLIENT, 9001, WEB, 80, SYN)),
            drop(DropReason::FlowTableFull),
            "seed {seed}"
        );
        // Established connections were never evicted.
        assert_eq!(h.worker.counters().flows_evicted.get(), 1, "seed {seed}");
    }
}

/// Under a SYN flood into a full table, every new SYN evicts the oldest
/// half-open connection: a legitimate handshake made in the middle of the
/// flood completes while younger flood entries are evicted after it.
#[test]
fn a_syn_flood_evicts_the_oldest_half_open_first() {
    let mut h = Harness::with_capacity(&config("revalidate", false), 1024);
    let cap = h.worker.flows().capacity() as u32;
    let flood = |n: u32| {
        let src = format!("198.18.{}.{}", 100 + n / 250, 1 + n % 250);
        tcp(&src, 1024 + (n % 60000) as u16, WEB, 80, SYN).build()
    };
    let frames: Vec<Vec<u8>> = (0..cap).map(flood).collect();
    for chunk in frames.chunks(64) {
        burst(&mut h, Side::A, chunk);
    }
    assert_eq!(h.worker.flows().half_open(), cap as usize);
    // The legitimate client's SYN, then half a table of flood.
    assert_eq!(h.a(&tcp(CLIENT, 40000, WEB, 80, SYN)), TO_B);
    let frames: Vec<Vec<u8>> = (cap..cap + cap / 2).map(flood).collect();
    for chunk in frames.chunks(64) {
        let out = burst(&mut h, Side::A, chunk);
        assert!(out.iter().all(|&a| a == TO_B));
    }
    assert_eq!(h.b(&tcp(WEB, 80, CLIENT, 40000, SYNACK)), TO_A);
    assert_eq!(h.a(&tcp(CLIENT, 40000, WEB, 80, ACK)), TO_B);
    assert!(h.states().contains(&State::Established));
    assert_eq!(h.worker.counters().flows_evicted.get(), u64::from(cap / 2 + 1));
}
