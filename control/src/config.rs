//! The declarative configuration file (TOML): the whole model plus the appliance
//! settings. Documented for operators in `docs/config.md`.
//!
//! Parsing has two stages, as in ripgrep:
//! 1. serde reads the text into raw specs ([`crate::model::GroupSpec`] and
//!    friends), refusing unknown keys and wrong types with a file position. This
//!    stage stops at the first error, because after a syntax error the rest of the
//!    file cannot be trusted.
//! 2. the specs are applied to a fresh [`Model`] through the same operations the
//!    API uses, so the file and the API can never disagree about what is valid.
//!    This stage reports every error it finds, each naming the object and field.
//!
//! Groups are created in a first pass and given their rules in a second, so a rule
//! may reference a group declared further down the file. A group in the file is a
//! newly created group: it gets its kind's default rules after the rules it lists,
//! unless it says `default_rules = false`. A `[[security_group]]` named `default`
//! configures the VPC's existing default group the same way.
//!
//! A file either yields a complete, valid model or nothing: the caller keeps its
//! current model when loading fails.

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::appliance::Appliance;
use crate::cluster::Cluster;
use crate::model::{
    default_rule_specs, ErrorCode, Errors, GroupSpec, GroupUpdate, InterfaceSpec, Kind, Model, ModelError,
    PrefixListSpec, VpcSpec, DEFAULT_GROUP,
};
use crate::settings::{QuotaSettings, Settings};

/// Stage one: the file as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    settings: Settings,
    #[serde(default)]
    quotas: QuotaSettings,
    appliance: Option<Appliance>,
    cluster: Option<Cluster>,
    #[serde(default)]
    vpc: Vec<VpcSpec>,
    #[serde(default)]
    prefix_list: Vec<PrefixListSpec>,
    #[serde(default)]
    security_group: Vec<GroupSpec>,
    #[serde(default)]
    interface: Vec<InterfaceSpec>,
}

/// A loaded, fully validated configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub settings: Settings,
    /// The `[appliance]` table, when the file has one (`rampart run` needs it).
    pub appliance: Option<Appliance>,
    /// The `[cluster]` table: the model lives in the fleet store it names.
    pub cluster: Option<Cluster>,
    pub model: Model,
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    /// Stage one: the text is not valid TOML or does not have the file's shape.
    #[error("{origin}: {message}")]
    Syntax { origin: String, message: String },
    /// Stage two: the content is invalid; every error found is listed.
    #[error("{origin}: {} error{} found:\n{errors}", errors.len(), if errors.len() == 1 { "" } else { "s" })]
    Invalid { origin: String, errors: Errors },
}

impl Config {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::parse(&text, &path.display().to_string())
    }

    /// Parses and validates configuration text; `origin` names it in errors.
    /// Reads the same document as JSON (the API's `PUT /v1/model`).
    pub fn parse_json(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let de = &mut serde_json::Deserializer::from_str(text);
        let raw: RawConfig = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            ConfigError::Syntax {
                origin: origin.to_owned(),
                message: format!("{path}: {}", e.into_inner()),
            }
        })?;
        build(raw).map_err(|errors| ConfigError::Invalid {
            origin: origin.to_owned(),
            errors,
        })
    }

    pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Syntax {
            origin: origin.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        build(raw).map_err(|errors| ConfigError::Invalid {
            origin: origin.to_owned(),
            errors,
        })
    }
}

