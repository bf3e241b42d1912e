//! Real etcd members for the fleet tests, in a namespace of their own,
//! reached from each appliance's namespace over a management link:
//!
//! ```text
//!  <node ns i>  m0 198.19.<i>.2/30 ======= n<i> 198.19.<i>.1/30  <prefix>-etcd
//!                                                  etcd members on :2379, :2479, :2579
//! ```
//!
//! The members peer on the etcd namespace's loopback. Everything (processes,
//! data, the namespace, the links) goes when the [`Etcd`] is dropped.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rampart_bench::netns::{veth, Namespaces};

use super::netns::{in_ns, run};

#[derive(Debug)]
struct Member {
    name: String,
    client: u16,
    peer: u16,
    child: Option<Child>,
}

/// An etcd cluster of one or more members. See the module documentation.
#[derive(Debug)]
pub struct Etcd {
    ns: Namespaces,
    data: tempfile::TempDir,
    members: Vec<Member>,
    nodes: usize,
}

impl Etcd {
    /// Starts `members` members and links each namespace of `nodes` to them
    /// (node `i` reaches them at 198.19.`i`.1).
    pub fn start(tag: &str, members: usize, nodes: &[&str]) -> Etcd {
        let prefix = format!("rpt{}-{tag}", std::process::id() % 100_000);
        let ns = Namespaces::create(&prefix, &["etcd"]).expect("the etcd namespace");
        for (i, node) in nodes.iter().enumerate() {
            let dev = format!("n{i}");
            veth(node, "m0", None, ns.get("etcd"), &dev).expect("a management link");
            run(&[
                "ip",
                "-n",
                node,
                "addr",
                "add",
                &format!("198.19.{i}.2/30"),
                "dev",
                "m0",
            ]);
            run(&[
                "ip",
                "-n",
                ns.get("etcd"),
                "addr",
                "add",
                &format!("198.19.{i}.1/30"),
                "dev",
                &dev,
            ]);
        }
        let members = (0..members)
            .map(|i| Member {
                name: format!("m{i}"),
                client: 2379 + 100 * i as u16,
                peer: 2380 + 100 * i as u16,
                child: None,
            })
            .collect();
        let mut e = Etcd {
            ns,
            data: super::scratch(&format!("etcd-{tag}")),
            members,
            nodes: nodes.len(),
        };
        for i in 0..e.members.len() {
            e.spawn(i);
        }
        e.wait_healthy();
        e
    }

    fn dir(&self, i: usize) -> PathBuf {
        self.data.path().join(&self.members[i].name)
    }

    fn spawn(&mut self, i: usize) {
        let cluster: Vec<String> = self
            .members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer))
            .collect();
        let m = &self.members[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.data.path().join(format!("{}.log", m.name)))
            .expect("etcd log");
        let child = Command::new("ip")
            .args(["netns", "exec", self.ns.get("etcd"), "etcd"])
            .args(["--name", &m.name])
            .arg("--data-dir")
            .arg(self.dir(i))
            .args(["--listen-client-urls", &format!("http://0.0.0.0:{}", m.client)])
            .args([
                "--advertise-client-urls",
                &format!("http://127.0.0.1:{}", m.client),
            ])
            .args(["--listen-peer-urls", &format!("http://127.0.0.1:{}", m.peer)])
            .args([
                "--initial-advertise-peer-urls",
                &format!("http://127.0.0.1:{}", m.peer),
            ])
            .args(["--initial-cluster", &cluster.join(",")])
            .args(["--initial-cluster-token", "rampart-test"])
            .args(["--initial-cluster-state", "new"])
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("etcd (Debian's etcd-server package) must be installed");
        self.members[i].child = Some(child);
    }

    /// The client URLs node `node` reaches every member at.
    pub fn endpoints(&self, node: usize) -> Vec<String> {
        assert!(node < self.nodes);
        self.members
            .iter()
            .map(|m| format!("http://198.19.{node}.1:{}", m.client))
            .collect()
    }

    /// The `[cluster]` table of node `node`, named `name`.
    pub fn cluster_table(&self, node: usize, name: &str) -> String {
        let endpoints: Vec<String> = self.endpoints(node).iter().map(|e| format!("{e:?}")).collect();
        format!(
            "[cluster]\nendpoints = [{}]\nprefix = \"/rampart-test/\"\nnode = \"{name}\"\nlease_ttl_s = 10\n",
            endpoints.join(", ")
        )
    }

    /// A GET of etcd's HTTP endpoint `path` on member `i`, from its
    /// namespace: the status and body, or why it failed.
    fn http(
        &self,
        i: usize,
        method: &str,
        path: &str,
        body: Option<String>,
    ) -> Result<(u16, String), String> {
        let url = format!("http://127.0.0.1:{}{path}", self.members[i].client);
        let method = method.to_owned();
        in_ns(self.ns.get("etcd"), move || {
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(Duration::from_secs(2)))
                .build()
                .into();
            let resp = match body {
                Some(b) if method == "POST" => agent.post(&url).send(b.as_str()),
                _ => agent.get(&url).call(),
            };
            let mut resp = resp.map_err(|e| e.to_string())?;
            let status = resp.status().as_u16();
            let text = resp.body_mut().read_to_string().map_err(|e| e.to_string())?;
            Ok((status, text))
        })
    }

    /// Waits until every running member answers healthy.
    pub fn wait_healthy(&self) {
        let start = Instant::now();
        for (i, m) in self.members.iter().enumerate() {
            if m.child.is_none() {
                continue;
            }
            loop {
                match self.http(i, "GET", "/health", None) {
                    Ok((200, body)) if body.contains("true") => break,
                    other => {
                        assert!(
                            start.elapsed() < Duration::from_secs(30),
                            "etcd member {} not healthy: {other:?}\n{}",
                            m.name,
                            std::fs::read_to_string(self.data.path().join(format!("{}.log", m.name)))
                                .unwrap_or_default()
                        );
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            }
        }
    }

    /// The members' logs (for a failure's message).
    pub fn logs(&self) -> String {
        self.members
            .iter()
            .map(|m| {
                let log = std::fs::read_to_string(self.data.path().join(format!("{}.log", m.name)))
                    .unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(15).collect();
                format!(
                    "== {}\n{}",
                    m.name,
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Kills member `i` (SIGKILL).
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts member `i` again on its data.
    pub fn restart(&mut self, i: usize) {
        assert!(self.members[i].child.is_none(), "member {i} runs");
        self.spawn(i);
    }

    /// Compacts the store's history up to its current revision (on member
    /// 0), through etcd's JSON gateway; answers that revision.
    pub fn compact(&self) -> i64 {
        let (_, body) = self
            .http(0, "POST", "/v3/kv/range", Some(r#"{"key":"AA=="}"#.to_owned()))
            .expect("a range");
        let v: serde_json::Value = serde_json::from_str(&body).expect("json");
        let rev: i64 = v["header"]["revision"]
            .as_str()
            .and_then(|r| r.parse().ok())
            .expect("a revision");
        let (status, body) = self
            .http(
                0,
                "POST",
                "/v3/kv/compaction",
                Some(format!(r#"{{"revision":"{rev}","physical":true}}"#)),
            )
            .expect("a compaction");
        assert_eq!(status, 200, "{body}");
        rev
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }
}
