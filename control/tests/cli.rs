//! The `rampart` binary as an operator runs it: `validate` and `explain` on the
//! shipped example configurations, checking output and exit codes (0 allow or
//! valid, 1 deny or invalid, 2 bad input).

#![expect(
    clippy::unwrap_used,
    reason = "test helpers: a panic is how a test reports failure"
)]

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Output};

fn example(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../docs/examples")
        .join(name)
}

fn rampart(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rampart"))
        .args(args)
        .output()
        .expect("the rampart binary runs")
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn run(args: &[&str]) -> Run {
    let out = rampart(args);
    Run {
        code: out.status.code().expect("exited normally"),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

/// `rampart explain` on the web/db/bastion example, the packet given as one string.
fn explain(packet: &str) -> Run {
    let config = example("web-db-bastion.toml");
    run(&["explain", "--config", config.to_str().unwrap(), packet])
}

/// A temporary configuration file, removed on drop.
struct TempConfig(tempfile::NamedTempFile);

impl TempConfig {
    fn new(name: &str, text: &str) -> Self {
        let mut file = tempfile::Builder::new()
            .prefix(&format!("rampart-cli-{name}-"))
            .suffix(".toml")
            .tempfile()
            .expect("a temporary file");
        file.write_all(text.as_bytes()).expect("write the configuration");
        TempConfig(file)
    }

    fn path(&self) -> &str {
        self.0.path().to_str().expect("a UTF-8 path")
    }
}

#[test]
fn validate_accepts_the_shipped_examples_with_a_summary() {
    for (name, summary) in [
        (
            "web-db-bastion.toml",
            "valid: 1 vpc, 4 groups (17 rules), 4 interfaces, 1 prefix list",
        ),
        ("full.toml", "valid: 2 vpcs, 5 groups"),
    ] {
        let r = run(&["validate", "--config", example(name).to_str().unwrap()]);
        assert_eq!(r.code, 0, "{name}: {}", r.stderr);
        assert!(r.stdout.contains(summary), "{name}: {}", r.stdout);
    }
}

#[test]
fn validate_reports_every_error_and_exits_1() {
    let cfg = TempConfig::new(
        "invalid",
        r#"
        [[vpc]]
        name = "prod"
        [[security_group]]
        vpc = "prod"
        name = "web"
        rules = [
          { direction = "ingress", protocol = "tcp", ports = "443-80" },
          { direction = "ingress", protocol = "icmp", ports = "80" },
          { direction = "ingress", protocol = "tcp", remote = "group:nosuch" },
          { direction = "egress", protocol = "tcp", remote = "198.18.0.0/15", ethertype = "ipv6" },
        ]
        [[interface]]
        vpc = "prod"
        name = "web-1"
        addresses = ["198.18.1.10"]
        groups = ["web", "missing"]
        "#,
    );
    let r = run(&["validate", "-c", cfg.path()]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("5 errors found"), "{}", r.stderr);
    for needle in [
        "rule 1 of group \"web\" in vpc \"prod\": field `ports`: range 443-80 is inverted",
        "rule 2 of group \"web\" in vpc \"prod\": field `ports`: ports apply only to tcp, udp and sctp",
        "rule 3 of group \"web\" in vpc \"prod\": field `remote`: no group \"nosuch\" in vpc \"prod\"",
        "rule 4 of group \"web\" in vpc \"prod\": field `remote`: remote 198.18.0.0/15 is ipv4, but the rule's ethertype is ipv6",
        "interface \"web-1\" in vpc \"prod\": field `groups`: no group \"missing\"",
    ] {
        assert!(r.stderr.contains(needle), "missing {needle:?} in:\n{}", r.stderr);
    }
}

#[test]
fn validate_points_at_the_line_of_a_syntax_error_or_unknown_key() {
    let cfg = TempConfig::new(
        "syntax",
        "[[vpc]]\nname = \"prod\"\n\n[[security_group]]\nvpc = \"prod\"\nname = \"web\"\nstatefull = true\n",
    );
    let r = run(&["validate", "-c", cfg.path()]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("line 7"), "{}", r.stderr);
    assert!(r.stderr.contains("unknown field `statefull`"), "{}", r.stderr);
}

#[test]
fn validate_checks_the_wake_latency_request() {
    let file =
        |value: &str| format!("[appliance]\nport_a = \"a0\"\nport_b = \"b0\"\nwake_latency_us = {value}\n");
    for ok in ["0", "20", "\"kernel\""] {
        let cfg = TempConfig::new("wake-ok", &file(ok));
        let r = run(&["validate", "-c", cfg.path()]);
        assert_eq!(r.code, 0, "{ok}: {}", r.stderr);
    }
    let cfg = TempConfig::new("wake-long", &file("2000000"));
    let r = run(&["validate", "-c", cfg.path()]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr
            .contains("field `wake_latency_us`: 2000000 is out of range 0-1000000 µs (or \"kernel\")"),
        "{}",
        r.stderr
    );
    for bad in ["\"soon\"", "-1"] {
        let cfg = TempConfig::new("wake-bad", &file(bad));
        let r = run(&["validate", "-c", cfg.path()]);
        assert_eq!(r.code, 1);
        assert!(
            r.stderr.contains("line 4")
                && r.stderr
                    .contains("expected microseconds (0-1000000) or \"kernel\""),
            "{bad}: {}",
            r.stderr
        );
    }
}

#[test]
fn validate_exits_2_when_the_file_cannot_be_read() {
    let r = run(&["validate", "-c", "/nonexistent/rampart.toml"]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr
            .starts_with("error: cannot read /nonexistent/rampart.toml"),
        "{}",
        r.stderr
    );
}

#[test]
fn explain_web_is_open_on_443_for_ipv4_and_ipv6() {
    let r = explain("tcp 198.51.100.7:40000 -> 198.18.1.10:443");
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.starts_with("verdict: allow\n"), "{}", r.stdout);
    assert!(
        r.stdout
            .contains("ingress  interface \"web-1\": allow: group \"web\" rule 2 (sgr-"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains("ingress tcp port 443 from any allow priority 100"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains("egress   source 198.51.100.7 is not a protected interface"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("connection tracked"), "{}", r.stdout);

    let r = explain("tcp [2001:db8::7]:40000 -> [2001:db8:1::10]:443");
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout
            .contains("interface \"web-1\": allow: group \"web\" rule 2"),
        "{}",
        r.stdout
    );
    let r = explain("tcp 198.51.100.7:40000 -> 198.18.1.11:80");
    assert_eq!(r.code, 0, "{}", r.stdout);
}

#[test]
fn explain_ping_is_allowed_to_web_and_not_to_db() {
    let r = explain("icmp 198.51.100.7 -> 198.18.1.10 type 8 code 0");
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("group \"web\" rule 4"), "{}", r.stdout);
    let r = explain("icmpv6 2001:db8::7 -> 2001:db8:1::10 type 128 code 0");
    assert_eq!(r.code, 0, "{}", r.stdout);
    let r = explain("icmp 198.51.100.7 -> 198.18.2.10 type 8 code 0");
    assert_eq!(r.code, 1, "{}", r.stdout);
}

#[test]
fn explain_ssh_only_from_the_operators_network_to_the_bastion_and_from_it_onwards() {
    let r = explain("tcp 198.51.100.7:40000 -> 198.18.1.10:22");
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(r.stdout.starts_with("verdict: deny\n"), "{}", r.stdout);
    assert!(
        r.stdout
            .contains("interface \"web-1\": deny: no rule matched: implicit deny"),
        "{}",
        r.stdout
    );

    let r = explain("tcp 198.19.100.5:40000 -> 198.18.3.10:22");
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert!(r.stdout.contains("from prefix-list:operators"), "{}", r.stdout);
    assert_eq!(explain("tcp 198.51.100.7:40000 -> 198.18.3.10:22").code, 1);

    // From the bastion to web and db: the bastion's egress is open (basic group),
    // and web's and db's ingress allow group:bastion.
    for dst in ["198.18.1.10:22", "198.18.2.10:22"] {
        let r = explain(&format!("tcp 198.18.3.10:40000 -> {dst}"));
        assert_eq!(r.code, 0, "{dst}: {}", r.stdout);
        assert!(r.stdout.contains("from group:bastion"), "{}", r.stdout);
        assert!(
            r.stdout.contains("egress   interface \"bastion-1\": allow"),
            "{}",
            r.stdout
        );
    }
}

#[test]
fn explain_db_takes_3306_only_from_the_web_group() {
    let r = explain("tcp 198.18.1.11:40000 -> 198.18.2.10:3306");
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert!(
        r.stdout
            .contains("interface \"db-1\": allow: group \"db\" rule 1"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("from group:web"), "{}", r.stdout);
    assert_eq!(
        explain("tcp [2001:db8:1::10]:40000 -> [2001:db8:2::10]:3306").code,
        0
    );
    assert_eq!(explain("tcp 198.51.100.7:40000 -> 198.18.2.10:3306").code, 1);
    assert_eq!(explain("tcp 198.18.3.10:40000 -> 198.18.2.10:3306").code, 1);
    assert_eq!(explain("tcp 198.18.1.11:40000 -> 198.18.2.10:5432").code, 1);
}

#[test]
fn explain_db_egress_is_closed_except_the_metadata_service() {
    let r = explain("tcp 198.18.2.10:40000 -> 169.254.169.254:80");
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert!(
        r.stdout.contains("egress tcp ipv4 port 80 to 169.254.169.0/24"),
        "{}",
        r.stdout
    );
    let r = explain("tcp 198.18.2.10:40000 -> 198.51.100.7:443");
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(
        r.stdout
            .contains("egress   interface \"db-1\": deny: no rule matched: implicit deny"),
        "{}",
        r.stdout
    );
}

#[test]
fn explain_members_of_web_reach_each_other_through_intra_group_accept() {
    let r = explain("udp 198.18.1.10:40000 -> 198.18.1.11:9999");
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert!(r.stdout.contains("intra-group accept"), "{}", r.stdout);
}

#[test]
fn explain_takes_the_packet_as_separate_words_too() {
    let config = example("web-db-bastion.toml");
    let r = run(&[
        "explain",
        "--config",
        config.to_str().unwrap(),
        "tcp",
        "198.51.100.7:40000",
        "->",
        "198.18.1.10:443",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = run(&[
        "explain",
        "-c",
        config.to_str().unwrap(),
        "--vpc",
        "prod",
        "tcp",
        "198.51.100.7:1",
        "to",
        "198.18.1.10:22",
    ]);
    assert_eq!(r.code, 1, "{}", r.stderr);
}

#[test]
fn explain_selects_the_vpc_by_vlan() {
    let full = example("full.toml");
    let full = full.to_str().unwrap();
    // staging (vlan 200) allows 22 from the operators' range at priority 1 ...
    let r = run(&[
        "explain",
        "-c",
        full,
        "--vlan",
        "200",
        "tcp 198.19.100.1:4000 -> 198.18.10.10:22",
    ]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("vpc \"staging\" (vlan 200)"), "{}", r.stdout);
    // ... and denies everything above 1023 with its explicit final deny.
    let r = run(&[
        "explain",
        "-c",
        full,
        "--vpc",
        "staging",
        "tcp 198.19.100.1:4000 -> 198.18.10.10:8080",
    ]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(r.stdout.contains("group \"ordered\" rule 3"), "{}", r.stdout);
    // A VLAN of no VPC is unprotected traffic, forwarded by default.
    let r = run(&[
        "explain",
        "-c",
        full,
        "--vlan",
        "999",
        "tcp 198.19.100.1:4000 -> 198.18.10.10:8080",
    ]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert!(
        r.stdout
            .contains("no vpc for vlan 999: unprotected traffic, settings.unprotected = forward"),
        "{}",
        r.stdout
    );
}

#[test]
fn explain_unprotected_traffic_follows_the_setting() {
    let cfg = TempConfig::new(
        "unprotected",
        "[settings]\nunprotected = \"drop\"\n[[vpc]]\nname = \"prod\"\n",
    );
    let r = run(&["explain", "-c", cfg.path(), "udp 198.18.0.1:1 -> 198.18.0.2:2"]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(r.stdout.contains("settings.unprotected = drop"), "{}", r.stdout);
}

#[test]
fn explain_exits_2_on_bad_input() {
    for (args, needle) in [
        (
            vec!["tcp 198.51.100.7 -> 198.18.1.10:443"],
            "needs a source and a destination port",
        ),
        (vec!["tcp 198.51.100.7:1 => 198.18.1.10:443"], "expected ->"),
        (vec!["icmp 198.51.100.7 -> 198.18.1.10"], "needs a type"),
        (
            vec!["--vpc", "nosuch", "udp 198.51.100.7:1 -> 198.18.1.10:53"],
            "no vpc \"nosuch\"",
        ),
    ] {
        let config = example("web-db-bastion.toml");
        let mut all = vec!["explain", "-c", config.to_str().unwrap()];
        all.extend(args);
        let r = run(&all);
        assert_eq!(r.code, 2, "{all:?}: {}", r.stdout);
        assert!(r.stderr.contains(needle), "{all:?}: {}", r.stderr);
        assert!(r.stdout.is_empty());
    }
    // An unreadable or invalid configuration is bad input too.
    let r = run(&[
        "explain",
        "-c",
        "/nonexistent.toml",
        "udp 198.51.100.7:1 -> 198.18.1.10:53",
    ]);
    assert_eq!(r.code, 2);
    let cfg = TempConfig::new("bad", "[[vpc]]\nname = \"a/b\"\n");
    let r = run(&[
        "explain",
        "-c",
        cfg.path(),
        "udp 198.51.100.7:1 -> 198.18.1.10:53",
    ]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("contains '/'"), "{}", r.stderr);
    // Missing packet: a usage error from the argument parser, also 2.
    let config = example("web-db-bastion.toml");
    let r = run(&["explain", "-c", config.to_str().unwrap()]);
    assert_eq!(r.code, 2);
}

#[test]
fn explain_says_an_unfiltered_bare_metal_interface_is_not_filtered() {
    let full = example("full.toml");
    let r = run(&[
        "explain",
        "-c",
        full.to_str().unwrap(),
        "tcp 198.51.100.7:40000 -> 198.18.10.30:22",
    ]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout
            .contains("interface \"metal-1\": allow: bare-metal interface without groups: not filtered"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains("connection not tracked: no security group applies"),
        "{}",
        r.stdout
    );
}
