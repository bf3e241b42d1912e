//! Security groups and their rules: create (with the kind's default rules),
//! update, copy, delete, and add, replace or delete rules. Each operation checks
//! its whole input before it changes anything.

use super::error::Collector;
use super::*;

impl Model {
    /// Validates `specs` as rules of `group`, numbering them from `first_index` in
    /// errors, and assigns them the next free rule ids (committed by the caller
    /// with [`Model::commit_rules`] once the whole change is known to be valid).
    pub(super) fn build_rules(
        &self,
        group: &SecurityGroup,
        specs: &[RuleSpec],
        first_index: usize,
    ) -> Result<Vec<Rule>, Errors> {
        let vpc_name = self.vpc_name(group.vpc);
        let owner = rule::Owner {
            vpc: group.vpc,
            group: group.id,
            group_name: &group.name,
        };
        let mut errs = Collector::default();
        let mut rules = Vec::with_capacity(specs.len());
        for (i, spec) in specs.iter().enumerate() {
            let index = first_index + i;
            let id = RuleId(self.next.rule + 1 + i as u32);
            match rule::validate(self, owner, id, &rule_subject(vpc_name, &group.name, index), spec) {
                Ok(r) => rules.push(r),
                Err(e) => errs.extend(e),
            }
        }
        let total = group.rules.len() + specs.len();
        if total > self.quotas.rules_per_group {
            errs.push(ModelError::new(
                ErrorCode::QuotaExceeded,
                group_subject(vpc_name, &group.name),
                format!(
                    "would have {total} rules; the quota is {} rules per group",
                    self.quotas.rules_per_group
                ),
            ));
        }
        errs.finish()?;
        Ok(rules)
    }

    pub(super) fn commit_rules(&mut self, n: usize) {
        self.next.rule += n as u32;
    }

    /// Creates a group with its kind's default rules (unless `default_rules =
    /// false`) and the rules listed, listed ones first so that the spec's rule N is
    /// the group's rule N.
    pub fn create_group(&mut self, spec: &GroupSpec) -> Result<GroupId, Errors> {
        let subject = group_subject(&spec.vpc, &spec.name);
        let vpc = self.vpc_field(&subject, &spec.vpc)?;
        let vpc_id = vpc.id;
        let mut errs = Collector::default();
        errs.take(check_name(
            &subject,
            &spec.name,
            GroupId::parse(&spec.name).is_some(),
        ));
        if spec.name == DEFAULT_GROUP {
            errs.push(ModelError::new(
                ErrorCode::AlreadyExists,
                &subject,
                "every vpc has its default group already; change its rules instead",
            ));
        } else if self.group_by_name(vpc_id, &spec.name).is_some() {
            errs.push(ModelError::new(
                ErrorCode::AlreadyExists,
                &subject,
                "a group of that name exists",
            ));
        }
        let count = self.groups_in(vpc_id).count();
        if count >= self.quotas.groups_per_vpc {
            errs.push(ModelError::new(
                ErrorCode::QuotaExceeded,
                &subject,
                format!(
                    "vpc {:?} has {count} groups; the quota is {} groups per vpc",
                    spec.vpc, self.quotas.groups_per_vpc
                ),
            ));
        }
        let description = errs.take(check_description(&subject, spec.description.as_deref()));
        // A bad kind or intra_group is recorded, and the rules are still checked
        // (against a basic group) so that one attempt reports every error.
        let kind = match &spec.kind {
            None => Kind::Basic,
            Some(k) => errs
                .take(Kind::parse(k).map_err(|m| ModelError::field(&subject, "kind", m)))
                .unwrap_or(Kind::Basic),
        };
        let intra_group = match &spec.intra_group {
            None => kind.default_intra_group(),
            Some(s) => errs
                .take(IntraGroup::parse(s).map_err(|m| ModelError::field(&subject, "intra_group", m)))
                .unwrap_or(IntraGroup::Drop),
        };
        let group = SecurityGroup {
            id: GroupId(self.next.group + 1),
            vpc: vpc_id,
            name: spec.name.clone(),
            description: description.unwrap_or_default(),
            stateful: spec.stateful.unwrap_or(true),
            kind,
            intra_group,
            rules: Vec::new(),
        };
        let mut specs = spec.rules.clone();
        if spec.default_rules.unwrap_or(true) {
            specs.extend(default_rule_specs(&spec.name, kind));
        }
        match self.build_rules(&group, &specs, 1) {
            Ok(rules) if errs.is_empty() => {
                self.next.group += 1;
                self.commit_rules(rules.len());
                let id = group.id;
                self.groups
                    .insert(&mut self.changes, id, SecurityGroup { rules, ..group });
                Ok(id)
            }
            Ok(_) => Err(errs.finish().expect_err("errors were recorded")),
            Err(e) => {
                errs.extend(e);
                Err(errs.finish().expect_err("errors were recorded"))
            }
        }
    }

