//! Why a frame was dropped: one reason per malformed case of spec section 5 and
//! per policy or state decision of sections 3 and 4, each counted on its own.

/// Defines [`DropReason`] with its metric names, count and list in one place, so a
/// new reason cannot be added without a name and a counter.
macro_rules! drop_reasons {
    ($($(#[doc = $doc:literal])* $variant:ident = $name:literal,)*) => {
        /// Why a frame was dropped.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u8)]
        pub enum DropReason {
            $($(#[doc = $doc])* $variant,)*
        }

        impl DropReason {
            /// Every reason, in declaration order (the order of [`DropReason::index`]).
            pub const ALL: &'static [DropReason] = &[$(DropReason::$variant,)*];
            /// How many reasons there are.
            pub const COUNT: usize = DropReason::ALL.len();

            /// The reason's name in counters and metrics (snake case, stable).
            pub const fn name(self) -> &'static str {
                match self {
                    $(DropReason::$variant => $name,)*
                }
            }
        }
    };
}

drop_reasons! {
    /// Longer than the port's largest frame (its MTU plus Ethernet and two VLAN tags).
    Oversize = "oversize",
    /// Shorter than an Ethernet header.
    EthernetTruncated = "ethernet_truncated",
    /// An 802.1Q or QinQ tag runs past the frame.
    VlanTruncated = "vlan_truncated",
    /// An ethertype that is neither IP nor ARP, with `non_ip = drop`.
    NonIp = "non_ip",
    /// An ARP packet shorter than its fixed header.
    ArpTruncated = "arp_truncated",
    /// The IP version field disagrees with the ethertype.
    IpVersionMismatch = "ip_version_mismatch",
    /// Shorter than the 20-byte IPv4 header.
    Ipv4Truncated = "ipv4_truncated",
    /// IPv4 IHL below 5.
    Ipv4IhlTooSmall = "ipv4_ihl_too_small",
    /// IPv4 IHL beyond the packet.
    Ipv4IhlBeyondPacket = "ipv4_ihl_beyond_packet",
    /// IPv4 total length beyond the frame.
    Ipv4TotalLengthBeyondFrame = "ipv4_total_length_beyond_frame",
    /// IPv4 total length shorter than the header it describes.
    Ipv4TotalLengthTooSmall = "ipv4_total_length_too_small",
    /// Shorter than the 40-byte IPv6 header.
    Ipv6Truncated = "ipv6_truncated",
    /// IPv6 payload length beyond the frame.
    Ipv6PayloadBeyondFrame = "ipv6_payload_beyond_frame",
    /// An IPv6 extension header runs past the packet.
    Ipv6ExtensionTruncated = "ipv6_extension_truncated",
    /// More IPv6 extension headers than the parser walks.
    Ipv6ExtensionChainTooLong = "ipv6_extension_chain_too_long",
    /// Shorter than the 20-byte TCP header.
    TcpTruncated = "tcp_truncated",
    /// TCP data offset below 5.
    TcpDataOffsetTooSmall = "tcp_data_offset_too_small",
    /// TCP data offset beyond the packet.
    TcpDataOffsetBeyondPacket = "tcp_data_offset_beyond_packet",
    /// Shorter than the 8-byte UDP header.
    UdpTruncated = "udp_truncated",
    /// Shorter than the 8-byte ICMP or ICMPv6 header.
    IcmpTruncated = "icmp_truncated",
    /// Shorter than the 12-byte SCTP common header.
    SctpTruncated = "sctp_truncated",
    /// A first fragment too short to hold the L4 ports.
    FirstFragmentTooShort = "first_fragment_too_short",
    /// A later fragment with no known first fragment.
    FragmentWithoutFirst = "fragment_without_first",
    /// The fragment table is full (the first fragment of a new datagram).
    FragmentTableFull = "fragment_table_full",
    /// A later fragment whose first fragment was dropped.
    FragmentDenied = "fragment_denied",
    /// The policy denied the first packet of a flow (or a stateless packet).
    Denied = "denied",
    /// Traffic between two unprotected addresses, with `unprotected = drop`.
    Unprotected = "unprotected",
    /// A tracked flow's first TCP packet was not a SYN (and `tcp_pickup` is off).
    TcpInvalid = "tcp_invalid",
    /// The connection table is full and no handshake could be evicted.
    FlowTableFull = "flow_table_full",
    /// An existing connection no longer allowed after a rule change
    /// (`on_rule_change = revalidate`).
    Revoked = "revoked",
}

impl DropReason {
    /// A dense index, `0..COUNT`, for counter arrays.
    pub const fn index(self) -> usize {
        self as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_snake_case_and_indexes_dense() {
        let mut names: Vec<_> = DropReason::ALL.iter().map(|r| r.name()).collect();
        for name in &names {
            assert!(
                name.chars()
                    .all(|c| c.is_ascii_lowercase() || c == '_' || c.is_ascii_digit()),
                "{name}"
            );
        }
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), DropReason::COUNT);
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
    }
}
