//! Appliance settings: the behaviour switches of spec sections 3-5 and the quotas
//! of section 6, with the spec's defaults.
//!
//! Settings have no cross references, so they deserialize straight into typed
//! structs (unknown keys and unknown enum values are refused by serde, with the
//! file position) and [`Settings::validate`] then checks ranges. Times are whole
//! seconds, as in the spec's table.

use serde::{Deserialize, Serialize};

use crate::model::{ErrorCode, ModelError, Quotas};

/// What happens to traffic between two addresses that are not protected
/// interfaces (spec section 3, step 5).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Unprotected {
    #[default]
    Forward,
    Drop,
}

/// What happens to Ethernet frames that are neither IP nor ARP (spec section 5).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NonIp {
    #[default]
    Drop,
    Forward,
}

/// What a rule change does to existing connections (spec section 4).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnRuleChange {
    /// Re-evaluate each connection at its next packet; drop it if no longer allowed.
    #[default]
    Revalidate,
    /// Let existing connections live until they end or time out.
    Keep,
}

/// Idle timeouts of tracked connections, in seconds (spec section 4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Timeouts {
    pub tcp_syn_sent: u64,
    pub tcp_syn_received: u64,
    pub tcp_established: u64,
    /// FIN_WAIT, CLOSE_WAIT, LAST_ACK, CLOSING.
    pub tcp_closing: u64,
    pub tcp_time_wait: u64,
    pub tcp_reset: u64,
    pub udp_unreplied: u64,
    pub udp_replied: u64,
    pub icmp_echo: u64,
    pub other: u64,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            tcp_syn_sent: 120,
            tcp_syn_received: 60,
            tcp_established: 432_000,
            tcp_closing: 120,
            tcp_time_wait: 120,
            tcp_reset: 10,
            udp_unreplied: 30,
            udp_replied: 180,
            icmp_echo: 30,
            other: 600,
        }
    }
}

impl Timeouts {
    fn named(&self) -> [(&'static str, u64); 10] {
        [
            ("tcp_syn_sent", self.tcp_syn_sent),
            ("tcp_syn_received", self.tcp_syn_received),
            ("tcp_established", self.tcp_established),
            ("tcp_closing", self.tcp_closing),
            ("tcp_time_wait", self.tcp_time_wait),
            ("tcp_reset", self.tcp_reset),
            ("udp_unreplied", self.udp_unreplied),
            ("udp_replied", self.udp_replied),
            ("icmp_echo", self.icmp_echo),
            ("other", self.other),
        ]
    }
}

/// Longest idle timeout accepted: 30 days. Longer ones are almost certainly a unit
/// mistake (milliseconds written as seconds).
pub const MAX_TIMEOUT_SECS: u64 = 30 * 24 * 3600;

/// The `[settings]` table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Traffic with no protected endpoint: `forward` (default) or `drop`.
    pub unprotected: Unprotected,
    /// Frames that are neither IP nor ARP: `drop` (default) or `forward`.
    pub non_ip: NonIp,
    /// Accept mid-stream TCP packets of allowed flows as new connections
    /// (for taking over traffic after a restart). Default false.
    pub tcp_pickup: bool,
    /// `revalidate` (default) or `keep`.
    pub on_rule_change: OnRuleChange,
    /// How long later fragments inherit the first fragment's verdict, seconds.
    /// Default 2.
    pub fragment_timeout: u64,
    /// Connections each worker can track; new flows beyond it are dropped and
    /// counted. Default 262144.
    pub flow_table_capacity: u64,
    pub timeouts: Timeouts,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            unprotected: Unprotected::Forward,
            non_ip: NonIp::Drop,
            tcp_pickup: false,
            on_rule_change: OnRuleChange::Revalidate,
            fragment_timeout: 2,
            flow_table_capacity: 262_144,
            timeouts: Timeouts::default(),
        }
    }
}

/// Largest per-worker flow table: 64 Mi entries of 64 bytes is 4 GiB per worker.
pub const MAX_FLOW_TABLE_CAPACITY: u64 = 1 << 26;

impl Settings {
    /// Checks ranges; returns every problem found.
    pub fn validate(&self) -> Vec<ModelError> {
        let mut errs = Vec::new();
        let bad = |field: &'static str, msg: String| ModelError::field("settings", field, msg);
        for (name, secs) in self.timeouts.named() {
            if !(1..=MAX_TIMEOUT_SECS).contains(&secs) {
                errs.push(ModelError::field(
                    "settings.timeouts",
                    name,
                    format!("{secs} s is out of range 1-{MAX_TIMEOUT_SECS} s"),
                ));
            }
        }
        if !(1..=60).contains(&self.fragment_timeout) {
            errs.push(bad(
                "fragment_timeout",
                format!("{} s is out of range 1-60 s", self.fragment_timeout),
            ));
        }
        if !(1024..=MAX_FLOW_TABLE_CAPACITY).contains(&self.flow_table_capacity) {
            errs.push(bad(
                "flow_table_capacity",
                format!(
                    "{} is out of range 1024-{MAX_FLOW_TABLE_CAPACITY}",
                    self.flow_table_capacity
                ),
            ));
        }
        errs
    }
}

