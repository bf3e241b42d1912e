//! Flow affinity between workers: every frame is decided by the one worker
//! that owns its flow, so both directions of a connection meet the same
//! connection table.
//!
//! Worker `i` serves queue `i` of every port. Which queue a frame arrives on is
//! the NIC's choice (its RSS hash), so the owner of a frame is defined here, by
//! [`owner`]: the symmetric Toeplitz hash (key `6d5a` repeated) of the frame's
//! source and destination IP addresses, the low 7 bits of it indexing a
//! 128-entry table filled round-robin over the workers. For an ICMP error the
//! addresses are those of the packet it quotes, so the error meets the
//! connection it is about. Addresses only, not ports: fragments after the
//! first carry no ports and must meet the first fragment's verdict.
//!
//! `scripts/rss-symmetric.sh` programs a NIC to compute exactly that (the same
//! key, hashing on addresses only for TCP, UDP and SCTP over IPv4 and IPv6, an
//! indirection table spread equally): then every frame arrives on its owner's
//! queue and nothing is handed over. Where the NIC cannot (veth, a NIC without
//! a programmable key, a queue count that does not divide its table), a frame
//! that arrives on another worker's queue is copied into a parcel and passed
//! to its owner over that owner's bounded ring ([`Handoff::send`]); the owner
//! copies it into a frame of its own UMEM and decides it as if it had
//! received it. Frames that are not IP (ARP) are stateless and stay where they
//! arrive.
//!
//! Nothing is allocated after start: each worker's mailbox holds a fixed set
//! of parcels that circulate between its `spare` and `full` rings (crossbeam
//! `ArrayQueue`s). When a mailbox has no spare parcel the frame is dropped and
//! counted. A worker asleep in `poll(2)` (adaptive idle) is woken through its
//! eventfd, at most once per burst of parcels.

use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crossbeam::queue::ArrayQueue;
use crossbeam::utils::CachePadded;
use nix::sys::eventfd::{EfdFlags, EventFd};

use crate::stats::Counter;
use crate::wire::{self, IcmpKind, Network};
use crate::worker::{Side, BATCH};

/// The largest frame a parcel carries (a UMEM frame).
pub const PARCEL_BYTES: usize = 2048;
/// Entries of the indirection table the owner function (and the RSS script)
/// assumes.
pub const INDIRECTION: usize = 128;

/// The symmetric RSS key: `6d5a` repeated (40 bytes on the NIC). Swapping two
/// 16-bit-aligned fields leaves a Toeplitz hash with this key unchanged.
pub const RSS_KEY: [u8; 40] = {
    let mut k = [0u8; 40];
    let mut i = 0;
    while i < 40 {
        k[i] = if i % 2 == 0 { 0x6d } else { 0x5a };
        i += 1;
    }
    k
};

/// Toeplitz by table: with a key of period 16 bits, the contribution of an
/// input byte depends only on its value and whether it sits at an even or an
/// odd offset.
const TOEPLITZ: [[u32; 256]; 2] = {
    let key: u64 = 0x6d5a_6d5a_6d5a_6d5a;
    let mut t = [[0u32; 256]; 2];
    let mut parity = 0;
    while parity < 2 {
        let mut byte = 0;
        while byte < 256 {
            let mut h = 0u32;
            let mut bit = 0;
            while bit < 8 {
                if byte & (0x80 >> bit) != 0 {
                    h ^= ((key << (parity * 8 + bit)) >> 32) as u32;
                }
                bit += 1;
            }
            t[parity][byte] = h;
            byte += 1;
        }
        parity += 1;
    }
    t
};

/// The symmetric Toeplitz hash of `bytes` (see [`RSS_KEY`]).
pub fn toeplitz_symmetric(bytes: &[u8]) -> u32 {
    bytes
        .iter()
        .enumerate()
        .fold(0, |h, (i, b)| h ^ TOEPLITZ[i % 2][usize::from(*b)])
}

