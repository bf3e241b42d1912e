//! Raw, unvalidated input for the model's operations: stage one of the two-stage
//! parse. The TOML file and the REST API's JSON bodies deserialize into
//! these types; [`Model`](super::Model) operations turn them into validated
//! objects or into [`Errors`](super::Errors) that name the field at fault.
//!
//! Serde rejects unknown fields and wrong shapes here (`deny_unknown_fields`);
//! everything else (ranges, families, references) is checked by the model, so that
//! the error can name the group and the rule and so that all errors are reported at
//! once. That is why most fields are plain strings and integers rather than enums.

use std::fmt;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A value written either as a number or as a string: `ports = 443` and
/// `ports = "443"` are the same, as are `protocol = 6` and `protocol = "tcp"`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scalar {
    Int(i64),
    Text(String),
}

impl fmt::Display for Scalar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scalar::Int(n) => write!(f, "{n}"),
            Scalar::Text(s) => f.write_str(s),
        }
    }
}

impl Default for Scalar {
    fn default() -> Self {
        Scalar::Text(String::new())
    }
}

impl From<&str> for Scalar {
    fn from(s: &str) -> Self {
        Scalar::Text(s.to_owned())
    }
}

impl From<i64> for Scalar {
    fn from(n: i64) -> Self {
        Scalar::Int(n)
    }
}

impl Serialize for Scalar {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Scalar::Int(n) => s.serialize_i64(*n),
            Scalar::Text(t) => s.serialize_str(t),
        }
    }
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ScalarVisitor;
        impl Visitor<'_> for ScalarVisitor {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number or a string")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar::Int(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
                i64::try_from(v)
                    .map(Scalar::Int)
                    .map_err(|_| E::custom(format!("number {v} is too large")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar::Text(v.to_owned()))
            }
        }
        d.deserialize_any(ScalarVisitor)
    }
}

/// One rule as written by an operator. See the field table in spec section 2 and
/// `docs/config.md`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    /// `ingress` or `egress`.
    pub direction: String,
    /// `tcp`, `udp`, `icmp`, `icmpv6`, `sctp`, `all` or 0-255.
    pub protocol: Scalar,
    /// Destination ports, `N` or `N-M`; tcp, udp and sctp only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<Scalar>,
    /// Source ports, `N` or `N-M`; tcp, udp and sctp only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_ports: Option<Scalar>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icmp_type: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icmp_code: Option<i64>,
    /// A CIDR, `group:<name or id>` or `prefix-list:<name or id>`; absent = any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<String>,
    /// A CIDR restricting which of the interface's own addresses the rule covers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local: Option<String>,
    /// `ipv4` or `ipv6`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ethertype: Option<String>,
    /// `allow` (default) or `deny`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// 1-65535, default 100; smaller is evaluated first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// A VPC: a tenant's network, told apart on the wire by its VLAN (or untagged).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VpcSpec {
    pub name: String,
    /// 802.1Q VLAN ID 1-4094; absent = untagged (at most one VPC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vlan: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// A security group to create, with its rules.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupSpec {
    pub vpc: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stateful: Option<bool>,
    /// `basic` (default) or `advanced`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// `accept` or `drop`; default follows the kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intra_group: Option<String>,
    /// Whether the kind's default rules are added (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_rules: Option<bool>,
    #[serde(default)]
    pub rules: Vec<RuleSpec>,
}

/// A change to a group's own attributes; absent fields are left as they are. The
/// kind cannot change after creation.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupUpdate {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub stateful: Option<bool>,
    #[serde(default)]
    pub intra_group: Option<String>,
}

/// A protected interface of an instance.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InterfaceSpec {
    pub vpc: String,
    pub name: String,
    /// IPv4 and/or IPv6 host addresses, at least one.
    pub addresses: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// Group names or ids, in order. Absent (or empty, unless bare metal): the
    /// VPC's `default` group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups: Option<Vec<String>>,
    /// A bare-metal interface may have no group (`groups = []` said explicitly);
    /// its traffic is then not filtered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bare_metal: Option<bool>,
}

/// A named set of CIDRs that rules can use as their remote.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrefixListSpec {
    pub vpc: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub cidrs: Vec<String>,
}