/// Stage two: applies the raw specs to a fresh model, collecting every error.
fn build(raw: RawConfig) -> Result<Config, Errors> {
    let mut errs: Vec<ModelError> = raw.settings.validate();
    if let Some(appliance) = &raw.appliance {
        errs.extend(appliance.validate());
    }
    if let Some(cluster) = &raw.cluster {
        errs.extend(cluster.validate());
    }
    let quotas = raw.quotas.validate().unwrap_or_else(|e| {
        errs.extend(e);
        crate::model::Quotas::default()
    });
    let mut model = Model::new(quotas);

    // An object that fails is replaced by a bare placeholder of the same name
    // where one can be made, so that the objects depending on it are still
    // checked against it instead of failing with "no such ..." in a cascade.
    // The model of a failed file is discarded, so placeholders never escape.
    for vpc in &raw.vpc {
        if !keep(model.create_vpc(vpc).map(drop), &mut errs) {
            placeholder_vpc(&mut model, &vpc.name);
        }
    }
    for pl in &raw.prefix_list {
        if !keep(model.create_prefix_list(pl).map(drop), &mut errs) {
            let bare = PrefixListSpec {
                vpc: pl.vpc.clone(),
                name: pl.name.clone(),
                ..PrefixListSpec::default()
            };
            let _ = model.create_prefix_list(&bare);
        }
    }

    // Pass 1: every group exists (without rules) before any rule is checked.
    // `first` marks the first declaration of each (vpc, name); a repeated one is
    // an error and its rules are not checked against the first one's group.
    let mut first = vec![false; raw.security_group.len()];
    let mut seen = HashSet::new();
    for (i, g) in raw.security_group.iter().enumerate() {
        first[i] = seen.insert((g.vpc.as_str(), g.name.as_str()));
        let ok = if g.name == DEFAULT_GROUP {
            configure_default(&mut model, g, first[i])
        } else {
            model
                .create_group(&GroupSpec {
                    rules: Vec::new(),
                    default_rules: Some(false),
                    ..g.clone()
                })
                .map(drop)
        };
        if !keep(ok, &mut errs) && first[i] && g.name != DEFAULT_GROUP {
            let bare = GroupSpec {
                vpc: g.vpc.clone(),
                name: g.name.clone(),
                default_rules: Some(false),
                ..GroupSpec::default()
            };
            let _ = model.create_group(&bare);
        }
    }
    // Pass 2: rules, listed ones first, then the kind's defaults.
    for (g, _) in raw.security_group.iter().zip(&first).filter(|(_, first)| **first) {
        let Some(vpc) = model.vpc_by_name(&g.vpc) else {
            continue;
        };
        if model.group_by_name(vpc.id, &g.name).is_none() {
            continue;
        }
        // A bad kind was reported in pass 1; check the rules as a basic group's.
        let kind = g
            .kind
            .as_deref()
            .map_or(Ok(Kind::Basic), Kind::parse)
            .unwrap_or(Kind::Basic);
        let mut rules = g.rules.clone();
        if g.default_rules.unwrap_or(true) {
            rules.extend(default_rule_specs(&g.name, kind));
        }
        keep(model.replace_rules(&g.vpc, &g.name, &rules).map(drop), &mut errs);
    }

    for iface in &raw.interface {
        keep(model.create_interface(iface).map(drop), &mut errs);
    }

    if errs.is_empty() {
        Ok(Config {
            settings: raw.settings,
            appliance: raw.appliance,
            cluster: raw.cluster,
            model,
        })
    } else {
        Err(Errors(errs))
    }
}

/// Creates a VPC named `name` with no attributes, on the first free VLAN, to
/// stand in for one whose declaration failed; does nothing if even that fails
/// (a bad or repeated name).
fn placeholder_vpc(model: &mut Model, name: &str) {
    let vlans = std::iter::once(None).chain((1..=4094).rev().map(Some));
    for vlan in vlans {
        if model.vpc_by_vlan(vlan).is_none() {
            let _ = model.create_vpc(&VpcSpec {
                name: name.to_owned(),
                vlan: vlan.map(i64::from),
                description: None,
            });
            return;
        }
    }
}

/// Records the errors of `r`; returns whether it succeeded.
fn keep(r: Result<(), Errors>, errs: &mut Vec<ModelError>) -> bool {
    match r {
        Ok(()) => true,
        Err(e) => {
            errs.extend(e.0);
            false
        }
    }
}

