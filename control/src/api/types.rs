//! The API's contract: every request and answer body, declared once. The
//! server writes these, `rampart ctl` and the tests read them, so a renamed
//! or retyped field fails to compile on both sides. Answers are written with
//! their keys in sorted order. docs/api.md describes them for operators.
//!
//! Requests that create objects take the model's own specs
//! ([`VpcSpec`](crate::model::VpcSpec), [`GroupSpec`](crate::model::GroupSpec),
//! [`RuleSpec`](crate::model::RuleSpec), ...); the `vpc` of a spec may be left
//! out, the path names it.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

pub use crate::config::{Changes, ModelChanges};
use crate::model::{Action, Direction, Family, PortRange, Protocol, Remote};

/// Every error: the first error's code and message, and all of them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub code: String,
    pub message: String,
    /// The object the first error is about (model errors only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// The field the first error is about: absent when the error is about
    /// the request as a whole, null when it is about a model object as a
    /// whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<Option<String>>,
    pub errors: Vec<ErrorItem>,
}

/// One error of an [`ErrorBody`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorItem {
    pub code: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// `GET /health`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    pub status: String,
    /// The snapshot generation published last.
    pub generation: u64,
    /// The generation every worker runs.
    pub enforced_generation: u64,
    pub workers: usize,
}

/// `GET /v1/version`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Version {
    pub name: String,
    pub version: String,
}

/// `GET /v1/stats`: the workers' counters, summed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    pub ports: Vec<PortStats>,
    /// Frames dropped, by reason (reasons with none are left out).
    pub drops: BTreeMap<String, u64>,
    pub flows: FlowStats,
    /// ICMP errors passed as related to a connection.
    pub related_icmp: u64,
    /// ARP and neighbour discovery, passed without evaluation.
    pub arp_nd: u64,
    pub generation: u64,
    pub enforced_generation: u64,
    pub workers: usize,
    /// Connections opened, by the rule that allowed them, most first.
    pub rules: Vec<RuleHits>,
    /// Connections opened by rules beyond the counted ones.
    pub rules_other: u64,
}

/// One port's frames and bytes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortStats {
    /// `a` or `b`.
    pub port: String,
    pub received: u64,
    pub received_bytes: u64,
    pub forwarded: u64,
    pub forwarded_bytes: u64,
    pub dropped: u64,
    pub dropped_bytes: u64,
}

/// The connection tables, summed over the workers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowStats {
    pub active: u64,
    pub capacity: u64,
    pub created: u64,
    pub expired: u64,
    pub evicted: u64,
    pub revoked: u64,
}

/// Connections one rule opened.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleHits {
    /// `sgr-N`.
    pub id: String,
    /// Its group's name; null when the rule is no longer in the model.
    pub group: Option<String>,
    pub text: Option<String>,
    pub flows: u64,
}

/// A VPC.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VpcView {
    pub id: String,
    pub name: String,
    pub description: String,
    pub vlan: Option<u16>,
    pub default_group: Option<String>,
    /// How many security groups it has.
    pub groups: usize,
    /// How many interfaces it has.
    pub interfaces: usize,
}

/// A security group with its rules.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupView {
    pub id: String,
    pub name: String,
    pub vpc: Option<String>,
    pub description: String,
    pub stateful: bool,
    /// `basic` or `advanced`.
    pub kind: String,
    /// `accept` or `drop`.
    pub intra_group: String,
    pub rules: Vec<RuleView>,
}

/// A validated rule, as the model holds it, with its id and its text.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleView {
    /// `sgr-N`.
    pub id: String,
    /// The rule as one line, e.g. `ingress tcp port 80 from any allow priority 100`.
    pub text: String,
    pub direction: Direction,
    pub protocol: Protocol,
    pub ports: Option<PortRange>,
    pub source_ports: Option<PortRange>,
    pub icmp_type: Option<u8>,
    pub icmp_code: Option<u8>,
    pub remote: Option<Remote>,
    pub local: Option<IpNet>,
    pub family: Option<Family>,
    pub action: Action,
    pub priority: u16,
    pub description: String,
}

/// A protected interface.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterfaceView {
    pub id: String,
    pub name: String,
    pub vpc: Option<String>,
    pub addresses: Vec<IpAddr>,
    pub mac: Option<String>,
    /// Its groups' names, in order.
    pub groups: Vec<String>,
    pub bare_metal: bool,
}

