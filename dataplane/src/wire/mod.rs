//! Frame parsing: zero-copy header views ([`headers`]) and [`parse`], which walks
//! a frame once and returns the few fields the pipeline decides on ([`Parsed`]),
//! or the [`DropReason`] of the first malformation (spec section 5).
//!
//! Covered: Ethernet II with up to two VLAN tags (802.1Q, QinQ; the outer tag's
//! ID selects the VPC), ARP, IPv4 with options and fragments, IPv6 with a bounded
//! walk of hop-by-hop, routing, fragment and destination-options headers, TCP,
//! UDP, SCTP ports, ICMP and ICMPv6 (echo, errors with the quoted packet's flow,
//! neighbour discovery). Any other upper protocol is parsed as addresses only.
//!
//! No input can panic: every view checks the lengths its accessors use, and the
//! property test in `tests.rs` feeds random and mutated frames through `parse`.

pub mod headers;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::reason::DropReason;
use headers::*;

/// The network layer of a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Network {
    Arp,
    Ipv4,
    Ipv6,
    /// Any other ethertype (dropped or forwarded by the `non_ip` setting).
    Other(u16),
}

/// Where an IP packet stands in fragmentation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fragment {
    Whole,
    /// Offset 0 with more fragments to come; the L4 header was parsed.
    First(u32),
    /// A fragment at a non-zero offset: no L4 header.
    Later(u32),
}

/// A flow as seen from its own first packet: addresses and flow ports (TCP, UDP
/// and SCTP ports; for ICMP echo the identifier on both sides).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Tuple {
    pub src: u128,
    pub dst: u128,
    pub proto: u8,
    pub src_port: u16,
    pub dst_port: u16,
}

/// What an ICMP or ICMPv6 message is, for state tracking.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IcmpKind {
    /// Not ICMP (or not parsed: a later fragment).
    No,
    EchoRequest(u16),
    EchoReply(u16),
    /// Destination unreachable, packet too big, time exceeded, parameter
    /// problem, with the flow of the quoted packet when the quote holds one.
    Error(Option<Tuple>),
    /// ICMPv6 neighbour discovery (types 133-137): passes unevaluated.
    NeighbourDiscovery,
    Other,
}

/// The fields of a frame the pipeline decides on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Parsed {
    /// The outer VLAN ID; 0 when untagged (or priority-tagged).
    pub vlan: u16,
    pub network: Network,
    /// Addresses (IPv4 in the low 32 bits), protocol, and ports as the
    /// classifier reads them: for ICMP, `src_port` is the type, `dst_port` the code.
    pub src: u128,
    pub dst: u128,
    pub proto: u8,
    pub src_port: u16,
    pub dst_port: u16,
    pub tcp_flags: u8,
    pub icmp: IcmpKind,
    pub fragment: Fragment,
}

impl Default for Parsed {
    /// An empty frame of unknown ethertype 0: a placeholder for scratch space.
    fn default() -> Self {
        Parsed::new(0, Network::Other(0))
    }
}

/// An address of the family `v6` from its integer form (IPv4 in the low 32 bits).
pub fn ip_addr(a: u128, v6: bool) -> IpAddr {
    if v6 {
        IpAddr::V6(Ipv6Addr::from(a))
    } else {
        IpAddr::V4(Ipv4Addr::from(a as u32))
    }
}

impl Parsed {
    /// The source address.
    pub fn src_ip(&self) -> IpAddr {
        ip_addr(self.src, self.is_v6())
    }

    fn new(vlan: u16, network: Network) -> Self {
        Parsed {
            vlan,
            network,
            src: 0,
            dst: 0,
            proto: 0,
            src_port: 0,
            dst_port: 0,
            tcp_flags: 0,
            icmp: IcmpKind::No,
            fragment: Fragment::Whole,
        }
    }

    pub fn is_v6(&self) -> bool {
        self.network == Network::Ipv6
    }

