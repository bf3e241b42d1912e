//! `rampart explain` against the pipeline: every packet kind explain can
//! describe, on random models, built as a frame and sent through a fresh
//! worker with the compiled snapshot. explain's verdict must be the
//! pipeline's, and what it says of tracking must match whether the worker
//! opened a connection. The two share no decision code: explain decides from
//! the model with the reference evaluator and its own reading of spec
//! sections 4 and 5, the worker from parsed bytes and the compiled snapshot.

mod support;

use std::net::IpAddr;

use proptest::prelude::RngExt as _;
use proptest::test_runner::{RngAlgorithm, TestRng};
use rampart_control::compile::Compiler;
use rampart_control::config::Config;
use rampart_control::explain;
use rampart_dataplane::conntrack::Seed;
use rampart_dataplane::reason::DropReason;
use rampart_dataplane::wire::headers::TCP_SYN;
use rampart_dataplane::worker::{Config as WorkerConfig, Fate, Side, Worker};
use rampart_testkit::frames::{Spec, L4};
use support::random_model::{addresses, random_model, PORTS, UNKNOWN_VLAN, VPCS};

/// The packet kinds explain describes: its words after the addresses, and
/// the frame's transport.
fn kinds(v6: bool, sport: u16, dport: u16) -> Vec<(String, String, String, L4)> {
    let mut k = Vec::new();
    for (name, l4) in [
        (
            "tcp",
            L4::Tcp {
                src_port: sport,
                dst_port: dport,
                flags: TCP_SYN,
                seq: 1,
                ack: 0,
            },
        ),
        (
            "udp",
            L4::Udp {
                src_port: sport,
                dst_port: dport,
            },
        ),
        (
            "sctp",
            L4::Sctp {
                src_port: sport,
                dst_port: dport,
            },
        ),
    ] {
        k.push((name.to_owned(), format!(":{sport}"), format!(":{dport}"), l4));
    }
    let (icmp, types): (&str, &[u8]) = if v6 {
        ("icmpv6", &[1, 2, 3, 4, 128, 129, 133, 134, 135, 136, 137, 140])
    } else {
        ("icmp", &[0, 3, 8, 11, 12, 13])
    };
    for &t in types {
        let code = if t == 3 { 1 } else { 0 };
        let l4 = match t {
            0 | 8 | 128 | 129 => L4::Echo {
                request: matches!(t, 8 | 128),
                id: sport,
                seq: 1,
            },
            _ => L4::Icmp {
                kind: t,
                code,
                body: vec![0; 24],
            },
        };
        k.push((
            format!("{icmp}|type {t} code {code}"),
            String::new(),
            String::new(),
            l4,
        ));
    }
    k.push((
        "47".to_owned(),
        String::new(),
        String::new(),
        L4::Raw { proto: 47 },
    ));
    k
}

fn host(a: IpAddr, port: &str) -> String {
    match (a, port) {
        (IpAddr::V6(a), p) if !p.is_empty() => format!("[{a}]{p}"),
        (a, p) => format!("{a}{p}"),
    }
}

#[test]
fn explain_says_what_the_pipeline_does_for_every_packet_kind() {
    let mut rng = TestRng::from_seed(RngAlgorithm::ChaCha, &[7; 32]);
    let mut compared = 0;
    let mut allowed = 0;
    let mut tracked = 0;
    for case in 0..40 {
        let text = random_model(&mut rng);
        let config = Config::parse(&text, "random").unwrap_or_else(|e| panic!("{e}\n{text}"));
        let (snap, _) = Compiler::new().compile(&config.model, &config.settings);
        for _ in 0..12 {
            let v6 = rng.random_bool(0.5);
            let all = addresses(v6);
            let src = all[rng.random_range(0..all.len())];
            let dst = all[rng.random_range(0..all.len())];
            let vlan = match rng.random_range(0..3) {
                0 => None,
                1 => VPCS[1].1,
                _ => Some(UNKNOWN_VLAN),
            };
            let sport = 30000 + rng.random_range(0..3);
            let dport = PORTS[rng.random_range(0..PORTS.len())];
            for (words, sp, dp, l4) in kinds(v6, sport, dport) {
                let (proto, tail) = words.split_once('|').unwrap_or((&words, ""));
                let described = format!("{proto} {} -> {} {tail}", host(src, &sp), host(dst, &dp));
                let words: Vec<String> = described.split_whitespace().map(str::to_owned).collect();
                let pkt = explain::parse_packet(&words, vlan).unwrap_or_else(|e| panic!("{described}: {e}"));
                let e = explain::explain(&config.model, &config.settings, &pkt);
                let mut spec = Spec::new(src, dst, l4);
                spec.vlans = vlan.into_iter().collect();
                let mut worker = Worker::new(WorkerConfig {
                    seed: Seed::fixed(1),
                    ..WorkerConfig::for_capacity(64)
                });
                let mut out = [Fate::Drop(DropReason::Denied)];
                worker.process_batch(&snap, 1, Side::A, &[&spec.build()], &mut out);
                let forwarded = out[0] == Fate::Forward(Side::B);
                let opened = !worker.flows().is_empty();
                assert_eq!(
                    (e.allowed, e.tracked),
                    (forwarded, opened),
                    "case {case}, vlan {vlan:?}: {described}: explain says\n{}pipeline: {:?}\nmodel:\n{text}",
                    e.text,
                    out[0]
                );
                compared += 1;
                allowed += usize::from(forwarded);
                tracked += usize::from(opened);
            }
        }
    }
    // The models are not degenerate: both verdicts, and tracking, occur often.
    eprintln!("{compared} packets, {allowed} allowed, {tracked} tracked");
    assert!(
        allowed > compared / 5 && allowed < compared * 4 / 5,
        "{allowed} of {compared}"
    );
    assert!(tracked > compared / 20, "{tracked} of {compared}");
}
