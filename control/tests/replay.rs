//! `rampart replay` on captures the test writes itself, with the shipped
//! web-db-bastion example: every kind of traffic of spec sections 4 and 5, and
//! the exact counts the replay must print.

use std::path::{Path, PathBuf};
use std::process::Command;

use rampart_control::replay::pcap::{Reader, Writer};
use rampart_dataplane::wire::headers::{TCP_ACK, TCP_FIN, TCP_SYN};
use rampart_testkit::frames::{ip, tcp, Spec, L4};

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/examples/web-db-bastion.toml")
}

const CLIENT: &str = "198.19.0.1";
const WEB: &str = "198.18.1.10";

/// Client frames carry MAC_A (side A); server frames are built as replies,
/// which carry MAC_B (side B).
fn from_web(spec: Spec) -> Spec {
    Spec {
        src_mac: spec.dst_mac,
        dst_mac: spec.src_mac,
        ..spec
    }
}

#[expect(
    clippy::vec_init_then_push,
    reason = "one commented push per frame reads as the capture it builds"
)]
fn capture() -> Vec<Vec<u8>> {
    let mut frames = Vec::new();
    // A TCP session: 9 frames with the related ICMP error.
    frames.push(tcp(CLIENT, 40000, WEB, 80, TCP_SYN).build());
    frames.push(from_web(tcp(WEB, 80, CLIENT, 40000, TCP_SYN | TCP_ACK)).build());
    frames.push(tcp(CLIENT, 40000, WEB, 80, TCP_ACK).build());
    frames.push(tcp(CLIENT, 40000, WEB, 80, TCP_ACK).payload(100).build());
    // An ICMP error for the live flow, from the client side about web's segment.
    let quoted = tcp(WEB, 80, CLIENT, 40000, TCP_ACK).ip_packet();
    frames.push(
        Spec::new(
            ip(CLIENT),
            ip(WEB),
            L4::Icmp {
                kind: 3,
                code: 4,
                body: quoted,
            },
        )
        .build(),
    );
    frames.push(from_web(tcp(WEB, 80, CLIENT, 40000, TCP_ACK).payload(1000)).build());
    frames.push(tcp(CLIENT, 40000, WEB, 80, TCP_FIN | TCP_ACK).build());
    frames.push(from_web(tcp(WEB, 80, CLIENT, 40000, TCP_FIN | TCP_ACK)).build());
    frames.push(tcp(CLIENT, 40000, WEB, 80, TCP_ACK).build());
    // A denied SYN (SSH from outside the bastion).
    frames.push(tcp(CLIENT, 40001, WEB, 22, TCP_SYN).build());
    // A UDP exchange web opens (its egress allows all), answered.
    frames.push(from_web(Spec::udp(ip(WEB), 5353, ip(CLIENT), 53)).build());
    frames.push(Spec::udp(ip(CLIENT), 53, ip(WEB), 5353).build());
    // Ping and its reply.
    frames.push(Spec::echo(ip(CLIENT), ip(WEB), true, 9).build());
    frames.push(from_web(Spec::echo(ip(WEB), ip(CLIENT), false, 9)).build());
    // A fragmented datagram from web, and a fragment whose first never came.
    let mut big = from_web(Spec::udp(ip(WEB), 6000, ip(CLIENT), 6001).payload(200));
    big.ident = 40;
    frames.extend(big.fragments(80));
    let mut lost = from_web(Spec::udp(ip(WEB), 6000, ip(CLIENT), 6001).payload(200));
    lost.ident = 41;
    frames.push(lost.fragments(80)[1].clone());
    // Malformed frames.
    frames.push(vec![0x02; 10]);
    let mut ihl = tcp(CLIENT, 1, WEB, 80, TCP_SYN).build();
    ihl[14] = 0x44;
    frames.push(ihl);
    let mut doff = tcp(CLIENT, 1, WEB, 80, TCP_SYN).build();
    doff[14 + 20 + 12] = 0x30;
    frames.push(doff);
    frames
}

fn count(path: &Path) -> u64 {
    let mut r = Reader::open(path).expect("a capture");
    while r.next_frame().expect("readable").is_some() {}
    r.frames
}

/// A directory of its own for one test, removed when it ends.
fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("rampart-replay-")
        .tempdir()
        .expect("temp dir")
}

/// Writes `frames` to a capture `gap_ns` apart.
fn write_capture(path: &Path, frames: &[Vec<u8>], gap_ns: u64) {
    let mut w = Writer::create(path).expect("create");
    for (i, f) in frames.iter().enumerate() {
        w.write(f, 1_700_000_000_000_000_000 + i as u64 * gap_ns)
            .expect("write");
    }
    w.finish().expect("flush");
}

