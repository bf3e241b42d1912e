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

use std::process::{Command, Output};
use std::thread;

use rampart_bench::netns::{spawn_in, veth_queues, Namespaces};

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

/// The three namespaces and the two veth pairs (removed when dropped).
#[derive(Debug)]
pub struct Topology {
    pub client: String,
    pub fw: String,
    pub server: String,
    _ns: Namespaces,
}

/// The appliance's ports in the `fw` namespace.
pub const PORT_A: &str = "a0";
pub const PORT_B: &str = "b0";

impl Topology {
    /// Creates the namespaces and links. `tag` names the test (at most 6 chars).
    pub fn new(tag: &str) -> Topology {
        Topology::with_queues(tag, 1)
    }

    /// [`Topology::new`] with `queues` queues on every link.
    pub fn with_queues(tag: &str, queues: u32) -> Topology {
        let prefix = format!("rpt{}-{tag}", std::process::id() % 100_000);
        let ns = Namespaces::create(&prefix, &["c", "fw", "s"]).expect("namespaces");
        veth_queues(
            ns.get("c"),
            "c0",
            Some("02:00:00:00:0a:01"),
            ns.get("fw"),
            PORT_A,
            queues,
        )
        .expect("client link");
        veth_queues(
            ns.get("s"),
            "s0",
            Some("02:00:00:00:0b:01"),
            ns.get("fw"),
            PORT_B,
            queues,
        )
        .expect("server link");
        Topology {
            client: ns.get("c").to_owned(),
            fw: ns.get("fw").to_owned(),
            server: ns.get("s").to_owned(),
            _ns: ns,
        }
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

    /// Runs `f` in a thread that has joined namespace `ns`; the handle's
    /// result is an error only if joining the namespace failed.
    pub fn within<T: Send + 'static>(
        ns: &str,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> thread::JoinHandle<anyhow::Result<T>> {
        spawn_in(ns, None, move || Ok(f()))
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

    /// Asserts that no XDP program is left on the appliance's ports.
    #[track_caller]
    pub fn assert_detached(&self) {
        let left = self.xdp_programs();
        assert!(left.is_empty(), "XDP left attached: {left}");
    }
}

/// Runs `f` in namespace `ns` and returns its result. Sockets created there
/// stay in that namespace wherever they are used afterwards.
pub fn in_ns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    Topology::within(ns, f)
        .join()
        .expect("thread in namespace")
        .expect("joining the namespace")
}

/// A TCP service in namespace `ns` on `addr`: each connection gets `banner`
/// (if not empty), then everything it sends is echoed back.
pub fn serve_tcp(ns: &str, addr: &str, banner: &'static str) {
    use std::io::{Read, Write};
    let addr: std::net::SocketAddr = addr.parse().expect("address");
    let listener =
        in_ns(ns, move || std::net::TcpListener::bind(addr)).unwrap_or_else(|e| panic!("bind {addr}: {e}"));
    thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            thread::spawn(move || {
                if !banner.is_empty() && conn.write_all(banner.as_bytes()).is_err() {
                    return;
                }
                let mut buf = [0u8; 1024];
                while let Ok(n) = conn.read(&mut buf) {
                    if n == 0 || conn.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
}

/// A UDP echo service in namespace `ns` on `addr`.
pub fn serve_udp(ns: &str, addr: &str) {
    let addr: std::net::SocketAddr = addr.parse().expect("address");
    let socket =
        in_ns(ns, move || std::net::UdpSocket::bind(addr)).unwrap_or_else(|e| panic!("bind {addr}: {e}"));
    thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while let Ok((n, from)) = socket.recv_from(&mut buf) {
            let _ = socket.send_to(&buf[..n], from);
        }
    });
}

/// A TCP connection from `src` (an address of namespace `ns`) to `dst`,
/// or the error (a timeout when a firewall drops the SYN).
pub fn connect(
    ns: &str,
    src: &str,
    dst: &str,
    timeout: std::time::Duration,
) -> std::io::Result<std::net::TcpStream> {
    use socket2::{Domain, Socket, Type};
    let src: std::net::SocketAddr = format!("{}:0", bracket(src)).parse().expect("source");
    let dst: std::net::SocketAddr = dst.parse().expect("destination");
    let socket = in_ns(ns, move || {
        Socket::new(Domain::for_address(dst), Type::STREAM, None)
    })?;
    socket.bind(&src.into())?;
    socket.connect_timeout(&dst.into(), timeout)?;
    let stream: std::net::TcpStream = socket.into();
    stream.set_read_timeout(Some(timeout))?;
    Ok(stream)
}

/// Sends one UDP datagram from `src` to `dst` and waits for the answer.
pub fn udp_exchange(
    ns: &str,
    src: &str,
    dst: &str,
    msg: &[u8],
    timeout: std::time::Duration,
) -> std::io::Result<Vec<u8>> {
    let src = format!("{}:0", bracket(src));
    let socket = in_ns(ns, move || std::net::UdpSocket::bind(src))?;
    socket.set_read_timeout(Some(timeout))?;
    socket.send_to(msg, dst)?;
    let mut buf = [0u8; 2048];
    let (n, _) = socket.recv_from(&mut buf)?;
    Ok(buf[..n].to_vec())
}

fn bracket(addr: &str) -> String {
    if addr.contains(':') {
        format!("[{addr}]")
    } else {
        addr.to_owned()
    }
}

/// Whether one ping from namespace `ns` to `dst` is answered within a second.
pub fn ping(ns: &str, dst: &str) -> bool {
    Command::new("ip")
        .args(["netns", "exec", ns, "ping", "-c", "1", "-W", "1", dst])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}
