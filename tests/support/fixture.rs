//! Configuration files for the tests, changed as TOML documents: a test says
//! which table, key or rule it changes, instead of replacing placeholder text.

use toml::{Table, Value};

/// A configuration document.
#[derive(Clone, Debug)]
pub struct Fixture(Table);

/// `s`, one TOML value as written in a file (e.g. an inline table).
fn value(s: &str) -> Value {
    let mut t: Table = toml::from_str(&format!("v = {s}")).unwrap_or_else(|e| panic!("{s}: {e}"));
    t.remove("v").expect("the value")
}

impl Fixture {
    /// The document `text`.
    pub fn parse(text: &str) -> Fixture {
        Fixture(toml::from_str(text).unwrap_or_else(|e| panic!("a fixture that is not TOML: {e}")))
    }

    /// Sets `key` of the table `[table]` (created if missing).
    pub fn set(mut self, table: &str, key: &str, v: impl Into<Value>) -> Fixture {
        let t = self
            .0
            .entry(table)
            .or_insert_with(|| Value::Table(Table::new()))
            .as_table_mut()
            .unwrap_or_else(|| panic!("[{table}] is not a table"));
        t.insert(key.to_owned(), v.into());
        self
    }

    /// Appends `rule` (an inline table, as in a file) to the rules of the
    /// security group named `group`.
    pub fn add_rule(mut self, group: &str, rule: &str) -> Fixture {
        self.group(group)
            .entry("rules")
            .or_insert_with(|| Value::Array(Vec::new()))
            .as_array_mut()
            .expect("rules is a list")
            .push(value(rule));
        self
    }

    /// Removes the rule equal to `rule` (an inline table) from the security
    /// group named `group`.
    pub fn remove_rule(mut self, group: &str, rule: &str) -> Fixture {
        let rule = value(rule);
        let rules = self
            .group(group)
            .get_mut("rules")
            .and_then(Value::as_array_mut)
            .expect("rules");
        let before = rules.len();
        rules.retain(|r| *r != rule);
        assert_eq!(rules.len() + 1, before, "{group:?} has no rule {rule}");
        self
    }

    /// The security group named `name`.
    fn group(&mut self, name: &str) -> &mut Table {
        self.0
            .get_mut("security_group")
            .and_then(Value::as_array_mut)
            .expect("[[security_group]] tables")
            .iter_mut()
            .filter_map(Value::as_table_mut)
            .find(|g| g.get("name").and_then(Value::as_str) == Some(name))
            .unwrap_or_else(|| panic!("no security group {name:?}"))
    }

    /// Adds the arrays of tables (`[[vpc]]`, `[[interface]]`, ...) of `text`
    /// after this document's.
    pub fn with(mut self, text: &str) -> Fixture {
        let more: Table = toml::from_str(text).unwrap_or_else(|e| panic!("a fixture that is not TOML: {e}"));
        for (key, v) in more {
            let Value::Array(items) = v else {
                panic!("{key}: only arrays of tables are added")
            };
            self.0
                .entry(key.clone())
                .or_insert_with(|| Value::Array(Vec::new()))
                .as_array_mut()
                .unwrap_or_else(|| panic!("{key} is not an array of tables"))
                .extend(items);
        }
        self
    }

    /// The document as a file's text.
    pub fn text(&self) -> String {
        toml::to_string(&self.0).expect("a TOML document")
    }
}