    /// Changes a group's name, description, statefulness or intra-group policy.
    /// The `default` group keeps its name; no group changes its kind.
    pub fn update_group(&mut self, vpc: &str, group: &str, update: &GroupUpdate) -> Result<(), Errors> {
        let g = self.find_group(vpc, group)?;
        let subject = group_subject(vpc, &g.name);
        let mut errs = Collector::default();
        if let Some(name) = &update.name {
            if *name != g.name {
                if g.name == DEFAULT_GROUP {
                    errs.push(
                        ModelError::field(&subject, "name", "the default group cannot be renamed")
                            .with_code(ErrorCode::Forbidden),
                    );
                } else if self.group_by_name(g.vpc, name).is_some() {
                    errs.push(
                        ModelError::field(&subject, "name", format!("a group named {name:?} exists"))
                            .with_code(ErrorCode::AlreadyExists),
                    );
                }
                errs.take(check_name(&subject, name, GroupId::parse(name).is_some()));
            }
        }
        if update.description.is_some() {
            errs.take(check_description(&subject, update.description.as_deref()));
        }
        let intra_group = match &update.intra_group {
            None => None,
            Some(s) => {
                errs.take(IntraGroup::parse(s).map_err(|m| ModelError::field(&subject, "intra_group", m)))
            }
        };
        errs.finish()?;
        let id = g.id;
        let g = self.groups.get_mut(&mut self.changes, &id).expect("found above");
        if let Some(name) = &update.name {
            g.name.clone_from(name);
        }
        if let Some(d) = &update.description {
            g.description.clone_from(d);
        }
        if let Some(s) = update.stateful {
            g.stateful = s;
        }
        if let Some(ig) = intra_group {
            g.intra_group = ig;
        }
        Ok(())
    }

    /// Deletes a group that no interface is bound to and no other group's rule
    /// references. The `default` group is never deleted.
    pub fn delete_group(&mut self, vpc: &str, group: &str) -> Result<(), Errors> {
        let g = self.find_group(vpc, group)?;
        let subject = group_subject(vpc, &g.name);
        if g.name == DEFAULT_GROUP {
            return Err(ModelError::new(
                ErrorCode::Forbidden,
                subject,
                "the default group cannot be deleted",
            )
            .into());
        }
        let id = g.id;
        let mut dependents: Vec<String> = self
            .interfaces
            .values()
            .filter(|i| i.groups.contains(&id))
            .map(|i| format!("interface {:?}", i.name))
            .collect();
        for other in self.groups.values().filter(|o| o.id != id) {
            for (i, r) in other.rules.iter().enumerate() {
                if r.remote == Some(Remote::Group(id)) {
                    dependents.push(format!("rule {} ({}) of group {:?}", i + 1, r.id, other.name));
                }
            }
        }
        if !dependents.is_empty() {
            return Err(ModelError::new(
                ErrorCode::InUse,
                subject,
                format!(
                    "is still used by {}; unbind it and remove those rules first",
                    dependents.join(", ")
                ),
            )
            .into());
        }
        self.groups.remove(&mut self.changes, &id);
        Ok(())
    }