/// The `[quotas]` table; absent keys keep the spec's defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QuotaSettings {
    pub groups_per_vpc: u64,
    pub rules_per_group: u64,
    pub groups_per_interface: u64,
    pub interfaces: u64,
}

impl Default for QuotaSettings {
    fn default() -> Self {
        let q = Quotas::default();
        QuotaSettings {
            groups_per_vpc: q.groups_per_vpc as u64,
            rules_per_group: q.rules_per_group as u64,
            groups_per_interface: q.groups_per_interface as u64,
            interfaces: q.interfaces as u64,
        }
    }
}

/// Upper bound on any quota, to keep a typo from allowing a model that cannot be
/// compiled in reasonable memory.
pub const MAX_QUOTA: u64 = 10_000_000;

impl QuotaSettings {
    pub fn validate(&self) -> Result<Quotas, Vec<ModelError>> {
        let mut errs = Vec::new();
        let mut check = |field: &'static str, v: u64| -> usize {
            if !(1..=MAX_QUOTA).contains(&v) {
                errs.push(
                    ModelError::field("quotas", field, format!("{v} is out of range 1-{MAX_QUOTA}"))
                        .with_code(ErrorCode::Invalid),
                );
            }
            v as usize
        };
        let quotas = Quotas {
            groups_per_vpc: check("groups_per_vpc", self.groups_per_vpc),
            rules_per_group: check("rules_per_group", self.rules_per_group),
            groups_per_interface: check("groups_per_interface", self.groups_per_interface),
            interfaces: check("interfaces", self.interfaces),
        };
        if errs.is_empty() {
            Ok(quotas)
        } else {
            Err(errs)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn load_err(text: &str) -> String {
        Config::parse(text, "test").expect_err("rejected").to_string()
    }

    #[test]
    fn defaults_are_the_specs() {
        let s = Settings::default();
        assert_eq!(s.unprotected, Unprotected::Forward);
        assert_eq!(s.non_ip, NonIp::Drop);
        assert!(!s.tcp_pickup);
        assert_eq!(s.on_rule_change, OnRuleChange::Revalidate);
        assert_eq!(s.fragment_timeout, 2);
        let t = s.timeouts;
        assert_eq!(
            [
                t.tcp_syn_sent,
                t.tcp_syn_received,
                t.tcp_established,
                t.tcp_closing,
                t.tcp_time_wait,
                t.tcp_reset
            ],
            [120, 60, 432_000, 120, 120, 10]
        );
        assert_eq!(
            [t.udp_unreplied, t.udp_replied, t.icmp_echo, t.other],
            [30, 180, 30, 600]
        );
        assert!(s.validate().is_empty());
        let q = Config::parse("", "empty").unwrap().model.quotas();
        assert_eq!(
            (
                q.groups_per_vpc,
                q.rules_per_group,
                q.groups_per_interface,
                q.interfaces
            ),
            (1000, 1000, 16, 100_000)
        );
    }

    #[test]
    fn settings_are_read_from_the_file() {
        let c = Config::parse(
            "[settings]\nunprotected = \"drop\"\nnon_ip = \"forward\"\ntcp_pickup = true\n\
             on_rule_change = \"keep\"\n[settings.timeouts]\nudp_replied = 60\n",
            "test",
        )
        .unwrap();
        assert_eq!(c.settings.unprotected, Unprotected::Drop);
        assert_eq!(c.settings.non_ip, NonIp::Forward);
        assert!(c.settings.tcp_pickup);
        assert_eq!(c.settings.on_rule_change, OnRuleChange::Keep);
        assert_eq!(c.settings.timeouts.udp_replied, 60);
        assert_eq!(
            c.settings.timeouts.udp_unreplied, 30,
            "unset keys keep their default"
        );
    }

    #[test]
    fn out_of_range_settings_are_all_reported_by_name() {
        let e = load_err(
            "[settings]\nfragment_timeout = 0\nflow_table_capacity = 10\n\
             [settings.timeouts]\ntcp_established = 0\nicmp_echo = 99999999\n",
        );
        assert!(e.contains("4 errors found"), "{e}");
        for needle in [
            "settings: field `fragment_timeout`: 0 s is out of range 1-60 s",
            "settings: field `flow_table_capacity`: 10 is out of range",
            "settings.timeouts: field `tcp_established`: 0 s is out of range",
            "settings.timeouts: field `icmp_echo`: 99999999 s is out of range",
        ] {
            assert!(e.contains(needle), "{needle}: {e}");
        }
    }

    #[test]
    fn unknown_setting_names_and_values_are_refused_with_their_line() {
        let e = load_err("[settings]\nunprotected = \"allow\"\n");
        assert!(
            e.contains("line 2") && e.contains("unknown variant `allow`"),
            "{e}"
        );
        let e = load_err("[settings.timeouts]\ntcp_establshed = 5\n");
        assert!(e.contains("unknown field `tcp_establshed`"), "{e}");
        let e = load_err("[settings]\nfragment_timeout = -1\n");
        assert!(e.contains("line 2"), "{e}");
    }
}
