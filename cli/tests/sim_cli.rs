//! End-to-end tests of `picsou sim`: run the built binary and check its output and exit codes.

use std::path::PathBuf;
use std::process::{Command, Output};

fn picsou(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_picsou")).args(args).output().expect("run the picsou binary")
}

fn json(out: &Output) -> serde_json::Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("not one JSON object ({e}): {stdout}"))
}

/// A scratch file unique to this test process.
fn scratch(name: &str, contents: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("picsou-sim-cli-{}-{name}", std::process::id()));
    std::fs::write(&path, contents).expect("write scratch file");
    path
}

#[test]
fn json_report_has_every_field() {
    let out = picsou(&["sim", "--messages", "300", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let v = json(&out);
    for field in [
        "strategy",
        "sender_n",
        "receiver_n",
        "sender_f",
        "receiver_f",
        "fault",
        "size",
        "messages",
        "seed",
        "c3b_ok",
        "violations",
        "delivered",
        "throughput_msgs_per_s",
        "throughput_mb_per_s",
        "wire_bytes_per_message",
        "cross_bytes_per_message",
        "resends",
        "max_sends_per_message",
        "latency_p50_ms",
        "latency_p99_ms",
        "virtual_seconds",
        "frames",
        "misbehaviors_detected",
    ] {
        assert!(v.get(field).is_some(), "missing {field} in {v}");
    }
    assert_eq!(v["strategy"], "picsou");
    assert_eq!(v["messages"], 300);
    assert_eq!(v["delivered"], 300);
    assert_eq!(v["c3b_ok"], true);
    assert_eq!(v["sender_f"], 1);
    assert!(v["throughput_msgs_per_s"].as_f64().unwrap() > 0.0);
}

#[test]
fn same_flags_same_stdout() {
    let args = ["sim", "--messages", "200", "--loss", "0.05", "--jitter-ms", "0.2", "--seed", "9", "--json"];
    let a = picsou(&args);
    let b = picsou(&args);
    assert_eq!(a.status.code(), Some(0));
    assert_eq!(a.stdout, b.stdout);
}

#[test]
fn human_output_is_a_summary() {
    let out = picsou(&["sim", "--messages", "100", "--strategy", "ata"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("ata from 4 to 4 replicas"), "{stdout}");
    assert!(stdout.contains("C3B") && stdout.contains("ok"), "{stdout}");
    assert!(stdout.contains("throughput"), "{stdout}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("real time"));
}

#[test]
fn config_error_names_f_and_exits_2() {
    let out = picsou(&["sim", "--n", "4", "--f", "2"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("sender_f") && stderr.contains("f = 2"), "{stderr}");
    assert!(out.stdout.is_empty());
}

#[test]
fn too_much_faulty_stake_is_a_config_error() {
    let out = picsou(&["sim", "--crash", "r0,r1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("receiver_f"));
    let out = picsou(&["sim", "--fault", "cft", "--byzantine", "r1=zero-ack"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("byzantine"));
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(picsou(&["sim", "--strategy", "bogus"]).status.code(), Some(2));
    assert_eq!(picsou(&["sim", "--byzantine", "r1=evil"]).status.code(), Some(2));
    assert_eq!(picsou(&["sim", "--no-such-flag"]).status.code(), Some(2));
}

#[test]
fn scenario_file_with_flag_overrides() {
    let path = scratch(
        "ok.toml",
        r#"
strategy = "ll"
sender_n = 7
receiver_n = 4
messages = 250
size = 64
seed = 5
"#,
    );
    let p = path.to_str().unwrap();
    let out = picsou(&["sim", "--scenario", p, "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let v = json(&out);
    assert_eq!(
        (v["strategy"].as_str(), v["sender_n"].as_u64(), v["receiver_n"].as_u64()),
        (Some("ll"), Some(7), Some(4))
    );
    assert_eq!((v["messages"].as_u64(), v["size"].as_u64(), v["seed"].as_u64()), (Some(250), Some(64), Some(5)));
    // A flag overrides the file.
    let out = picsou(&["sim", "--scenario", p, "--strategy", "picsou", "--messages", "120", "--json"]);
    assert_eq!(out.status.code(), Some(0));
    let v = json(&out);
    assert_eq!(
        (v["strategy"].as_str(), v["messages"].as_u64(), v["sender_n"].as_u64()),
        (Some("picsou"), Some(120), Some(7))
    );
    let _ = std::fs::remove_file(path);
}

#[test]
fn bad_scenario_files_exit_2_naming_the_file() {
    let path = scratch("typo.toml", "sendr_n = 4\n");
    let out = picsou(&["sim", "--scenario", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("typo.toml") && stderr.contains("sendr_n"), "{stderr}");
    let _ = std::fs::remove_file(path);
    let out = picsou(&["sim", "--scenario", "/nonexistent/picsou.toml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read"));
}

#[test]
fn print_scenario_round_trips() {
    let out = picsou(&["sim", "--n", "7", "--crash", "s1", "--print-scenario"]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(text.contains("sender_n = 7"), "{text}");
    let path = scratch("printed.toml", &text);
    let out = picsou(&["sim", "--scenario", path.to_str().unwrap(), "--messages", "100", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(json(&out)["receiver_n"], 7);
    let _ = std::fs::remove_file(path);
}

#[test]
fn c3b_violation_exits_1() {
    // One-shot has no recovery: with a crashed sender replica its messages never arrive.
    let out = picsou(&[
        "sim",
        "--strategy",
        "ost",
        "--crash",
        "s1",
        "--messages",
        "100",
        "--max-virtual-seconds",
        "2",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let v = json(&out);
    assert_eq!(v["c3b_ok"], false);
    let violations = v["violations"].as_array().unwrap();
    assert!(violations.iter().any(|x| x.as_str().unwrap().contains("of 100 by 2 s")), "{v}");
}
