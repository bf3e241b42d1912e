//! The shipped example configurations and the configuration reference stay true:
//! every example loads, and `full.toml` and `docs/config.md` cover every setting
//! the code knows, with the defaults the code uses.

use std::path::{Path, PathBuf};

use rampart_control::appliance::Appliance;
use rampart_control::config::{Config, Summary};
use rampart_control::settings::{QuotaSettings, Settings};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Every `.toml` configuration shipped under docs/examples.
fn examples() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("docs/examples"))
        .expect("docs/examples exists")
        .map(|e| e.expect("readable directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_shipped_example_is_a_valid_non_empty_configuration() {
    let files = examples();
    assert!(files.len() >= 2, "expected the shipped examples, found {files:?}");
    for path in files {
        let config = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
        let summary = Summary::of(&config.model);
        assert!(
            summary.vpcs > 0 && summary.interfaces > 0 && summary.rules > 0,
            "{}: {summary}",
            path.display()
        );
    }
}

/// The dotted keys of every leaf of a TOML table, e.g. `timeouts.tcp_reset`.
fn leaf_keys(table: &toml::Table, prefix: &str, out: &mut Vec<String>) {
    for (k, v) in table {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            toml::Value::Table(t) => leaf_keys(t, &key, out),
            _ => out.push(key),
        }
    }
}

fn keys_of<T: serde::Serialize>(value: &T) -> Vec<String> {
    let table = toml::Table::try_from(value).expect("serializes as a table");
    let mut keys = Vec::new();
    leaf_keys(&table, "", &mut keys);
    keys
}

#[test]
fn full_example_sets_every_setting_and_quota_to_its_default() {
    let text = std::fs::read_to_string(root().join("docs/examples/full.toml")).unwrap();
    let file: toml::Table = text.parse().unwrap();
    let mut in_file = Vec::new();
    leaf_keys(file["settings"].as_table().unwrap(), "", &mut in_file);
    leaf_keys(file["quotas"].as_table().unwrap(), "", &mut in_file);
    leaf_keys(file["appliance"].as_table().unwrap(), "", &mut in_file);
    let mut known = keys_of(&Settings::default());
    known.extend(keys_of(&QuotaSettings::default()));
    known.extend(keys_of(&example_appliance()));
    known.sort();
    in_file.sort();
    assert_eq!(
        in_file, known,
        "full.toml must list exactly the settings and quotas the code knows"
    );

    // It says "each with its default": hold it to that.
    let config = Config::load(&root().join("docs/examples/full.toml")).unwrap();
    assert_eq!(config.settings, Settings::default());
    assert_eq!(config.model.quotas(), rampart_control::model::Quotas::default());
    assert_eq!(config.appliance, Some(example_appliance()));
}

/// The appliance table of full.toml: defaults, plus example ports and cores.
fn example_appliance() -> Appliance {
    Appliance {
        port_a: "eth1".into(),
        port_b: "eth2".into(),
        cores: Some(vec![1]),
        ..Appliance::default()
    }
}

#[test]
fn the_configuration_reference_documents_every_setting_and_quota() {
    let doc = std::fs::read_to_string(root().join("docs/config.md")).expect("docs/config.md exists");
    let mut known = keys_of(&Settings::default());
    known.extend(keys_of(&QuotaSettings::default()));
    known.extend(keys_of(&example_appliance()));
    for key in known {
        let leaf = key.rsplit('.').next().unwrap();
        assert!(
            doc.contains(&format!("`{leaf}`")),
            "docs/config.md does not document `{leaf}` ({key})"
        );
    }
}

/// `scripts/rss-symmetric.sh` programs the key, the fields and the table that
/// the dataplane's owner function assumes (`handoff::RSS_KEY`, addresses only,
/// an equal spread), and refuses a bad queue count.
#[test]
fn the_rss_script_programs_what_the_owner_function_assumes() {
    use rampart_dataplane::handoff::RSS_KEY;
    let script = root().join("scripts/rss-symmetric.sh");
    let out = std::process::Command::new("bash")
        .arg(&script)
        .args(["--dry-run", "eth9", "2"])
        .output()
        .expect("run the script");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let key: Vec<String> = RSS_KEY.iter().map(|b| format!("{b:02x}")).collect();
    assert!(
        text.contains(&format!("+ ethtool -X eth9 hkey {} equal 2", key.join(":"))),
        "{text}"
    );
    assert!(text.contains("+ ethtool -L eth9 combined 2"), "{text}");
    for flow in ["tcp4", "udp4", "tcp6", "udp6"] {
        assert!(
            text.contains(&format!("+ ethtool -N eth9 rx-flow-hash {flow} sd\n")),
            "{text}"
        );
    }
    let bad = std::process::Command::new("bash")
        .arg(&script)
        .args(["--dry-run", "eth9", "0"])
        .output()
        .expect("run the script");
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("QUEUES must be 1-64"));
}
