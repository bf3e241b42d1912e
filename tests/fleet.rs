//! A fleet: several appliances, each bridging its own pair of networks, one
//! model in a real etcd. A change through any node is enforced on every node
//! (traffic checked on each); concurrent writers lose nothing; etcd or a node
//! failing keeps the last model enforced and every node converges once it is
//! back.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use rampart_control::api::types::{Enforced, FleetView, ModelView, RuleIds};
use serde_json::{json, Value};
use support::api::Client;
use support::daemon::{Daemon, BIN};
use support::etcd::Etcd;
use support::netns::{connect, serve_tcp, Topology};

const BLOCKED: Duration = Duration::from_millis(700);
const OPEN: Duration = Duration::from_secs(3);

/// Every node's model: a server protected by `web`, which allows TCP 80;
/// `db` exists unbound and allows TCP 5432.
const MODEL: &str = r#"
[[vpc]]
name = "t"

[[security_group]]
vpc = "t"
name = "web"
rules = [{ direction = "ingress", protocol = "tcp", ports = "80" }]

[[security_group]]
vpc = "t"
name = "db"
rules = [{ direction = "ingress", protocol = "tcp", ports = "5432" }]

[[interface]]
vpc = "t"
name = "srv"
addresses = ["198.18.0.20"]
groups = ["web"]
"#;

const RULES: &str = "/v1/vpcs/t/security-groups/web/rules";

/// One appliance of the fleet with its networks.
struct Node {
    net: Topology,
    dir: tempfile::TempDir,
    daemon: Option<Daemon>,
    config: String,
}

impl Node {
    fn api(&self) -> Client {
        Client::new(&self.net.fw, self.dir.path())
    }

    fn reaches(&self, port: u16) -> bool {
        let timeout = if port == 80 { OPEN } else { BLOCKED };
        connect(
            &self.net.client,
            "198.18.0.1",
            &format!("198.18.0.20:{port}"),
            timeout,
        )
        .is_ok()
    }

    fn start(&mut self) {
        self.daemon = Some(Daemon::start_within(
            &self.net.fw,
            self.dir.path(),
            &self.config,
            Duration::from_secs(30),
        ));
    }

    fn daemon(&mut self) -> &mut Daemon {
        self.daemon.as_mut().expect("running")
    }

    fn model(&self) -> Value {
        let (status, m) = self.api().get("/v1/model");
        assert_eq!(status, 200, "{m}");
        comparable(&m)
    }

    fn fleet(&self) -> FleetView {
        self.api().read("/v1/fleet")
    }

    fn metric(&self, name: &str) -> Option<f64> {
        let (_, text) = self.api().raw("GET", "/metrics", None, None);
        text.as_str()?
            .lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }
}

/// A model as compared between nodes: its objects, not its generation.
fn comparable(m: &Value) -> Value {
    let mut m = m.clone();
    if let Value::Object(map) = &mut m {
        map.remove("generation");
        map.remove("from_file");
    }
    m
}

struct Fleet {
    nodes: Vec<Node>,
    etcd: Etcd,
}

impl Fleet {
    /// `n` appliances and an etcd of `members` members; each node started.
    fn start(tag: &str, n: usize, members: usize) -> Fleet {
        let nets: Vec<Topology> = (0..n)
            .map(|i| {
                let t = Topology::new(&format!("{tag}{i}"));
                t.address(&t.client, "198.18.0.1/24");
                t.address(&t.server, "198.18.0.20/24");
                for port in [80, 8080, 5432] {
                    serve_tcp(&t.server, &format!("198.18.0.20:{port}"), "hi\n");
                }
                t
            })
            .collect();
        let fws: Vec<&str> = nets.iter().map(|t| t.fw.as_str()).collect();
        let etcd = Etcd::start(&format!("{tag}e"), members, &fws);
        let nodes = nets
            .into_iter()
            .enumerate()
            .map(|(i, net)| Node {
                config: format!(
                    "[appliance]\nport_a = \"a0\"\nport_b = \"b0\"\n\n{}\n{MODEL}",
                    etcd.cluster_table(i, &format!("node{}", i + 1))
                ),
                net,
                dir: support::scratch(&format!("fleet-{tag}{i}")),
                daemon: None,
            })
            .collect();
        let mut f = Fleet { nodes, etcd };
        for node in &mut f.nodes {
            node.start();
        }
        f
    }

