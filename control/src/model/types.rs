//! Value types of the security-group model: identifiers, directions, protocols,
//! port ranges, CIDRs and remotes.
//!
//! Every type here is small, `Copy` where it can be, and parses from the text an
//! operator writes (`"tcp"`, `"443-8443"`, `"198.18.0.0/15"`). Parsing functions
//! return a plain reason string; the caller wraps it in a [`ModelError`] that names
//! the object and the field, because only the caller knows those.
//!
//! [`ModelError`]: super::ModelError

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub struct $name(pub u32);

        impl $name {
            /// Parses `"<prefix><number>"`; anything else is `None` (it is then a name).
            pub fn parse(s: &str) -> Option<Self> {
                let digits = s.strip_prefix($prefix)?;
                if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                digits.parse().ok().map(Self)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}{}", $prefix, self.0)
            }
        }
    };
}

id_type!(
    /// Identifies a VPC (`vpc-N`).
    VpcId,
    "vpc-"
);
id_type!(
    /// Identifies a security group (`sg-N`).
    GroupId,
    "sg-"
);
id_type!(
    /// Identifies one rule across the whole model (`sgr-N`); rule hit counters use it.
    RuleId,
    "sgr-"
);
id_type!(
    /// Identifies a protected interface (`if-N`).
    InterfaceId,
    "if-"
);
id_type!(
    /// Identifies a prefix list (`pl-N`).
    PrefixListId,
    "pl-"
);

