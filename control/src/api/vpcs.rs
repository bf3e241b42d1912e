//! `/v1/vpcs`: list, show, create, update, delete.

use std::sync::Arc;

use axum::extract::{Path, State};

use super::types::{Created, Enforced, Nothing, VpcList, VpcView};
use super::{vpc_id, Answer, Api, ApiError, Body, Reply};
use crate::model::{Model, Vpc, VpcSpec};

impl VpcView {
    /// `v` as the API shows it.
    pub fn of(m: &Model, v: &Vpc) -> VpcView {
        VpcView {
            id: v.id.to_string(),
            name: v.name.clone(),
            description: v.description.clone(),
            vlan: v.vlan,
            default_group: m.group(v.default_group).map(|g| g.name.clone()),
            groups: m.groups_in(v.id).count(),
            interfaces: m.interfaces().filter(|i| i.vpc == v.id).count(),
        }
    }
}

pub async fn list(State(api): State<Arc<Api>>) -> Reply<VpcList> {
    let p = api.published.load();
    let m = &p.model;
    Reply(VpcList {
        vpcs: m.vpcs().map(|v| VpcView::of(m, v)).collect(),
    })
}

pub async fn show(State(api): State<Arc<Api>>, Path(vpc): Path<String>) -> Answer<VpcView> {
    api.read(|p| {
        let m = &p.model;
        let v = m
            .vpc(vpc_id(m, &vpc)?)
            .ok_or_else(|| ApiError::not_found("vpc"))?;
        Ok(VpcView::of(m, v))
    })
    .await
}

pub async fn create(State(api): State<Arc<Api>>, Body(spec): Body<VpcSpec>) -> Answer<Enforced<Created>> {
    api.mutate(|m| {
        let id = m.create_vpc(&spec)?;
        Ok(Created { id: id.to_string() })
    })
    .await
}

pub async fn update(
    State(api): State<Arc<Api>>,
    Path(vpc): Path<String>,
    Body(spec): Body<VpcSpec>,
) -> Answer<Enforced> {
    api.mutate_in(&vpc, |m, name| {
        Ok(m.update_vpc(name, &spec).map(|()| Nothing {})?)
    })
    .await
}

pub async fn delete(State(api): State<Arc<Api>>, Path(vpc): Path<String>) -> Answer<Enforced> {
    api.mutate_in(&vpc, |m, name| Ok(m.delete_vpc(name).map(|()| Nothing {})?))
        .await
}
