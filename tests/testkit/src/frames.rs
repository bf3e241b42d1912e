//! Building well-formed frames: for tests, benchmarks, the pcap regression
//! captures and the traffic generator. Checksums are filled in, so captures
//! written from these frames read cleanly in Wireshark or tcpdump.
//!
//! Not on the hot path: building allocates.

use std::net::IpAddr;

use rampart_dataplane::wire::headers::*;

/// The transport part of a frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum L4 {
    Tcp {
        src_port: u16,
        dst_port: u16,
        flags: u8,
        seq: u32,
        ack: u32,
    },
    Udp {
        src_port: u16,
        dst_port: u16,
    },
    Sctp {
        src_port: u16,
        dst_port: u16,
    },
    /// ICMP (v4) or ICMPv6 (v6) echo request or reply.
    Echo {
        request: bool,
        id: u16,
        seq: u16,
    },
    /// Any ICMP or ICMPv6 message with a body, e.g. an error quoting a packet.
    Icmp {
        kind: u8,
        code: u8,
        body: Vec<u8>,
    },
    /// Another protocol number with `payload` bytes.
    Raw {
        proto: u8,
    },
}

/// A frame to build.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spec {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    /// VLAN tags, outer first; two make a QinQ frame (outer TPID 0x88a8).
    pub vlans: Vec<u16>,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub l4: L4,
    /// Bytes of data after the transport header.
    pub payload: usize,
    pub ident: u32,
}

pub const MAC_A: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];
pub const MAC_B: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0b];

impl Spec {
    pub fn new(src: IpAddr, dst: IpAddr, l4: L4) -> Self {
        Spec {
            src_mac: MAC_A,
            dst_mac: MAC_B,
            vlans: Vec::new(),
            src,
            dst,
            l4,
            payload: 0,
            ident: 1,
        }
    }

    pub fn tcp(src: IpAddr, src_port: u16, dst: IpAddr, dst_port: u16, flags: u8) -> Self {
        Spec::new(
            src,
            dst,
            L4::Tcp {
                src_port,
                dst_port,
                flags,
                seq: 1000,
                ack: if flags & TCP_ACK != 0 { 2000 } else { 0 },
            },
        )
    }

    pub fn udp(src: IpAddr, src_port: u16, dst: IpAddr, dst_port: u16) -> Self {
        Spec::new(src, dst, L4::Udp { src_port, dst_port })
    }

    pub fn echo(src: IpAddr, dst: IpAddr, request: bool, id: u16) -> Self {
        Spec::new(src, dst, L4::Echo { request, id, seq: 1 })
    }

    pub fn vlan(mut self, id: u16) -> Self {
        self.vlans.push(id);
        self
    }

    pub fn payload(mut self, bytes: usize) -> Self {
        self.payload = bytes;
        self
    }

    /// The frame swapped end for end: addresses, MACs and ports reversed.
    pub fn reply(&self, l4: L4) -> Self {
        Spec {
            src_mac: self.dst_mac,
            dst_mac: self.src_mac,
            vlans: self.vlans.clone(),
            src: self.dst,
            dst: self.src,
            l4,
            payload: 0,
            ident: self.ident.wrapping_add(1),
        }
    }

    fn v6(&self) -> bool {
        self.dst.is_ipv6()
    }

    fn proto(&self) -> u8 {
        match self.l4 {
            L4::Tcp { .. } => PROTO_TCP,
            L4::Udp { .. } => PROTO_UDP,
            L4::Sctp { .. } => PROTO_SCTP,
            L4::Echo { .. } | L4::Icmp { .. } if self.v6() => PROTO_ICMPV6,
            L4::Echo { .. } | L4::Icmp { .. } => PROTO_ICMP,
            L4::Raw { proto } => proto,
        }
    }