/// Declares an enum of keywords: its variants and their spellings, `as_str`,
/// a case-insensitive `parse` (with aliases) whose error lists the spellings,
/// and `Display`.
macro_rules! keyword_enum {
    ($(#[$doc:meta])* $name:ident, $what:literal {
        $($(#[$vdoc:meta])* $variant:ident = $word:literal $(| $alias:literal)*),+ $(,)?
    }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vdoc])* $variant),+
        }

        impl $name {
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $word),+
                }
            }

            pub fn parse(s: &str) -> Result<Self, String> {
                match s.to_ascii_lowercase().as_str() {
                    $($word $(| $alias)* => Ok($name::$variant),)+
                    _ => Err(format!("{s:?} is not {}; expected {}", $what, [$($word),+].join(" or "))),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

keyword_enum!(
    /// Which way a rule looks: `ingress` rules see the source as the remote,
    /// `egress` rules the destination.
    Direction, "a direction" {
        Ingress = "ingress",
        Egress = "egress",
    }
);

keyword_enum!(
    /// IP version, spelled as the `ethertype` field. A rule's family is its
    /// `ethertype`, or what its CIDRs or its ICMP protocol imply; a rule without
    /// one covers both.
    Family, "an ethertype" {
        V4 = "ipv4",
        V6 = "ipv6",
    }
);

keyword_enum!(
    /// What a matching rule does.
    Action, "an action" {
        Allow = "allow",
        Deny = "deny",
    }
);

keyword_enum!(
    /// Basic groups start with egress open; advanced groups start closed both ways.
    Kind, "a group kind" {
        Basic = "basic",
        Advanced = "advanced",
    }
);

keyword_enum!(
    /// Whether members of a group always reach each other (`accept`, overriding
    /// every explicit rule) or only as the rules allow (`drop`).
    IntraGroup, "an intra_group policy" {
        Accept = "accept",
        Drop = "drop",
    }
);

impl Family {
    pub fn of(addr: IpAddr) -> Self {
        match addr {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }

    pub fn of_net(net: IpNet) -> Self {
        match net {
            IpNet::V4(_) => Family::V4,
            IpNet::V6(_) => Family::V6,
        }
    }

    /// The "everything" network of this family, `0.0.0.0/0` or `::/0`.
    pub fn any_net(self) -> IpNet {
        match self {
            Family::V4 => IpNet::V4(ipnet::Ipv4Net::default()),
            Family::V6 => IpNet::V6(ipnet::Ipv6Net::default()),
        }
    }
}

impl Kind {
    /// Spec section 1: `accept` for basic groups, `drop` for advanced ones.
    pub fn default_intra_group(self) -> IntraGroup {
        match self {
            Kind::Basic => IntraGroup::Accept,
            Kind::Advanced => IntraGroup::Drop,
        }
    }
}

/// IANA protocol numbers the model gives names to.
pub mod proto {
    pub const ICMP: u8 = 1;
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
    pub const ICMPV6: u8 = 58;
    pub const SCTP: u8 = 132;
}

/// A rule's protocol: every protocol, or one IP protocol number. Named protocols
/// are stored as their numbers, so `"tcp"` and `6` are the same rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Protocol {
    All,
    Ip(u8),
}

impl Protocol {
    pub fn parse_name(s: &str) -> Result<Self, String> {
        let lower = s.to_ascii_lowercase();
        let named = match lower.as_str() {
            "all" => return Ok(Protocol::All),
            "tcp" => proto::TCP,
            "udp" => proto::UDP,
            "icmp" => proto::ICMP,
            "icmpv6" => proto::ICMPV6,
            "sctp" => proto::SCTP,
            _ => match lower.parse::<i64>() {
                Ok(n) => return Self::from_number(n),
                Err(_) => {
                    return Err(format!(
                        "{s:?} is not a protocol; expected tcp, udp, icmp, icmpv6, sctp, all \
                         or a protocol number 0-255"
                    ))
                }
            },
        };
        Ok(Protocol::Ip(named))
    }

    pub fn from_number(n: i64) -> Result<Self, String> {
        u8::try_from(n)
            .map(Protocol::Ip)
            .map_err(|_| format!("protocol number {n} is out of range 0-255"))
    }

    /// Whether rules of this protocol may carry `ports` and `source_ports`.
    pub fn has_ports(self) -> bool {
        matches!(self, Protocol::Ip(proto::TCP | proto::UDP | proto::SCTP))
    }

    /// Whether rules of this protocol may carry `icmp_type` and `icmp_code`.
    pub fn is_icmp(self) -> bool {
        matches!(self, Protocol::Ip(proto::ICMP | proto::ICMPV6))
    }

    /// ICMP exists only in IPv4 and ICMPv6 only in IPv6.
    pub fn implied_family(self) -> Option<Family> {
        match self {
            Protocol::Ip(proto::ICMP) => Some(Family::V4),
            Protocol::Ip(proto::ICMPV6) => Some(Family::V6),
            _ => None,
        }
    }

    pub fn matches(self, protocol: u8) -> bool {
        match self {
            Protocol::All => true,
            Protocol::Ip(p) => p == protocol,
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Protocol::All => f.write_str("all"),
            Protocol::Ip(proto::TCP) => f.write_str("tcp"),
            Protocol::Ip(proto::UDP) => f.write_str("udp"),
            Protocol::Ip(proto::ICMP) => f.write_str("icmp"),
            Protocol::Ip(proto::ICMPV6) => f.write_str("icmpv6"),
            Protocol::Ip(proto::SCTP) => f.write_str("sctp"),
            Protocol::Ip(n) => write!(f, "{n}"),
        }
    }
}

/// An inclusive, non-empty range of ports within 1-65535.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PortRange {
    pub lo: u16,
    pub hi: u16,
}

impl PortRange {
    pub const ALL: PortRange = PortRange { lo: 1, hi: 65535 };

    pub fn new(lo: i64, hi: i64) -> Result<Self, String> {
        for p in [lo, hi] {
            if !(1..=65535).contains(&p) {
                return Err(format!("port {p} is out of range 1-65535"));
            }
        }
        if lo > hi {
            return Err(format!(
                "range {lo}-{hi} is inverted (its first port is above its last)"
            ));
        }
        // Both checked to lie in 1..=65535 above.
        let (lo, hi) = (lo as u16, hi as u16);
        Ok(PortRange { lo, hi })
    }

    /// Parses `"N"` or `"N-M"`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.is_empty() {
            return Err("the port range is empty".to_owned());
        }
        let number = |part: &str| {
            part.trim()
                .parse::<i64>()
                .map_err(|_| format!("{s:?} is not a port or port range; write N or N-M"))
        };
        match s.split_once('-') {
            None => {
                let p = number(s)?;
                Self::new(p, p)
            }
            Some((lo, hi)) => Self::new(number(lo)?, number(hi)?),
        }
    }

    pub fn contains(self, port: u16) -> bool {
        self.lo <= port && port <= self.hi
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.lo == self.hi {
            write!(f, "{}", self.lo)
        } else {
            write!(f, "{}-{}", self.lo, self.hi)
        }
    }
}

/// Parses a CIDR (`198.18.0.0/15`, `2001:db8::/32`) or a bare address, taken as a
/// host route. Host bits past the prefix are refused rather than silently cleared,
/// because `198.18.1.10/24` usually means the operator meant something else.
pub fn parse_cidr(s: &str) -> Result<IpNet, String> {
    let s = s.trim();
    if let Ok(addr) = IpAddr::from_str(s) {
        return Ok(IpNet::from(addr));
    }
    let net = IpNet::from_str(s).map_err(|_| {
        format!(
            "{s:?} is not a CIDR; write an address with a prefix length, e.g. 198.18.0.0/15 or 2001:db8::/32"
        )
    })?;
    if net.trunc() != net {
        return Err(format!(
            "{s} has bits set past its /{} prefix; did you mean {}?",
            net.prefix_len(),
            net.trunc()
        ));
    }
    Ok(net)
}

