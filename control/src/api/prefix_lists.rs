//! `/v1/vpcs/{vpc}/prefix-lists`: named sets of CIDRs that rules use as
//! their remote. The handlers are [`super::named`]'s.

use super::named::Named;
use super::types::{PrefixListList, PrefixListView};
use crate::model::{Errors, Model, PrefixList, PrefixListSpec, VpcId};

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

impl Named for PrefixList {
    type View = PrefixListView;
    type List = PrefixListList;
    type Spec = PrefixListSpec;
    const NOUN: &'static str = "prefix list";

    fn list(m: &Model, vpc: VpcId) -> PrefixListList {
        PrefixListList {
            prefix_lists: m
                .prefix_lists()
                .filter(|p| p.vpc == vpc)
                .map(|p| PrefixListView::of(m, p))
                .collect(),
        }
    }

    fn show(m: &Model, vpc: VpcId, name: &str) -> Option<PrefixListView> {
        m.prefix_list_by_name(vpc, name).map(|p| PrefixListView::of(m, p))
    }

    fn create(m: &mut Model, spec: &PrefixListSpec) -> Result<String, Errors> {
        m.create_prefix_list(spec).map(|id| id.to_string())
    }

    fn replace(m: &mut Model, vpc: &str, name: &str, spec: &PrefixListSpec) -> Result<(), Errors> {
        m.update_prefix_list(vpc, name, spec)
    }

    fn delete(m: &mut Model, vpc: &str, name: &str) -> Result<(), Errors> {
        m.delete_prefix_list(vpc, name)
    }
}
