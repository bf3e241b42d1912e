use std::collections::HashMap;

use proptest::prelude::*;

use super::*;

const T: Timeouts = Timeouts {
    tcp_syn_sent: 120,
    tcp_syn_received: 60,
    tcp_established: 432_000,
    tcp_closing: 121,
    tcp_time_wait: 122,
    tcp_reset: 10,
    udp_unreplied: 30,
    udp_replied: 180,
    icmp_echo: 31,
    other: 600,
};

fn tuple(src: u128, sp: u16, dst: u128, dp: u16, proto: u8) -> Tuple {
    Tuple {
        src,
        dst,
        proto,
        src_port: sp,
        dst_port: dp,
    }
}

#[test]
fn keys_are_the_same_in_both_directions() {
    let t = tuple(0xc612_0001, 40000, 0xc612_0102, 80, 6);
    let r = tuple(0xc612_0102, 80, 0xc612_0001, 40000, 6);
    let (k1, lo1) = FlowKey::new(3, false, &t);
    let (k2, lo2) = FlowKey::new(3, false, &r);
    assert_eq!(k1, k2);
    assert_ne!(lo1, lo2);
    assert_eq!(k1.tuple(lo1), t);
    assert_eq!(k1.tuple(lo2), r);
    // VLAN, family and protocol are part of the identity.
    assert_ne!(FlowKey::new(4, false, &t).0, k1);
    assert_ne!(FlowKey::new(3, true, &t).0, k1);
    assert_ne!(
        FlowKey::new(3, false, &tuple(0xc612_0001, 40000, 0xc612_0102, 80, 17)).0,
        k1
    );
}

/// Runs a TCP conversation: (from the initiator?, flags) per packet, returning
/// the state after each.
fn tcp(packets: &[(bool, u8)]) -> Vec<State> {
    let t = tuple(1, 1000, 2, 80, 6);
    let (key, from_lo) = FlowKey::new(0, false, &t);
    let mut flow = Flow::new(key, from_lo, packets[0].1, 1);
    let mut states = vec![flow.state];
    for &(initiator, flags) in &packets[1..] {
        flow.advance(if initiator { from_lo } else { !from_lo }, flags);
        states.push(flow.state);
    }
    states
}

const SYN: u8 = TCP_SYN;
const SYNACK: u8 = TCP_SYN | TCP_ACK;
const ACK: u8 = TCP_ACK;
const FIN: u8 = TCP_FIN | TCP_ACK;
const RST: u8 = TCP_RST;

#[test]
fn tcp_handshake_and_teardown() {
    use State::*;
    let states = tcp(&[
        (true, SYN),
        (false, SYNACK),
        (true, ACK),
        (true, ACK),
        (true, FIN),
        (false, ACK),
        (false, FIN),
        (true, ACK),
    ]);
    assert_eq!(
        states,
        [
            SynSent,
            SynReceived,
            Established,
            Established,
            FinWait,
            FinWait,
            LastAck,
            TimeWait
        ]
    );
    // The responder closes first.
    let states = tcp(&[
        (true, SYN),
        (false, SYNACK),
        (true, ACK),
        (false, FIN),
        (true, FIN),
        (false, ACK),
    ]);
    assert_eq!(
        states,
        [SynSent, SynReceived, Established, FinWait, LastAck, TimeWait]
    );
    // The last ACK must come from the side that sent the first FIN.
    let states = tcp(&[
        (true, SYN),
        (false, SYNACK),
        (true, ACK),
        (true, FIN),
        (false, FIN),
        (false, ACK),
    ]);
    assert_eq!(states.last(), Some(&LastAck));
    // A retransmitted SYN keeps SYN_SENT; the initiator's ACK before the SYN-ACK
    // does not establish.
    assert_eq!(
        tcp(&[(true, SYN), (true, SYN), (true, ACK)]),
        [SynSent, SynSent, SynSent]
    );
    // RST ends the connection from any state.
    for prefix in [
        &[(true, SYN)][..],
        &[(true, SYN), (false, SYNACK), (true, ACK)],
        &[(true, SYN), (false, SYNACK), (true, ACK), (true, FIN)],
    ] {
        let mut packets = prefix.to_vec();
        packets.push((false, RST));
        assert_eq!(tcp(&packets).last(), Some(&Reset), "{prefix:?}");
    }
}