    /// This packet's flow (addresses, protocol, flow ports) in its own direction.
    pub fn tuple(&self) -> Tuple {
        let (src_port, dst_port) = match self.icmp {
            IcmpKind::EchoRequest(id) | IcmpKind::EchoReply(id) => (id, id),
            IcmpKind::No => (self.src_port, self.dst_port),
            _ => (0, 0),
        };
        Tuple {
            src: self.src,
            dst: self.dst,
            proto: self.proto,
            src_port,
            dst_port,
        }
    }
}

/// Parses a frame. See the module docs.
pub fn parse(frame: &[u8]) -> Result<Parsed, DropReason> {
    let mut p = Parsed::default();
    parse_into(frame, &mut p)?;
    Ok(p)
}

/// Parses a frame into `p` (what [`parse`] returns, without moving it: the
/// pipeline parses into its batch array, and copying the 128-byte result there
/// field by field cost it about a tenth of its time). After an error `p` holds
/// nothing meaningful.
#[inline]
pub fn parse_into(frame: &[u8], p: &mut Parsed) -> Result<(), DropReason> {
    let eth = Ethernet::new(frame)?;
    let mut ethertype = eth.ethertype();
    let mut rest = eth.payload();
    let mut vlan = None;
    // Two tags at most (QinQ); a third leaves a VLAN ethertype, which is not IP.
    for _ in 0..2 {
        if ethertype != ETHERTYPE_VLAN && ethertype != ETHERTYPE_QINQ {
            break;
        }
        let tag = VlanTag::new(rest)?;
        vlan.get_or_insert(tag.id());
        ethertype = tag.ethertype();
        rest = tag.payload();
    }
    let vlan = vlan.unwrap_or(0);
    match ethertype {
        ETHERTYPE_IPV4 => ipv4(p, vlan, rest),
        ETHERTYPE_IPV6 => ipv6(p, vlan, rest),
        ETHERTYPE_ARP => {
            Arp::new(rest)?;
            *p = Parsed::new(vlan, Network::Arp);
            Ok(())
        }
        other => {
            *p = Parsed::new(vlan, Network::Other(other));
            Ok(())
        }
    }
}

fn ipv4(p: &mut Parsed, vlan: u16, b: &[u8]) -> Result<(), DropReason> {
    let ip = Ipv4::new(b)?;
    *p = Parsed::new(vlan, Network::Ipv4);
    p.src = u128::from(ip.source());
    p.dst = u128::from(ip.destination());
    p.proto = ip.protocol();
    let id = u32::from(ip.ident());
    if ip.fragment_offset() != 0 {
        p.fragment = Fragment::Later(id);
        return Ok(());
    }
    if ip.more_fragments() {
        p.fragment = Fragment::First(id);
    }
    transport(p, ip.payload())
}

fn ipv6(p: &mut Parsed, vlan: u16, b: &[u8]) -> Result<(), DropReason> {
    let ip = Ipv6::new(b)?;
    *p = Parsed::new(vlan, Network::Ipv6);
    p.src = ip.source();
    p.dst = ip.destination();
    let upper = ipv6_walk(ip.next_header(), ip.payload())?;
    p.proto = upper.protocol;
    match upper.fragment {
        Some((id, offset, _)) if offset != 0 => {
            p.fragment = Fragment::Later(id);
            return Ok(());
        }
        Some((id, _, true)) => p.fragment = Fragment::First(id),
        // An atomic fragment (offset 0, no more) is a whole packet.
        _ => {}
    }
    transport(p, &ip.payload()[upper.offset..])
}