/// Parses one interface address: a plain IPv4 or IPv6 address, no prefix.
pub fn parse_address(s: &str) -> Result<IpAddr, String> {
    IpAddr::from_str(s.trim())
        .map_err(|_| format!("{s:?} is not an IP address; write e.g. 198.18.1.10 or 2001:db8:1::10"))
}

/// A MAC address, `aa:bb:cc:dd:ee:ff` (or with `-`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    pub fn parse(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not a MAC address; write six hex pairs, e.g. 02:00:5e:10:00:01");
        let parts: Vec<&str> = s.split([':', '-']).collect();
        if parts.len() != 6 {
            return Err(bad());
        }
        let mut mac = [0u8; 6];
        for (byte, part) in mac.iter_mut().zip(parts) {
            if part.len() != 2 {
                return Err(bad());
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| bad())?;
        }
        Ok(MacAddr(mac))
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

/// The other endpoint a rule matches: the source for ingress, the destination for
/// egress. Group and prefix-list remotes are stored by id, so renaming a group
/// keeps its references, and a copy can remap them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Remote {
    Cidr(IpNet),
    Group(GroupId),
    PrefixList(PrefixListId),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_ranges_parse_and_reject_bad_ones() {
        assert_eq!(PortRange::parse("443"), Ok(PortRange { lo: 443, hi: 443 }));
        assert_eq!(
            PortRange::parse("8000-8080"),
            Ok(PortRange { lo: 8000, hi: 8080 })
        );
        assert!(PortRange::parse("443-80").unwrap_err().contains("inverted"));
        assert!(PortRange::parse("").unwrap_err().contains("empty"));
        assert!(PortRange::parse("0").unwrap_err().contains("out of range"));
        assert!(PortRange::parse("65536").unwrap_err().contains("out of range"));
        assert!(PortRange::parse("http").unwrap_err().contains("not a port"));
    }

    #[test]
    fn protocols_by_name_and_number_are_the_same() {
        assert_eq!(Protocol::parse_name("tcp"), Ok(Protocol::Ip(6)));
        assert_eq!(Protocol::parse_name("6"), Ok(Protocol::Ip(6)));
        assert_eq!(Protocol::from_number(132), Ok(Protocol::Ip(proto::SCTP)));
        assert_eq!(Protocol::parse_name("ALL"), Ok(Protocol::All));
        assert!(Protocol::from_number(256).is_err());
        assert!(Protocol::parse_name("tpc").is_err());
        assert_eq!(Protocol::Ip(6).to_string(), "tcp");
        assert_eq!(Protocol::Ip(47).to_string(), "47");
    }

    #[test]
    fn cidrs_refuse_host_bits_and_accept_bare_addresses() {
        assert_eq!(parse_cidr("198.18.0.0/15").unwrap().to_string(), "198.18.0.0/15");
        assert_eq!(parse_cidr("198.18.1.10").unwrap().to_string(), "198.18.1.10/32");
        assert_eq!(parse_cidr("2001:db8::1").unwrap().to_string(), "2001:db8::1/128");
        let err = parse_cidr("198.18.1.10/24").unwrap_err();
        assert!(err.contains("did you mean 198.18.1.0/24"), "{err}");
        assert!(parse_cidr("198.18.0.0/33").is_err());
        assert!(parse_cidr("web").is_err());
    }

    #[test]
    fn ids_round_trip_and_names_are_not_ids() {
        assert_eq!(GroupId::parse("sg-12"), Some(GroupId(12)));
        assert_eq!(GroupId(12).to_string(), "sg-12");
        assert_eq!(GroupId::parse("sg-"), None);
        assert_eq!(GroupId::parse("sg-web"), None);
        assert_eq!(GroupId::parse("web"), None);
    }

    #[test]
    fn mac_addresses() {
        let mac = MacAddr::parse("02:00:5E:10:00:01").unwrap();
        assert_eq!(mac.to_string(), "02:00:5e:10:00:01");
        assert!(MacAddr::parse("02:00:5e:10:00").is_err());
        assert!(MacAddr::parse("02:00:5e:10:00:zz").is_err());
    }
}
