//! Zero-copy views of the headers rampart reads, in the manner of smoltcp: each
//! view borrows the bytes, `new` checks every length its accessors rely on (so
//! accessors never panic), and returns the [`DropReason`] of the first violation.
//!
//! Views check structure only; checksums are not verified (a bridge forwards
//! frames unchanged, and the receiving host checks them).

use crate::reason::DropReason;

pub(crate) fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

pub(crate) fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn addr16(b: &[u8], at: usize) -> u128 {
    let mut a = [0u8; 16];
    a.copy_from_slice(&b[at..at + 16]);
    u128::from_be_bytes(a)
}

pub const ETHERTYPE_IPV4: u16 = 0x0800;
pub const ETHERTYPE_ARP: u16 = 0x0806;
pub const ETHERTYPE_VLAN: u16 = 0x8100;
pub const ETHERTYPE_QINQ: u16 = 0x88a8;
pub const ETHERTYPE_IPV6: u16 = 0x86dd;

pub const PROTO_ICMP: u8 = 1;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;
pub const PROTO_ICMPV6: u8 = 58;
pub const PROTO_SCTP: u8 = 132;

/// An Ethernet II header.
#[derive(Clone, Copy, Debug)]
pub struct Ethernet<'a>(&'a [u8]);

impl<'a> Ethernet<'a> {
    pub const LEN: usize = 14;

    pub fn new(b: &'a [u8]) -> Result<Self, DropReason> {
        if b.len() < Self::LEN {
            return Err(DropReason::EthernetTruncated);
        }
        Ok(Ethernet(b))
    }
    pub fn destination(&self) -> [u8; 6] {
        [self.0[0], self.0[1], self.0[2], self.0[3], self.0[4], self.0[5]]
    }
    pub fn source(&self) -> [u8; 6] {
        [self.0[6], self.0[7], self.0[8], self.0[9], self.0[10], self.0[11]]
    }
    pub fn ethertype(&self) -> u16 {
        be16(self.0, 12)
    }
    pub fn payload(&self) -> &'a [u8] {
        &self.0[Self::LEN..]
    }
}

/// The 4 bytes that follow an 802.1Q or 802.1ad TPID: TCI and the next ethertype.
#[derive(Clone, Copy, Debug)]
pub struct VlanTag<'a>(&'a [u8]);

impl<'a> VlanTag<'a> {
    pub const LEN: usize = 4;

    pub fn new(b: &'a [u8]) -> Result<Self, DropReason> {
        if b.len() < Self::LEN {
            return Err(DropReason::VlanTruncated);
        }
        Ok(VlanTag(b))
    }
    /// The VLAN ID (12 bits).
    pub fn id(&self) -> u16 {
        be16(self.0, 0) & 0x0fff
    }
    pub fn priority(&self) -> u8 {
        self.0[0] >> 5
    }
    pub fn ethertype(&self) -> u16 {
        be16(self.0, 2)
    }
    pub fn payload(&self) -> &'a [u8] {
        &self.0[Self::LEN..]
    }
}

/// An ARP packet: the fixed header and its four addresses.
#[derive(Clone, Copy, Debug)]
pub struct Arp<'a>(&'a [u8]);

impl<'a> Arp<'a> {
    pub fn new(b: &'a [u8]) -> Result<Self, DropReason> {
        if b.len() < 8 {
            return Err(DropReason::ArpTruncated);
        }
        let addrs = 2 * (usize::from(b[4]) + usize::from(b[5]));
        if b.len() < 8 + addrs {
            return Err(DropReason::ArpTruncated);
        }
        Ok(Arp(b))
    }
    pub fn operation(&self) -> u16 {
        be16(self.0, 6)
    }
}

/// An IPv4 header with its options; the payload ends at the total length, so
/// Ethernet padding is never parsed as data.
#[derive(Clone, Copy, Debug)]
pub struct Ipv4<'a>(&'a [u8]);

impl<'a> Ipv4<'a> {
    pub const MIN_LEN: usize = 20;