/// Runs `rampart replay` and returns what it printed; panics if it failed.
fn replay(config: &Path, input: &Path, extra: &[&std::ffi::OsStr]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_rampart"))
        .arg("replay")
        .arg("--config")
        .arg(config)
        .arg("--pcap")
        .arg(input)
        .args(extra)
        .output()
        .expect("runs");
    let stdout = String::from_utf8(out.stdout).expect("utf-8");
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn replay_counts_every_kind_of_traffic() {
    let dir = temp_dir();
    let input = dir.path().join("in.pcap");
    write_capture(&input, &capture(), 1_000_000);
    let (allowed, dropped) = (dir.path().join("allowed.pcap"), dir.path().join("dropped.pcap"));
    let stdout = replay(
        &example(),
        &input,
        &[
            "--allowed".as_ref(),
            allowed.as_ref(),
            "--dropped".as_ref(),
            dropped.as_ref(),
            "--side-a".as_ref(),
            "02:00:00:00:00:0a".as_ref(),
        ],
    );
    for line in [
        // 9 session frames (with the related error), 2 UDP, 2 ping and 3
        // fragments pass; the denied SYN, the lost fragment and 3 malformed
        // frames do not. The 10-byte frame has no source MAC, so it is side B.
        "frames: 21 received, 16 forwarded, 5 dropped",
        "side A: 11 received (776 bytes), 8 forwarded, 3 dropped",
        "side B: 10 received (1728 bytes), 8 forwarded, 2 dropped",
        "  denied                           1",
        "  fragment_without_first           1",
        "  ethernet_truncated               1",
        "  ipv4_ihl_too_small               1",
        "  tcp_data_offset_too_small        1",
        "connections: 4 created, 0 expired, 0 evicted, 0 revoked; 1 related ICMP errors passed",
        "       1  web: ingress tcp port 80 from any allow priority 100",
        "       2  web: egress all ipv4 to 0.0.0.0/0 allow priority 100",
    ] {
        assert!(stdout.contains(line), "missing {line:?} in:\n{stdout}");
    }
    assert_eq!((count(&allowed), count(&dropped)), (16, 5));
}

/// A capture from a link interleaves both directions with round trips far
/// below a millisecond. Without `--side-a`, each reply lands in the same
/// batch as the packet it answers; the verdicts must be the appliance's
/// (as with the sides given), not those of first packets.
#[test]
fn replay_without_sides_gives_the_appliance_verdicts_at_any_spacing() {
    let dir = temp_dir();
    let input = dir.path().join("in.pcap");
    for gap_ns in [1_000_000, 20_000, 0] {
        write_capture(&input, &capture(), gap_ns);
        let stdout = replay(&example(), &input, &[]);
        for line in [
            "frames: 21 received, 16 forwarded, 5 dropped",
            "  denied                           1",
            "  fragment_without_first           1",
            "connections: 4 created, 0 expired, 0 evicted, 0 revoked; 1 related ICMP errors passed",
        ] {
            assert!(
                stdout.contains(line),
                "{gap_ns} ns apart: missing {line:?} in:\n{stdout}"
            );
        }
    }
}

/// Frames longer than the `[appliance]` MTU (plus Ethernet and two VLAN
/// tags) are dropped as oversize, as the daemon drops them; the default MTU
/// (1500) applies without the table.
#[test]
fn replay_drops_frames_over_the_appliance_mtu() {
    let dir = temp_dir();
    let input = dir.path().join("in.pcap");
    // web's egress allows everything: only the length decides.
    let frame = |len: usize| {
        let f = from_web(Spec::udp(ip(WEB), 5353, ip(CLIENT), 53).payload(len - 42)).build();
        assert_eq!(f.len(), len);
        f
    };
    write_capture(
        &input,
        &[frame(1000), frame(1300), frame(1522), frame(1523), frame(3000)],
        1000,
    );
    let stdout = replay(&example(), &input, &[]);
    assert!(
        stdout.contains("frames: 5 received, 3 forwarded, 2 dropped"),
        "{stdout}"
    );
    assert!(
        stdout.contains("  oversize                         2"),
        "{stdout}"
    );
    let text = std::fs::read_to_string(example()).expect("the example");
    let config = dir.path().join("mtu.toml");
    std::fs::write(
        &config,
        format!("{text}\n[appliance]\nport_a = \"a0\"\nport_b = \"b0\"\nmtu = 1200\n"),
    )
    .expect("write");
    let stdout = replay(&config, &input, &[]);
    assert!(
        stdout.contains("frames: 5 received, 1 forwarded, 4 dropped"),
        "{stdout}"
    );
    assert!(
        stdout.contains("  oversize                         4"),
        "{stdout}"
    );
}

#[test]
fn replay_rejects_bad_input_clearly() {
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_rampart"))
            .arg("replay")
            .args(args)
            .output()
            .expect("runs");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let cfg = example();
    let cfg = cfg.to_str().expect("utf-8 path");
    let (code, err) = run(&["--config", cfg, "--pcap", "/nonexistent.pcap"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("/nonexistent.pcap"), "{err}");
    let (code, err) = run(&["--config", cfg, "--pcap", cfg]);
    assert_eq!(code, Some(2));
    assert!(err.contains("not a pcap file"), "{err}");
    let (code, err) = run(&["--config", cfg, "--pcap", "x", "--side-a", "nonsense"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("--side-a \"nonsense\""), "{err}");
}