    /// The transport header and payload, checksummed.
    fn transport(&self) -> Vec<u8> {
        let mut t = match &self.l4 {
            L4::Tcp {
                src_port,
                dst_port,
                flags,
                seq,
                ack,
            } => {
                let mut t = Vec::with_capacity(20);
                t.extend(src_port.to_be_bytes());
                t.extend(dst_port.to_be_bytes());
                t.extend(seq.to_be_bytes());
                t.extend(ack.to_be_bytes());
                t.extend([5 << 4, *flags, 0xff, 0xff, 0, 0, 0, 0]);
                t
            }
            L4::Udp { src_port, dst_port } => {
                let mut t = Vec::with_capacity(8);
                t.extend(src_port.to_be_bytes());
                t.extend(dst_port.to_be_bytes());
                let len = u16::try_from(8 + self.payload).unwrap_or(0);
                t.extend(len.to_be_bytes());
                t.extend([0, 0]);
                t
            }
            L4::Sctp { src_port, dst_port } => {
                let mut t = Vec::with_capacity(12);
                t.extend(src_port.to_be_bytes());
                t.extend(dst_port.to_be_bytes());
                t.extend([0; 8]);
                t
            }
            L4::Echo { request, id, seq } => {
                let kind = match (self.v6(), request) {
                    (false, true) => 8,
                    (false, false) => 0,
                    (true, true) => 128,
                    (true, false) => 129,
                };
                let mut t = vec![kind, 0, 0, 0];
                t.extend(id.to_be_bytes());
                t.extend(seq.to_be_bytes());
                t
            }
            L4::Icmp { kind, code, body } => {
                let mut t = vec![*kind, *code, 0, 0, 0, 0, 0, 0];
                t.extend(body);
                t
            }
            L4::Raw { .. } => Vec::new(),
        };
        t.extend((0..self.payload).map(|i| i as u8));
        let proto = self.proto();
        let at = match proto {
            PROTO_TCP => Some(16),
            PROTO_UDP => Some(6),
            PROTO_ICMP | PROTO_ICMPV6 => Some(2),
            _ => None,
        };
        if let Some(at) = at {
            let mut sum = Checksum::default();
            if proto != PROTO_ICMP {
                self.pseudo_header(&mut sum, proto, t.len());
            }
            sum.add(&t);
            let c = sum.finish();
            let c = if c == 0 && proto == PROTO_UDP { 0xffff } else { c };
            t[at..at + 2].copy_from_slice(&c.to_be_bytes());
        }
        t
    }

    fn pseudo_header(&self, sum: &mut Checksum, proto: u8, len: usize) {
        match (self.src, self.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                sum.add(&s.octets());
                sum.add(&d.octets());
                sum.add(&[0, proto]);
                sum.add(&u16::try_from(len).unwrap_or(0).to_be_bytes());
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                sum.add(&s.octets());
                sum.add(&d.octets());
                sum.add(&u32::try_from(len).unwrap_or(0).to_be_bytes());
                sum.add(&[0, 0, 0, proto]);
            }
            _ => {}
        }
    }

    fn ipv4_header(&self, payload_len: usize, flags_offset: u16) -> Vec<u8> {
        let (IpAddr::V4(s), IpAddr::V4(d)) = (self.src, self.dst) else {
            return Vec::new();
        };
        let total = u16::try_from(20 + payload_len).unwrap_or(u16::MAX);
        let mut h = vec![0x45, 0];
        h.extend(total.to_be_bytes());
        h.extend((self.ident as u16).to_be_bytes());
        h.extend(flags_offset.to_be_bytes());
        h.extend([64, self.proto(), 0, 0]);
        h.extend(s.octets());
        h.extend(d.octets());
        let c = Checksum::of(&h);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        h
    }

    fn ipv6_header(&self, payload_len: usize, next: u8) -> Vec<u8> {
        let (IpAddr::V6(s), IpAddr::V6(d)) = (self.src, self.dst) else {
            return Vec::new();
        };
        let mut h = vec![0x60, 0, 0, 0];
        h.extend(u16::try_from(payload_len).unwrap_or(u16::MAX).to_be_bytes());
        h.extend([next, 64]);
        h.extend(s.octets());
        h.extend(d.octets());
        h
    }

    /// The IP packet (no Ethernet header): what an ICMP error quotes.
    pub fn ip_packet(&self) -> Vec<u8> {
        let t = self.transport();
        let mut p = if self.v6() {
            self.ipv6_header(t.len(), self.proto())
        } else {
            self.ipv4_header(t.len(), 0)
        };
        p.extend(t);
        p
    }

    fn ethernet(&self, ip: &[u8]) -> Vec<u8> {
        let mut f = Vec::with_capacity(18 + 8 + ip.len());
        f.extend(self.dst_mac);
        f.extend(self.src_mac);
        for (i, id) in self.vlans.iter().enumerate() {
            let tpid = if i == 0 && self.vlans.len() > 1 {
                ETHERTYPE_QINQ
            } else {
                ETHERTYPE_VLAN
            };
            f.extend(tpid.to_be_bytes());
            f.extend((id & 0x0fff).to_be_bytes());
        }
        let ethertype = if self.v6() { ETHERTYPE_IPV6 } else { ETHERTYPE_IPV4 };
        f.extend(ethertype.to_be_bytes());
        f.extend(ip);
        // Pad to the 60-byte minimum, as a NIC would.
        if f.len() < 60 {
            f.resize(60, 0);
        }
        f
    }

    /// The whole frame.
    pub fn build(&self) -> Vec<u8> {
        self.ethernet(&self.ip_packet())
    }

    /// The packet split into IP fragments carrying at most `size` bytes of
    /// transport data each (`size` is rounded down to a multiple of 8, at least 8).
    pub fn fragments(&self, size: usize) -> Vec<Vec<u8>> {
        self.fragments_of(size, false)
    }

    /// IPv6 only: as [`Spec::fragments`], with an 8-byte destination-options
    /// header at the start of the fragmentable part (so every fragment header
    /// names 60 as its next header, and a later fragment's data follows it).
    pub fn fragments_with_destination_options(&self, size: usize) -> Vec<Vec<u8>> {
        self.fragments_of(size, true)
    }

    fn fragments_of(&self, size: usize, destination_options: bool) -> Vec<Vec<u8>> {
        let size = (size / 8).max(1) * 8;
        let destination_options = destination_options && self.v6();
        let mut t = Vec::new();
        if destination_options {
            // Next header, length 0 (8 bytes), one PadN option of 4 bytes.
            t.extend([self.proto(), 0, 1, 4, 0, 0, 0, 0]);
        }
        t.extend(self.transport());
        let first_header = if destination_options {
            IPV6_DESTINATION_OPTIONS
        } else {
            self.proto()
        };
        let chunks: Vec<&[u8]> = t.chunks(size).collect();
        let last = chunks.len() - 1;
        chunks
            .iter()
            .enumerate()
            .map(|(i, chunk)| {
                let offset = u16::try_from(i * size / 8).unwrap_or(0);
                let more = i != last;
                let ip = if self.v6() {
                    let mut ip = self.ipv6_header(8 + chunk.len(), IPV6_FRAGMENT);
                    ip.extend([first_header, 0]);
                    ip.extend(((offset << 3) | u16::from(more)).to_be_bytes());
                    ip.extend(self.ident.to_be_bytes());
                    ip.extend(*chunk);
                    ip
                } else {
                    let mut ip = self.ipv4_header(chunk.len(), offset | if more { 0x2000 } else { 0 });
                    ip.extend(*chunk);
                    ip
                };
                self.ethernet(&ip)
            })
            .collect()
    }
}