    pub fn new(b: &'a [u8]) -> Result<Self, DropReason> {
        if b.len() < Self::MIN_LEN {
            return Err(DropReason::Ipv4Truncated);
        }
        if b[0] >> 4 != 4 {
            return Err(DropReason::IpVersionMismatch);
        }
        let header = usize::from(b[0] & 0x0f) * 4;
        if header < Self::MIN_LEN {
            return Err(DropReason::Ipv4IhlTooSmall);
        }
        if header > b.len() {
            return Err(DropReason::Ipv4IhlBeyondPacket);
        }
        let total = usize::from(be16(b, 2));
        if total > b.len() {
            return Err(DropReason::Ipv4TotalLengthBeyondFrame);
        }
        if total < header {
            return Err(DropReason::Ipv4TotalLengthTooSmall);
        }
        Ok(Ipv4(&b[..total]))
    }
    pub fn header_len(&self) -> usize {
        usize::from(self.0[0] & 0x0f) * 4
    }
    pub fn total_len(&self) -> usize {
        self.0.len()
    }
    pub fn ident(&self) -> u16 {
        be16(self.0, 4)
    }
    pub fn more_fragments(&self) -> bool {
        self.0[6] & 0x20 != 0
    }
    /// Fragment offset in 8-byte units.
    pub fn fragment_offset(&self) -> u16 {
        be16(self.0, 6) & 0x1fff
    }
    pub fn ttl(&self) -> u8 {
        self.0[8]
    }
    pub fn protocol(&self) -> u8 {
        self.0[9]
    }
    pub fn source(&self) -> u32 {
        be32(self.0, 12)
    }
    pub fn destination(&self) -> u32 {
        be32(self.0, 16)
    }
    pub fn options(&self) -> &'a [u8] {
        &self.0[Self::MIN_LEN..self.header_len()]
    }
    pub fn payload(&self) -> &'a [u8] {
        &self.0[self.header_len()..]
    }
}

/// The fixed IPv6 header; the payload ends at the payload length.
#[derive(Clone, Copy, Debug)]
pub struct Ipv6<'a>(&'a [u8]);

impl<'a> Ipv6<'a> {
    pub const LEN: usize = 40;

    pub fn new(b: &'a [u8]) -> Result<Self, DropReason> {
        if b.len() < Self::LEN {
            return Err(DropReason::Ipv6Truncated);
        }
        if b[0] >> 4 != 6 {
            return Err(DropReason::IpVersionMismatch);
        }
        let end = Self::LEN + usize::from(be16(b, 4));
        if end > b.len() {
            return Err(DropReason::Ipv6PayloadBeyondFrame);
        }
        Ok(Ipv6(&b[..end]))
    }
    pub fn next_header(&self) -> u8 {
        self.0[6]
    }
    pub fn hop_limit(&self) -> u8 {
        self.0[7]
    }
    pub fn source(&self) -> u128 {
        addr16(self.0, 8)
    }
    pub fn destination(&self) -> u128 {
        addr16(self.0, 24)
    }
    pub fn payload(&self) -> &'a [u8] {
        &self.0[Self::LEN..]
    }
}

pub const IPV6_HOP_BY_HOP: u8 = 0;
pub const IPV6_ROUTING: u8 = 43;
pub const IPV6_FRAGMENT: u8 = 44;
pub const IPV6_DESTINATION_OPTIONS: u8 = 60;
/// Extension headers walked at most; a longer chain is dropped.
pub const IPV6_MAX_EXTENSIONS: usize = 8;

/// Where an IPv6 extension-header walk ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv6Upper {
    /// The upper-layer protocol.
    pub protocol: u8,
    /// Offset of the upper-layer header in the IPv6 payload.
    pub offset: usize,
    /// The fragment header, if any: (identification, offset in 8-byte units, more).
    pub fragment: Option<(u32, u16, bool)>,
}

/// Walks the extension headers (hop-by-hop, routing, fragment, destination
/// options) of an IPv6 payload, at most [`IPV6_MAX_EXTENSIONS`] of them. The
/// walk ends at the fragment header of a non-first fragment (offset not 0):
/// nothing after it is a header, so `protocol` is then that header's next
/// header, which every fragment of the datagram carries alike.
pub fn ipv6_walk(first: u8, payload: &[u8]) -> Result<Ipv6Upper, DropReason> {
    let (mut next, mut at, mut fragment) = (first, 0usize, None);
    for _ in 0..=IPV6_MAX_EXTENSIONS {
        let len = match next {
            IPV6_HOP_BY_HOP | IPV6_ROUTING | IPV6_DESTINATION_OPTIONS => {
                if payload.len() < at + 2 {
                    return Err(DropReason::Ipv6ExtensionTruncated);
                }
                (usize::from(payload[at + 1]) + 1) * 8
            }
            IPV6_FRAGMENT => {
                if payload.len() < at + 8 {
                    return Err(DropReason::Ipv6ExtensionTruncated);
                }
                let field = be16(payload, at + 2);
                let (id, offset) = (be32(payload, at + 4), field >> 3);
                fragment = Some((id, offset, field & 1 != 0));
                if offset != 0 {
                    // A later fragment: what follows its fragment header is
                    // data, whatever the next-header field names.
                    return Ok(Ipv6Upper {
                        protocol: payload[at],
                        offset: at + 8,
                        fragment,
                    });
                }
                8
            }
            protocol => {
                return Ok(Ipv6Upper {
                    protocol,
                    offset: at,
                    fragment,
                })
            }
        };
        if payload.len() < at + len {
            return Err(DropReason::Ipv6ExtensionTruncated);
        }
        next = payload[at];
        at += len;
    }
    Err(DropReason::Ipv6ExtensionChainTooLong)
}

pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_PSH: u8 = 0x08;
pub const TCP_ACK: u8 = 0x10;

/// A TCP header with its options.
#[derive(Clone, Copy, Debug)]
pub struct Tcp<'a>(&'a [u8]);

impl<'a> Tcp<'a> {
    pub const MIN_LEN: usize = 20;

    pub fn new(b: &'a [u8]) -> Result<Self, DropReason> {
        if b.len() < Self::MIN_LEN {
            return Err(DropReason::TcpTruncated);
        }
        let offset = usize::from(b[12] >> 4) * 4;
        if offset < Self::MIN_LEN {
            return Err(DropReason::TcpDataOffsetTooSmall);
        }
        if offset > b.len() {
            return Err(DropReason::TcpDataOffsetBeyondPacket);
        }
        Ok(Tcp(b))
    }
    pub fn source_port(&self) -> u16 {
        be16(self.0, 0)
    }
    pub fn destination_port(&self) -> u16 {
        be16(self.0, 2)
    }
    pub fn sequence(&self) -> u32 {
        be32(self.0, 4)
    }
    pub fn acknowledgement(&self) -> u32 {
        be32(self.0, 8)
    }
    /// FIN, SYN, RST, PSH, ACK, URG, ECE, CWR in bits 0-7.
    pub fn flags(&self) -> u8 {
        self.0[13]
    }
    pub fn payload(&self) -> &'a [u8] {
        &self.0[usize::from(self.0[12] >> 4) * 4..]
    }
}

/// A UDP header.
#[derive(Clone, Copy, Debug)]
pub struct Udp<'a>(&'a [u8]);

impl<'a> Udp<'a> {
    pub const LEN: usize = 8;

    pub fn new(b: &'a [u8]) -> Result<Self, DropReason> {
        if b.len() < Self::LEN {
            return Err(DropReason::UdpTruncated);
        }
        Ok(Udp(b))
    }
    pub fn source_port(&self) -> u16 {
        be16(self.0, 0)
    }
    pub fn destination_port(&self) -> u16 {
        be16(self.0, 2)
    }
}

/// The SCTP common header (ports, verification tag, checksum).
#[derive(Clone, Copy, Debug)]
pub struct Sctp<'a>(&'a [u8]);

impl<'a> Sctp<'a> {
    pub const LEN: usize = 12;

    pub fn new(b: &'a [u8]) -> Result<Self, DropReason> {
        if b.len() < Self::LEN {
            return Err(DropReason::SctpTruncated);
        }
        Ok(Sctp(b))
    }
    pub fn source_port(&self) -> u16 {
        be16(self.0, 0)
    }
    pub fn destination_port(&self) -> u16 {
        be16(self.0, 2)
    }
}

/// An ICMP or ICMPv6 header: type, code, checksum and the 4-byte rest, which
/// holds the echo identifier and sequence, and after which errors quote the
/// offending packet.
#[derive(Clone, Copy, Debug)]
pub struct Icmp<'a>(&'a [u8]);

impl<'a> Icmp<'a> {
    pub const LEN: usize = 8;

    pub fn new(b: &'a [u8]) -> Result<Self, DropReason> {
        if b.len() < Self::LEN {
            return Err(DropReason::IcmpTruncated);
        }
        Ok(Icmp(b))
    }
    pub fn kind(&self) -> u8 {
        self.0[0]
    }
    pub fn code(&self) -> u8 {
        self.0[1]
    }
    /// The identifier of an echo request or reply.
    pub fn echo_id(&self) -> u16 {
        be16(self.0, 4)
    }
    /// What follows the 8-byte header: an error's quoted packet.
    pub fn body(&self) -> &'a [u8] {
        &self.0[Self::LEN..]
    }
}