#[test]
fn udp_and_icmp_pseudo_connections() {
    let (key, lo) = FlowKey::new(0, false, &tuple(1, 5000, 2, 53, 17));
    let mut f = Flow::new(key, lo, 0, 1);
    assert_eq!(f.state, State::UdpUnreplied);
    f.advance(lo, 0);
    assert_eq!(
        f.state,
        State::UdpUnreplied,
        "more from the initiator is not a reply"
    );
    f.advance(!lo, 0);
    assert_eq!(f.state, State::UdpReplied);
    let (key, lo) = FlowKey::new(0, false, &tuple(1, 7, 2, 7, 1));
    assert_eq!(Flow::new(key, lo, 0, 1).state, State::IcmpEcho);
    let (key, lo) = FlowKey::new(0, false, &tuple(1, 0, 2, 0, 47));
    assert_eq!(Flow::new(key, lo, 0, 1).state, State::Other);
}

#[test]
fn every_state_has_its_timeout() {
    use State::*;
    let cases = [
        (SynSent, 120),
        (SynReceived, 60),
        (Established, 432_000),
        (FinWait, 121),
        (LastAck, 121),
        (TimeWait, 122),
        (Reset, 10),
        (UdpUnreplied, 30),
        (UdpReplied, 180),
        (IcmpEcho, 31),
        (Other, 600),
    ];
    for (state, secs) in cases {
        assert_eq!(state.timeout(&T), secs, "{state:?}");
        let (key, lo) = FlowKey::new(0, false, &tuple(1, 1, 2, 2, 6));
        let mut f = Flow::new(key, lo, SYN, 1);
        f.state = state;
        f.touch(5 * NANOS, &T);
        assert_eq!(f.deadline, (5 + u64::from(secs)) * NANOS);
    }
}

fn flow(n: u32, state: State, deadline: u64) -> Flow {
    let (key, lo) = FlowKey::new(0, false, &tuple(u128::from(n), 1, 1 << 40, 2, 6));
    let mut f = Flow::new(key, lo, SYN, 1);
    f.state = state;
    f.deadline = deadline;
    f
}

#[test]
fn lookups_see_expiry_and_the_sweep_reclaims() {
    let mut table = FlowTable::new(100, Seed::fixed(1));
    for n in 0..50 {
        let f = flow(n, State::Established, if n % 2 == 0 { 10 } else { 20 });
        let h = table.hash(&f.key);
        table.insert(f, h, 0).unwrap();
    }
    let f = flow(0, State::Established, 0);
    let h = table.hash(&f.key);
    assert!(table.find(&f.key, h, 9).0.is_some());
    assert_eq!(
        table.find(&f.key, h, 10),
        (None, true),
        "a passed deadline is absent and removed"
    );
    assert_eq!(table.len(), 49);
    let buckets = table.table.num_buckets();
    let mut expired = 0;
    for _ in 0..buckets.div_ceil(16) {
        expired += table.sweep(15, 16);
    }
    assert_eq!(
        expired, 24,
        "one full cycle of bounded sweeps finds every expired entry"
    );
    assert_eq!(table.len(), 25);
    assert!(table.iter().all(|f| f.deadline == 20));
}

#[test]
fn a_full_table_evicts_handshakes_never_established() {
    let mut table = FlowTable::new(8, Seed::fixed(2));
    let cap = table.capacity();
    for n in 0..cap as u32 {
        let state = if n == 3 {
            State::SynSent
        } else {
            State::Established
        };
        let f = flow(n, state, 1000);
        let h = table.hash(&f.key);
        table.insert(f, h, 0).unwrap();
    }
    let new = flow(100, State::SynSent, 1000);
    let h = table.hash(&new.key);
    let (_, reclaimed) = table.insert(new, h, 0).unwrap();
    assert_eq!(
        reclaimed,
        Reclaimed {
            expired: 0,
            evicted: 1
        }
    );
    assert!(
        table.iter().all(|f| f.key != flow(3, State::SynSent, 0).key),
        "the handshake went"
    );
    assert_eq!(
        table.iter().filter(|f| f.state == State::Established).count(),
        cap - 1
    );
    // Now only established connections and the new handshake: the next new one
    // evicts the handshake, and then the table is full for good.
    let f = flow(101, State::Established, 1000);
    let h = table.hash(&f.key);
    assert!(table.insert(f, h, 0).is_ok());
    let f = flow(102, State::Established, 1000);
    let h = table.hash(&f.key);
    assert_eq!(table.insert(f, h, 0), Err(TableFull));
    assert_eq!(table.len(), cap);
    // An expired entry makes room too.
    let mut table2 = FlowTable::new(8, Seed::fixed(3));
    for n in 0..table2.capacity() as u32 {
        let f = flow(n, State::Established, if n == 0 { 5 } else { 1000 });
        let h = table2.hash(&f.key);
        table2.insert(f, h, 0).unwrap();
    }
    let f = flow(200, State::Established, 1000);
    let h = table2.hash(&f.key);
    assert_eq!(
        table2.insert(f, h, 6).unwrap().1,
        Reclaimed {
            expired: 1,
            evicted: 0
        }
    );
}