/// `s` as an address; panics on a malformed one (the addresses of tests and
/// benchmarks are written in their source).
pub fn ip(s: &str) -> IpAddr {
    s.parse().unwrap_or_else(|_| panic!("{s:?} is not an IP address"))
}

/// A TCP segment from `src`:`sp` to `dst`:`dp` with `flags`, addresses
/// written as text.
pub fn tcp(src: &str, sp: u16, dst: &str, dp: u16, flags: u8) -> Spec {
    Spec::tcp(ip(src), sp, ip(dst), dp, flags)
}

/// An ARP request frame (broadcast) from `MAC_A` for `target`.
pub fn arp_request(sender: [u8; 4], target: [u8; 4]) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend(MAC_A);
    f.extend(ETHERTYPE_ARP.to_be_bytes());
    f.extend([0, 1, 0x08, 0x00, 6, 4, 0, 1]);
    f.extend(MAC_A);
    f.extend(sender);
    f.extend([0; 6]);
    f.extend(target);
    f.resize(60, 0);
    f
}

/// The Internet checksum (RFC 1071).
#[derive(Clone, Copy, Debug, Default)]
pub struct Checksum(u32);

impl Checksum {
    pub fn add(&mut self, bytes: &[u8]) {
        // Callers add even-length pieces, except possibly the last.
        for pair in bytes.chunks(2) {
            let word = u16::from_be_bytes([pair[0], pair.get(1).copied().unwrap_or(0)]);
            self.0 += u32::from(word);
        }
    }
    pub fn finish(self) -> u16 {
        let mut s = self.0;
        while s > 0xffff {
            s = (s & 0xffff) + (s >> 16);
        }
        !(s as u16)
    }
    pub fn of(bytes: &[u8]) -> u16 {
        let mut c = Checksum::default();
        c.add(bytes);
        c.finish()
    }
}
