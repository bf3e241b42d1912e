//! AF_XDP ports on veth, in namespaces: frames cross the bridge by descriptor,
//! and after millions of them every UMEM frame is accounted for.

mod support;

use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rampart_dataplane::engine::{poll_loop, Idle, Links};
use rampart_dataplane::xdp::{Io, PortOptions};
use rampart_testkit::stages::Blind;
use support::netns::{run, Topology, PORT_A, PORT_B};

const FRAMES: u32 = 8192;

#[test]
fn frames_cross_the_bridge_and_the_pool_stays_whole() {
    rampart_testkit::require_root!("namespaces, AF_XDP");
    let topo = Topology::new("pool");
    topo.address(&topo.client, "198.18.0.1/24");
    topo.address(&topo.server, "198.18.0.2/24");
    let stop = Arc::new(AtomicBool::new(false));
    let fw = {
        let stop = Arc::clone(&stop);
        Topology::within(&topo.fw, move || {
            let mut io =
                Io::open(&[PORT_A, PORT_B], 0, FRAMES, &PortOptions::default()).expect("AF_XDP sockets");
            let infos: Vec<String> = io.ports().iter().map(|p| p.info().to_string()).collect();
            let mut stage = Blind::default();
            let report = poll_loop(&mut io, &mut stage, Idle::Busy, &stop, Links::default());
            (infos, stage.frames, report)
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    // ARP and ICMP both ways through the bridge.
    run(&[
        "ip",
        "netns",
        "exec",
        &topo.client,
        "ping",
        "-c",
        "2",
        "-i",
        "0.2",
        "-W",
        "2",
        "198.18.0.2",
    ]);

    const SENT: u64 = 2_000_000;
    let sender = Topology::within(&topo.client, move || {
        let socket = UdpSocket::bind("198.18.0.1:0").expect("bind");
        let payload = [0u8; 18];
        let mut sent = 0u64;
        while sent < SENT {
            if socket.send_to(&payload, "198.18.0.2:9").is_ok() {
                sent += 1;
            }
        }
        sent
    });
    assert_eq!(sender.join().expect("sender").expect("client namespace"), SENT);
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    let (infos, frames, report) = fw.join().expect("forwarder").expect("appliance namespace");
    eprintln!("{infos:?} {frames} frames, {report:?}");
    // The kernel's sender is not paced by the forwarder, so a few frames may
    // find the RX ring full while the forwarder is off its core (other tests
    // run beside this one); each such frame is counted by the kernel. Every
    // frame is either forwarded or counted, and millions went through.
    assert!(
        frames + report.kernel_dropped >= SENT && frames >= SENT * 9 / 10,
        "only {frames} of {SENT} frames reached the forwarder, {} counted as dropped",
        report.kernel_dropped
    );
    assert!(report.whole(), "pool not whole after {frames} frames: {report:?}");
    topo.assert_detached();
}

/// A stage that fails on its first frame, as a bug in a worker would.
struct Panics;

impl rampart_dataplane::engine::Stage for Panics {
    fn process(
        &mut self,
        _: u64,
        _: rampart_dataplane::worker::Side,
        _: &[&[u8]],
        _: &mut [rampart_dataplane::worker::Fate],
    ) {
        panic!("injected worker failure");
    }
}

#[test]
fn a_worker_panic_stops_the_engine_and_detaches_the_programs() {
    use rampart_dataplane::engine::{WorkerSpec, Workers};
    rampart_testkit::require_root!("namespaces, AF_XDP");
    let topo = Topology::new("panic");
    topo.address(&topo.client, "198.18.0.1/24");
    topo.address(&topo.server, "198.18.0.2/24");
    // Opened and started from inside the appliance's namespace, as the daemon
    // is: the worker thread inherits it, and detaching (by interface index)
    // on the way out must happen there.
    let workers = support::netns::in_ns(&topo.fw, || {
        let io = Io::open(&[PORT_A, PORT_B], 0, 4096, &PortOptions::default()).expect("AF_XDP sockets");
        let spec = WorkerSpec {
            io,
            stage: Panics,
            core: None,
            handoff: None,
            bell: None,
            stats: None,
        };
        Workers::start(vec![spec], Idle::Adaptive).expect("start")
    });
    assert!(!topo.xdp_programs().is_empty(), "programs attached while running");
    // The first frame (an ARP request or the ping) makes the worker panic.
    let _ = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &topo.client,
            "ping",
            "-c",
            "1",
            "-W",
            "1",
            "198.18.0.2",
        ])
        .output();
    let never = AtomicBool::new(false);
    let exits = workers.wait(&never);
    assert_eq!(exits.len(), 1);
    match &exits[0].result {
        Err(msg) => assert!(msg.contains("injected worker failure"), "{msg}"),
        Ok(_) => panic!("the worker should have panicked"),
    }
    topo.assert_detached();
}