/// Applies a `[[security_group]]` named `default` to the VPC's existing group;
/// `first` is false when the file declared it already.
fn configure_default(model: &mut Model, g: &GroupSpec, first: bool) -> Result<(), Errors> {
    let subject = format!("group {DEFAULT_GROUP:?} in vpc {:?}", g.vpc);
    if !first {
        return Err(
            ModelError::new(ErrorCode::AlreadyExists, subject, "is declared twice in the file").into(),
        );
    }
    if model.vpc_by_name(&g.vpc).is_none() {
        return Err(ModelError::field(subject, "vpc", format!("no vpc {:?}", g.vpc))
            .with_code(ErrorCode::NotFound)
            .into());
    }
    if let Some(kind) = &g.kind {
        if Kind::parse(kind) != Ok(Kind::Basic) {
            return Err(ModelError::field(
                subject,
                "kind",
                format!("the default group is basic, not {kind:?}"),
            )
            .into());
        }
    }
    model.update_group(
        &g.vpc,
        DEFAULT_GROUP,
        &GroupUpdate {
            name: None,
            description: g.description.clone(),
            stateful: g.stateful,
            intra_group: g.intra_group.clone(),
        },
    )
}

/// Counts for a one-line summary of a configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Summary {
    pub vpcs: usize,
    pub groups: usize,
    pub rules: usize,
    pub interfaces: usize,
    pub prefix_lists: usize,
}

/// What changed between two models, by kind of object ([`Summary::diff`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ModelChanges {
    pub vpcs: Changes,
    pub security_groups: Changes,
    pub rules: Changes,
    pub interfaces: Changes,
    pub prefix_lists: Changes,
}

impl ModelChanges {
    /// Each kind's name (as in the API's answer) and its changes, by name.
    pub fn kinds(&self) -> [(&'static str, Changes); 5] {
        [
            ("interfaces", self.interfaces),
            ("prefix_lists", self.prefix_lists),
            ("rules", self.rules),
            ("security_groups", self.security_groups),
            ("vpcs", self.vpcs),
        ]
    }
}

/// How many objects of one kind were added, removed, and changed (same id,
/// other content).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Changes {
    pub added: usize,
    pub removed: usize,
    pub changed: usize,
}

impl Summary {
    /// What changed between two models, by kind of object: how many were
    /// added, removed, and changed (same id, different content).
    pub fn diff(old: &Model, new: &Model) -> ModelChanges {
        fn count<K: Ord, V: PartialEq>(
            old: &std::collections::BTreeMap<K, V>,
            new: &std::collections::BTreeMap<K, V>,
        ) -> Changes {
            Changes {
                added: new.keys().filter(|k| !old.contains_key(k)).count(),
                removed: old.keys().filter(|k| !new.contains_key(k)).count(),
                changed: new
                    .iter()
                    .filter(|(k, v)| old.get(k).is_some_and(|o| o != *v))
                    .count(),
            }
        }
        let by_id = |m: &Model| -> [std::collections::BTreeMap<String, String>; 4] {
            [
                m.vpcs().map(|v| (v.id.to_string(), format!("{v:?}"))).collect(),
                m.groups().map(|g| (g.id.to_string(), format!("{g:?}"))).collect(),
                m.interfaces()
                    .map(|i| (i.id.to_string(), format!("{i:?}")))
                    .collect(),
                m.prefix_lists()
                    .map(|p| (p.id.to_string(), format!("{p:?}")))
                    .collect(),
            ]
        };
        let rules = |m: &Model| -> std::collections::BTreeMap<String, String> {
            m.groups()
                .flat_map(|g| g.rules.iter().map(|r| (r.id.to_string(), format!("{r:?}"))))
                .collect()
        };
        let (o, n) = (by_id(old), by_id(new));
        ModelChanges {
            vpcs: count(&o[0], &n[0]),
            security_groups: count(&o[1], &n[1]),
            rules: count(&rules(old), &rules(new)),
            interfaces: count(&o[2], &n[2]),
            prefix_lists: count(&o[3], &n[3]),
        }
    }

    pub fn of(model: &Model) -> Self {
        Summary {
            vpcs: model.vpcs().count(),
            groups: model.groups().count(),
            rules: model.rule_count(),
            interfaces: model.interfaces().count(),
            prefix_lists: model.prefix_lists().count(),
        }
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let plural = |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
        write!(
            f,
            "{}, {} ({}), {}, {}",
            plural(self.vpcs, "vpc", "vpcs"),
            plural(self.groups, "group", "groups"),
            plural(self.rules, "rule", "rules"),
            plural(self.interfaces, "interface", "interfaces"),
            plural(self.prefix_lists, "prefix list", "prefix lists"),
        )
    }
}