/// The RSS hash a NIC programmed by `scripts/rss-symmetric.sh` gives a packet
/// between these addresses (IPv4 in the low 32 bits when `v6` is false).
pub fn address_hash(src: u128, dst: u128, v6: bool) -> u32 {
    if v6 {
        let mut b = [0u8; 32];
        b[..16].copy_from_slice(&src.to_be_bytes());
        b[16..].copy_from_slice(&dst.to_be_bytes());
        toeplitz_symmetric(&b)
    } else {
        let mut b = [0u8; 8];
        b[..4].copy_from_slice(&(src as u32).to_be_bytes());
        b[4..].copy_from_slice(&(dst as u32).to_be_bytes());
        toeplitz_symmetric(&b)
    }
}

/// The worker (of `workers`) that owns `frame`'s flow, or `None` for frames
/// any worker may decide (not IP, or malformed: dropped where they arrive).
pub fn owner(frame: &[u8], workers: usize) -> Option<usize> {
    let p = wire::parse(frame).ok()?;
    let v6 = match p.network {
        Network::Ipv4 => false,
        Network::Ipv6 => true,
        Network::Arp | Network::Other(_) => return None,
    };
    let (src, dst) = match p.icmp {
        IcmpKind::Error(Some(quoted)) => (quoted.src, quoted.dst),
        _ => (p.src, p.dst),
    };
    let slot = address_hash(src, dst, v6) as usize % INDIRECTION;
    Some(slot % workers)
}

/// Wakes a worker asleep in `poll(2)` (adaptive idle): another worker passing
/// it frames, or the control thread publishing a snapshot it must adopt.
///
/// The sleeper announces itself ([`Doorbell::announce`]) before its last look
/// for work; a ringer publishes its work before [`Doorbell::ring`]. Both sides
/// use sequentially consistent operations, so either the sleeper sees the
/// work or the ringer sees the announcement and writes the eventfd.
#[derive(Debug)]
pub struct Doorbell {
    fd: EventFd,
    sleeping: AtomicBool,
}

impl Doorbell {
    pub fn new() -> std::io::Result<Doorbell> {
        Ok(Doorbell {
            fd: EventFd::from_value_and_flags(0, EfdFlags::EFD_NONBLOCK | EfdFlags::EFD_CLOEXEC)?,
            sleeping: AtomicBool::new(false),
        })
    }

    /// Wakes the worker if it sleeps (a system call only then).
    pub fn ring(&self) {
        std::sync::atomic::fence(Ordering::SeqCst);
        if self.sleeping.swap(false, Ordering::SeqCst) {
            let _ = self.fd.write(1);
        }
    }

    /// The worker is about to sleep (then looks for work once more).
    pub fn announce(&self) {
        self.sleeping.store(true, Ordering::SeqCst);
        std::sync::atomic::fence(Ordering::SeqCst);
    }

    /// The worker is awake: clears the announcement and any wake-up.
    pub fn awake(&self) {
        self.sleeping.store(false, Ordering::SeqCst);
        let _ = self.fd.read();
    }

    /// Readable when rung while asleep.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// A frame on its way to its owner.
#[derive(Debug)]
struct Parcel {
    side: Side,
    len: u16,
    data: Box<[u8; PARCEL_BYTES]>,
}

/// A worker's hand-off counters, written by that worker alone.
#[derive(Debug, Default)]
pub struct HandoffCounters {
    /// Frames this worker passed to their owners.
    pub sent: Counter,
    /// Frames other workers passed to this one and it decided.
    pub received: Counter,
    /// Frames this worker could not pass: the owner's mailbox had no spare
    /// parcel (the owner is overloaded or stalled).
    pub mailbox_full: Counter,
    /// Frames passed to this worker that found no free frame in its UMEM.
    pub no_frame: Counter,
}

/// What [`HandoffCounters`] held at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HandoffStats {
    pub sent: u64,
    pub received: u64,
    pub mailbox_full: u64,
    pub no_frame: u64,
}

impl HandoffCounters {
    /// The current values.
    pub fn read(&self) -> HandoffStats {
        HandoffStats {
            sent: self.sent.get(),
            received: self.received.get(),
            mailbox_full: self.mailbox_full.get(),
            no_frame: self.no_frame.get(),
        }
    }
}