#[test]
fn fragment_table_remembers_until_deadline() {
    let mut frags = FragTable::new(4, Seed::fixed(4));
    let key = |id| FragKey {
        vlan: 0,
        v6: false,
        proto: 17,
        id,
        src: 1,
        dst: 2,
    };
    frags.record(key(1), true, 100, 0).unwrap();
    frags.record(key(2), false, 100, 0).unwrap();
    assert_eq!(frags.verdict(&key(1), 99), Some(true));
    assert_eq!(frags.verdict(&key(2), 99), Some(false));
    assert_eq!(frags.verdict(&key(3), 99), None);
    assert_eq!(frags.verdict(&key(1), 100), None, "expired");
    for id in 3..100 {
        if frags.record(key(id), true, 100, 0).is_err() {
            assert!(frags.len() >= 4, "full only at capacity");
            break;
        }
    }
    assert!(
        frags.record(key(500), true, 300, 200).is_ok(),
        "expired entries make room"
    );
}

/// Operations for the property test.
#[derive(Clone, Debug)]
enum Op {
    Insert { n: u8, state: u8 },
    Lookup { n: u8 },
    Advance { secs: u8 },
    Sweep { budget: u8 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0u8..40, 0u8..3).prop_map(|(n, state)| Op::Insert { n, state }),
        1 => (0u8..40).prop_map(|n| Op::Lookup { n }),
        1 => (0u8..30).prop_map(|secs| Op::Advance { secs }),
        1 => (0u8..64).prop_map(|budget| Op::Sweep { budget }),
    ]
}

proptest! {
    /// The table against a naive map: same live connections at every step; a
    /// full insert succeeds exactly when the naive table holds an expired or
    /// handshake entry (the small table fits in one eviction scan), evicts only
    /// those, and never grows past capacity.
    #[test]
    fn table_matches_a_naive_model(ops in proptest::collection::vec(op(), 1..300)) {
        let mut table = FlowTable::new(16, Seed::fixed(9));
        let cap = table.capacity();
        // One partition, scanned whole by one eviction scan.
        let (parts, buckets) = table.table.shape();
        prop_assert!(parts == 1 && buckets <= EVICT_SCAN);
        let mut naive: HashMap<u8, Flow> = HashMap::new();
        let mut now = 0u64;
        for op in ops {
            match op {
                Op::Insert { n, state } => {
                    let state = [State::SynSent, State::Established, State::UdpReplied][usize::from(state)];
                    let mut f = flow(u32::from(n), state, 0);
                    f.touch(now, &T);
                    let h = table.hash(&f.key);
                    if table.find(&f.key, h, now).0.is_some() {
                        naive.insert(n, f);
                        let b = table.find(&f.key, h, now).0.unwrap();
                        table.remove(b);
                        table.insert(f, h, now).expect("room for the entry just removed");
                        continue;
                    }
                    naive.retain(|_, g| g.deadline > now || table.iter().any(|t| t.key == g.key));
                    let evictable = naive.values().any(|g| g.deadline <= now || g.state.in_handshake());
                    let live = naive.values().filter(|g| g.deadline > now).count();
                    match table.insert(f, h, now) {
                        Ok(_) => {
                            prop_assert!(table.len() <= cap);
                            // Room was made only from an expired entry or a handshake.
                            for g in naive.values() {
                                if !table.iter().any(|t| t.key == g.key) {
                                    prop_assert!(g.deadline <= now || g.state.in_handshake(), "evicted {:?}", g);
                                }
                            }
                            naive.retain(|_, g| table.iter().any(|t| t.key == g.key));
                            naive.insert(n, f);
                        }
                        Err(TableFull) => {
                            prop_assert!(!evictable, "{} live, an evictable entry existed", live);
                            prop_assert_eq!(table.len(), cap);
                        }
                    }
                }
                Op::Lookup { n } => {
                    let f = flow(u32::from(n), State::Established, 0);
                    let h = table.hash(&f.key);
                    let found = table.find(&f.key, h, now).0.is_some();
                    let expected = naive.get(&n).is_some_and(|g| g.deadline > now);
                    prop_assert_eq!(found, expected, "flow {}", n);
                }
                Op::Advance { secs } => now += u64::from(secs) * NANOS,
                Op::Sweep { budget } => {
                    table.sweep(now, usize::from(budget));
                    prop_assert!(table.iter().all(|t| naive.values().any(|g| g.key == t.key)));
                }
            }
            // Nothing else ever leaves the table early: what is gone had expired.
            for g in naive.values() {
                if !table.iter().any(|t| t.key == g.key) {
                    prop_assert!(g.deadline <= now, "lost {:?}", g);
                }
            }
            naive.retain(|_, g| table.iter().any(|t| t.key == g.key));
        }
    }
}

