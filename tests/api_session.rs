//! The REST API answers the same bytes for the same requests: a session of
//! requests over every endpoint (successes and refusals) runs against a fresh
//! daemon, and each answer's status, content type and body must equal the
//! recorded session in `tests/data/api-session.jsonl` byte for byte.
//!
//! Run with `RAMPART_RECORD_API_SESSION=1` to write the file from the current
//! daemon instead (only when the API is meant to change).

mod support;

use std::fmt::Write as _;
use std::path::Path;

use serde_json::{json, Value};
use support::api::{Client, Exchange};
use support::daemon::Daemon;
use support::netns::Topology;

const CONFIG: &str = r#"
[appliance]
port_a = "a0"
port_b = "b0"

[[vpc]]
name = "t"

[[prefix_list]]
vpc = "t"
name = "office"
cidrs = ["198.18.9.0/24"]

[[security_group]]
vpc = "t"
name = "web"
description = "the web tier"
rules = [
  { direction = "ingress", protocol = "tcp", ports = "80" },
  { direction = "ingress", protocol = "tcp", ports = "22", remote = "prefix-list:office" },
]

[[interface]]
vpc = "t"
name = "web-1"
addresses = ["198.18.0.20", "2001:db8::20"]
groups = ["web"]
"#;

const SESSION: &str = "data/api-session.jsonl";

/// Who sends a request: the daemon's token, none, or a wrong one.
#[derive(Clone, Copy)]
enum Auth {
    Token,
    None,
    Wrong,
}

struct Request {
    method: &'static str,
    path: &'static str,
    auth: Auth,
    body: Option<String>,
}

fn req(method: &'static str, path: &'static str, body: Option<Value>) -> Request {
    Request {
        method,
        path,
        auth: Auth::Token,
        body: body.map(|b| b.to_string()),
    }
}

fn raw(method: &'static str, path: &'static str, body: &str) -> Request {
    Request {
        method,
        path,
        auth: Auth::Token,
        body: Some(body.to_owned()),
    }
}