/// One worker's incoming ring, its spare parcels, and its wake-up.
#[derive(Debug)]
struct Mailbox {
    full: ArrayQueue<Parcel>,
    spare: ArrayQueue<Parcel>,
    bell: Arc<Doorbell>,
    counters: CachePadded<HandoffCounters>,
}

/// A worker's end of the hand-off: it sends to any worker's mailbox and
/// receives from its own.
#[derive(Debug)]
pub struct Handoff {
    me: usize,
    boxes: Arc<[Mailbox]>,
    /// Mailboxes this worker sent to since its last [`Handoff::flush`].
    pending: u64,
    sent: u64,
    mailbox_full: u64,
}

/// Read access to every worker's hand-off counters (for the control thread).
#[derive(Clone, Debug)]
pub struct HandoffView(Arc<[Mailbox]>);

impl HandoffView {
    /// Each worker's counters, in worker order.
    pub fn stats(&self) -> Vec<HandoffStats> {
        self.0.iter().map(|b| b.counters.read()).collect()
    }
}

impl Handoff {
    /// The ends for the workers whose doorbells are `bells`, each mailbox
    /// holding `depth` parcels (allocated here, once), and a view of their
    /// counters.
    pub fn group(bells: &[Arc<Doorbell>], depth: usize) -> (Vec<Handoff>, HandoffView) {
        let workers = bells.len();
        assert!(workers <= 64, "the pending-wake mask holds 64 workers");
        let mut boxes = Vec::with_capacity(workers);
        for bell in bells {
            let spare = ArrayQueue::new(depth);
            for _ in 0..depth {
                let parcel = Parcel {
                    side: Side::A,
                    len: 0,
                    data: Box::new([0; PARCEL_BYTES]),
                };
                spare.push(parcel).expect("room for every parcel");
            }
            boxes.push(Mailbox {
                full: ArrayQueue::new(depth),
                spare,
                bell: Arc::clone(bell),
                counters: CachePadded::new(HandoffCounters::default()),
            });
        }
        let boxes: Arc<[Mailbox]> = boxes.into();
        let ends = (0..workers)
            .map(|me| Handoff {
                me,
                boxes: Arc::clone(&boxes),
                pending: 0,
                sent: 0,
                mailbox_full: 0,
            })
            .collect();
        (ends, HandoffView(boxes))
    }

    /// This worker's index.
    pub fn me(&self) -> usize {
        self.me
    }

    /// The owner of `frame` if it is another worker.
    pub fn elsewhere(&self, frame: &[u8]) -> Option<usize> {
        owner(frame, self.boxes.len()).filter(|o| *o != self.me)
    }

    /// Copies `frame`, received on `side`, to worker `to`'s mailbox; false
    /// (and counted) when that mailbox has no spare parcel.
    pub fn send(&mut self, to: usize, side: Side, frame: &[u8]) -> bool {
        let mailbox = &self.boxes[to];
        let len = frame.len().min(PARCEL_BYTES);
        let Some(mut parcel) = mailbox.spare.pop() else {
            self.mailbox_full += 1;
            return false;
        };
        parcel.side = side;
        parcel.len = len as u16;
        parcel.data[..len].copy_from_slice(&frame[..len]);
        if let Err(parcel) = mailbox.full.push(parcel) {
            // Cannot happen (as many slots as parcels); keep the parcel anyway.
            let _ = mailbox.spare.push(parcel);
            self.mailbox_full += 1;
            return false;
        }
        self.sent += 1;
        self.pending |= 1 << to;
        true
    }

    /// Wakes the workers sent to since the last flush if they sleep, and
    /// publishes the sender's counters. Once per burst.
    pub fn flush(&mut self) {
        let mut pending = std::mem::take(&mut self.pending);
        while pending != 0 {
            let to = pending.trailing_zeros() as usize;
            pending &= pending - 1;
            self.boxes[to].bell.ring();
        }
        let c = &self.boxes[self.me].counters;
        if self.sent != 0 || self.mailbox_full != 0 {
            c.sent.add(std::mem::take(&mut self.sent));
            c.mailbox_full.add(std::mem::take(&mut self.mailbox_full));
        }
    }

