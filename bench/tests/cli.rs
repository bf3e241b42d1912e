//! `rampart-bench` as documented in the README: the JSON fields issue 3 names,
//! the table, and a clear failure on bad input. Timings are not checked (they
//! are noise in a test); that each figure is measured and sane is.

use std::path::PathBuf;
use std::process::Command;

fn classbench(file: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/classbench")
        .join(file);
    path.to_str().expect("utf-8 path").to_owned()
}

fn bench(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_rampart-bench"))
        .args(args)
        .output()
        .expect("runs");
    let text = |b: Vec<u8>| String::from_utf8(b).expect("utf-8 output");
    (
        out.status.code().expect("exited"),
        text(out.stdout),
        text(out.stderr),
    )
}

/// The JSON objects a `--json` run printed, one per line.
fn json_rows(stdout: &str) -> Vec<serde_json::Value> {
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect()
}

/// A latency row's p50, p99 and max (in `unit`) are positive and in order.
fn assert_percentiles_ordered(r: &serde_json::Value, unit: &str) {
    let at = |q: &str| r[format!("{q}_{unit}")].as_f64().expect("a number");
    let (p50, p99, max) = (at("p50"), at("p99"), at("max"));
    assert!(0.0 < p50 && p50 <= p99 && p99 <= max, "{r}");
}

const QUICK: [&str; 6] = ["--reps", "1", "--seconds", "0.05", "--builds", "1"];