    /// Copies a group under a new name: same attributes and rules (with new ids);
    /// rules of the original that reference the original now reference the copy.
    pub fn copy_group(&mut self, vpc: &str, group: &str, new_name: &str) -> Result<GroupId, Errors> {
        let g = self.find_group(vpc, group)?;
        let subject = group_subject(vpc, new_name);
        let mut errs = Collector::default();
        errs.take(check_name(&subject, new_name, GroupId::parse(new_name).is_some()));
        if self.group_by_name(g.vpc, new_name).is_some() {
            errs.push(ModelError::new(
                ErrorCode::AlreadyExists,
                &subject,
                "a group of that name exists",
            ));
        }
        let count = self.groups_in(g.vpc).count();
        if count >= self.quotas.groups_per_vpc {
            errs.push(ModelError::new(
                ErrorCode::QuotaExceeded,
                &subject,
                format!("the quota is {} groups per vpc", self.quotas.groups_per_vpc),
            ));
        }
        errs.finish()?;
        let (orig, copy_id) = (g.id, GroupId(self.next.group + 1));
        let mut copy = g.clone();
        copy.id = copy_id;
        copy.name = new_name.to_owned();
        for (i, r) in copy.rules.iter_mut().enumerate() {
            r.id = RuleId(self.next.rule + 1 + i as u32);
            if r.remote == Some(Remote::Group(orig)) {
                r.remote = Some(Remote::Group(copy_id));
            }
        }
        self.next.group += 1;
        self.commit_rules(copy.rules.len());
        self.groups.insert(&mut self.changes, copy_id, copy);
        Ok(copy_id)
    }

    /// Appends rules to a group; returns their ids.
    pub fn add_rules(&mut self, vpc: &str, group: &str, specs: &[RuleSpec]) -> Result<Vec<RuleId>, Errors> {
        let g = self.find_group(vpc, group)?;
        let rules = self.build_rules(g, specs, g.rules.len() + 1)?;
        let ids = rules.iter().map(|r| r.id).collect();
        let id = g.id;
        self.commit_rules(rules.len());
        self.groups
            .get_mut(&mut self.changes, &id)
            .expect("found above")
            .rules
            .extend(rules);
        Ok(ids)
    }

    /// Replaces all rules of a group at once.
    pub fn replace_rules(
        &mut self,
        vpc: &str,
        group: &str,
        specs: &[RuleSpec],
    ) -> Result<Vec<RuleId>, Errors> {
        let g = self.find_group(vpc, group)?;
        let empty = SecurityGroup {
            rules: Vec::new(),
            ..g.clone()
        };
        let rules = self.build_rules(&empty, specs, 1)?;
        let ids = rules.iter().map(|r| r.id).collect();
        self.commit_rules(rules.len());
        self.groups
            .get_mut(&mut self.changes, &empty.id)
            .expect("found above")
            .rules = rules;
        Ok(ids)
    }

    /// Finds rule `rule` (an id, `sgr-N`) of a group: the group and its position.
    fn find_rule(&self, vpc: &str, group: &str, rule: &str) -> Result<(&SecurityGroup, usize), Errors> {
        let g = self.find_group(vpc, group)?;
        let subject = group_subject(vpc, &g.name);
        let Some(rule_id) = RuleId::parse(rule) else {
            return Err(ModelError::new(
                ErrorCode::Invalid,
                subject,
                format!("{rule:?} is not a rule id; rule ids look like sgr-12"),
            )
            .into());
        };
        match g.rules.iter().position(|r| r.id == rule_id) {
            Some(pos) => Ok((g, pos)),
            None => {
                Err(ModelError::new(ErrorCode::NotFound, subject, format!("has no rule {rule_id}")).into())
            }
        }
    }

    /// Deletes one rule of a group, by id (`sgr-N`).
    pub fn delete_rule(&mut self, vpc: &str, group: &str, rule: &str) -> Result<(), Errors> {
        let (g, pos) = self.find_rule(vpc, group, rule)?;
        let id = g.id;
        self.groups
            .get_mut(&mut self.changes, &id)
            .expect("found above")
            .rules
            .remove(pos);
        Ok(())
    }

    /// Replaces one rule of a group, by id, with `spec`; it keeps its id and its
    /// place in the list.
    pub fn update_rule(&mut self, vpc: &str, group: &str, rule: &str, spec: &RuleSpec) -> Result<(), Errors> {
        let (g, pos) = self.find_rule(vpc, group, rule)?;
        let owner = rule::Owner {
            vpc: g.vpc,
            group: g.id,
            group_name: &g.name,
        };
        let subject = rule_subject(vpc, &g.name, pos + 1);
        let new = rule::validate(self, owner, g.rules[pos].id, &subject, spec)?;
        let id = g.id;
        self.groups
            .get_mut(&mut self.changes, &id)
            .expect("found above")
            .rules[pos] = new;
        Ok(())
    }
}