    /// Waits until every node's model equals node 0's and `check` holds on
    /// it; panics with the models after `timeout`.
    fn converged(&self, timeout: Duration) -> Value {
        let start = Instant::now();
        loop {
            let models: Vec<Value> = self.nodes.iter().map(Node::model).collect();
            if models.windows(2).all(|w| w[0] == w[1]) {
                return models[0].clone();
            }
            assert!(
                start.elapsed() < timeout,
                "the nodes did not converge: {models:#?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The model in etcd, pulled with `rampart ctl store pull` into a state
    /// directory and read back by a standalone daemon's parser.
    fn store_model(&self) -> BTreeMap<String, usize> {
        let node = &self.nodes[0];
        let into = support::scratch("pull");
        let out = std::process::Command::new("ip")
            .args(["netns", "exec", &node.net.fw, BIN, "ctl", "store", "pull"])
            .arg(into.path().join("state"))
            .arg("--config")
            .arg(node.dir.path().join("rampart.toml"))
            .output()
            .expect("rampart ctl store pull");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let text = std::fs::read_to_string(into.path().join("state/model.json")).expect("model.json");
        let saved: Value = serde_json::from_str(&text).expect("json");
        count_rules(&saved["model"]["groups"])
    }
}

/// Rules per group id in a state-format model's `groups`.
fn count_rules(groups: &Value) -> BTreeMap<String, usize> {
    groups
        .as_object()
        .map(|g| {
            g.iter()
                .map(|(id, g)| (id.clone(), g["rules"].as_array().map_or(0, Vec::len)))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_change_through_one_node_is_enforced_on_every_node() {
    rampart_testkit::require_root!("namespaces, AF_XDP, etcd");
    let f = Fleet::start("fla", 3, 1);
    for (i, n) in f.nodes.iter().enumerate() {
        assert!(n.reaches(80), "node {i} forwards what the model allows");
        assert!(!n.reaches(8080), "node {i} enforces the model");
        assert!(
            n.daemon
                .as_ref()
                .expect("running")
                .stdout()
                .contains("the fleet store"),
            "the summary names the store: {}",
            n.daemon.as_ref().expect("running").stdout()
        );
    }
    // Node 2 and node 3 took the model node 1 seeded the store with.
    f.converged(Duration::from_secs(10));

    // A rule through node 1, answered once every node enforces it.
    let api1 = f.nodes[0].api();
    let (status, body) = api1.send(
        "POST",
        &format!("{RULES}?wait=fleet"),
        &json!({ "direction": "ingress", "protocol": "tcp", "ports": "8080" }),
    );
    assert_eq!(status, 200, "{body}");
    let added: Enforced<RuleIds> = serde_json::from_value(body).expect("an answer");
    let revision = added.revision.expect("a fleet change names its store revision");
    for (i, n) in f.nodes.iter().enumerate() {
        assert!(
            n.reaches(8080),
            "node {i}: answered with wait=fleet, so enforced here"
        );
        let view = n.fleet();
        assert!(view.revision >= revision, "node {i}: {view:?}");
    }
    let view = f.nodes[2].fleet();
    assert_eq!(view.nodes.len(), 3, "{view:?}");
    assert!(view.store_up && view.nodes.iter().all(|n| n.revision >= revision && !n.behind));

    // An interface bound through node 2 changes node 3's verdicts.
    assert!(!f.nodes[2].reaches(5432));
    let api2 = f.nodes[1].api();
    let (status, body) = api2.send(
        "PUT",
        "/v1/vpcs/t/interfaces/srv/groups/db?wait=fleet",
        &json!({}),
    );
    assert_eq!(status, 200, "{body}");
    assert!(
        f.nodes[2].reaches(5432),
        "bound through node 2, enforced on node 3"
    );
    assert!(f.nodes[0].reaches(80), "the other group still applies");

    // Bad input changes nothing anywhere and names the field.
    let before = f.converged(Duration::from_secs(5));
    let (status, e) = api2.refused(
        "POST",
        RULES,
        Some(&json!({ "direction": "ingress", "protocol": "tcp", "ports": "99999" })),
    );
    assert_eq!((status, e.field.flatten().as_deref()), (400, Some("ports")));
    let (status, _) = api1.raw(
        "POST",
        &format!("{RULES}?wait=everyone"),
        Some(&api1.token),
        Some(b"{}".to_vec()),
    );
    assert_eq!(status, 400, "an unknown wait is refused");
    assert_eq!(f.converged(Duration::from_secs(5)), before);

    // rampart ctl fleet status lists the nodes with their revisions.
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", &f.nodes[0].net.fw, BIN, "ctl", "--token-file"])
        .arg(f.nodes[0].dir.path().join("state/token"))
        .args(["fleet", "status"])
        .output()
        .expect("rampart ctl");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for name in ["node1", "node2", "node3"] {
        assert!(text.contains(name), "{text}");
    }
    // A node that does not follow (frozen, its lease still alive) is named
    // by a change that waits for the fleet; without the wait the change is
    // answered when enforced on the node asked.
    f.nodes[2]
        .daemon
        .as_ref()
        .expect("running")
        .signal(Signal::SIGSTOP);
    let rule = json!({ "direction": "ingress", "protocol": "udp", "ports": "53" });
    let (status, body) = api1.send("POST", &format!("{RULES}?wait=fleet"), &rule);
    assert_eq!(
        (status, body["code"].as_str()),
        (503, Some("fleet_lagging")),
        "{body}"
    );
    let message = body["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("node3") && !message.contains("node2"),
        "{message}"
    );
    let started = Instant::now();
    let (status, body) = api1.send(
        "POST",
        RULES,
        &json!({ "direction": "ingress", "protocol": "udp", "ports": "54" }),
    );
    assert_eq!(status, 200, "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "answered without waiting for node 3"
    );
    f.nodes[2]
        .daemon
        .as_ref()
        .expect("running")
        .signal(Signal::SIGCONT);
    f.converged(Duration::from_secs(10));

    // A reload from the file is refused: the model is the store's.
    let (status, body) = api1.raw("POST", "/v1/reload", Some(&api1.token), None);
    assert_eq!(status, 409, "{body}");

    // A whole model pushed into the store (a new epoch) is enforced by every
    // node: here web allows 8443 and nothing else.
    let pushed = support::scratch("push");
    let file = pushed.path().join("model.toml");
    std::fs::write(&file, MODEL.replace("ports = \"80\"", "ports = \"8443\"")).expect("model");
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", &f.nodes[1].net.fw, BIN, "ctl", "store", "push"])
        .arg(&file)
        .arg("--config")
        .arg(f.nodes[1].dir.path().join("rampart.toml"))
        .output()
        .expect("rampart ctl store push");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let model = f.converged(Duration::from_secs(10));
    assert_eq!(model["interfaces"].as_array().map(Vec::len), Some(1), "{model}");
    for (i, n) in f.nodes.iter().enumerate() {
        assert!(
            !n.reaches(80) && !n.reaches(8080),
            "node {i} enforces the pushed model"
        );
    }
    // And a whole model through a node's API (PUT /v1/model), the same way.
    let doc = json!({
        "vpc": [{ "name": "t" }],
        "security_group": [{ "vpc": "t", "name": "web", "rules": [{ "direction": "ingress", "protocol": "tcp", "ports": "80" }] }],
        "interface": [{ "vpc": "t", "name": "srv", "addresses": ["198.18.0.20"], "groups": ["web"] }],
    });
    let (status, body) = f.nodes[2].api().send("PUT", "/v1/model?wait=fleet", &doc);
    assert_eq!(status, 200, "{body}");
    for (i, n) in f.nodes.iter().enumerate() {
        assert!(n.reaches(80), "node {i} enforces the model put through node 3");
    }

    // A node that stops leaves the fleet at once (its lease is revoked).
    let mut f = f;
    f.nodes[2].daemon().stop(Signal::SIGTERM);
    let start = Instant::now();
    while f.nodes[0].fleet().nodes.len() != 2 {
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{:?}",
            f.nodes[0].fleet()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn concurrent_writers_on_two_nodes_lose_nothing() {
    rampart_testkit::require_root!("namespaces, AF_XDP, etcd");
    let f = Fleet::start("flc", 3, 1);
    f.converged(Duration::from_secs(10));
    // 200 rules, 100 through node 1 and 100 through node 2 at once, each a
    // distinct port; every acknowledged one must be in every model.
    let writers: Vec<_> = [0usize, 1]
        .into_iter()
        .map(|w| {
            let api = f.nodes[w].api();
            std::thread::spawn(move || {
                let mut acked = Vec::new();
                let mut refused = Vec::new();
                for i in 0..100u16 {
                    let port = 10_000 + w as u16 * 1000 + i;
                    let (status, body) = api.send(
                        "POST",
                        RULES,
                        &json!({ "direction": "ingress", "protocol": "tcp", "ports": port.to_string() }),
                    );
                    if status == 200 {
                        acked.push(port);
                    } else {
                        refused.push((status, body));
                    }
                }
                (acked, refused)
            })
        })
        .collect();
    let mut acked = Vec::new();
    for w in writers {
        let (a, refused) = w.join().expect("writer");
        for (status, body) in &refused {
            assert!(
                *status == 409 && body["code"] == "conflict",
                "a change may only be refused as a conflict: {status} {body}"
            );
        }
        acked.extend(a);
    }
    assert!(
        acked.len() >= 190,
        "retries absorb the conflicts: {} of 200 acknowledged",
        acked.len()
    );
    let model = f.converged(Duration::from_secs(10));
    let ports: Vec<u64> = model["security_groups"]
        .as_array()
        .expect("groups")
        .iter()
        .filter(|g| g["name"] == "web")
        .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
        .filter_map(|r| r["ports"]["lo"].as_u64())
        .collect();
    for p in &acked {
        assert!(
            ports.contains(&u64::from(*p)),
            "acknowledged rule for port {p} is lost"
        );
    }
    // Every node's model is etcd's.
    let web = model["security_groups"]
        .as_array()
        .expect("groups")
        .iter()
        .find(|g| g["name"] == "web")
        .expect("web")["rules"]
        .as_array()
        .map_or(0, Vec::len);
    let stored = f.store_model();
    assert!(
        stored.values().any(|&n| n == web),
        "etcd holds {stored:?}, the nodes {web} rules in web"
    );
    let view: ModelView = f.nodes[2].api().read("/v1/model");
    assert_eq!(
        view.security_groups.iter().map(|g| g.rules.len()).sum::<usize>(),
        stored.values().sum::<usize>()
    );
}

#[test]
fn etcd_down_keeps_the_last_model_and_every_node_catches_up() {
    rampart_testkit::require_root!("namespaces, AF_XDP, etcd");
    let mut f = Fleet::start("fld", 2, 1);
    f.converged(Duration::from_secs(10));
    assert_eq!(f.nodes[0].metric("rampart_store_up"), Some(1.0));
    f.etcd.kill(0);
    // Traffic keeps the last model: allowed stays allowed, denied denied.
    for n in &f.nodes {
        assert!(n.reaches(80) && !n.reaches(8080));
    }
    let api1 = f.nodes[0].api();
    let (status, e) = api1.refused(
        "POST",
        RULES,
        Some(&json!({ "direction": "ingress", "protocol": "tcp", "ports": "8080" })),
    );
    assert_eq!((status, e.code.as_str()), (503, "store_unavailable"), "{e:?}");
    assert!(!f.nodes[0].reaches(8080), "a refused write changed nothing");
    let start = Instant::now();
    while f.nodes[1].metric("rampart_store_up") != Some(0.0) {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the metric says etcd is down"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(f.nodes[1].metric("rampart_store_lag_seconds").unwrap_or(0.0) > 0.0);
    let (status, _) = f.nodes[1].api().raw("GET", "/health", None, None);
    assert_eq!(status, 200);
    // A node restarted meanwhile starts from its local cache and says so.
    f.nodes[1].daemon().stop(Signal::SIGKILL);
    f.nodes[1].daemon = None;
    f.nodes[1].start();
    assert!(
        f.nodes[1].daemon().stdout().contains("local cache"),
        "{}",
        f.nodes[1].daemon().stdout()
    );
    assert!(
        f.nodes[1].reaches(80) && !f.nodes[1].reaches(8080),
        "the cached model, not an empty one"
    );

    // etcd back: writes go through, and both nodes follow.
    f.etcd.restart(0);
    f.etcd.wait_healthy();
    let start = Instant::now();
    let added = loop {
        let (status, body) = api1.send(
            "POST",
            &format!("{RULES}?wait=fleet"),
            &json!({ "direction": "ingress", "protocol": "tcp", "ports": "8080" }),
        );
        if status == 200 {
            break body;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "{status} {body}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(added["revision"].as_i64().is_some(), "{added}");
    for n in &f.nodes {
        assert!(n.reaches(8080));
        assert_eq!(n.metric("rampart_store_up"), Some(1.0));
    }
    // After a compaction of the history a node missed, it reads the model
    // whole and converges.
    f.nodes[1].daemon().stop(Signal::SIGKILL);
    f.nodes[1].daemon = None;
    let api1 = f.nodes[0].api();
    let (status, body) = api1.send("PUT", "/v1/vpcs/t/interfaces/srv/groups/db", &json!({}));
    assert_eq!(status, 200, "{body}");
    f.etcd.compact();
    f.nodes[1].start();
    f.converged(Duration::from_secs(10));
    assert!(f.nodes[1].reaches(5432));
}

#[test]
fn a_node_killed_and_restarted_while_changes_go_on_converges() {
    rampart_testkit::require_root!("namespaces, AF_XDP, etcd");
    let mut f = Fleet::start("flk", 2, 3);
    f.converged(Duration::from_secs(10));
    let api1 = f.nodes[0].api();
    let add = |f: &Fleet, port: u16| {
        let (status, body) = f.nodes[0].api().send(
            "POST",
            RULES,
            &json!({ "direction": "ingress", "protocol": "tcp", "ports": port.to_string() }),
        );
        assert_eq!(
            status,
            200,
            "{body}\n{}\n{}",
            f.etcd.logs(),
            f.nodes[0].daemon.as_ref().map(Daemon::stderr).unwrap_or_default()
        );
    };
    for round in 0..3u16 {
        f.nodes[1].daemon().stop(Signal::SIGKILL);
        f.nodes[1].daemon = None;
        for i in 0..10 {
            add(&f, 20_000 + round * 100 + i);
        }
        f.nodes[1].start();
        for i in 10..20 {
            add(&f, 20_000 + round * 100 + i);
        }
        f.converged(Duration::from_secs(10));
    }
    // One etcd member of three down: no interruption of writes or reads.
    f.etcd.kill(1);
    for i in 0..20 {
        add(&f, 30_000 + i);
    }
    f.converged(Duration::from_secs(10));
    // Member back; another down.
    f.etcd.restart(1);
    f.etcd.wait_healthy();
    f.etcd.kill(0);
    let (status, body) = api1.send(
        "POST",
        &format!("{RULES}?wait=fleet"),
        &json!({ "direction": "ingress", "protocol": "tcp", "ports": "8080" }),
    );
    assert_eq!(
        status,
        200,
        "{body}\n{}\n{}",
        f.etcd.logs(),
        f.nodes[0].daemon.as_ref().map(Daemon::stderr).unwrap_or_default()
    );
    assert!(f.nodes[1].reaches(8080));
}
