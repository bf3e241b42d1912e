//! `/v1/vpcs/{vpc}/prefix-lists`: named sets of CIDRs that rules use as
//! their remote.

use std::sync::Arc;

use axum::extract::{Path, State};
use serde_json::Value;

use super::types::{Created, Enforced, Nothing, PrefixListList, PrefixListView};
use super::{vpc_id, Answer, Api, ApiError, Body};
use crate::model::{Model, PrefixList, PrefixListSpec};

impl PrefixListView {
    /// `p` as the API shows it.
    pub fn of(m: &Model, p: &PrefixList) -> PrefixListView {
        PrefixListView {
            id: p.id.to_string(),
            name: p.name.clone(),
            vpc: m.vpc(p.vpc).map(|v| v.name.clone()),
            description: p.description.clone(),
            cidrs: p.cidrs.clone(),
        }
    }
}

type Named = Path<(String, String)>;

pub async fn list(State(api): State<Arc<Api>>, Path(vpc): Path<String>) -> Answer<PrefixListList> {
    api.read(|c| {
        let m = &c.config.model;
        let id = vpc_id(m, &vpc)?;
        Ok(PrefixListList {
            prefix_lists: m
                .prefix_lists()
                .filter(|p| p.vpc == id)
                .map(|p| PrefixListView::of(m, p))
                .collect(),
        })
    })
    .await
}

pub async fn show(State(api): State<Arc<Api>>, Path((vpc, name)): Named) -> Answer<PrefixListView> {
    api.read(|c| {
        let m = &c.config.model;
        let id = vpc_id(m, &vpc)?;
        let p = m
            .prefix_list_by_name(id, &name)
            .ok_or_else(|| ApiError::not_found(&format!("prefix list {name:?} in vpc {vpc:?}")))?;
        Ok(PrefixListView::of(m, p))
    })
    .await
}

pub async fn create(
    State(api): State<Arc<Api>>,
    Path(vpc): Path<String>,
    Body(body): Body<Value>,
) -> Answer<Enforced<Created>> {
    api.create_in(&vpc, body, |m, spec: &PrefixListSpec| m.create_prefix_list(spec))
        .await
}

pub async fn update(
    State(api): State<Arc<Api>>,
    Path((vpc, name)): Named,
    Body(body): Body<Value>,
) -> Answer<Enforced> {
    api.update_in(&vpc, &name, body, |m, vpc, name, spec: &PrefixListSpec| {
        m.update_prefix_list(vpc, name, spec)
    })
    .await
}

pub async fn delete(State(api): State<Arc<Api>>, Path((vpc, name)): Named) -> Answer<Enforced> {
    api.mutate_in(&vpc, |m, vpc| {
        Ok(m.delete_prefix_list(vpc, &name).map(|()| Nothing {})?)
    })
    .await
}