/// A prefix list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrefixListView {
    pub id: String,
    pub name: String,
    pub vpc: Option<String>,
    pub description: String,
    pub cidrs: Vec<IpNet>,
}

/// `GET /v1/model`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelView {
    pub vpcs: Vec<VpcView>,
    pub security_groups: Vec<GroupView>,
    pub interfaces: Vec<InterfaceView>,
    pub prefix_lists: Vec<PrefixListView>,
    /// The model is the config file's, unchanged through the API.
    pub from_file: bool,
    pub generation: u64,
}

/// `GET /v1/vpcs`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VpcList {
    pub vpcs: Vec<VpcView>,
}

/// `GET /v1/vpcs/{vpc}/security-groups`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupList {
    pub security_groups: Vec<GroupView>,
}

/// `GET /v1/vpcs/{vpc}/interfaces`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterfaceList {
    pub interfaces: Vec<InterfaceView>,
}

/// `GET /v1/vpcs/{vpc}/prefix-lists`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrefixListList {
    pub prefix_lists: Vec<PrefixListView>,
}

/// The answer to every change: it is enforced by every worker at
/// `generation`, with what the change itself answers (`T`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enforced<T = Nothing> {
    pub generation: u64,
    /// Always true: a change that is not enforced answers an error.
    pub enforced: bool,
    /// The fleet store's revision of the change (a node of a fleet only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<i64>,
    #[serde(flatten)]
    pub answer: T,
}

/// A change that answers nothing of its own.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Nothing {}

/// A created object's id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Created {
    pub id: String,
}

/// A created security group: its id and the group as created (with the
/// kind's default rules).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupCreated {
    pub id: String,
    pub security_group: Option<GroupView>,
}

/// Rules added or set: their ids, in the order given.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleIds {
    pub ids: Vec<String>,
}

/// `PUT /v1/model`: what changed, by kind of object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replaced {
    pub changed: ModelChanges,
}

/// `POST /v1/reload`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReloadRequest {
    /// Apply the file even though it drops changes made through the API.
    #[serde(default)]
    pub force: bool,
}

/// `POST /v1/reload`: a note for the operator (empty when there is none).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reloaded {
    pub note: String,
}

/// `POST /v1/vpcs/{vpc}/security-groups/{sg}/copy`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CopyRequest {
    /// The copy's name.
    pub name: String,
}

/// `POST /v1/explain`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExplainRequest {
    /// e.g. `tcp 198.51.100.7:40000 -> 198.18.1.10:443`.
    pub packet: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vlan: Option<u16>,
    /// The VPC (its VLAN tags the packet); default the untagged one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vpc: Option<String>,
}

/// `POST /v1/explain`: would the packet pass, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Explained {
    pub allowed: bool,
    /// Whether it opens a tracked connection.
    pub stateful: bool,
    pub text: String,
}

/// `PUT /v1/model`: the model part of a configuration document
/// (docs/config.md), as JSON; each table is validated as the file's would be.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelDocument {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quotas: Option<serde_json::Value>,
    #[serde(default)]
    pub vpc: Vec<serde_json::Value>,
    #[serde(default)]
    pub prefix_list: Vec<serde_json::Value>,
    #[serde(default)]
    pub security_group: Vec<serde_json::Value>,
    #[serde(default)]
    pub interface: Vec<serde_json::Value>,
}

/// `GET /v1/fleet`: the fleet store as this node sees it, and every live
/// node with the revision it enforces.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FleetView {
    /// This node's name.
    pub node: String,
    pub endpoints: Vec<String>,
    pub prefix: String,
    /// This node reaches the store.
    pub store_up: bool,
    /// Why it does not (empty when it does).
    pub store_error: String,
    /// The newest revision of a model change seen in the store.
    pub latest_revision: i64,
    /// The revision this node enforces.
    pub revision: i64,
    /// Seconds since this node last enforced the store's newest model (0
    /// while it does).
    pub lag_seconds: f64,
    pub nodes: Vec<FleetNode>,
}

/// One live node of a fleet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetNode {
    pub name: String,
    /// The store revision it enforces.
    pub revision: i64,
    pub generation: u64,
    pub api: String,
    pub version: String,
    /// It does not enforce the newest model change seen.
    pub behind: bool,
}
