//! The frame builder checked by an independent parser (etherparse): the
//! headers say what the spec asked for, and every checksum is right.

use std::net::IpAddr;

use etherparse::{
    EtherType, Icmpv4Header, Icmpv4Type, Icmpv6Header, Icmpv6Type, IpNumber, LinkExtHeader, NetHeaders,
    PacketHeaders, TransportHeader,
};
use rampart_dataplane::wire::headers::{TCP_ACK, TCP_SYN};
use rampart_testkit::frames::{arp_request, ip, Spec, MAC_A, MAC_B};

fn v4(s: &str) -> [u8; 4] {
    match ip(s) {
        IpAddr::V4(a) => a.octets(),
        IpAddr::V6(_) => panic!("{s} is not IPv4"),
    }
}

fn v6(s: &str) -> [u8; 16] {
    match ip(s) {
        IpAddr::V6(a) => a.octets(),
        IpAddr::V4(_) => panic!("{s} is not IPv6"),
    }
}

fn parse(frame: &[u8]) -> PacketHeaders<'_> {
    PacketHeaders::from_ethernet_slice(frame)
        .unwrap_or_else(|e| panic!("etherparse refuses {frame:02x?}: {e}"))
}

/// The VLAN ids of the frame's tags, outer first.
fn vlans(h: &PacketHeaders<'_>) -> Vec<u16> {
    h.link_exts
        .iter()
        .filter_map(|x| match x {
            LinkExtHeader::Vlan(v) => Some(v.vlan_id.value()),
            LinkExtHeader::Macsec(_) => None,
        })
        .collect()
}

#[test]
fn a_tcp_syn_over_ipv4_has_its_addresses_ports_flags_and_checksums() {
    let frame = Spec::tcp(ip("198.18.0.1"), 40000, ip("198.18.1.2"), 443, TCP_SYN)
        .payload(11)
        .build();
    let h = parse(&frame);
    let link = h.link.clone().and_then(|l| l.ethernet2()).expect("ethernet");
    assert_eq!((link.source, link.destination), (MAC_A, MAC_B));
    let Some(NetHeaders::Ipv4(ip4, _)) = &h.net else {
        panic!("not IPv4: {:?}", h.net)
    };
    assert_eq!(
        (ip4.source, ip4.destination),
        (v4("198.18.0.1"), v4("198.18.1.2"))
    );
    assert_eq!(ip4.protocol, IpNumber::TCP);
    assert_eq!(
        ip4.header_checksum,
        ip4.calc_header_checksum(),
        "IPv4 header checksum"
    );
    let Some(TransportHeader::Tcp(tcp)) = &h.transport else {
        panic!("not TCP: {:?}", h.transport)
    };
    assert_eq!((tcp.source_port, tcp.destination_port), (40000, 443));
    assert!(tcp.syn && !tcp.ack && !tcp.fin && !tcp.rst, "{tcp:?}");
    let payload = h.payload.slice();
    assert_eq!(payload.len(), 11);
    assert_eq!(
        tcp.checksum,
        tcp.calc_checksum_ipv4(ip4, payload).expect("fits"),
        "TCP checksum"
    );
}

#[test]
fn a_tcp_syn_ack_and_udp_over_ipv6_have_right_checksums() {
    let syn_ack = Spec::tcp(
        ip("2001:db8::1"),
        443,
        ip("2001:db8::2"),
        40000,
        TCP_SYN | TCP_ACK,
    )
    .build();
    let h = parse(&syn_ack);
    let Some(NetHeaders::Ipv6(ip6, _)) = &h.net else {
        panic!("not IPv6: {:?}", h.net)
    };
    assert_eq!(
        (ip6.source, ip6.destination),
        (v6("2001:db8::1"), v6("2001:db8::2"))
    );
    let Some(TransportHeader::Tcp(tcp)) = &h.transport else {
        panic!("not TCP")
    };
    assert!(tcp.syn && tcp.ack, "{tcp:?}");
    assert_eq!(
        tcp.checksum,
        tcp.calc_checksum_ipv6(ip6, h.payload.slice()).expect("fits")
    );

    let udp = Spec::udp(ip("2001:db8::1"), 5353, ip("2001:db8::2"), 53)
        .payload(30)
        .build();
    let h = parse(&udp);
    let Some(NetHeaders::Ipv6(ip6, _)) = &h.net else {
        panic!("not IPv6")
    };
    assert_eq!(ip6.next_header, IpNumber::UDP);
    let Some(TransportHeader::Udp(u)) = &h.transport else {
        panic!("not UDP")
    };
    assert_eq!((u.source_port, u.destination_port, u.length), (5353, 53, 38));
    assert_eq!(
        u.checksum,
        u.calc_checksum_ipv6(ip6, h.payload.slice()).expect("fits"),
        "UDP checksum"
    );
}

#[test]
fn vlan_and_qinq_tags_are_outer_first_with_the_provider_tpid_outside() {
    let one = Spec::udp(ip("198.18.0.1"), 1, ip("198.18.0.2"), 2)
        .vlan(5)
        .build();
    let h = parse(&one);
    assert_eq!(vlans(&h), [5]);
    let link = h.link.clone().and_then(|l| l.ethernet2()).expect("ethernet");
    assert_eq!(link.ether_type, EtherType::VLAN_TAGGED_FRAME);

    let two = Spec::udp(ip("198.18.0.1"), 1, ip("198.18.0.2"), 2)
        .vlan(5)
        .vlan(6)
        .build();
    let h = parse(&two);
    assert_eq!(vlans(&h), [5, 6]);
    let link = h.link.clone().and_then(|l| l.ethernet2()).expect("ethernet");
    assert_eq!(link.ether_type, EtherType::PROVIDER_BRIDGING);
    assert!(
        matches!(h.transport, Some(TransportHeader::Udp(_))),
        "{:?}",
        h.transport
    );
}

