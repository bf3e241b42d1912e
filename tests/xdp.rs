//! AF_XDP ports on veth, in namespaces: frames cross the bridge by descriptor,
//! and after millions of them every UMEM frame is accounted for.

mod support;

use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rampart_dataplane::engine::{poll_loop, Idle, Passthrough};
use rampart_dataplane::xdp::{Io, PortOptions};
use support::netns::{run, Topology, PORT_A, PORT_B};

const FRAMES: u32 = 8192;

#[test]
fn frames_cross_the_bridge_and_the_pool_stays_whole() {
    if !support::netns::available() {
        eprintln!("skipped: needs root and ip netns");
        return;
    }
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
            let mut stage = Passthrough::default();
            let report = poll_loop(&mut io, &mut stage, Idle::Busy, &stop);
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
    assert_eq!(sender.join().expect("sender"), SENT);
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    let (infos, frames, report) = fw.join().expect("forwarder");
    eprintln!("{infos:?} {frames} frames, {report:?}");
    assert!(
        frames >= SENT,
        "only {frames} of {SENT} frames reached the forwarder"
    );
    assert!(report.whole(), "pool not whole after {frames} frames: {report:?}");
    assert_eq!(report.total, FRAMES);
    assert!(
        topo.xdp_programs().is_empty(),
        "XDP left attached: {}",
        topo.xdp_programs()
    );
}
