use std::net::IpAddr;

use proptest::prelude::*;

use rampart_dataplane::reason::DropReason;
use rampart_dataplane::wire::headers::*;
use rampart_dataplane::wire::*;
use rampart_testkit::frames::{arp_request, ip, Checksum, Spec, L4};

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

fn v4(s: &str) -> u128 {
    match ip(s) {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(_) => unreachable!(),
    }
}

fn v6(s: &str) -> u128 {
    match ip(s) {
        IpAddr::V6(a) => u128::from(a),
        IpAddr::V4(_) => unreachable!(),
    }
}

/// IPv4 TCP SYN 198.18.0.1:50000 -> 198.18.1.2:80 with an MSS option, written
/// out byte by byte.
fn tcp_syn_v4() -> Vec<u8> {
    hex(
        "02000000000b 02000000000a 0800 4500002c 00014000 4006 0000 c6120001 c6120102 \
         c3500050 00000001 00000000 6002ffff 00000000 020405b4",
    )
}

#[test]
fn known_good_tcp_v4() {
    let f = tcp_syn_v4();
    let eth = Ethernet::new(&f).unwrap();
    assert_eq!(eth.destination(), [2, 0, 0, 0, 0, 0x0b]);
    assert_eq!(eth.source(), [2, 0, 0, 0, 0, 0x0a]);
    assert_eq!(eth.ethertype(), ETHERTYPE_IPV4);
    let ip4 = Ipv4::new(eth.payload()).unwrap();
    assert_eq!((ip4.header_len(), ip4.total_len(), ip4.ttl()), (20, 44, 64));
    assert!(!ip4.more_fragments());
    let tcp = Tcp::new(ip4.payload()).unwrap();
    assert_eq!(
        (tcp.source_port(), tcp.destination_port(), tcp.flags()),
        (50000, 80, TCP_SYN)
    );
    assert_eq!((tcp.sequence(), tcp.acknowledgement()), (1, 0));
    assert!(tcp.payload().is_empty(), "the MSS option is header, not payload");
    let p = parse(&f).unwrap();
    assert_eq!(p.network, Network::Ipv4);
    assert_eq!((p.src, p.dst), (v4("198.18.0.1"), v4("198.18.1.2")));
    assert_eq!(
        (p.proto, p.src_port, p.dst_port, p.tcp_flags),
        (6, 50000, 80, TCP_SYN)
    );
    assert_eq!((p.vlan, p.fragment, p.icmp), (0, Fragment::Whole, IcmpKind::No));
}

#[test]
fn known_good_ipv4_options_and_padding() {
    // IHL 6 (a 4-byte NOP/EOL option), UDP 53 -> 5353, then Ethernet padding
    // past the total length that must not be read as data.
    let f = hex(
        "02000000000b 02000000000a 0800 46000020 00020000 4011 0000 c6120001 c6120102 01010000 \
         003514e9 0008 0000 deadbeefdeadbeef",
    );
    let ip4 = Ipv4::new(&f[14..]).unwrap();
    assert_eq!(ip4.options(), &[1, 1, 0, 0]);
    assert_eq!(ip4.payload().len(), 8, "payload ends at the total length");
    let p = parse(&f).unwrap();
    assert_eq!((p.proto, p.src_port, p.dst_port), (17, 53, 5353));
}

#[test]
fn known_good_vlan_and_qinq() {
    // 802.1Q VLAN 10, ICMP echo request id 0x1234.
    let f = hex(
        "02000000000b 02000000000a 8100 a00a 0800 4500001c 00030000 4001 0000 c6120001 c6120102 \
         08000000 12340001",
    );
    let tag = VlanTag::new(&f[14..]).unwrap();
    assert_eq!(
        (tag.id(), tag.priority(), tag.ethertype()),
        (10, 5, ETHERTYPE_IPV4)
    );
    let p = parse(&f).unwrap();
    assert_eq!(p.vlan, 10);
    assert_eq!(p.icmp, IcmpKind::EchoRequest(0x1234));
    assert_eq!(
        (p.src_port, p.dst_port),
        (8, 0),
        "ICMP type and code in the port fields"
    );
    assert_eq!(p.tuple().src_port, 0x1234, "echo flows are keyed by identifier");
    // QinQ: outer 802.1ad tag 20 selects the VPC, inner 802.1Q tag 30.
    let f = hex(
        "02000000000b 02000000000a 88a8 0014 8100 001e 0800 4500001c 00030000 4001 0000 c6120001 c6120102 \
         00000000 12340001",
    );
    let p = parse(&f).unwrap();
    assert_eq!(p.vlan, 20);
    assert_eq!(p.icmp, IcmpKind::EchoReply(0x1234));
}