#[test]
fn echo_requests_and_replies_have_their_id_and_checksum_over_v4_and_v6() {
    let request = Spec::echo(ip("198.18.0.1"), ip("198.18.1.2"), true, 7).build();
    let h = parse(&request);
    let Some(TransportHeader::Icmpv4(icmp)) = &h.transport else {
        panic!("not ICMP: {:?}", h.transport)
    };
    let Icmpv4Type::EchoRequest(echo) = &icmp.icmp_type else {
        panic!("not an echo request: {icmp:?}")
    };
    assert_eq!(echo.id, 7);
    let want = Icmpv4Header::with_checksum(icmp.icmp_type.clone(), h.payload.slice());
    assert_eq!(icmp.checksum, want.checksum, "ICMP checksum");

    let reply = Spec::echo(ip("2001:db8::2"), ip("2001:db8::1"), false, 9).build();
    let h = parse(&reply);
    let Some(NetHeaders::Ipv6(ip6, _)) = &h.net else {
        panic!("not IPv6")
    };
    let Some(TransportHeader::Icmpv6(icmp)) = &h.transport else {
        panic!("not ICMPv6: {:?}", h.transport)
    };
    let Icmpv6Type::EchoReply(echo) = &icmp.icmp_type else {
        panic!("not an echo reply: {icmp:?}")
    };
    assert_eq!(echo.id, 9);
    let want = Icmpv6Header::with_checksum(icmp.icmp_type, ip6.source, ip6.destination, h.payload.slice())
        .expect("fits");
    assert_eq!(icmp.checksum, want.checksum, "ICMPv6 checksum");
}

/// The transport bytes the fragments carry, in order, equal the whole
/// packet's; offsets, identification and more-fragments say so too.
#[test]
fn fragments_carry_the_transport_bytes_in_order_with_offsets_and_one_id() {
    let v4spec = Spec::udp(ip("198.18.0.1"), 1, ip("198.18.0.2"), 2).payload(3000);
    let whole = v4spec.ip_packet();
    let frags = v4spec.fragments(1400);
    assert!(frags.len() >= 3);
    let mut data = Vec::new();
    let mut id = None;
    for (i, frame) in frags.iter().enumerate() {
        let (header, rest) = etherparse::Ethernet2Header::from_slice(frame).expect("ethernet");
        assert_eq!(header.ether_type, EtherType::IPV4);
        let (ip4, body) = etherparse::Ipv4Header::from_slice(rest).expect("ipv4");
        assert_eq!(ip4.header_checksum, ip4.calc_header_checksum());
        assert_eq!(
            usize::from(ip4.fragment_offset.value()) * 8,
            data.len(),
            "fragment {i}"
        );
        assert_eq!(ip4.more_fragments, i + 1 < frags.len(), "fragment {i}");
        assert_eq!(*id.get_or_insert(ip4.identification), ip4.identification);
        data.extend_from_slice(&body[..usize::from(ip4.total_len) - ip4.header_len()]);
    }
    assert_eq!(
        data,
        whole[20..],
        "the fragments' data is the packet's transport part"
    );

    let v6spec = Spec::udp(ip("2001:db8::1"), 1, ip("2001:db8::2"), 2).payload(3000);
    let whole = v6spec.ip_packet();
    let frags = v6spec.fragments(1400);
    let mut data = Vec::new();
    for (i, frame) in frags.iter().enumerate() {
        let (_, rest) = etherparse::Ethernet2Header::from_slice(frame).expect("ethernet");
        let (ip6, body) = etherparse::Ipv6Header::from_slice(rest).expect("ipv6");
        assert_eq!(ip6.next_header, IpNumber::IPV6_FRAGMENTATION_HEADER);
        let (frag, data_part) = etherparse::Ipv6FragmentHeader::from_slice(body).expect("fragment header");
        assert_eq!(frag.next_header, IpNumber::UDP);
        assert_eq!(
            usize::from(frag.fragment_offset.value()) * 8,
            data.len(),
            "fragment {i}"
        );
        assert_eq!(frag.more_fragments, i + 1 < frags.len(), "fragment {i}");
        data.extend_from_slice(&data_part[..usize::from(ip6.payload_length) - 8]);
    }
    assert_eq!(
        data,
        whole[40..],
        "the fragments' data is the packet's transport part"
    );
}

#[test]
fn an_arp_request_is_broadcast_from_mac_a_for_its_target() {
    let frame = arp_request(v4("198.18.0.1"), v4("198.18.0.2"));
    let h = parse(&frame);
    let link = h.link.clone().and_then(|l| l.ethernet2()).expect("ethernet");
    assert_eq!(link.destination, [0xff; 6]);
    let Some(NetHeaders::Arp(arp)) = &h.net else {
        panic!("not ARP: {:?}", h.net)
    };
    let arp = arp.try_eth_ipv4().expect("Ethernet/IPv4 ARP");
    assert_eq!(
        (arp.sender_mac, arp.sender_ipv4, arp.target_ipv4),
        (MAC_A, v4("198.18.0.1"), v4("198.18.0.2"))
    );
    assert_eq!(arp.operation, etherparse::ArpOperation::REQUEST);
}
