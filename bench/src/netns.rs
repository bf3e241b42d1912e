//! Network namespaces joined by veth pairs, for the benchmarks, the namespace
//! tests and (later) the generator's own topologies. Namespaces carry a
//! prefix unique to the process and are removed when [`Namespaces`] is
//! dropped. Needs root.

use std::fs::File;
use std::process::Command;
use std::thread;

use anyhow::{bail, Context, Result};
use nix::sched::{setns, CloneFlags};

/// Runs `ip ARGS`, failing with its message.
pub fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip").args(args).output().context("running ip")?;
    if !out.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Namespaces named `<prefix>-<role>`, removed on drop.
#[derive(Debug)]
pub struct Namespaces {
    /// (role, name)
    names: Vec<(String, String)>,
}

impl Namespaces {
    /// Creates one namespace per role, with loopback up. `prefix` should be
    /// unique to the caller (include the process id); a namespace of the same
    /// name left by a killed earlier run is replaced.
    pub fn create(prefix: &str, roles: &[&str]) -> Result<Namespaces> {
        let mut ns = Namespaces { names: Vec::new() };
        for role in roles {
            let name = format!("{prefix}-{role}");
            let _ = Command::new("ip").args(["netns", "del", &name]).output();
            ip(&["netns", "add", &name]).context("creating a namespace (root needed)")?;
            ns.names.push(((*role).to_owned(), name.clone()));
            ip(&["-n", &name, "link", "set", "lo", "up"])?;
        }
        Ok(ns)
    }

    /// The namespace of `role` (one of those it was created with).
    pub fn get(&self, role: &str) -> &str {
        self.names
            .iter()
            .find(|(r, _)| r == role)
            .map(|(_, name)| name.as_str())
            .unwrap_or_else(|| panic!("no namespace for role {role:?}"))
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for (_, name) in &self.names {
            let _ = Command::new("ip").args(["netns", "del", name]).output();
        }
    }
}

/// A veth pair `a` (in `ns_a`, with MAC `mac_a` if given) <-> `b` (in `ns_b`),
/// both up, with the offloads that hand XDP frames larger than the MTU (TSO,
/// GSO, GRO) or without checksums (TX/RX checksum offload) turned off, as on a
/// real deployment.
pub fn veth(ns_a: &str, a: &str, mac_a: Option<&str>, ns_b: &str, b: &str) -> Result<()> {
    veth_queues(ns_a, a, mac_a, ns_b, b, 1)
}

/// [`veth`] with `queues` receive and transmit queues on both ends (the
/// sender's flow hash picks the queue a frame arrives on at the peer).
pub fn veth_queues(ns_a: &str, a: &str, mac_a: Option<&str>, ns_b: &str, b: &str, queues: u32) -> Result<()> {
    let q = queues.to_string();
    let mut args = vec!["-n", ns_a, "link", "add", a];
    if let Some(mac) = mac_a {
        args.extend(["address", mac]);
    }
    args.extend(["numtxqueues", &q, "numrxqueues", &q]);
    args.extend([
        "type",
        "veth",
        "peer",
        "name",
        b,
        "numtxqueues",
        &q,
        "numrxqueues",
        &q,
        "netns",
        ns_b,
    ]);
    ip(&args)?;
    for (ns, dev) in [(ns_a, a), (ns_b, b)] {
        // Best effort: ethtool may be missing, and veth accepts these anyway.
        let _ = Command::new("ip")
            .args([
                "netns", "exec", ns, "ethtool", "-K", dev, "tso", "off", "gso", "off", "gro", "off", "tx",
                "off", "rx", "off",
            ])
            .output();
        ip(&["-n", ns, "link", "set", dev, "up"])?;
    }
    Ok(())
}

/// Runs `f` in a new thread that joined namespace `ns` (pinned to `core` if
/// given). Sockets it creates stay in `ns` wherever they are used later.
pub fn spawn_in<T: Send + 'static>(
    ns: &str,
    core: Option<usize>,
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> thread::JoinHandle<Result<T>> {
    let path = format!("/run/netns/{ns}");
    thread::spawn(move || {
        let file = File::open(&path).with_context(|| path.clone())?;
        setns(&file, CloneFlags::CLONE_NEWNET).with_context(|| format!("setns {path}"))?;
        if let Some(core) = core {
            core_affinity::set_for_current(core_affinity::CoreId { id: core });
        }
        f()
    })
}
