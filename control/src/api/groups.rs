//! `/v1/vpcs/{vpc}/security-groups` and their rules.

use std::sync::Arc;

use axum::extract::{Path, State};
use serde_json::Value;

use super::error::parse_value;
use super::types::{
    CopyRequest, Created, Enforced, GroupCreated, GroupList, GroupView, Nothing, RuleIds, RuleView,
};
use super::{vpc_id, with_vpc, Answer, Api, ApiError, Body};
use crate::model::{Errors, GroupSpec, GroupUpdate, Model, Rule, RuleId, RuleSpec, SecurityGroup};

impl GroupView {
    /// `g` as the API shows it.
    pub fn of(m: &Model, g: &SecurityGroup) -> GroupView {
        GroupView {
            id: g.id.to_string(),
            name: g.name.clone(),
            vpc: m.vpc(g.vpc).map(|v| v.name.clone()),
            description: g.description.clone(),
            stateful: g.stateful,
            kind: g.kind.as_str().to_owned(),
            intra_group: g.intra_group.as_str().to_owned(),
            rules: g.rules.iter().map(|r| RuleView::of(m, r)).collect(),
        }
    }
}

impl RuleView {
    /// `r` as the API shows it.
    pub fn of(m: &Model, r: &Rule) -> RuleView {
        RuleView {
            id: r.id.to_string(),
            text: m.rule_text(r),
            direction: r.direction,
            protocol: r.protocol,
            ports: r.ports,
            source_ports: r.source_ports,
            icmp_type: r.icmp_type,
            icmp_code: r.icmp_code,
            remote: r.remote,
            local: r.local,
            family: r.family,
            action: r.action,
            priority: r.priority,
            description: r.description.clone(),
        }
    }
}

type Group = Path<(String, String)>;

pub async fn list(State(api): State<Arc<Api>>, Path(vpc): Path<String>) -> Answer<GroupList> {
    api.read(|p| {
        let m = &p.model;
        let id = vpc_id(m, &vpc)?;
        Ok(GroupList {
            security_groups: m.groups_in(id).map(|g| GroupView::of(m, g)).collect(),
        })
    })
    .await
}

pub async fn show(State(api): State<Arc<Api>>, Path((vpc, sg)): Group) -> Answer<GroupView> {
    api.read(|p| {
        let m = &p.model;
        let id = vpc_id(m, &vpc)?;
        let g = m
            .resolve_group(id, &sg)
            .map_err(|e| ApiError::model(&Errors::one(e)))?;
        Ok(GroupView::of(m, g))
    })
    .await
}

pub async fn create(
    State(api): State<Arc<Api>>,
    Path(vpc): Path<String>,
    Body(body): Body<Value>,
) -> Answer<Enforced<GroupCreated>> {
    api.mutate_in(&vpc, |m, vpc| {
        let spec: GroupSpec = with_vpc(body.clone(), vpc)?;
        let id = m.create_group(&spec)?;
        Ok(GroupCreated {
            id: id.to_string(),
            security_group: m.group(id).map(|g| GroupView::of(m, g)),
        })
    })
    .await
}

pub async fn update(
    State(api): State<Arc<Api>>,
    Path((vpc, sg)): Group,
    Body(update): Body<GroupUpdate>,
) -> Answer<Enforced> {
    api.mutate_in(&vpc, |m, vpc| {
        Ok(m.update_group(vpc, &sg, &update).map(|()| Nothing {})?)
    })
    .await
}

pub async fn delete(State(api): State<Arc<Api>>, Path((vpc, sg)): Group) -> Answer<Enforced> {
    api.mutate_in(&vpc, |m, vpc| {
        Ok(m.delete_group(vpc, &sg).map(|()| Nothing {})?)
    })
    .await
}

pub async fn copy(
    State(api): State<Arc<Api>>,
    Path((vpc, sg)): Group,
    Body(req): Body<CopyRequest>,
) -> Answer<Enforced<Created>> {
    api.mutate_in(&vpc, |m, vpc| {
        let id = m.copy_group(vpc, &sg, &req.name)?;
        Ok(Created { id: id.to_string() })
    })
    .await
}

/// A list of rules, or one rule: each parsed on its own so an error names
/// its path.
fn rules_from(body: Value) -> Result<Vec<RuleSpec>, ApiError> {
    match body {
        Value::Array(items) => items
            .into_iter()
            .enumerate()
            .map(|(i, v)| parse_value(v, &format!("[{i}].")))
            .collect(),
        other => parse_value(other, "").map(|r| vec![r]),
    }
}

fn rule_ids(ids: &[RuleId]) -> RuleIds {
    RuleIds {
        ids: ids.iter().map(ToString::to_string).collect(),
    }
}

pub async fn add_rules(
    State(api): State<Arc<Api>>,
    Path((vpc, sg)): Group,
    Body(body): Body<Value>,
) -> Answer<Enforced<RuleIds>> {
    let rules = rules_from(body)?;
    api.mutate_in(&vpc, |m, vpc| Ok(rule_ids(&m.add_rules(vpc, &sg, &rules)?)))
        .await
}

pub async fn replace_rules(
    State(api): State<Arc<Api>>,
    Path((vpc, sg)): Group,
    Body(body): Body<Value>,
) -> Answer<Enforced<RuleIds>> {
    let rules = rules_from(body)?;
    api.mutate_in(&vpc, |m, vpc| Ok(rule_ids(&m.replace_rules(vpc, &sg, &rules)?)))
        .await
}

pub async fn update_rule(
    State(api): State<Arc<Api>>,
    Path((vpc, sg, rule)): Path<(String, String, String)>,
    Body(spec): Body<RuleSpec>,
) -> Answer<Enforced> {
    api.mutate_in(&vpc, |m, vpc| {
        Ok(m.update_rule(vpc, &sg, &rule, &spec).map(|()| Nothing {})?)
    })
    .await
}

pub async fn delete_rule(
    State(api): State<Arc<Api>>,
    Path((vpc, sg, rule)): Path<(String, String, String)>,
) -> Answer<Enforced> {
    api.mutate_in(&vpc, |m, vpc| {
        Ok(m.delete_rule(vpc, &sg, &rule).map(|()| Nothing {})?)
    })
    .await
}