/// Every endpoint, in an order where each request sees the changes before it.
fn session() -> Vec<Request> {
    vec![
        Request {
            method: "GET",
            path: "/health",
            auth: Auth::None,
            body: None,
        },
        Request {
            method: "GET",
            path: "/v1/vpcs",
            auth: Auth::None,
            body: None,
        },
        Request {
            method: "GET",
            path: "/v1/vpcs",
            auth: Auth::Wrong,
            body: None,
        },
        req("GET", "/v1/version", None),
        req("GET", "/v1/no-such-thing", None),
        req("DELETE", "/v1/version", None),
        req("GET", "/v1/model", None),
        // VPCs.
        req("GET", "/v1/vpcs", None),
        req(
            "POST",
            "/v1/vpcs",
            Some(json!({ "name": "u", "vlan": 20, "description": "second" })),
        ),
        req("POST", "/v1/vpcs", Some(json!({ "name": "u", "vlan": 21 }))),
        req("POST", "/v1/vpcs", Some(json!({ "name": "v", "vlan": 5000 }))),
        req("GET", "/v1/vpcs/u", None),
        req("PUT", "/v1/vpcs/u", Some(json!({ "name": "u", "vlan": 22 }))),
        req("GET", "/v1/vpcs/nowhere", None),
        // Security groups.
        req("GET", "/v1/vpcs/t/security-groups", None),
        req("GET", "/v1/vpcs/t/security-groups/web", None),
        req("GET", "/v1/vpcs/t/security-groups/nothing", None),
        req(
            "POST",
            "/v1/vpcs/t/security-groups",
            Some(json!({ "name": "db", "description": "databases", "rules": [
                { "direction": "ingress", "protocol": "tcp", "ports": "5432", "remote": "group:web" }
            ] })),
        ),
        req(
            "POST",
            "/v1/vpcs/t/security-groups",
            Some(json!({ "name": "db" })),
        ),
        req(
            "POST",
            "/v1/vpcs/t/security-groups",
            Some(json!({ "name": "x", "colour": "red" })),
        ),
        req(
            "PATCH",
            "/v1/vpcs/t/security-groups/db",
            Some(json!({ "description": "the databases" })),
        ),
        req(
            "POST",
            "/v1/vpcs/t/security-groups/db/copy",
            Some(json!({ "name": "db-copy" })),
        ),
        req(
            "POST",
            "/v1/vpcs/t/security-groups/db/copy",
            Some(json!({ "name": "web" })),
        ),
        req(
            "POST",
            "/v1/vpcs/t/security-groups/db/rules",
            Some(
                json!({ "direction": "ingress", "protocol": "udp", "ports": "53", "remote": "198.18.1.0/24" }),
            ),
        ),
        req(
            "POST",
            "/v1/vpcs/t/security-groups/db/rules",
            Some(json!([
                { "direction": "egress", "protocol": "icmp", "icmp_type": 8, "ethertype": "ipv4" },
                { "direction": "ingress", "protocol": "icmpv6", "remote": "2001:db8::/32" }
            ])),
        ),
        req(
            "POST",
            "/v1/vpcs/t/security-groups/db/rules",
            Some(json!({ "direction": "ingress", "protocol": "tcp", "ports": "99999" })),
        ),
        req(
            "POST",
            "/v1/vpcs/t/security-groups/db/rules",
            Some(json!([{ "direction": "ingress", "protocol": "tcp" }, { "direction": 7 }])),
        ),
        raw(
            "POST",
            "/v1/vpcs/t/security-groups/db/rules",
            r#"{"direction":"ingress","#,
        ),
        req("GET", "/v1/vpcs/t/security-groups/db", None),
        req(
            "PUT",
            "/v1/vpcs/t/security-groups/db/rules/sgr-19",
            Some(json!({ "direction": "ingress", "protocol": "udp", "ports": "53-54", "priority": 50 })),
        ),
        req(
            "PUT",
            "/v1/vpcs/t/security-groups/db/rules/sgr-999",
            Some(json!({ "direction": "ingress", "protocol": "udp" })),
        ),
        req("DELETE", "/v1/vpcs/t/security-groups/db/rules/sgr-20", None),
        req("DELETE", "/v1/vpcs/t/security-groups/db/rules/sgr-20", None),
        req(
            "PUT",
            "/v1/vpcs/t/security-groups/db-copy/rules",
            Some(json!([{ "direction": "ingress", "protocol": "tcp", "ports": "3306", "action": "deny" }])),
        ),
        req("GET", "/v1/vpcs/t/security-groups", None),
        // Interfaces.
        req("GET", "/v1/vpcs/t/interfaces", None),
        req("GET", "/v1/vpcs/t/interfaces/web-1", None),
        req(
            "POST",
            "/v1/vpcs/t/interfaces",
            Some(
                json!({ "name": "db-1", "addresses": ["198.18.0.30"], "mac": "02:00:00:00:00:30", "groups": ["db"] }),
            ),
        ),
        req(
            "POST",
            "/v1/vpcs/t/interfaces",
            Some(json!({ "name": "db-2", "addresses": ["198.18.0.30"] })),
        ),
        req(
            "POST",
            "/v1/vpcs/t/interfaces",
            Some(json!({ "name": "x", "addresses": ["not-an-ip"] })),
        ),
        req(
            "PUT",
            "/v1/vpcs/t/interfaces/db-1",
            Some(json!({ "name": "db-1", "addresses": ["198.18.0.31"], "groups": ["db", "web"] })),
        ),
        req("PUT", "/v1/vpcs/t/interfaces/db-1/groups", Some(json!(["db"]))),
        req("PUT", "/v1/vpcs/t/interfaces/db-1/groups/db-copy", None),
        req("DELETE", "/v1/vpcs/t/interfaces/db-1/groups/db", None),
        req("DELETE", "/v1/vpcs/t/interfaces/db-1/groups/nothing", None),
        req("GET", "/v1/vpcs/t/interfaces/db-1", None),
        req("DELETE", "/v1/vpcs/t/security-groups/db-copy", None),
        req("GET", "/v1/vpcs/t/interfaces/nobody", None),
        req("DELETE", "/v1/vpcs/t/interfaces/db-1", None),
        req("DELETE", "/v1/vpcs/t/security-groups/db-copy", None),
        // Prefix lists.
        req("GET", "/v1/vpcs/t/prefix-lists", None),
        req("GET", "/v1/vpcs/t/prefix-lists/office", None),
        req(
            "POST",
            "/v1/vpcs/t/prefix-lists",
            Some(
                json!({ "name": "partners", "description": "b2b", "cidrs": ["198.18.7.0/24", "2001:db8:7::/48"] }),
            ),
        ),
        req(
            "POST",
            "/v1/vpcs/t/prefix-lists",
            Some(json!({ "name": "bad", "cidrs": ["198.18.7.0/33"] })),
        ),
        req(
            "PUT",
            "/v1/vpcs/t/prefix-lists/partners",
            Some(json!({ "name": "partners", "cidrs": ["198.18.8.0/24"] })),
        ),
        req("DELETE", "/v1/vpcs/t/prefix-lists/office", None),
        req("DELETE", "/v1/vpcs/t/prefix-lists/partners", None),
        req("GET", "/v1/vpcs/t/prefix-lists/partners", None),
        // Explain.
        req(
            "POST",
            "/v1/explain",
            Some(json!({ "packet": "tcp 198.18.9.1:40000 -> 198.18.0.20:22", "vpc": "t" })),
        ),
        req(
            "POST",
            "/v1/explain",
            Some(json!({ "packet": "udp 198.18.9.1:40000 -> 198.18.0.20:53" })),
        ),
        req("POST", "/v1/explain", Some(json!({ "packet": "tcp nowhere" }))),
        // Reload and the whole model.
        req("DELETE", "/v1/vpcs/u", None),
        req("GET", "/v1/vpcs/u/security-groups", None),
        raw("POST", "/v1/reload", ""),
        req("POST", "/v1/reload", Some(json!({ "force": true }))),
        req("POST", "/v1/reload", Some(json!({ "force": "yes" }))),
        req(
            "PUT",
            "/v1/model",
            Some(json!({
                "vpc": [{ "name": "t" }],
                "security_group": [{ "vpc": "t", "name": "web", "rules": [
                    { "direction": "ingress", "protocol": "tcp", "ports": "443" }
                ] }],
                "interface": [{ "vpc": "t", "name": "web-1", "addresses": ["198.18.0.20"], "groups": ["web"] }],
            })),
        ),
        req(
            "PUT",
            "/v1/model",
            Some(json!({ "vpc": [{ "name": "t" }], "interface": [{ "vpc": "t" }] })),
        ),
        req("PUT", "/v1/model", Some(json!({ "vpcs": [] }))),
        req("GET", "/v1/model", None),
        req("DELETE", "/v1/vpcs/u", None),
        req("GET", "/v1/vpcs", None),
        req("GET", "/health", None),
    ]
}

