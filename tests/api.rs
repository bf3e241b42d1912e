//! The REST API of the running appliance: changes acknowledged with 200 are
//! enforced on live traffic at that moment, bad input changes nothing and is
//! answered with JSON naming the field, the token guards /v1, and an
//! acknowledged change survives a SIGKILL and is never dropped by a reload by
//! accident.

mod support;

use std::time::Duration;

use ipnet::IpNet;
use nix::sys::signal::Signal;
use rampart_control::api::types::{
    Created, Enforced, ErrorBody, Explained, GroupCreated, GroupList, GroupView, Health, InterfaceList,
    InterfaceView, ModelView, PrefixListList, PrefixListView, Replaced, RuleIds, Version, VpcList, VpcView,
};
use serde_json::json;
use support::api::Client;
use support::daemon::Daemon;
use support::netns::{connect, serve_tcp, Topology};
use support::prometheus::SCRAPE_EVERY_SECOND;

const BLOCKED: Duration = Duration::from_millis(700);
const OPEN: Duration = Duration::from_secs(3);

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
rules = [{ direction = "ingress", protocol = "tcp", ports = "80" }]

[[interface]]
vpc = "t"
name = "web-1"
addresses = ["198.18.0.20"]
groups = ["web"]
"#;

fn network(tag: &str) -> Topology {
    let t = Topology::new(tag);
    t.address(&t.client, "198.18.0.1/24");
    t.address(&t.server, "198.18.0.20/24");
    serve_tcp(&t.server, "198.18.0.20:80", "web\n");
    serve_tcp(&t.server, "198.18.0.20:8080", "alt\n");
    t
}

fn reaches(t: &Topology, port: u16) -> bool {
    let timeout = if port == 80 { OPEN } else { BLOCKED };
    connect(&t.client, "198.18.0.1", &format!("198.18.0.20:{port}"), timeout).is_ok()
}

const RULES: &str = "/v1/vpcs/t/security-groups/web/rules";

fn rule_count(api: &Client) -> usize {
    api.read::<GroupView>("/v1/vpcs/t/security-groups/web")
        .rules
        .len()
}