#[test]
fn known_good_arp() {
    let f = hex(
        "ffffffffffff 02000000000a 0806 0001 0800 06 04 0001 02000000000a c6120001 000000000000 c6120102",
    );
    let arp = Arp::new(&f[14..]).unwrap();
    assert_eq!(arp.operation(), 1);
    assert_eq!(parse(&f).unwrap().network, Network::Arp);
    assert_eq!(
        parse(&arp_request([198, 18, 0, 1], [198, 18, 1, 2]))
            .unwrap()
            .network,
        Network::Arp
    );
    assert_eq!(parse(&f[..14 + 20]), Err(DropReason::ArpTruncated));
}

#[test]
fn known_good_ipv6_extension_headers() {
    // Hop-by-hop (8 bytes, PadN), destination options (8 bytes), UDP 1000 -> 2000.
    let f = hex("02000000000b 02000000000a 86dd 60000000 0018 00 40 \
         20010db8000000000000000000000001 20010db8000000000000000000000002 \
         3c00 0104 00000000 \
         1100 0104 00000000 \
         03e8 07d0 0008 0000");
    let ip6 = Ipv6::new(&f[14..]).unwrap();
    assert_eq!((ip6.next_header(), ip6.hop_limit()), (0, 64));
    let upper = ipv6_walk(ip6.next_header(), ip6.payload()).unwrap();
    assert_eq!(
        upper,
        Ipv6Upper {
            protocol: 17,
            offset: 16,
            fragment: None
        }
    );
    let p = parse(&f).unwrap();
    assert_eq!((p.src, p.dst), (v6("2001:db8::1"), v6("2001:db8::2")));
    assert_eq!((p.proto, p.src_port, p.dst_port), (17, 1000, 2000));
}

#[test]
fn known_good_ipv6_later_fragment_with_destination_options() {
    // A fragment at offset 64 (more to come, identification 7) whose header
    // names destination options (60) as next; the 8 bytes after it are data
    // that would read as a hop-by-hop header of 2 KiB.
    let f = hex("02000000000b 02000000000a 86dd 60000000 0010 2c 40 \
         20010db8000000000000000000000001 20010db8000000000000000000000002 \
         3c00 0041 00000007 \
         00ff 0000 0000 0000");
    let ip6 = Ipv6::new(&f[14..]).unwrap();
    let upper = ipv6_walk(ip6.next_header(), ip6.payload()).unwrap();
    assert_eq!(
        upper,
        Ipv6Upper {
            protocol: 60,
            offset: 8,
            fragment: Some((7, 8, true))
        }
    );
    let p = parse(&f).unwrap();
    assert_eq!((p.fragment, p.proto, p.src_port), (Fragment::Later(7), 60, 0));
}

#[test]
fn known_good_icmpv6_neighbour_discovery_and_sctp() {
    // Neighbour solicitation (type 135) for 2001:db8::2.
    let f = hex("3333ff000002 02000000000a 86dd 60000000 0018 3a ff \
         20010db8000000000000000000000001 ff0200000000000000000001ff000002 \
         87000000 00000000 20010db8000000000000000000000002");
    assert_eq!(parse(&f).unwrap().icmp, IcmpKind::NeighbourDiscovery);
    // SCTP 5000 -> 6000 over IPv4.
    let f = hex(
        "02000000000b 02000000000a 0800 45000020 00040000 4084 0000 c6120001 c6120102 \
         13881770 00000000 00000000",
    );
    let p = parse(&f).unwrap();
    assert_eq!((p.proto, p.src_port, p.dst_port), (132, 5000, 6000));
}