#[test]
fn classify_json_reports_every_named_field_for_a_set() {
    let (rules, trace) = (classbench("acl1_1k.rules"), classbench("acl1_1k.trace"));
    let mut args = vec!["classify", "--rules", &rules, "--trace", &trace, "--json"];
    args.extend(QUICK);
    let (code, stdout, stderr) = bench(&args);
    assert_eq!(code, 0, "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "one JSON object per set: {stdout}");
    let r: serde_json::Value = serde_json::from_str(lines[0]).expect("valid JSON");
    assert_eq!(r["set"], "acl1_1k");
    assert_eq!(r["rules"], 905);
    assert_eq!(r["trace"], 90519);
    assert_eq!(r["mismatches"], 0);
    assert_eq!(r["engine"], "dtree", "the engine the dataplane picks for acl1_1k");
    for field in [
        "build_ms",
        "memory_bytes",
        "lookups_per_sec",
        "linear_lookups_per_sec",
        "nodes",
    ] {
        let v = r[field]
            .as_f64()
            .unwrap_or_else(|| panic!("{field} missing in {r}"));
        assert!(v > 0.0 && v.is_finite(), "{field} = {v}");
    }

    // Forced to the other engines: their own diagnostics instead.
    for (choice, name, fields, absent) in [
        ("bit-vector", "bitvec", &["classes"][..], "probes_per_lookup"),
        (
            "tuple-space",
            "tuple",
            &["tables", "probes_per_lookup", "candidates_per_lookup"][..],
            "nodes",
        ),
        (
            "decision-tree",
            "dtree",
            &["nodes", "depth", "probes_per_lookup", "candidates_per_lookup"][..],
            "tables",
        ),
    ] {
        let mut args = args.clone();
        args.extend(["--engine", choice]);
        let (code, stdout, stderr) = bench(&args);
        assert_eq!(code, 0, "{stderr}");
        let r: serde_json::Value = serde_json::from_str(stdout.trim()).expect("valid JSON");
        assert_eq!(r["engine"], name);
        assert_eq!(r["mismatches"], 0);
        for &field in fields {
            let v = r[field]
                .as_f64()
                .unwrap_or_else(|| panic!("{field} missing in {r}"));
            assert!(v > 0.0 && v.is_finite(), "{field} = {v}");
        }
        assert!(r[absent].is_null(), "{r}");
    }
}

#[test]
fn classify_prints_a_table_row_per_set() {
    let (rules, trace) = (classbench("fw1_1k.rules"), classbench("fw1_1k.trace"));
    let mut args = vec!["classify", "--rules", &rules, "--trace", &trace];
    args.extend(QUICK);
    let (code, stdout, stderr) = bench(&args);
    assert_eq!(code, 0, "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(
        lines[0].contains("lookups/s") && lines[0].contains("linear/s"),
        "{stdout}"
    );
    assert!(
        lines[1].starts_with("fw1_1k") && lines[1].contains(" 787 "),
        "{stdout}"
    );
}

#[test]
fn classify_fails_clearly_on_unreadable_or_malformed_input() {
    let trace = classbench("acl1_1k.trace");
    let (code, _, stderr) = bench(&["classify", "--rules", "/nonexistent.rules", "--trace", &trace]);
    assert_eq!(code, 1);
    assert!(stderr.contains("cannot read /nonexistent.rules"), "{stderr}");
    // A trace given as the rules file: the line and the reason are named.
    let (code, _, stderr) = bench(&["classify", "--rules", &trace, "--trace", &trace]);
    assert_eq!(code, 1);
    assert!(stderr.contains("line 1: expected 10 fields"), "{stderr}");
}

#[test]
fn update_json_reports_each_kind_of_change_beside_a_full_compile() {
    let args = [
        "update",
        "--groups",
        "10",
        "--rules",
        "10",
        "--interfaces",
        "50",
        "--changes",
        "3",
        "--json",
    ];
    let (code, stdout, stderr) = bench(&args);
    assert_eq!(code, 0, "{stderr}");
    let rows = json_rows(&stdout);
    let kinds: Vec<&str> = rows.iter().map(|r| r["change"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["rule", "membership", "prefix_list"], "{stdout}");
    for r in &rows {
        assert_eq!(r["groups"], 10);
        assert_eq!(
            r["rules"], 104,
            "10 x 10 rules, one added, replaced and deleted again, and the default group's 4"
        );
        assert_eq!(r["set_mix"], "random");
        let (median, p99, max) = (
            r["update_median_ms"].as_f64().unwrap(),
            r["update_p99_ms"].as_f64().unwrap(),
            r["update_max_ms"].as_f64().unwrap(),
        );
        assert!(median > 0.0 && median <= p99 && p99 <= max, "{r}");
        assert!(r["full_compile_ms"].as_f64().unwrap() > 0.0);
        assert!(r["rss_mb"].as_f64().unwrap() > 1.0, "{r}");
        let rebuilt = r["rebuilt_per_update"].as_u64().unwrap();
        assert!(
            rebuilt >= 1 && rebuilt < r["group_sets"].as_u64().unwrap(),
            "only the groups the change touches: {r}"
        );
    }
    // A rule change compiles its group; the prefix list is referenced by
    // group g0 alone at this size.
    assert_eq!(rows[0]["rebuilt_per_update"], 1, "{stdout}");
    assert_eq!(rows[2]["rebuilt_per_update"], 1, "{stdout}");
}

/// With shared sets, many interfaces share few sets: at most 300 whatever
/// the interface count.
#[test]
fn update_with_shared_sets_compiles_at_most_the_shared_sets() {
    let run = |mix: &str| -> serde_json::Value {
        let args = [
            "update",
            "--groups",
            "50",
            "--rules",
            "5",
            "--interfaces",
            "2000",
            "--changes",
            "3",
            "--set-mix",
            mix,
            "--json",
        ];
        let (code, stdout, stderr) = bench(&args);
        assert_eq!(code, 0, "{stderr}");
        json_rows(&stdout).remove(0)
    };
    let (random, shared) = (run("random"), run("shared"));
    assert_eq!(shared["set_mix"], "shared");
    let sets = |r: &serde_json::Value| r["group_sets"].as_u64().unwrap();
    assert!(sets(&shared) <= 300, "{shared}");
    assert!(sets(&random) > sets(&shared), "{random} {shared}");
    let (code, _, stderr) = bench(&["update", "--set-mix", "tribal"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("--set-mix"), "{stderr}");
}

/// New flows are measured through the policy in 1, 3 and 16 groups, each run
/// opening every connection it sent (the bench asserts that), beside the
/// established and parse-only rows.
#[test]
fn pipeline_json_reports_new_flows_for_each_group_count() {
    let args = [
        "pipeline",
        "--flows",
        "100",
        "--new-flows",
        "1000",
        "--reps",
        "1",
        "--seconds",
        "0.01",
        "--json",
    ];
    let (code, stdout, stderr) = bench(&args);
    assert_eq!(code, 0, "{stderr}");
    let rows = json_rows(&stdout);
    let tests: Vec<(&str, u64)> = rows
        .iter()
        .map(|r| (r["test"].as_str().unwrap(), r["groups"].as_u64().unwrap()))
        .collect();
    assert_eq!(
        tests,
        [
            ("established", 1),
            ("new_flows", 1),
            ("new_flows", 3),
            ("new_flows", 16),
            ("parse_only", 0)
        ],
        "{stdout}"
    );
    for r in rows.iter().filter(|r| r["test"] == "new_flows") {
        assert_eq!(r["flows"], 1000, "{r}");
        assert_eq!(r["policy_rules"], 1001, "{r}");
        let mpps = r["mpps"].as_f64().unwrap();
        assert!(mpps > 0.0 && mpps.is_finite(), "{r}");
    }
}

#[test]
fn forward_reports_rampart_beside_the_ceiling_on_real_veth_traffic() {
    rampart_testkit::require_root!("namespaces, AF_XDP");
    let args = [
        "forward",
        "--flows",
        "100",
        "--reps",
        "1",
        "--seconds",
        "0.3",
        "--json",
    ];
    let (code, stdout, stderr) = bench(&args);
    assert_eq!(code, 0, "{stderr}");
    let rows = json_rows(&stdout);
    assert_eq!(rows.len(), 3, "{stdout}");
    let tests: Vec<_> = rows.iter().map(|r| r["test"].as_str()).collect();
    assert_eq!(tests, [Some("blind"), Some("ceiling"), Some("rampart")]);
    for r in &rows {
        assert_eq!(r["flows"], 100);
        // Frames were generated, crossed the forwarder and were counted at the sink.
        let (delivered, offered) = (
            r["delivered_mpps"].as_f64().unwrap(),
            r["offered_mpps"].as_f64().unwrap(),
        );
        assert!(delivered > 0.0 && delivered <= offered * 1.05, "{r}");
        assert!(
            matches!(r["xdp_mode"].as_str(), Some("native" | "generic")),
            "{r}"
        );
    }
    // One round: the ratio is that round's rampart rate over its ceiling rate.
    let ratio = rows[2]["of_ceiling"].as_f64().unwrap();
    let expected = rows[2]["delivered_mpps"].as_f64().unwrap() / rows[1]["delivered_mpps"].as_f64().unwrap();
    assert!(
        (ratio - expected).abs() < 1e-9,
        "the ratio is rampart over ceiling: {ratio} vs {expected}"
    );
    let (code, _, stderr) = bench(&["forward", "--flows", "0"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("--flows must be 1-60000"), "{stderr}");
}

#[test]
fn wakeup_measures_single_probes_through_a_busy_and_a_sleeping_worker() {
    let (code, _, stderr) = bench(&["wakeup", "--gap-us", "150"]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("--gap-us must exceed the adaptive spin"),
        "{stderr}"
    );
    rampart_testkit::require_root!("namespaces, AF_XDP");
    let (code, stdout, stderr) = bench(&["wakeup", "--reps", "1", "--probes", "30", "--json"]);
    assert_eq!(code, 0, "{stderr}");
    let rows = json_rows(&stdout);
    assert_eq!(rows.len(), 3, "{stdout}");
    assert_eq!(
        rows.iter().map(|r| r["test"].as_str()).collect::<Vec<_>>(),
        [Some("busy"), Some("adaptive"), Some("adaptive-kernel-idle")]
    );
    for r in &rows {
        // Every probe crossed the appliance and came back with its number.
        assert_eq!(
            (r["probes"].as_u64(), r["lost"].as_u64()),
            (Some(30), Some(0)),
            "{r}"
        );
        assert_percentiles_ordered(r, "us");
    }
    // The adaptive rows' wake-up is their latency over the busy row's.
    for r in &rows[1..] {
        let wake = r["p50_us"].as_f64().unwrap() - rows[0]["p50_us"].as_f64().unwrap();
        assert!(
            (r["wake_p50_us"].as_f64().unwrap() - wake).abs() < 1e-9,
            "{stdout}"
        );
    }
}

#[test]
fn api_times_each_kind_of_change_through_the_running_daemon() {
    let (code, _, stderr) = bench(&["api", "--changes", "1"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("--changes at least 2"), "{stderr}");
    rampart_testkit::require_root!("namespaces, AF_XDP");
    let args = [
        "api",
        "--groups",
        "5",
        "--rules",
        "5",
        "--interfaces",
        "10",
        "--changes",
        "6",
        "--json",
    ];
    let (code, stdout, stderr) = bench(&args);
    assert_eq!(code, 0, "{stderr}");
    let rows = json_rows(&stdout);
    let kinds: Vec<_> = rows
        .iter()
        .map(|r| (r["idle"].as_str().unwrap(), r["change"].as_str().unwrap()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("adaptive", "rule"),
            ("adaptive", "membership"),
            ("adaptive", "prefix_list"),
            ("busy", "rule"),
            ("busy", "membership"),
            ("busy", "prefix_list")
        ],
        "{stdout}"
    );
    for r in &rows {
        assert_eq!(
            (r["rules"].as_u64(), r["changes"].as_u64()),
            (Some(25), Some(6)),
            "{r}"
        );
        assert_percentiles_ordered(r, "ms");
        assert!(r["start_ms"].as_f64().unwrap() > 0.0, "{r}");
        assert!(r["rss_mb"].as_f64().unwrap() > 1.0, "the daemon's memory: {r}");
    }
}

#[test]
fn e2e_measures_ceiling_rampart_and_kernel_on_one_topology() {
    let (code, _, stderr) = bench(&["e2e", "--interfaces", "0"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("--interfaces must be 1-60000"), "{stderr}");
    rampart_testkit::require_root!("namespaces, AF_XDP, nftables");
    let args = [
        "e2e",
        "--groups",
        "3",
        "--rules",
        "5",
        "--interfaces",
        "20",
        "--flows",
        "200",
        "--seconds",
        "0.4",
        "--latency-pps",
        "5000",
        "--reps",
        "1",
        "--json",
    ];
    let (code, stdout, stderr) = bench(&args);
    assert_eq!(code, 0, "{stderr}");
    let rows = json_rows(&stdout);
    let duts: Vec<_> = rows.iter().map(|r| r["dut"].as_str()).collect();
    assert_eq!(
        duts,
        [Some("ceiling"), Some("rampart"), Some("kernel")],
        "{stdout}"
    );
    for r in &rows {
        // Traffic crossed each device (the model admits it), with latency measured.
        assert!(r["delivered_mpps"].as_f64().unwrap() > 0.0, "{r}");
        assert!(r["new_connections_per_s"].as_f64().unwrap() > 0.0, "{r}");
        assert!(r["sessions_per_s"].as_f64().unwrap() > 0.0, "{r}");
        assert!(r["p50_us"].as_f64().unwrap() > 0.0, "{r}");
    }
    let ratio = rows[1]["delivered_mpps"].as_f64().unwrap() / rows[2]["delivered_mpps"].as_f64().unwrap();
    assert!((rows[1]["of_kernel"].as_f64().unwrap() - ratio).abs() < 1e-9);
}