/// Parses the upper-layer header into `p`. In a first fragment, a header cut
/// short by the fragment boundary is `FirstFragmentTooShort`.
fn transport(p: &mut Parsed, b: &[u8]) -> Result<(), DropReason> {
    let first = matches!(p.fragment, Fragment::First(_));
    let short = |e: DropReason| match e {
        DropReason::TcpTruncated
        | DropReason::TcpDataOffsetBeyondPacket
        | DropReason::UdpTruncated
        | DropReason::SctpTruncated
        | DropReason::IcmpTruncated
            if first =>
        {
            DropReason::FirstFragmentTooShort
        }
        e => e,
    };
    let v6 = p.is_v6();
    match p.proto {
        PROTO_TCP => {
            let tcp = Tcp::new(b).map_err(short)?;
            (p.src_port, p.dst_port, p.tcp_flags) = (tcp.source_port(), tcp.destination_port(), tcp.flags());
        }
        PROTO_UDP => {
            let udp = Udp::new(b).map_err(short)?;
            (p.src_port, p.dst_port) = (udp.source_port(), udp.destination_port());
        }
        PROTO_SCTP => {
            let sctp = Sctp::new(b).map_err(short)?;
            (p.src_port, p.dst_port) = (sctp.source_port(), sctp.destination_port());
        }
        PROTO_ICMP if !v6 => icmp(p, Icmp::new(b).map_err(short)?),
        PROTO_ICMPV6 if v6 => icmp(p, Icmp::new(b).map_err(short)?),
        _ => {}
    }
    Ok(())
}

fn icmp(p: &mut Parsed, m: Icmp<'_>) {
    (p.src_port, p.dst_port) = (u16::from(m.kind()), u16::from(m.code()));
    p.icmp = match (p.is_v6(), m.kind()) {
        (false, 8) | (true, 128) => IcmpKind::EchoRequest(m.echo_id()),
        (false, 0) | (true, 129) => IcmpKind::EchoReply(m.echo_id()),
        (false, 3 | 11 | 12) => IcmpKind::Error(quoted_v4(m.body())),
        (true, 1..=4) => IcmpKind::Error(quoted_v6(m.body())),
        (true, 133..=137) => IcmpKind::NeighbourDiscovery,
        _ => IcmpKind::Other,
    };
}

/// The flow of the IPv4 packet quoted in an ICMP error: its header and at least
/// the first 8 bytes of its payload (RFC 792), else `None`.
fn quoted_v4(b: &[u8]) -> Option<Tuple> {
    if b.len() < Ipv4::MIN_LEN || b[0] >> 4 != 4 {
        return None;
    }
    let header = usize::from(b[0] & 0x0f) * 4;
    if header < Ipv4::MIN_LEN || be16(b, 6) & 0x1fff != 0 {
        return None;
    }
    let l4 = b.get(header..header + 8)?;
    quoted_l4(u128::from(be32(b, 12)), u128::from(be32(b, 16)), b[9], l4, false)
}

/// The flow of the IPv6 packet quoted in an ICMPv6 error.
fn quoted_v6(b: &[u8]) -> Option<Tuple> {
    if b.len() < Ipv6::LEN || b[0] >> 4 != 6 {
        return None;
    }
    // The quote may be cut anywhere, so walk what is there without the payload
    // length check.
    let upper = ipv6_walk(b[6], &b[Ipv6::LEN..]).ok()?;
    if matches!(upper.fragment, Some((_, offset, _)) if offset != 0) {
        return None;
    }
    let at = Ipv6::LEN + upper.offset;
    let l4 = b.get(at..at + 8)?;
    let src = u128::from_be_bytes(b[8..24].try_into().ok()?);
    let dst = u128::from_be_bytes(b[24..40].try_into().ok()?);
    quoted_l4(src, dst, upper.protocol, l4, true)
}

fn quoted_l4(src: u128, dst: u128, proto: u8, l4: &[u8], v6: bool) -> Option<Tuple> {
    let (src_port, dst_port) = match proto {
        PROTO_TCP | PROTO_UDP | PROTO_SCTP => (be16(l4, 0), be16(l4, 2)),
        PROTO_ICMP if !v6 && matches!(l4[0], 0 | 8) => (be16(l4, 4), be16(l4, 4)),
        PROTO_ICMPV6 if v6 && matches!(l4[0], 128 | 129) => (be16(l4, 4), be16(l4, 4)),
        // An error about an error, or about other ICMP: no flow to relate to.
        PROTO_ICMP | PROTO_ICMPV6 => return None,
        _ => (0, 0),
    };
    Some(Tuple {
        src,
        dst,
        proto,
        src_port,
        dst_port,
    })
}