#[test]
fn icmp_errors_carry_the_quoted_flow() {
    // Port unreachable from 198.18.1.2 quoting UDP 198.18.0.1:40000 -> 198.18.1.2:53.
    let quoted = Spec::udp(ip("198.18.0.1"), 40000, ip("198.18.1.2"), 53).ip_packet();
    let err = Spec::new(
        ip("198.18.1.2"),
        ip("198.18.0.1"),
        L4::Icmp {
            kind: 3,
            code: 3,
            body: quoted,
        },
    );
    let p = parse(&err.build()).unwrap();
    let want = Tuple {
        src: v4("198.18.0.1"),
        dst: v4("198.18.1.2"),
        proto: 17,
        src_port: 40000,
        dst_port: 53,
    };
    assert_eq!(p.icmp, IcmpKind::Error(Some(want)));
    // ICMPv6 packet too big quoting a TCP segment.
    let quoted = Spec::tcp(ip("2001:db8::1"), 40000, ip("2001:db8::2"), 443, TCP_ACK).ip_packet();
    let err = Spec::new(
        ip("2001:db8::ff"),
        ip("2001:db8::1"),
        L4::Icmp {
            kind: 2,
            code: 0,
            body: quoted[..48].to_vec(),
        },
    );
    let p = parse(&err.build()).unwrap();
    let IcmpKind::Error(Some(t)) = p.icmp else {
        panic!("{:?}", p.icmp)
    };
    assert_eq!(
        (t.src, t.dst, t.proto, t.src_port, t.dst_port),
        (v6("2001:db8::1"), v6("2001:db8::2"), 6, 40000, 443)
    );
    // A quote too short for the ports relates to nothing.
    let err = Spec::new(
        ip("198.18.1.2"),
        ip("198.18.0.1"),
        L4::Icmp {
            kind: 11,
            code: 0,
            body: Spec::udp(ip("198.18.0.1"), 1, ip("198.18.1.2"), 2).ip_packet()[..22].to_vec(),
        },
    );
    assert_eq!(parse(&err.build()).unwrap().icmp, IcmpKind::Error(None));
}

#[test]
fn fragments_v4_and_v6() {
    for (src, dst) in [("198.18.0.1", "198.18.1.2"), ("2001:db8::1", "2001:db8::2")] {
        let spec = Spec::udp(ip(src), 1000, ip(dst), 2000).payload(100);
        let frags = spec.fragments(48);
        assert_eq!(frags.len(), 3, "{src}");
        let first = parse(&frags[0]).unwrap();
        assert_eq!(first.fragment, Fragment::First(1));
        assert_eq!((first.src_port, first.dst_port), (1000, 2000));
        for later in &frags[1..] {
            let p = parse(later).unwrap();
            assert_eq!(p.fragment, Fragment::Later(1));
            assert_eq!((p.proto, p.src_port), (17, 0), "no L4 in a later fragment");
        }
        // A first fragment cut before the ports end.
        let tiny = Spec::tcp(ip(src), 1, ip(dst), 2, TCP_SYN)
            .payload(40)
            .fragments(8);
        assert_eq!(parse(&tiny[0]), Err(DropReason::FirstFragmentTooShort), "{src}");
    }
}

#[test]
fn built_frames_have_valid_checksums() {
    let f = Spec::tcp(ip("198.18.0.1"), 1, ip("198.18.1.2"), 2, TCP_SYN)
        .payload(10)
        .build();
    assert_eq!(Checksum::of(&f[14..34]), 0, "IPv4 header checksum");
    let mut sum = Checksum::default();
    sum.add(&f[26..34]);
    sum.add(&[0, 6, 0, 30]);
    sum.add(&f[34..64]);
    assert_eq!(sum.finish(), 0, "TCP checksum over the pseudo header");
}

