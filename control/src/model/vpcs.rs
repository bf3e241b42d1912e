//! Creating, updating and deleting VPCs. A VPC is born with its `default` group, and is
//! deleted only when nothing but that group is left in it.

use super::error::Collector;
use super::*;

impl Model {
    /// Checks a VPC's name, VLAN and description, as a new VPC (`this` is
    /// `None`) or as the new state of VPC `this`.
    fn check_vpc(&self, spec: &VpcSpec, this: Option<VpcId>, errs: &mut Collector) -> (Option<u16>, String) {
        let subject = format!("vpc {:?}", spec.name);
        errs.take(check_name(
            &subject,
            &spec.name,
            VpcId::parse(&spec.name).is_some(),
        ));
        if self.vpc_by_name(&spec.name).is_some_and(|v| Some(v.id) != this) {
            errs.push(ModelError::new(
                ErrorCode::AlreadyExists,
                &subject,
                "a vpc of that name exists",
            ));
        }
        let description = errs.take(check_description(&subject, spec.description.as_deref()));
        let vlan = match spec.vlan {
            None => None,
            // In range, so the cast is exact.
            Some(v) if VLAN_RANGE.contains(&v) => Some(v as u16),
            Some(v) => {
                errs.push(ModelError::field(
                    &subject,
                    "vlan",
                    format!("{v} is out of range 1-4094"),
                ));
                None
            }
        };
        if spec.vlan.is_none() || vlan.is_some() {
            if let Some(other) = self.vpc_by_vlan(vlan).filter(|v| Some(v.id) != this) {
                let msg = match vlan {
                    Some(v) => format!("vlan {v} is already vpc {:?}'s", other.name),
                    None => format!(
                        "vpc {:?} is already the untagged one; give this vpc a vlan",
                        other.name
                    ),
                };
                errs.push(ModelError::field(&subject, "vlan", msg).with_code(ErrorCode::AlreadyExists));
            }
        }
        (vlan, description.unwrap_or_default())
    }

    /// Creates a VPC and its `default` group with the default group's rules.
    pub fn create_vpc(&mut self, spec: &VpcSpec) -> Result<VpcId, Errors> {
        let mut errs = Collector::default();
        let (vlan, description) = self.check_vpc(spec, None, &mut errs);
        let default_rules = default_rule_specs(DEFAULT_GROUP, Kind::Basic);
        if default_rules.len() > self.quotas.rules_per_group {
            errs.push(ModelError::new(
                ErrorCode::QuotaExceeded,
                group_subject(&spec.name, DEFAULT_GROUP),
                format!(
                    "would have {} rules; the quota is {} rules per group",
                    default_rules.len(),
                    self.quotas.rules_per_group
                ),
            ));
        }
        errs.finish()?;

        self.next.vpc += 1;
        let id = VpcId(self.next.vpc);
        self.next.group += 1;
        let default_group = GroupId(self.next.group);
        self.vpcs.insert(
            &mut self.changes,
            id,
            Vpc {
                id,
                name: spec.name.clone(),
                description,
                vlan,
                default_group,
            },
        );
        let group = SecurityGroup {
            id: default_group,
            vpc: id,
            name: DEFAULT_GROUP.to_owned(),
            description: format!("default group of vpc {}", spec.name),
            stateful: true,
            kind: Kind::Basic,
            intra_group: IntraGroup::Accept,
            rules: Vec::new(),
        };
        // Fixed rules that reference only the group itself, and the quota was
        // checked above: they cannot fail.
        let rules = self
            .build_rules(&group, &default_rules, 1)
            .expect("the default group's rules are valid");
        self.commit_rules(rules.len());
        self.groups
            .insert(&mut self.changes, default_group, SecurityGroup { rules, ..group });
        Ok(id)
    }

    /// Replaces a VPC's name, VLAN and description with those of `spec`. Its
    /// groups, interfaces and prefix lists stay with it.
    pub fn update_vpc(&mut self, name: &str, spec: &VpcSpec) -> Result<(), Errors> {
        let id = self.find_vpc(name)?.id;
        let mut errs = Collector::default();
        let (vlan, description) = self.check_vpc(spec, Some(id), &mut errs);
        errs.finish()?;
        let vpc = self.vpcs.get_mut(&mut self.changes, &id).expect("found above");
        vpc.name.clone_from(&spec.name);
        vpc.vlan = vlan;
        vpc.description = description;
        Ok(())
    }

    /// Deletes an empty VPC (only its `default` group left) and that group.
    pub fn delete_vpc(&mut self, name: &str) -> Result<(), Errors> {
        let vpc = self.find_vpc(name)?;
        let (id, default_group) = (vpc.id, vpc.default_group);
        let mut dependents = Vec::new();
        dependents.extend(
            self.groups_in(id)
                .filter(|g| g.id != default_group)
                .map(|g| format!("group {:?}", g.name)),
        );
        dependents.extend(
            self.interfaces
                .values()
                .filter(|i| i.vpc == id)
                .map(|i| format!("interface {:?}", i.name)),
        );
        dependents.extend(
            self.prefix_lists
                .values()
                .filter(|p| p.vpc == id)
                .map(|p| format!("prefix list {:?}", p.name)),
        );
        if !dependents.is_empty() {
            return Err(ModelError::new(
                ErrorCode::InUse,
                format!("vpc {name:?}"),
                format!("still holds {}; delete those first", dependents.join(", ")),
            )
            .into());
        }
        self.groups.remove(&mut self.changes, &default_group);
        self.vpcs.remove(&mut self.changes, &id);
        Ok(())
    }
}