/// One request and its answer, as a line of the session file; the daemon's
/// directory is written as `<dir>` so the line does not depend on where it ran.
fn line(r: &Request, answer: &Exchange, dir: &Path) -> String {
    let auth = match r.auth {
        Auth::Token => "token",
        Auth::None => "none",
        Auth::Wrong => "wrong",
    };
    let dir = dir.display().to_string();
    json!({
        "method": r.method,
        "path": r.path,
        "auth": auth,
        "body": r.body,
        "status": answer.status,
        "content_type": answer.content_type,
        "answer": answer.body.replace(&dir, "<dir>"),
    })
    .to_string()
}

#[test]
fn the_api_answers_a_recorded_session_byte_for_byte() {
    rampart_testkit::require_root!("namespaces, AF_XDP");
    let t = Topology::new("sess");
    let dir = tempfile::tempdir().expect("temporary directory");
    let _d = Daemon::start(&t.fw, dir.path(), CONFIG);
    let api = Client::new(&t.fw, dir.path());
    let lines: Vec<String> = session()
        .iter()
        .map(|r| {
            let token = match r.auth {
                Auth::Token => Some(api.token.clone()),
                Auth::None => None,
                Auth::Wrong => Some("wrong-token".to_owned()),
            };
            let answer = api.exchange(
                r.method,
                r.path,
                token.as_deref(),
                r.body.clone().map(String::into_bytes),
            );
            line(r, &answer, dir.path())
        })
        .collect();

    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join(SESSION);
    if std::env::var_os("RAMPART_RECORD_API_SESSION").is_some() {
        std::fs::write(&file, lines.join("\n") + "\n").expect("write the session");
        return;
    }
    let recorded = std::fs::read_to_string(&file).expect("the recorded session");
    let recorded: Vec<&str> = recorded.lines().collect();
    assert_eq!(
        recorded.len(),
        lines.len(),
        "the session has a different number of requests than {SESSION}"
    );
    let mut differ = String::new();
    for (i, (want, got)) in recorded.iter().zip(&lines).enumerate() {
        if want != got {
            let _ = writeln!(differ, "request {}:\n  recorded {want}\n  answered {got}", i + 1);
        }
    }
    assert!(differ.is_empty(), "answers differ from {SESSION}:\n{differ}");
}
