//! Prefix lists: named CIDR sets used as rule remotes; create, update, delete. A list in use cannot be
//! deleted; changing its CIDRs changes every rule that uses it.

use super::error::Collector;
use super::*;

impl Model {
    fn check_cidrs(subject: &str, raw: &[String], errs: &mut Collector) -> Vec<IpNet> {
        let mut cidrs = Vec::new();
        for c in raw {
            if let Some(net) = errs.take(parse_cidr(c).map_err(|m| ModelError::field(subject, "cidrs", m))) {
                if cidrs.contains(&net) {
                    errs.push(ModelError::field(
                        subject,
                        "cidrs",
                        format!("{net} is listed twice"),
                    ));
                } else {
                    cidrs.push(net);
                }
            }
        }
        cidrs
    }

    pub fn create_prefix_list(&mut self, spec: &PrefixListSpec) -> Result<PrefixListId, Errors> {
        let subject = prefix_list_subject(&spec.vpc, &spec.name);
        let vpc = self.vpc_field(&subject, &spec.vpc)?.id;
        let mut errs = Collector::default();
        errs.take(check_name(
            &subject,
            &spec.name,
            PrefixListId::parse(&spec.name).is_some(),
        ));
        if self.prefix_list_by_name(vpc, &spec.name).is_some() {
            errs.push(ModelError::new(
                ErrorCode::AlreadyExists,
                &subject,
                "a prefix list of that name exists",
            ));
        }
        let description = errs.take(check_description(&subject, spec.description.as_deref()));
        let cidrs = Self::check_cidrs(&subject, &spec.cidrs, &mut errs);
        errs.finish()?;
        self.next.prefix_list += 1;
        let id = PrefixListId(self.next.prefix_list);
        self.prefix_lists.insert(
            id,
            PrefixList {
                id,
                vpc,
                name: spec.name.clone(),
                description: description.unwrap_or_default(),
                cidrs,
            },
        );
        Ok(id)
    }

    /// Replaces a prefix list's name, description and CIDRs with those of
    /// `spec` (same VPC); every rule using it follows.
    pub fn update_prefix_list(&mut self, vpc: &str, name: &str, spec: &PrefixListSpec) -> Result<(), Errors> {
        let pl = self.find_prefix_list(vpc, name)?;
        let subject = prefix_list_subject(vpc, &spec.name);
        let mut errs = Collector::default();
        if spec.vpc != vpc {
            errs.push(ModelError::field(
                &subject,
                "vpc",
                "a prefix list cannot move to another vpc; create it there",
            ));
        }
        errs.take(check_name(
            &subject,
            &spec.name,
            PrefixListId::parse(&spec.name).is_some(),
        ));
        if self
            .prefix_list_by_name(pl.vpc, &spec.name)
            .is_some_and(|other| other.id != pl.id)
        {
            errs.push(ModelError::new(
                ErrorCode::AlreadyExists,
                &subject,
                "a prefix list of that name exists",
            ));
        }
        let description = errs.take(check_description(&subject, spec.description.as_deref()));
        let cidrs = Self::check_cidrs(&subject, &spec.cidrs, &mut errs);
        errs.finish()?;
        let id = pl.id;
        let pl = self.prefix_lists.get_mut(&id).expect("found above");
        pl.name.clone_from(&spec.name);
        pl.description = description.unwrap_or_default();
        pl.cidrs = cidrs;
        Ok(())
    }

    /// Deletes a prefix list that no rule uses.
    pub fn delete_prefix_list(&mut self, vpc: &str, name: &str) -> Result<(), Errors> {
        let pl = self.find_prefix_list(vpc, name)?;
        let id = pl.id;
        let users: Vec<String> = self
            .groups
            .values()
            .flat_map(|g| {
                g.rules
                    .iter()
                    .enumerate()
                    .filter(|(_, r)| r.remote == Some(Remote::PrefixList(id)))
                    .map(move |(i, r)| format!("rule {} ({}) of group {:?}", i + 1, r.id, g.name))
            })
            .collect();
        if !users.is_empty() {
            return Err(ModelError::new(
                ErrorCode::InUse,
                prefix_list_subject(vpc, name),
                format!("is still used by {}; remove those rules first", users.join(", ")),
            )
            .into());
        }
        self.prefix_lists.remove(&id);
        Ok(())
    }
}