/// Each malformed case of spec section 5, with its own reason.
#[test]
fn malformed_frames_are_dropped_by_reason() {
    let good = tcp_syn_v4();
    let with = |at: usize, byte: u8| {
        let mut f = good.clone();
        f[at] = byte;
        f
    };
    let cases: Vec<(Vec<u8>, DropReason)> = vec![
        (good[..13].to_vec(), DropReason::EthernetTruncated),
        (
            hex("02000000000b 02000000000a 8100 00"),
            DropReason::VlanTruncated,
        ),
        (good[..14 + 19].to_vec(), DropReason::Ipv4Truncated),
        (with(14, 0x65), DropReason::IpVersionMismatch),
        (with(14, 0x44), DropReason::Ipv4IhlTooSmall),
        (with(14, 0x4f), DropReason::Ipv4IhlBeyondPacket),
        (with(17, 0xff), DropReason::Ipv4TotalLengthBeyondFrame),
        (with(17, 0x10), DropReason::Ipv4TotalLengthTooSmall),
        (with(46, 0x40), DropReason::TcpDataOffsetTooSmall),
        (with(46, 0xf0), DropReason::TcpDataOffsetBeyondPacket),
        (
            [&good[..16], &[0, 30], &good[18..44]].concat(),
            DropReason::TcpTruncated,
        ),
    ];
    for (frame, reason) in cases {
        assert_eq!(parse(&frame), Err(reason), "{}", reason.name());
    }
    let v6 = Spec::udp(ip("2001:db8::1"), 1, ip("2001:db8::2"), 2).build();
    assert_eq!(parse(&v6[..14 + 39]), Err(DropReason::Ipv6Truncated));
    let mut long = v6.clone();
    long[19] = 200;
    assert_eq!(parse(&long), Err(DropReason::Ipv6PayloadBeyondFrame));
    let mut short_udp = v6.clone();
    short_udp[18..20].copy_from_slice(&4u16.to_be_bytes());
    assert_eq!(parse(&short_udp), Err(DropReason::UdpTruncated));
    // An extension header whose length runs past the packet.
    let mut ext = v6.clone();
    ext[20] = IPV6_HOP_BY_HOP;
    ext[54 + 1] = 9;
    assert_eq!(parse(&ext), Err(DropReason::Ipv6ExtensionTruncated));
    // Nine destination-options headers: one more than the walk allows.
    let mut chain = Vec::new();
    for _ in 0..9 {
        chain.extend([IPV6_DESTINATION_OPTIONS, 0, 1, 4, 0, 0, 0, 0]);
    }
    let last = chain.len() - 8;
    chain[last] = PROTO_UDP;
    chain.extend([0, 1, 0, 2, 0, 8, 0, 0]);
    let mut f = v6[..14 + 40].to_vec();
    f[18..20].copy_from_slice(&(chain.len() as u16).to_be_bytes());
    f[20] = IPV6_DESTINATION_OPTIONS;
    f.extend(chain);
    assert_eq!(parse(&f), Err(DropReason::Ipv6ExtensionChainTooLong));
    let icmp = Spec::echo(ip("198.18.0.1"), ip("198.18.1.2"), true, 7).build();
    let mut short_icmp = icmp[..14 + 20 + 4].to_vec();
    short_icmp[17] = 24;
    assert_eq!(parse(&short_icmp), Err(DropReason::IcmpTruncated));
    let sctp = Spec::new(
        ip("198.18.0.1"),
        ip("198.18.1.2"),
        L4::Sctp {
            src_port: 1,
            dst_port: 2,
        },
    )
    .build();
    let mut short_sctp = sctp[..14 + 20 + 8].to_vec();
    short_sctp[17] = 28;
    assert_eq!(parse(&short_sctp), Err(DropReason::SctpTruncated));
}

/// Real frames of every kind the parser knows, to mutate.
fn corpus() -> Vec<Vec<u8>> {
    let (a4, b4, a6, b6) = (
        ip("198.18.0.1"),
        ip("198.18.1.2"),
        ip("2001:db8::1"),
        ip("2001:db8::2"),
    );
    let mut frames = vec![tcp_syn_v4(), arp_request([198, 18, 0, 1], [198, 18, 1, 2])];
    for (a, b) in [(a4, b4), (a6, b6)] {
        frames.push(Spec::tcp(a, 1, b, 2, TCP_SYN | TCP_ACK).vlan(5).build());
        frames.push(Spec::udp(a, 1, b, 2).vlan(5).vlan(6).payload(30).build());
        frames.push(Spec::echo(a, b, true, 9).build());
        let quote = Spec::udp(b, 5, a, 6).ip_packet();
        let kind = if a.is_ipv6() { 1 } else { 3 };
        frames.push(
            Spec::new(
                a,
                b,
                L4::Icmp {
                    kind,
                    code: 0,
                    body: quote,
                },
            )
            .build(),
        );
        frames.extend(Spec::udp(a, 1, b, 2).payload(64).fragments(24));
    }
    frames
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(20_000))]

    /// No bytes can make the parser panic.
    #[test]
    fn random_bytes_never_panic(frame in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = parse(&frame);
    }

    /// Nor can real frames with bytes flipped, cut short or extended; and when a
    /// mutated frame parses, its addresses and ports come from inside the frame.
    #[test]
    fn mutated_frames_never_panic(
        which in 0usize..16,
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..6),
        cut in any::<usize>(),
        extra in proptest::collection::vec(any::<u8>(), 0..20),
    ) {
        let corpus = corpus();
        let mut frame = corpus[which % corpus.len()].clone();
        for (at, byte) in flips {
            let at = at % frame.len();
            frame[at] = byte;
        }
        frame.truncate(cut % (frame.len() + 1));
        frame.extend(extra);
        let _ = parse(&frame);
    }
}

#[test]
fn every_corpus_frame_parses() {
    for frame in corpus() {
        assert!(parse(&frame).is_ok(), "{frame:02x?}");
    }
}
