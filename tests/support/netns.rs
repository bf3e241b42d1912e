//! Test networks in namespaces: a client network and a server network with the
//! appliance's namespace between them, joined by veth pairs:
//!
//! ```text
//!  <prefix>-c            <prefix>-fw             <prefix>-s
//!  c0 ================== a0    [rampart]    b0 ================== s0
//!  198.18.0.0/24 and 2001:db8::/64 on both sides (one L2 segment across the bridge)
//! ```
//!
//! Names carry a prefix unique to the test and the process; everything is
//! removed when the [`Topology`] is dropped. Only 198.18.0.0/15 and
//! 2001:db8::/32 addresses are used.

use std::fs::File;
use std::process::{Command, Output};
use std::thread;

use nix::sched::{setns, CloneFlags};

/// Runs a command, panicking with its output if it fails.
pub fn run(cmd: &[&str]) -> Output {
    let out = Command::new(cmd[0])
        .args(&cmd[1..])
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", cmd.join(" ")));
    assert!(
        out.status.success(),
        "{} failed: {}{}",
        cmd.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Whether the test can build networks here (root, `ip netns`).
pub fn available() -> bool {
    Command::new("ip")
        .args(["netns", "add", "rpt-probe-ns"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
        && Command::new("ip")
            .args(["netns", "del", "rpt-probe-ns"])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
}

/// The three namespaces and the two veth pairs.
#[derive(Debug)]
pub struct Topology {
    pub client: String,
    pub fw: String,
    pub server: String,
}

/// The appliance's ports in the `fw` namespace.
pub const PORT_A: &str = "a0";
pub const PORT_B: &str = "b0";

impl Topology {
    /// Creates the namespaces and links. `tag` names the test (at most 6 chars).
    pub fn new(tag: &str) -> Topology {
        let prefix = format!("rpt{}-{tag}", std::process::id() % 100_000);
        let t = Topology {
            client: format!("{prefix}-c"),
            fw: format!("{prefix}-fw"),
            server: format!("{prefix}-s"),
        };
        for ns in [&t.client, &t.fw, &t.server] {
            // A namespace left by a killed earlier run with the same pid.
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
            run(&["ip", "netns", "add", ns]);
            run(&["ip", "-n", ns, "link", "set", "lo", "up"]);
        }
        run(&[
            "ip",
            "-n",
            &t.client,
            "link",
            "add",
            "c0",
            "address",
            "02:00:00:00:0a:01",
            "type",
            "veth",
            "peer",
            "name",
            PORT_A,
            "netns",
            &t.fw,
        ]);
        run(&[
            "ip",
            "-n",
            &t.server,
            "link",
            "add",
            "s0",
            "address",
            "02:00:00:00:0b:01",
            "type",
            "veth",
            "peer",
            "name",
            PORT_B,
            "netns",
            &t.fw,
        ]);
        for (ns, dev) in [
            (&t.client, "c0"),
            (&t.server, "s0"),
            (&t.fw, PORT_A),
            (&t.fw, PORT_B),
        ] {
            // Offloads hand XDP frames larger than the MTU (GSO, GRO) or with
            // checksums left to hardware; turn them off as a real deployment does.
            let _ = Command::new("ip")
                .args([
                    "netns", "exec", ns, "ethtool", "-K", dev, "tso", "off", "gso", "off", "gro", "off",
                    "tx", "off", "rx", "off",
                ])
                .output();
            run(&["ip", "-n", ns, "link", "set", dev, "up"]);
        }
        t
    }

    /// Adds an address (with prefix length) to the client's or server's link.
    pub fn address(&self, ns: &str, cidr: &str) {
        let dev = if ns == self.client { "c0" } else { "s0" };
        let mut cmd = vec!["ip", "-n", ns, "addr", "add", cidr, "dev", dev];
        if cidr.contains(':') {
            cmd.push("nodad");
        }
        run(&cmd);
    }

    /// Runs `f` in a thread that has joined namespace `ns`.
    pub fn within<T: Send + 'static>(
        ns: &str,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> thread::JoinHandle<T> {
        let path = format!("/run/netns/{ns}");
        thread::spawn(move || {
            let file = File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
            setns(&file, CloneFlags::CLONE_NEWNET).unwrap_or_else(|e| panic!("setns {path}: {e}"));
            f()
        })
    }

    /// The XDP programs attached to the appliance's ports (empty when none).
    pub fn xdp_programs(&self) -> String {
        let out = run(&["ip", "-n", &self.fw, "-d", "link", "show"]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.contains("xdp") || l.contains("prog/xdp"))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        for ns in [&self.client, &self.fw, &self.server] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}