/// Connections opened and closed for a long time at full capacity, 30 times
/// the capacity each: new ones evicting handshakes (a SYN flood), closing at
/// random, expiring and swept. The table never grows or rehashes (its
/// allocation is unchanged, and no insert was refused for want of room), and
/// every entry stays findable.
#[test]
fn churn_at_full_capacity_never_grows_or_rehashes() {
    let mut table = FlowTable::new(100_000, Seed::fixed(9));
    let cap = table.capacity();
    let shape = table.table.shape();
    let bytes = table.memory_bytes();
    let mut n = 0u32;
    for round in 0..30 {
        for _ in 0..cap {
            let f = flow(n, State::SynSent, 1000);
            n += 1;
            let h = table.hash(&f.key);
            table.insert(f, h, 0).expect("a handshake makes room");
            table.sweep(0, 64);
        }
        assert_eq!(table.len(), cap, "round {round}");
        assert_eq!(table.iter().count(), cap);
        let keys: Vec<FlowKey> = table.iter().map(|f| f.key).collect();
        for key in keys {
            let h = table.hash(&key);
            assert!(table.locate(&key, h).is_some(), "round {round}: an entry is lost");
        }
    }
    // Connections closing at random (FIN, RST) while new ones open.
    let mut rng =
        proptest::test_runner::TestRng::deterministic_rng(proptest::test_runner::RngAlgorithm::ChaCha);
    let mut live: Vec<FlowKey> = table.iter().map(|f| f.key).collect();
    for _ in 0..30 * cap {
        let i = (rng.next_u64() % live.len() as u64) as usize;
        let key = live.swap_remove(i);
        let slot = table.locate(&key, table.hash(&key)).expect("live");
        table.remove(slot);
        let f = flow(n, State::Established, 1000);
        n += 1;
        let h = table.hash(&f.key);
        table.insert(f, h, 0).expect("room after a close");
        live.push(f.key);
        table.sweep(0, 64);
    }
    // Connections expiring (random lifetimes), reclaimed by the sweep (the
    // ones opened so far all expire at 1000).
    let mut now = 1000;
    for _ in 0..30 * cap {
        let lifetime = 1 + rng.next_u64() % (cap as u64);
        let f = flow(n, State::Established, now + lifetime);
        n += 1;
        let h = table.hash(&f.key);
        table.insert(f, h, now).expect("room");
        now += 1;
        table.sweep(now, 64);
    }
    assert_eq!(table.table.shape(), shape, "the table grew");
    assert_eq!(table.memory_bytes(), bytes, "the table reallocated");
    assert_eq!(table.moves().1, 0, "an insert found no room");
}

/// What the daemon checks against the machine's memory before starting is
/// what a table allocates.
#[test]
fn memory_for_is_what_a_table_allocates() {
    for capacity in [1024, 262_144] {
        let table = FlowTable::new(capacity, Seed::fixed(1));
        assert_eq!(FlowTable::memory_for(capacity), table.memory_bytes());
    }
}