    /// Takes up to one burst of frames passed to this worker, giving each to
    /// `take` with the side it arrived on; `take` returns false when it could
    /// not keep the frame (no UMEM frame free). Returns how many were taken.
    pub fn receive(&mut self, mut take: impl FnMut(Side, &[u8]) -> bool) -> usize {
        let mailbox = &self.boxes[self.me];
        let (mut kept, mut lost) = (0, 0);
        for _ in 0..BATCH {
            let Some(parcel) = mailbox.full.pop() else { break };
            if take(parcel.side, &parcel.data[..usize::from(parcel.len)]) {
                kept += 1;
            } else {
                lost += 1;
            }
            let _ = mailbox.spare.push(parcel);
        }
        if kept + lost > 0 {
            mailbox.counters.received.add(kept);
            mailbox.counters.no_frame.add(lost);
        }
        kept as usize
    }

    /// Before sleeping, after [`Doorbell::announce`]: whether parcels wait.
    pub fn has_parcels(&self) -> bool {
        !self.boxes[self.me].full.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::headers::TCP_SYN;
    use rampart_testkit::frames::{arp_request, Spec, L4};
    use std::net::IpAddr;

    /// Toeplitz bit by bit, for any key: the definition.
    fn toeplitz(key: &[u8], input: &[u8]) -> u32 {
        let mut window = u32::from_be_bytes([key[0], key[1], key[2], key[3]]);
        let mut next = 32;
        let mut h = 0;
        for byte in input {
            for bit in 0..8 {
                if byte & (0x80 >> bit) != 0 {
                    h ^= window;
                }
                let k = key[next / 8] & (0x80 >> (next % 8)) != 0;
                window = (window << 1) | u32::from(k);
                next += 1;
            }
        }
        h
    }

    /// The verification key and vectors of Microsoft's RSS documentation
    /// (IPv4, addresses only), to prove the reference is Toeplitz.
    #[test]
    fn the_reference_matches_the_published_vectors() {
        let key = [
            0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3, 0x8f, 0xb0,
            0xd0, 0xca, 0x2b, 0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3, 0x80, 0x30, 0xf2, 0x0c,
            0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa,
        ];
        for (src, dst, want) in [
            ([66, 9, 149, 187], [161, 142, 100, 80], 0x323e_8fc2u32),
            ([199, 92, 111, 2], [65, 69, 140, 83], 0xd718_262a),
        ] {
            let input: Vec<u8> = src.iter().chain(&dst).copied().collect();
            assert_eq!(toeplitz(&key, &input), want, "{src:?} -> {dst:?}");
        }
    }

    #[test]
    fn the_table_hash_is_toeplitz_with_the_symmetric_key_and_is_symmetric() {
        let mut x = 0x1234_5678_9abc_def0u64;
        for _ in 0..2000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let a = u128::from(x) << 64 | u128::from(x.rotate_left(29));
            let b = u128::from(x.rotate_left(7)) << 64 | u128::from(!x);
            for v6 in [false, true] {
                let mut input = Vec::new();
                if v6 {
                    input.extend(a.to_be_bytes());
                    input.extend(b.to_be_bytes());
                } else {
                    input.extend((a as u32).to_be_bytes());
                    input.extend((b as u32).to_be_bytes());
                }
                assert_eq!(address_hash(a, b, v6), toeplitz(&RSS_KEY, &input));
                assert_eq!(address_hash(a, b, v6), address_hash(b, a, v6));
            }
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn both_directions_errors_and_fragments_of_a_flow_have_one_owner() {
        let (c, s) = (ip("198.18.0.1"), ip("198.18.0.20"));
        let (c6, s6) = (ip("2001:db8::1"), ip("2001:db8::20"));
        let mut owners = std::collections::HashSet::new();
        for workers in [2, 3, 4] {
            for port in 1000..1100 {
                let there = Spec::tcp(c, port, s, 80, TCP_SYN).build();
                let back = Spec::tcp(s, 80, c, port, TCP_SYN).build();
                let o = owner(&there, workers).unwrap();
                assert_eq!(owner(&back, workers), Some(o));
                assert!(o < workers);
                let there6 = Spec::udp(c6, port, s6, 53).build();
                let back6 = Spec::udp(s6, 53, c6, port).build();
                assert_eq!(owner(&there6, workers), owner(&back6, workers));
            }
            // Many address pairs spread over every worker.
            for host in 1..=64u8 {
                let f = Spec::udp(ip(&format!("198.18.1.{host}")), 5000, s, 53).build();
                owners.insert((workers, owner(&f, workers).unwrap()));
            }
            // An ICMP error from a router about the flow goes to the flow's owner.
            let flow = Spec::udp(c, 5000, s, 53).payload(3000);
            let body: Vec<u8> = flow.ip_packet().into_iter().take(28).collect();
            let error = Spec::new(
                ip("198.19.0.1"),
                c,
                L4::Icmp {
                    kind: 3,
                    code: 1,
                    body,
                },
            )
            .build();
            assert_eq!(owner(&error, workers), owner(&flow.build(), workers));
            // So do its fragments, the later ones without ports.
            for fragment in flow.fragments(1000) {
                assert_eq!(owner(&fragment, workers), owner(&flow.build(), workers));
            }
        }
        for workers in [2, 3, 4] {
            for w in 0..workers {
                assert!(
                    owners.contains(&(workers, w)),
                    "no address pair owned by worker {w} of {workers}"
                );
            }
        }
        assert_eq!(owner(&arp_request([198, 18, 0, 1], [198, 18, 0, 20]), 2), None);
        assert_eq!(owner(&[0u8; 10], 2), None);
    }

    #[test]
    fn a_parcel_reaches_its_owner_intact_and_a_full_mailbox_drops_and_counts() {
        let bells = [
            Arc::new(Doorbell::new().unwrap()),
            Arc::new(Doorbell::new().unwrap()),
        ];
        let (mut ends, view) = Handoff::group(&bells, 4);
        let mut b = ends.pop().unwrap();
        let mut a = ends.pop().unwrap();
        for i in 0..6u8 {
            let sent = a.send(1, Side::B, &[i; 60]);
            assert_eq!(sent, i < 4, "parcel {i}");
        }
        a.flush();
        let mut got = Vec::new();
        assert_eq!(
            b.receive(|side, bytes| {
                got.push((side, bytes.to_vec()));
                bytes[0] != 3
            }),
            3
        );
        assert_eq!(got.len(), 4);
        assert!(got.iter().enumerate().all(|(i, (side, bytes))| *side == Side::B
            && bytes.len() == 60
            && bytes.iter().all(|x| usize::from(*x) == i)));
        // The parcels are spare again.
        assert!(a.send(1, Side::A, &[9; 1500]));
        a.flush();
        let stats = view.stats();
        assert_eq!(
            stats[0],
            HandoffStats {
                sent: 5,
                received: 0,
                mailbox_full: 2,
                no_frame: 0
            }
        );
        assert_eq!(
            stats[1],
            HandoffStats {
                sent: 0,
                received: 3,
                mailbox_full: 0,
                no_frame: 1
            }
        );
    }

    #[test]
    fn a_sleeping_worker_is_woken_by_a_parcel() {
        let bells = [
            Arc::new(Doorbell::new().unwrap()),
            Arc::new(Doorbell::new().unwrap()),
        ];
        let (mut ends, _) = Handoff::group(&bells, 4);
        let b = ends.pop().unwrap();
        let mut a = ends.pop().unwrap();
        let bell = Arc::clone(&bells[1]);
        bell.announce();
        assert!(!b.has_parcels());
        let waiter = std::thread::spawn(move || {
            let mut fd = [nix::poll::PollFd::new(bell.fd(), nix::poll::PollFlags::POLLIN)];
            let n = nix::poll::poll(&mut fd, 5000u16).unwrap();
            bell.awake();
            (n, b.has_parcels())
        });
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(a.send(1, Side::A, &[1; 60]));
        a.flush();
        assert_eq!(
            waiter.join().unwrap(),
            (1, true),
            "woken by the parcel, not by the 5 s timeout"
        );
        // Not asleep: ringing writes nothing.
        bells[0].ring();
        let mut fd = [nix::poll::PollFd::new(
            bells[0].fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        assert_eq!(nix::poll::poll(&mut fd, 0u16).unwrap(), 0);
    }
}