#[test]
fn a_change_is_enforced_when_acknowledged_and_bad_input_changes_nothing() {
    rampart_testkit::require_root!("namespaces, AF_XDP");
    let t = network("api");
    let scratch = support::scratch("api");
    let dir = scratch.path();
    let mut d = Daemon::start(&t.fw, dir, CONFIG);
    let api = Client::new(&t.fw, dir);

    // Health is open; /v1 needs the token.
    let health = |api: &Client| -> Health {
        let (status, health) = api.raw("GET", "/health", None, None);
        assert_eq!(status, 200, "{health}");
        serde_json::from_value(health).expect("a health answer")
    };
    assert_eq!(health(&api).status, "ok");
    for token in [None, Some("wrong-token-wrong-token")] {
        let (status, body) = api.raw("GET", "/v1/vpcs", token, None);
        let e: ErrorBody = serde_json::from_value(body).expect("an error answer");
        assert_eq!((status, e.code.as_str()), (401, "unauthorized"), "{e:?}");
    }
    assert_eq!(api.read::<VpcList>("/v1/vpcs").vpcs[0].name, "t");

    // A rule added is enforced when the answer comes.
    assert!(!reaches(&t, 8080));
    let added: Enforced<RuleIds> = api.change(
        "POST",
        RULES,
        Some(&json!({ "direction": "ingress", "protocol": "tcp", "ports": "8080" })),
    );
    // Every worker already runs the answer's generation (not only published).
    let now = health(&api);
    assert!(now.enforced_generation >= added.generation, "{now:?} {added:?}");
    assert!(reaches(&t, 8080), "acknowledged, so enforced");
    let rule_id = added.answer.ids[0].clone();

    // Bad input: each answer names the reason (and the field), nothing changes.
    let before = rule_count(&api);
    let generation = health(&api).generation;
    let bad_body = |body: &[u8]| api.raw("POST", RULES, Some(&api.token), Some(body.to_vec()));
    let cases: Vec<(Vec<u8>, u16, &str, Option<&str>)> = vec![
        (br#"{"direction":"ingress","protocol":"tcp","ports":"99999"}"#.to_vec(), 400, "invalid", Some("ports")),
        (br#"{"direction":"ingress","protocol":"tcp","ports":"80","colour":"red"}"#.to_vec(), 400, "invalid_json", None),
        (br#"{"direction":"ingress","protocol":"tcp","priority":1e400}"#.to_vec(), 400, "invalid_json", None),
        (br#"{"direction":"ingress","protocol":"tcp","priority":123456789012345678901234567890}"#.to_vec(), 400, "invalid_json", None),
        (br#"{"direction":7,"protocol":"tcp"}"#.to_vec(), 400, "invalid_json", Some("direction")),
        (br#"{"direction":"ingress","#.to_vec(), 400, "invalid_json", None),
        (b"not json at all".to_vec(), 400, "invalid_json", None),
        (format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)).into_bytes(), 400, "invalid_json", None),
        (vec![b' '; 5 << 20], 413, "too_large", None),
        (br#"[{"direction":"ingress","protocol":"tcp","ports":"81"},{"direction":"sideways","protocol":"tcp"}]"#.to_vec(), 400, "invalid", Some("direction")),
    ];
    for (body, want_status, want_code, want_field) in cases {
        let shown = String::from_utf8_lossy(&body[..body.len().min(80)]).into_owned();
        let (status, answer) = bad_body(&body);
        let e: ErrorBody = serde_json::from_value(answer.clone())
            .unwrap_or_else(|err| panic!("{shown}: {answer} is not an error answer: {err}"));
        assert_eq!(
            (status, e.code.as_str()),
            (want_status, want_code),
            "{shown}: {e:?}"
        );
        assert!(!e.message.is_empty(), "{e:?}");
        if let Some(field) = want_field {
            assert!(
                e.field.flatten().is_some_and(|f| f.ends_with(field)),
                "{shown}: {answer}"
            );
        }
    }
    // (All-or-nothing: the list whose second rule is bad did not add its first.)
    assert_eq!(rule_count(&api), before, "a refused change changed the rules");
    assert_eq!(health(&api).generation, generation);
    let (status, missing) = api.refused(
        "POST",
        "/v1/vpcs/t/security-groups/nope/rules",
        Some(&json!({ "direction": "ingress", "protocol": "tcp" })),
    );
    assert_eq!((status, missing.code.as_str()), (404, "not_found"), "{missing:?}");

    // Explain on the live model.
    let e: Explained = api.typed_send(
        "POST",
        "/v1/explain",
        &json!({ "packet": "tcp 198.18.0.1:40000 -> 198.18.0.20:8080" }),
    );
    assert!(e.allowed, "{e:?}");

    // Deleting the rule: new connections refused when the answer comes.
    api.changed("DELETE", &format!("{RULES}/{rule_id}"), None);
    assert!(!reaches(&t, 8080));
    let e: Explained = api.typed_send(
        "POST",
        "/v1/explain",
        &json!({ "packet": "tcp 198.18.0.1:40000 -> 198.18.0.20:8080" }),
    );
    assert!(!e.allowed, "{e:?}");

    // Interfaces and groups: a new group bound to web-1 opens 8080 again.
    let _: Enforced<GroupCreated> = api.change(
        "POST",
        "/v1/vpcs/t/security-groups",
        Some(&json!({ "name": "alt", "rules": [{ "direction": "ingress", "protocol": "tcp", "ports": "8080" }] })),
    );
    api.changed("PUT", "/v1/vpcs/t/interfaces/web-1/groups/alt", None);
    assert!(reaches(&t, 8080));
    let i: InterfaceView = api.read("/v1/vpcs/t/interfaces/web-1");
    assert_eq!(i.groups, ["web", "alt"]);
    let (status, busy) = api.refused("DELETE", "/v1/vpcs/t/security-groups/alt", None);
    assert_eq!((status, busy.code.as_str()), (409, "in_use"), "{busy:?}");

    // Declarative: PUT the whole model back to the file's; the answer says what changed.
    let file: toml::Value = toml::from_str(CONFIG).expect("toml");
    let doc = json!({
        "vpc": file["vpc"].clone(), "security_group": file["security_group"].clone(),
        "interface": file["interface"].clone(),
    });
    let put: Enforced<Replaced> = api.change("PUT", "/v1/model", Some(&doc));
    assert!(put.answer.changed.security_groups.removed >= 1, "{put:?}");
    assert!(!reaches(&t, 8080));
    assert!(reaches(&t, 80));

    assert!(d.stop(Signal::SIGTERM).success(), "{}", d.stderr());
}

#[test]
fn an_acknowledged_change_survives_sigkill_and_a_reload_does_not_drop_it() {
    rampart_testkit::require_root!("namespaces, AF_XDP");
    let t = network("apik");
    let scratch = support::scratch("apik");
    let dir = scratch.path();
    let d = Daemon::start(&t.fw, dir, CONFIG);
    let api = Client::new(&t.fw, dir);
    let added: Enforced<RuleIds> = api.change(
        "POST",
        RULES,
        Some(&json!({ "direction": "ingress", "protocol": "tcp", "ports": "8080" })),
    );
    drop(d); // SIGKILL

    let mut d = Daemon::start(&t.fw, dir, CONFIG);
    assert!(
        d.stdout()
            .contains("model.json (holds changes made through the API"),
        "{}",
        d.stdout()
    );
    assert!(reaches(&t, 8080), "the acknowledged rule is back after the crash");
    let g: GroupView = api.read("/v1/vpcs/t/security-groups/web");
    assert!(g.rules.iter().any(|r| r.id == added.answer.ids[0]), "{g:?}");

    // SIGHUP: the file lacks the API's change, so the reload is refused.
    d.reload(CONFIG);
    assert!(
        d.stderr()
            .contains("reload refused: the running model has changes made through the API"),
        "{}",
        d.stderr()
    );
    assert!(reaches(&t, 8080));
    let (status, refused) = api.refused("POST", "/v1/reload", Some(&json!({})));
    assert_eq!(
        (status, refused.code.as_str()),
        (409, "model_changed"),
        "{refused:?}"
    );
    // Forced, it applies the file.
    let (status, forced) = api.send("POST", "/v1/reload", &json!({ "force": true }));
    assert_eq!(status, 200, "{forced}");
    assert!(!reaches(&t, 8080));
    assert!(d.stop(Signal::SIGTERM).success(), "{}", d.stderr());
}

#[test]
fn metrics_pass_promtool_and_prometheus_sees_the_traffic() {
    rampart_testkit::require_root!("namespaces, AF_XDP");
    let t = network("prom");
    let scratch = support::scratch("prom");
    let dir = scratch.path();
    let mut d = Daemon::start(&t.fw, dir, CONFIG);
    let api = Client::new(&t.fw, dir);
    let web: GroupView = api.read("/v1/vpcs/t/security-groups/web");
    let port80 = web.rules[0].id.clone();
    assert!(web.rules[0].text.contains("port 80"), "{web:?}");

    // Known traffic: five connections to 80 (allowed by that rule), three
    // SYNs to 8080 (denied; the 700 ms wait is shorter than a SYN retry).
    for _ in 0..5 {
        assert!(reaches(&t, 80));
    }
    for _ in 0..3 {
        assert!(!reaches(&t, 8080));
    }
    let (status, text) = api.raw("GET", "/metrics", None, None);
    assert_eq!(status, 200);
    let text = text.as_str().expect("the text format").to_owned();
    let rule_line = format!("rampart_rule_flows_created_total{{rule=\"{port80}\"}} 5");
    assert!(text.contains(&rule_line), "{rule_line} in:\n{text}");
    assert!(
        text.contains("rampart_drops_total{reason=\"denied\"} 3"),
        "{text}"
    );
    assert!(
        text.contains("rampart_xsk_events_total{event=\"rx_dropped\",port=\"a0\",queue=\"0\"}"),
        "{text}"
    );

    // promtool (Debian's prometheus package) accepts the exposition.
    let mut promtool = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus)");
    std::io::Write::write_all(&mut promtool.stdin.take().expect("stdin"), text.as_bytes()).expect("write");
    let checked = promtool.wait_with_output().expect("promtool");
    assert!(
        checked.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );

    // A real Prometheus scrapes it and answers with the same numbers.
    let prom = support::prometheus::Prometheus::start(&t.fw, dir, SCRAPE_EVERY_SECOND);
    let wanted = [
        (
            format!("rampart_rule_flows_created_total{{rule=\"{port80}\"}}"),
            5.0,
        ),
        ("rampart_drops_total{reason=\"denied\"}".to_owned(), 3.0),
        ("sum(rampart_flows_created_total)".to_owned(), 5.0),
        ("rampart_build_info".to_owned(), 1.0),
        (
            "rampart_interface_decisions_total{interface=\"t/web-1\",direction=\"ingress\",verdict=\"dropped\"}".to_owned(),
            3.0,
        ),
    ];
    for (promql, want) in wanted {
        let started = std::time::Instant::now();
        let mut got = None;
        while started.elapsed() < Duration::from_secs(30) && got != Some(want) {
            got = prom.query(&t.fw, &promql);
            std::thread::sleep(Duration::from_millis(250));
        }
        let log = std::fs::read_to_string(prom.dir.join("log")).unwrap_or_default();
        assert_eq!(got, Some(want), "{promql}; prometheus log:\n{log}");
    }
    drop(prom);

    // Every change through the API is counted by its outcome: a rule added
    // (applied), a rule for a group that does not exist (refused).
    let changes = |api: &Client| -> Vec<String> {
        let (_, text) = api.raw("GET", "/metrics", None, None);
        let text = text.as_str().expect("the text format").to_owned();
        text.lines()
            .filter(|l| l.starts_with("rampart_changes_total{"))
            .map(str::to_owned)
            .collect()
    };
    let before = changes(&api);
    let _: Enforced<RuleIds> = api.change(
        "POST",
        RULES,
        Some(&json!({ "direction": "ingress", "protocol": "tcp", "ports": "9000" })),
    );
    let (status, _) = api.refused(
        "POST",
        "/v1/vpcs/t/security-groups/nope/rules",
        Some(&json!({ "direction": "ingress", "protocol": "tcp" })),
    );
    assert_eq!(status, 404);
    let after = changes(&api);
    for (result, added) in [("applied", 1), ("refused", 1), ("not_enforced", 0), ("failed", 0)] {
        let count = |lines: &[String]| -> u64 {
            let prefix = format!("rampart_changes_total{{result=\"{result}\"}} ");
            lines
                .iter()
                .find_map(|l| l.strip_prefix(&prefix))
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("no {prefix} in {lines:?}"))
        };
        assert_eq!(
            count(&after),
            count(&before) + added,
            "{result}: {before:?} -> {after:?}"
        );
    }
    assert!(d.stop(Signal::SIGTERM).success(), "{}", d.stderr());
}

/// `rampart ctl ARGS` inside namespace `ns`: exit code, stdout, stderr.
fn ctl(ns: &str, dir: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", ns, support::daemon::BIN, "ctl", "--token-file"])
        .arg(dir.join("state/token"))
        .args(args)
        .output()
        .expect("run rampart ctl");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn ctl_drives_the_live_model_with_tables_and_json() {
    rampart_testkit::require_root!("namespaces, AF_XDP");
    let t = network("ctl");
    let scratch = support::scratch("ctl");
    let dir = scratch.path();
    let mut d = Daemon::start(&t.fw, dir, CONFIG);
    let (code, out, err) = ctl(&t.fw, dir, &["health"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("ok: generation 1"), "{out}");

    let add = [
        "rule",
        "add",
        "--vpc",
        "t",
        "--group",
        "web",
        "--direction",
        "ingress",
        "--protocol",
        "tcp",
    ];
    let (code, out, err) = ctl(&t.fw, dir, &[&add[..], &["--ports", "8080"]].concat());
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("added sgr-"), "{out}");
    assert!(reaches(&t, 8080));
    let (code, out, _) = ctl(&t.fw, dir, &["group", "show", "--vpc", "t", "web"]);
    assert_eq!(code, 0);
    assert!(out.contains("RULE") && out.contains("tcp port 8080"), "{out}");

    // Refused by the appliance: exit 1, its message (naming the field) on stderr.
    let (code, out, err) = ctl(&t.fw, dir, &[&add[..], &["--ports", "99999"]].concat());
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("ports") && err.contains("(400)"), "{err}");

    let (code, out, _) = ctl(&t.fw, dir, &["--json", "vpcs"]);
    assert_eq!(code, 0);
    let v: VpcList = serde_json::from_str(out.trim()).expect("--json prints the API's answer");
    assert_eq!(v.vpcs[0].name, "t");

    let (code, out, _) = ctl(
        &t.fw,
        dir,
        &["explain", "tcp", "198.18.0.1:4000", "->", "198.18.0.20:8080"],
    );
    assert_eq!(code, 0, "{out}");
    let (code, _, _) = ctl(
        &t.fw,
        dir,
        &["explain", "tcp", "198.18.0.1:4000", "->", "198.18.0.20:9999"],
    );
    assert_eq!(code, 1, "denied: exit 1");

    // Prefix lists and interfaces from the command line: a list, a group
    // opening 9090 to it, an interface bound to that group.
    let steps: [&[&str]; 4] = [
        &[
            "prefix-list",
            "create",
            "--vpc",
            "t",
            "clients",
            "--cidr",
            "198.18.0.0/29",
        ],
        &["group", "create", "--vpc", "t", "metrics", "--kind", "advanced"],
        &[
            "rule",
            "add",
            "--vpc",
            "t",
            "--group",
            "metrics",
            "--direction",
            "ingress",
            "--protocol",
            "tcp",
            "--ports",
            "9090",
            "--remote",
            "prefix-list:clients",
        ],
        &[
            "interface",
            "create",
            "--vpc",
            "t",
            "mon-1",
            "--address",
            "198.18.0.40",
            "--group",
            "metrics",
        ],
    ];
    for step in steps {
        let (code, out, err) = ctl(&t.fw, dir, step);
        assert_eq!(code, 0, "{step:?}: {out}{err}");
    }
    let (code, out, _) = ctl(&t.fw, dir, &["interface", "show", "--vpc", "t", "mon-1"]);
    assert_eq!(code, 0);
    assert!(
        out.lines()
            .any(|l| l.starts_with("addresses") && l.ends_with("198.18.0.40")),
        "{out}"
    );
    let (code, out, _) = ctl(&t.fw, dir, &["prefix-list", "show", "--vpc", "t", "clients"]);
    assert_eq!(code, 0);
    assert!(
        out.lines()
            .any(|l| l.starts_with("cidrs") && l.ends_with("198.18.0.0/29")),
        "{out}"
    );
    let (code, out, _) = ctl(&t.fw, dir, &["interface", "list", "--vpc", "t"]);
    assert_eq!(code, 0);
    assert!(
        out.lines()
            .any(|l| l.contains("mon-1") && l.contains("198.18.0.40") && l.contains("metrics")),
        "{out}"
    );
    let explain = ["explain", "tcp", "198.18.0.1:4000", "->", "198.18.0.40:9090"];
    assert_eq!(ctl(&t.fw, dir, &explain).0, 0, "in the prefix list");
    let (code, _, err) = ctl(
        &t.fw,
        dir,
        &[
            "prefix-list",
            "set",
            "--vpc",
            "t",
            "clients",
            "--cidr",
            "198.18.0.8/29",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(ctl(&t.fw, dir, &explain).0, 1, "no longer in the prefix list");
    let (code, _, err) = ctl(&t.fw, dir, &["prefix-list", "delete", "--vpc", "t", "clients"]);
    assert_eq!(code, 1, "in use by the metrics group");
    assert!(err.contains("(409)"), "{err}");

    let (code, out, _) = ctl(&t.fw, dir, &["stats"]);
    assert_eq!(code, 0);
    assert!(out.contains("PORT") && out.contains("tcp port 8080"), "{out}");

    // apply -f: the file's model replaces the live one; 8080 closes.
    let file = dir.join("rampart.toml");
    let (code, out, err) = ctl(&t.fw, dir, &["apply", "-f", file.to_str().expect("path")]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("rules") && out.contains("enforced at generation"),
        "{out}"
    );
    assert!(!reaches(&t, 8080));

    // A wrong token is refused (1); an unreachable appliance is exit 2.
    std::fs::write(dir.join("bad-token"), "not-the-token-not-the-token").expect("write");
    let out = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &t.fw,
            support::daemon::BIN,
            "ctl",
            "--token-file",
        ])
        .arg(dir.join("bad-token"))
        .arg("vpcs")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("(401)"));
    let (code, _, err) = ctl(&t.fw, dir, &["--url", "http://127.0.0.1:1", "vpcs"]);
    assert_eq!(code, 2);
    assert!(err.contains("cannot reach rampart"), "{err}");
    assert!(d.stop(Signal::SIGTERM).success(), "{}", d.stderr());
}

/// The ids of web's rules, or `None` while the daemon is down.
fn web_rules(api: &Client) -> Option<std::collections::BTreeSet<String>> {
    let (status, g) = api
        .try_raw("GET", "/v1/vpcs/t/security-groups/web", Some(&api.token), None)
        .ok()?;
    (status == 200).then(|| {
        let g: GroupView = serde_json::from_value(g).expect("a group");
        g.rules.into_iter().map(|r| r.id).collect()
    })
}

/// Hundreds of acknowledged changes (rules added and deleted) while the
/// daemon is SIGKILLed at random moments and restarted: after every restart
/// the model holds exactly the acknowledged changes (the one request cut off
/// by a kill may or may not have been applied: it was never acknowledged).
#[test]
fn acknowledged_changes_survive_random_sigkills() {
    use std::collections::BTreeSet;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    rampart_testkit::require_root!("namespaces, AF_XDP");
    let t = network("crash");
    let scratch = support::scratch("crash");
    let dir = scratch.path();
    let d = Daemon::start(&t.fw, dir, CONFIG);
    let api = Client::new(&t.fw, dir);
    let initial = web_rules(&api).expect("running");

    let done = Arc::new(AtomicBool::new(false));
    let killed = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let kills = {
        let (done, killed, fw, dir) = (
            Arc::clone(&done),
            Arc::clone(&killed),
            t.fw.clone(),
            dir.to_owned(),
        );
        std::thread::spawn(move || {
            let mut seed = std::process::id() as u64 | 1;
            let mut d = Some(d);
            let mut kills = 0;
            while !done.load(Ordering::Relaxed) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                std::thread::sleep(Duration::from_millis(100 + seed % 400));
                drop(d.take()); // SIGKILL, at whatever moment the client is at
                kills += 1;
                killed.store(kills, Ordering::Relaxed);
                d = Some(Daemon::start(&fw, &dir, CONFIG));
            }
            (kills, d)
        })
    };

    // Expected web rules: the initial ones plus acknowledged adds, minus
    // acknowledged deletes.
    let mut expected: BTreeSet<String> = initial.clone();
    let mut acknowledged = 0;
    let mut checks = 0;
    let mut port = 10_000;
    // At least 500 acknowledged changes and 5 kills, however fast changes are.
    while acknowledged < 500 || killed.load(Ordering::Relaxed) < 5 {
        // Add two rules, then delete the older one: the model changes both ways.
        let op_add = expected.len() < initial.len() + 3;
        let result = if op_add {
            port += 1;
            let body = json!({ "direction": "ingress", "protocol": "tcp", "ports": port });
            api.try_raw(
                "POST",
                RULES,
                Some(&api.token),
                Some(body.to_string().into_bytes()),
            )
        } else {
            let victim = expected
                .difference(&initial)
                .next()
                .expect("an added rule")
                .clone();
            api.try_raw("DELETE", &format!("{RULES}/{victim}"), Some(&api.token), None)
                .map(|(s, mut v)| {
                    v["deleted"] = json!(victim);
                    (s, v)
                })
        };
        match result {
            Ok((200, v)) => {
                acknowledged += 1;
                if op_add {
                    let added: Enforced<RuleIds> = serde_json::from_value(v).expect("added rules");
                    expected.insert(added.answer.ids[0].clone());
                } else {
                    expected.remove(v["deleted"].as_str().expect("victim"));
                }
            }
            Ok((status, v)) => panic!("refused ({status}): {v}"),
            Err(_) => {
                // Cut off by a kill: wait for the restart, then check.
                let live = loop {
                    if let Some(live) = web_rules(&api) {
                        break live;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                };
                checks += 1;
                // Every acknowledged change is there; the cut-off one may be.
                let extra: Vec<_> = live.difference(&expected).collect();
                let missing: Vec<_> = expected.difference(&live).collect();
                assert!(
                    extra.len() + missing.len() <= 1,
                    "after restart {checks}: live {live:?} vs acknowledged {expected:?}"
                );
                expected = live;
            }
        }
    }
    done.store(true, Ordering::Relaxed);
    let (kills, d) = kills.join().expect("killer");
    let final_rules = loop {
        if let Some(live) = web_rules(&api) {
            break live;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(final_rules, expected);
    assert!(
        kills >= 5 && checks >= 1,
        "{kills} kills, {checks} requests cut off"
    );
    eprintln!("{acknowledged} acknowledged changes, {kills} kills, {checks} requests cut off");
    drop(d);
}

/// An established connection to web:80 kept talking on a thread: 8-byte
/// messages echoed back every 5 ms, each checked.
struct Talker {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    echoes: std::sync::Arc<std::sync::atomic::AtomicU64>,
    thread: std::thread::JoinHandle<Result<(), String>>,
}

impl Talker {
    fn start(t: &Topology) -> Talker {
        use std::io::{Read, Write};
        use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
        use std::sync::Arc;
        let mut conn = connect(&t.client, "198.18.0.1", "198.18.0.20:80", OPEN).expect("web");
        let mut banner = [0u8; 4];
        conn.read_exact(&mut banner).expect("banner");
        let stop = Arc::new(AtomicBool::new(false));
        let echoes = Arc::new(AtomicU64::new(0));
        let (halt, count) = (Arc::clone(&stop), Arc::clone(&echoes));
        let thread = std::thread::spawn(move || -> Result<(), String> {
            conn.set_read_timeout(Some(Duration::from_secs(2)))
                .map_err(|e| e.to_string())?;
            let mut buf = [0u8; 8];
            let mut n = 0u64;
            while !halt.load(Ordering::Relaxed) {
                n += 1;
                conn.write_all(&n.to_be_bytes())
                    .map_err(|e| format!("write {n}: {e}"))?;
                conn.read_exact(&mut buf).map_err(|e| format!("echo {n}: {e}"))?;
                if buf != n.to_be_bytes() {
                    return Err(format!("echo {n} garbled"));
                }
                count.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(5));
            }
            Ok(())
        });
        Talker { stop, echoes, thread }
    }

    /// Stops it; panics if the connection ever failed. Answers the echoes.
    fn stop(self) -> u64 {
        use std::sync::atomic::Ordering;
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .join()
            .expect("talker")
            .expect("the established connection kept working");
        self.echoes.load(Ordering::Relaxed)
    }
}

/// An update storm under traffic: hundreds of rule changes per second for a
/// few seconds while an established connection keeps talking. Nothing
/// crashes, memory does not grow, and the connection (whose rule is never
/// touched) never misses a beat, although `on_rule_change = revalidate`
/// re-checks it against every new snapshot.
#[test]
fn an_update_storm_leaves_unconcerned_flows_and_memory_alone() {
    rampart_testkit::require_root!("namespaces, AF_XDP");
    let t = network("storm");
    let scratch = support::scratch("storm");
    let dir = scratch.path();
    let mut d = Daemon::start(&t.fw, dir, CONFIG);
    let api = Client::new(&t.fw, dir);
    let talker = Talker::start(&t);

    // Warm up (allocations that happen once), then measure memory.
    let storm = |seconds: f64, base: u64| -> usize {
        let started = std::time::Instant::now();
        let mut changes = 0;
        let mut i = 0;
        while started.elapsed().as_secs_f64() < seconds {
            i += 1;
            let body = json!({ "direction": "ingress", "protocol": "udp", "ports": base + i % 1000 });
            let added: Enforced<RuleIds> = api.change("POST", RULES, Some(&body));
            let id = &added.answer.ids[0];
            api.changed("DELETE", &format!("{RULES}/{id}"), None);
            changes += 2;
        }
        changes
    };
    storm(1.0, 20_000);
    let before = d.rss_kb();
    let started = std::time::Instant::now();
    let changes = storm(5.0, 30_000);
    let rate = changes as f64 / started.elapsed().as_secs_f64();
    let after = d.rss_kb();
    let echoes = talker.stop();
    eprintln!(
        "{changes} changes, {rate:.0}/s; {} echoes; RSS {before} -> {after} kB",
        echoes
    );
    assert!(rate >= 100.0, "only {rate:.0} changes per second");
    assert!(echoes > 100, "the connection was barely used");
    assert!(
        after <= before + 4096,
        "RSS grew from {before} to {after} kB over {changes} changes"
    );
    // The rule count is back where it was, and the daemon stops cleanly.
    assert_eq!(rule_count(&api), 3);
    assert!(d.stop(Signal::SIGTERM).success(), "{}", d.stderr());
}

/// Every endpoint not exercised above, each with its effect checked through
/// another endpoint (and, where it changes what passes, through traffic).
#[test]
fn every_endpoint_does_what_it_says() {
    rampart_testkit::require_root!("namespaces, AF_XDP");
    let t = network("every");
    let scratch = support::scratch("every");
    let dir = scratch.path();
    let mut d = Daemon::start(&t.fw, dir, CONFIG);
    let api = Client::new(&t.fw, dir);
    assert_eq!(api.read::<Version>("/v1/version").name, "rampart");
    let model: ModelView = api.read("/v1/model");
    assert!(model.from_file);
    assert_eq!(model.interfaces[0].name, "web-1");

    // VPCs: create, show, update, delete.
    let v: Enforced<Created> = api.change("POST", "/v1/vpcs", Some(&json!({ "name": "lab", "vlan": 300 })));
    assert!(v.answer.id.starts_with("vpc-"), "{v:?}");
    assert_eq!(api.read::<VpcView>("/v1/vpcs/lab").vlan, Some(300));
    api.changed(
        "PUT",
        "/v1/vpcs/lab",
        Some(&json!({ "name": "lab", "vlan": 301, "description": "x" })),
    );
    assert_eq!(api.read::<VpcView>("/v1/vpcs/lab").vlan, Some(301));
    assert!(
        !api.read::<ModelView>("/v1/model").from_file,
        "changed through the API"
    );

    // Prefix lists: create, list, show, update, delete.
    let pl = "/v1/vpcs/t/prefix-lists";
    let _: Enforced<Created> = api.change(
        "POST",
        pl,
        Some(&json!({ "name": "clients", "cidrs": ["198.18.0.0/28"] })),
    );
    assert_eq!(api.read::<PrefixListList>(pl).prefix_lists[0].name, "clients");
    api.changed(
        "PUT",
        &format!("{pl}/clients"),
        Some(&json!({ "name": "clients", "cidrs": ["198.18.0.0/30"] })),
    );
    let cidrs = api.read::<PrefixListView>(&format!("{pl}/clients")).cidrs;
    assert_eq!(cidrs, ["198.18.0.0/30".parse::<IpNet>().expect("cidr")]);

    // Groups: patch, copy, replace rules (a prefix-list remote), update a rule.
    let groups = "/v1/vpcs/t/security-groups";
    api.changed(
        "PATCH",
        &format!("{groups}/web"),
        Some(&json!({ "description": "front" })),
    );
    assert_eq!(
        api.read::<GroupView>(&format!("{groups}/web")).description,
        "front"
    );
    let copy: Enforced<Created> = api.change(
        "POST",
        &format!("{groups}/web/copy"),
        Some(&json!({ "name": "web2" })),
    );
    assert!(copy.answer.id.starts_with("sg-"), "{copy:?}");
    assert_eq!(
        api.read::<GroupList>(groups).security_groups.len(),
        3,
        "default, web, web2"
    );
    let replaced: Enforced<RuleIds> = api.change(
        "PUT",
        &format!("{groups}/web2/rules"),
        Some(&json!([{ "direction": "ingress", "protocol": "tcp", "ports": "8080", "remote": "prefix-list:clients" }])),
    );
    let rule = replaced.answer.ids[0].clone();
    assert_eq!(api.read::<GroupView>(&format!("{groups}/web2")).rules.len(), 1);

    // Interfaces: set groups (web + web2: 8080 opens for the prefix list).
    let ifs = "/v1/vpcs/t/interfaces";
    assert!(!reaches(&t, 8080));
    api.changed(
        "PUT",
        &format!("{ifs}/web-1/groups"),
        Some(&json!(["web", "web2"])),
    );
    assert!(reaches(&t, 8080));
    // Update the rule to another port: 8080 closes again.
    api.changed(
        "PUT",
        &format!("{groups}/web2/rules/{rule}"),
        Some(&json!({ "direction": "ingress", "protocol": "tcp", "ports": "8081", "remote": "prefix-list:clients" })),
    );
    assert!(!reaches(&t, 8080));
    // The prefix list is in use; unbind web2, delete it, then the list.
    let (status, e) = api.refused("DELETE", &format!("{pl}/clients"), None);
    assert_eq!((status, e.code.as_str()), (409, "in_use"), "{e:?}");
    api.changed("DELETE", &format!("{ifs}/web-1/groups/web2"), None);
    assert_eq!(api.read::<InterfaceView>(&format!("{ifs}/web-1")).groups, ["web"]);
    api.changed("DELETE", &format!("{groups}/web2"), None);
    api.changed("DELETE", &format!("{pl}/clients"), None);

    // Interfaces: create, list, update, delete.
    let _: Enforced<Created> = api.change(
        "POST",
        ifs,
        Some(&json!({ "name": "db-1", "addresses": ["198.18.0.30"], "groups": ["web"] })),
    );
    assert_eq!(api.read::<InterfaceList>(ifs).interfaces.len(), 2);
    api.changed(
        "PUT",
        &format!("{ifs}/db-1"),
        Some(&json!({ "name": "db-1", "addresses": ["198.18.0.31"], "groups": ["web"] })),
    );
    let addresses = api.read::<InterfaceView>(&format!("{ifs}/db-1")).addresses;
    assert_eq!(
        addresses,
        ["198.18.0.31".parse::<std::net::IpAddr>().expect("address")]
    );
    api.changed("DELETE", &format!("{ifs}/db-1"), None);
    assert_eq!(api.refused("GET", &format!("{ifs}/db-1"), None).0, 404);

    api.changed("DELETE", "/v1/vpcs/lab", None);
    assert_eq!(api.refused("GET", "/v1/vpcs/lab", None).0, 404);
    let (status, e) = api.refused("GET", "/v1/nothing-here", None);
    assert_eq!((status, e.code.as_str()), (404, "no_route"), "{e:?}");
    assert!(reaches(&t, 80));
    assert!(d.stop(Signal::SIGTERM).success(), "{}", d.stderr());
}

/// The quota-scale model beside the test's own VPC: 1000 groups x 20 rules
/// and 99 990 interfaces in VPC "prod" (VLAN 100), every group referenced by
/// others and a 1000-entry prefix list, from the update benchmark.
fn cloud_scale_config() -> String {
    use rampart_bench::update::{config_toml, Plan, SetMix};
    let plan = Plan {
        groups: 1000,
        rules_per_group: 20,
        interfaces: 99_990,
        changes: 100,
        set_mix: SetMix::Random,
    };
    let tables = config_toml(plan).replacen("name = \"prod\"", "name = \"prod\"\nvlan = 100", 1);
    format!("{CONFIG}\n{tables}")
}

/// The update storm at cloud scale: 100 changes per second for 30 s (rules,
/// memberships and the prefix list of the big VPC) while a connection of
/// another group keeps talking. Every change is answered enforced in time,
/// memory stays flat, the connection never misses a beat; then a SIGKILL
/// loses none of the changes acknowledged.
#[test]
fn a_storm_of_changes_at_cloud_scale_disturbs_nothing_and_survives_sigkill() {
    rampart_testkit::require_root!("namespaces, AF_XDP");
    let t = network("cloud");
    let scratch = support::scratch("cloud");
    let dir = scratch.path();
    let config = cloud_scale_config();
    let started = std::time::Instant::now();
    let d = Daemon::start_within(&t.fw, dir, &config, Duration::from_secs(240));
    eprintln!("started in {:.1} s", started.elapsed().as_secs_f64());
    let api = Client::new(&t.fw, dir);
    let talker = Talker::start(&t);

    // Change `i`, paced to 100 per second: a rule added to one group and
    // deleted from it again, a binding added and removed, a prefix-list entry.
    let plist = "/v1/vpcs/prod/prefix-lists/pl";
    let mut slowest = Duration::ZERO;
    let mut change = |i: usize| {
        let t0 = std::time::Instant::now();
        match i % 4 {
            0 | 1 => {
                let rules = format!("/v1/vpcs/prod/security-groups/g{}/rules", (i * 37) % 1000);
                let body = json!({ "direction": "ingress", "protocol": "udp", "ports": 20_000 + i % 1000 });
                let added: Enforced<RuleIds> = api.change("POST", &rules, Some(&body));
                slowest = slowest.max(t0.elapsed());
                let t1 = std::time::Instant::now();
                api.changed("DELETE", &format!("{rules}/{}", added.answer.ids[0]), None);
                slowest = slowest.max(t1.elapsed());
            }
            2 => {
                let path = format!("/v1/vpcs/prod/interfaces/i{}/groups/default", (i * 7919) % 99_990);
                api.changed("PUT", &path, Some(&json!({})));
                slowest = slowest.max(t0.elapsed());
                let t1 = std::time::Instant::now();
                api.changed("DELETE", &path, None);
                slowest = slowest.max(t1.elapsed());
            }
            _ => {
                let mut cidrs: Vec<String> = (0..1000)
                    .map(|e| format!("198.19.{}.{}/32", e / 256, e % 256))
                    .collect();
                cidrs[i % 1000] = format!("198.19.200.{}/32", i % 250);
                let body = json!({ "name": "pl", "cidrs": cidrs });
                api.changed("PUT", plist, Some(&body));
                slowest = slowest.max(t0.elapsed());
            }
        }
    };
    // Steps of 2, 2, 2 and 1 changes (7 per 4 steps), 60 steps a second.
    let storm = |seconds: f64, from: usize, change: &mut dyn FnMut(usize)| -> usize {
        let started = std::time::Instant::now();
        let mut i = from;
        while started.elapsed().as_secs_f64() < seconds {
            change(i);
            i += 1;
            let due = Duration::from_micros(16_667 * (i - from) as u64);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(wait);
            }
        }
        i - from
    };
    storm(2.0, 0, &mut change);
    let before = d.rss_kb();
    let steps = storm(30.0, 1000, &mut change);
    let after = d.rss_kb();
    let echoes = talker.stop();
    let changes = steps / 4 * 7 + [0, 2, 4, 6][steps % 4];
    eprintln!(
        "{changes} changes in 30 s, slowest answer {slowest:?}; {} echoes; RSS {before} -> {after} kB",
        echoes
    );
    assert!(changes >= 3000, "only {changes} changes in 30 s");
    assert!(echoes > 1000, "the connection was barely used");
    assert!(
        after <= before + 16 * 1024,
        "RSS grew from {before} to {after} kB over {steps} steps"
    );

    // Acknowledged changes, then SIGKILL: all of them are there after the
    // restart (the model is model.json plus the journal).
    let mut kept = Vec::new();
    for g in 0..20 {
        let rules = format!("/v1/vpcs/prod/security-groups/g{g}/rules");
        let body = json!({ "direction": "ingress", "protocol": "tcp", "ports": 40_000 + g });
        let added: Enforced<RuleIds> = api.change("POST", &rules, Some(&body));
        kept.push((g, added.answer.ids[0].clone()));
    }
    drop(d); // SIGKILL
    let started = std::time::Instant::now();
    let _d = Daemon::start_within(&t.fw, dir, &config, Duration::from_secs(240));
    eprintln!("restarted in {:.1} s", started.elapsed().as_secs_f64());
    for (g, id) in kept {
        let group: GroupView = api.read(&format!("/v1/vpcs/prod/security-groups/g{g}"));
        assert!(group.rules.iter().any(|r| r.id == id), "rule {id} of g{g} lost");
        assert_eq!(group.rules.len(), 21, "g{g}: its 20 rules and the one kept");
    }
    assert!(reaches(&t, 80), "web is reachable after the restart");
}

/// Reads do not queue behind a change: while a `PUT /v1/model` of 20 000
/// interfaces is being validated, saved and compiled, `GET /v1/vpcs`
/// answers at once with the model before it; from its publication on, with
/// the new one.
#[test]
fn reads_answer_while_a_change_is_in_flight() {
    use rampart_bench::update::{document, Plan, SetMix};
    rampart_testkit::require_root!("namespaces, AF_XDP");
    let t = network("reads");
    let scratch = support::scratch("reads");
    let dir = scratch.path();
    let _d = Daemon::start(&t.fw, dir, CONFIG);
    let api = Client::new(&t.fw, dir);
    let plan = Plan {
        groups: 200,
        rules_per_group: 20,
        interfaces: 20_000,
        changes: 1,
        set_mix: SetMix::Random,
    };
    let body = document(plan).to_string().into_bytes();
    let writer = {
        let api = Client::new(&t.fw, dir);
        std::thread::spawn(move || {
            let started = std::time::Instant::now();
            let answer = api.try_raw("PUT", "/v1/model", Some(&api.token), Some(body));
            (answer, started.elapsed())
        })
    };
    let vpcs = |api: &Client| -> Vec<String> {
        let list: VpcList = api.read("/v1/vpcs");
        list.vpcs.into_iter().map(|v| v.name).collect()
    };
    let mut during = Vec::new();
    while !writer.is_finished() {
        let started = std::time::Instant::now();
        let names = vpcs(&api);
        let took = started.elapsed();
        if !writer.is_finished() {
            during.push((names, took));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let (answer, put_took) = writer.join().expect("writer");
    let (status, v) = answer.expect("PUT answered");
    assert_eq!(status, 200, "{v}");
    eprintln!("PUT took {put_took:?}; {} reads during it", during.len());
    assert!(
        during.len() >= 5,
        "{} reads answered during a {put_took:?} PUT",
        during.len()
    );
    // The model before the change until it is published (just before the
    // PUT waits for the workers), the new one from then on.
    let before = during.iter().take_while(|(names, _)| names == &["t"]).count();
    assert!(
        before >= 5,
        "{before} reads saw the model before the change: {during:?}"
    );
    assert!(
        during[before..].iter().all(|(names, _)| names == &["prod"]),
        "{during:?}"
    );
    for (_, took) in &during {
        assert!(
            *took < put_took / 2,
            "a read took {took:?} during a {put_took:?} PUT"
        );
    }
    assert_eq!(vpcs(&api), ["prod"], "the new model once answered");
}

/// A group set that takes heavy first-packet traffic gets a merged
/// classifier at the next re-choice (every 10 s), however few interfaces
/// share it, and loses it once the traffic stops; verdicts stay
/// the same throughout.
#[test]
fn a_set_under_heavy_traffic_is_merged_and_unmerged_when_it_stops() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    rampart_testkit::require_root!("namespaces, AF_XDP");
    let t = network("merge");
    let scratch = support::scratch("merge");
    let dir = scratch.path();
    // web-1 carries two groups: one lookup per group until merged.
    let config = CONFIG.replace(r#"groups = ["web"]"#, r#"groups = ["web", "default"]"#);
    let mut d = Daemon::start(&t.fw, dir, &config);
    assert!(reaches(&t, 80));

    // UDP to a port no rule opens: every datagram is a first packet
    // (nothing is remembered for a denied one), about 2000 a second.
    let stop = Arc::new(AtomicBool::new(false));
    let sender = {
        let stop = Arc::clone(&stop);
        Topology::within(&t.client, move || {
            let socket = std::net::UdpSocket::bind("198.18.0.1:0").expect("udp socket");
            let mut sent = 0u64;
            while !stop.load(Ordering::Relaxed) {
                for _ in 0..20 {
                    let _ = socket.send_to(b"x", "198.18.0.20:9");
                    sent += 1;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            sent
        })
    };
    d.wait_for_output(
        "re-chosen by traffic: 1 group sets merged",
        Duration::from_secs(30),
    );
    assert!(reaches(&t, 80), "web still answers with the merged set");
    assert!(!reaches(&t, 8080), "and 8080 is still closed");
    stop.store(true, Ordering::Relaxed);
    let sent = sender.join().expect("sender").expect("in the client's namespace");
    assert!(sent > 10_000, "{sent} datagrams");
    d.wait_for_output(
        "re-chosen by traffic: 0 group sets merged",
        Duration::from_secs(30),
    );
    assert!(reaches(&t, 80));
}

/// Started with the 1024 open files a service manager gives by default,
/// rampart raises its limit, so 3000 idle connections to the API do not
/// lock it out: /health and an authorized GET still answer within 1 s.
#[test]
fn idle_connections_beyond_the_default_open_file_limit_do_not_lock_the_api_out() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    rampart_testkit::require_root!("namespaces, AF_XDP");
    // This process holds the 3000 client ends.
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    assert!(
        hard >= 4096,
        "the test needs a hard open-file limit of 4096 or more, not {hard}"
    );
    setrlimit(Resource::RLIMIT_NOFILE, soft.max(4096), hard).expect("setrlimit");
    let t = network("nofile");
    let scratch = support::scratch("nofile");
    let dir = scratch.path();
    let d = Daemon::start_with_open_files(&t.fw, dir, CONFIG, 1024);
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", d.pid())).expect("limits");
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("open files");
    let raised: u64 = line
        .split_whitespace()
        .nth(3)
        .and_then(|v| v.parse().ok())
        .expect("soft limit");
    assert!(raised >= 4096, "{line}");
    assert!(d.stdout().contains("(raised from 1024)"), "{}", d.stdout());

    let idle = Topology::within(&t.fw, || {
        (0..3000)
            .map(|_| std::net::TcpStream::connect("127.0.0.1:9740").expect("connect"))
            .collect::<Vec<_>>()
    })
    .join()
    .expect("connector")
    .expect("in the namespace");
    std::thread::sleep(Duration::from_millis(500));
    let api = Client::new(&t.fw, dir);
    for path in ["/health", "/v1/vpcs"] {
        let started = std::time::Instant::now();
        let (status, body) = api.get(path);
        assert_eq!(status, 200, "{path}: {body}");
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{path} took {:?}",
            started.elapsed()
        );
    }
    drop(idle);
}
