//! Where replayed frames come from and go to.
//!
//! A [`Port`] receives bursts of frames into a [`Batch`] and transmits frames.
//! The worker never sees a port: [`forward`] runs
//! [`Worker::process_batch`] on a batch received from one port and transmits
//! each forwarded frame on the other. The port here is a capture file
//! ([`super::pcap`]); the daemon's ports are AF_XDP sockets, where a batch is
//! a burst of UMEM descriptors instead.

use std::io;
use std::ops::Range;

use rampart_dataplane::reason::DropReason;
use rampart_dataplane::snapshot::Snapshot;
use rampart_dataplane::worker::{Fate, Side, Worker, BATCH};

/// The largest frame a batch holds (a 1500-byte MTU with two VLAN tags, and
/// room for jumbo frames up to 9216 bytes).
pub const MAX_FRAME: usize = 9216;

/// A burst of received frames with their receive times (nanoseconds), in
/// buffers allocated once and reused.
#[derive(Debug)]
pub struct Batch {
    bufs: Vec<Vec<u8>>,
    times: [u64; BATCH],
    len: usize,
}

impl Default for Batch {
    fn default() -> Self {
        Batch::new()
    }
}

impl Batch {
    pub fn new() -> Batch {
        Batch {
            bufs: (0..BATCH).map(|_| Vec::with_capacity(2048)).collect(),
            times: [0; BATCH],
            len: 0,
        }
    }
    pub fn clear(&mut self) {
        self.len = 0;
    }
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    pub fn is_full(&self) -> bool {
        self.len == BATCH
    }
    /// Appends a copy of `frame` (cut at [`MAX_FRAME`]); `false` when full.
    pub fn push(&mut self, frame: &[u8], time: u64) -> bool {
        if self.is_full() {
            return false;
        }
        let buf = &mut self.bufs[self.len];
        buf.clear();
        buf.extend_from_slice(&frame[..frame.len().min(MAX_FRAME)]);
        self.times[self.len] = time;
        self.len += 1;
        true
    }
    pub fn frame(&self, i: usize) -> &[u8] {
        &self.bufs[i]
    }
    pub fn time(&self, i: usize) -> u64 {
        self.times[i]
    }
    /// The frames as the slice of slices `process_batch` takes.
    pub fn frames(&self) -> [&[u8]; BATCH] {
        std::array::from_fn(|i| {
            if i < self.len {
                self.bufs[i].as_slice()
            } else {
                &[]
            }
        })
    }
}

/// A source and sink of frames.
pub trait Port {
    /// Replaces the batch's contents with up to a batch of received frames;
    /// an empty batch means nothing is ready (or, for a file, the end).
    fn receive(&mut self, batch: &mut Batch) -> io::Result<()>;
    /// Sends one frame; `time` is when it was received (nanoseconds).
    fn transmit(&mut self, frame: &[u8], time: u64) -> io::Result<()>;
}

/// The driver step every port shares: runs `batch[frames]`, received on `from`,
/// through the worker at time `now`, then transmits each forwarded frame on `to`
/// and each dropped one on `dropped`, when given. (A bridge passes the other
/// side's port as `to`; `rampart replay` passes the capture of allowed frames.)
#[expect(
    clippy::too_many_arguments,
    reason = "the worker, its inputs and the two sinks"
)]
pub fn forward(
    worker: &mut Worker,
    snap: &Snapshot,
    now: u64,
    from: Side,
    batch: &Batch,
    frames: Range<usize>,
    to: &mut dyn Port,
    mut dropped: Option<&mut dyn Port>,
) -> io::Result<()> {
    let all = batch.frames();
    let mut out = [Fate::Drop(DropReason::Denied); BATCH];
    let n = frames.len();
    worker.process_batch(snap, now, from, &all[frames.clone()], &mut out[..n]);
    for (i, action) in frames.zip(&out[..n]) {
        match action {
            Fate::Forward(_) => to.transmit(batch.frame(i), batch.time(i))?,
            Fate::Drop(_) => {
                if let Some(port) = dropped.as_deref_mut() {
                    port.transmit(batch.frame(i), batch.time(i))?;
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use super::*;

    /// A port backed by two queues: frames pushed with [`MemoryPort::inject`] are
    /// received, transmitted frames collect in [`MemoryPort::sent`].
    #[derive(Debug, Default)]
    pub struct MemoryPort {
        pub rx: VecDeque<(Vec<u8>, u64)>,
        pub sent: Vec<Vec<u8>>,
    }

    impl MemoryPort {
        pub fn inject(&mut self, frame: Vec<u8>, time: u64) {
            self.rx.push_back((frame, time));
        }
    }

    impl Port for MemoryPort {
        fn receive(&mut self, batch: &mut Batch) -> io::Result<()> {
            batch.clear();
            while !batch.is_full() {
                let Some((frame, time)) = self.rx.pop_front() else {
                    break;
                };
                batch.push(&frame, time);
            }
            Ok(())
        }
        fn transmit(&mut self, frame: &[u8], _time: u64) -> io::Result<()> {
            self.sent.push(frame.to_vec());
            Ok(())
        }
    }

    #[test]
    fn memory_port_delivers_in_bursts_in_order() {
        let mut port = MemoryPort::default();
        for i in 0..BATCH + 3 {
            port.inject(vec![i as u8; 60], i as u64);
        }
        let mut batch = Batch::new();
        port.receive(&mut batch).unwrap();
        assert_eq!(batch.len(), BATCH);
        assert_eq!((batch.frame(5)[0], batch.time(5)), (5, 5));
        port.receive(&mut batch).unwrap();
        assert_eq!(batch.len(), 3);
        assert_eq!(batch.frames()[2][0], (BATCH + 2) as u8);
        port.receive(&mut batch).unwrap();
        assert!(batch.is_empty());
        port.transmit(&[1, 2, 3], 0).unwrap();
        assert_eq!(port.sent, vec![vec![1, 2, 3]]);
    }

    /// A bridge of memory ports with an empty snapshot that forwards
    /// unprotected traffic: well-formed frames cross, a malformed one is dropped.
    #[test]
    fn forward_sends_each_frame_where_its_action_says() {
        use rampart_dataplane::snapshot::{Settings, Timeouts};
        use rampart_dataplane::worker::Config;
        use rampart_testkit::frames::Spec;

        let t = 60;
        let timeouts = Timeouts {
            tcp_syn_sent: t,
            tcp_syn_received: t,
            tcp_established: t,
            tcp_closing: t,
            tcp_time_wait: t,
            tcp_reset: t,
            udp_unreplied: t,
            udp_replied: t,
            icmp_echo: t,
            other: t,
        };
        let mut snap = Snapshot::new(
            1,
            Settings {
                forward_unprotected: true,
                forward_non_ip: false,
                tcp_pickup: false,
                revalidate: true,
                fragment_timeout_secs: 2,
                flow_table_capacity: 1024,
                timeouts,
            },
        );
        snap.set_vpc(None, 0);
        let mut worker = Worker::new(Config::for_capacity(1024));
        let good = Spec::udp("198.18.0.1".parse().unwrap(), 1, "198.18.0.2".parse().unwrap(), 2).build();
        let mut a = MemoryPort::default();
        a.inject(good.clone(), 1);
        a.inject(good[..20].to_vec(), 2);
        a.inject(good.clone(), 3);
        let (mut b, mut dropped) = (MemoryPort::default(), MemoryPort::default());
        let mut batch = Batch::new();
        a.receive(&mut batch).unwrap();
        forward(
            &mut worker,
            &snap,
            1,
            Side::A,
            &batch,
            0..3,
            &mut b,
            Some(&mut dropped),
        )
        .unwrap();
        assert_eq!(b.sent, vec![good.clone(), good.clone()]);
        assert_eq!(dropped.sent, vec![good[..20].to_vec()]);
        // A sub-range, and no sink for drops.
        forward(&mut worker, &snap, 1, Side::A, &batch, 1..2, &mut b, None).unwrap();
        assert_eq!(b.sent.len(), 2);
        assert_eq!(worker.counters().drop_count(DropReason::Ipv4Truncated), 2);
    }
}
