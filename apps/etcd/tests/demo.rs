//! `picsou-etcd demo`, shortened: two real 3-member etcd clusters, six sidecar processes, a
//! member and its sidecar killed and restarted on each side, and the digests compared.
//!
//! Ignored in the plain workspace run (it takes about a minute); `ci/test.sh` runs it with
//! `--ignored`, or prints SKIPPED when etcd is not installed.

use std::process::Command;

fn demo(extra: &[&str]) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_picsou-etcd"))
        .args(["demo", "--json", "--clients", "8", "--takeover-ms", "300"])
        .args(extra)
        .output()
        .expect("run picsou-etcd demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    for d in report["directions"].as_array().expect("directions") {
        println!(
            "{} -> {}: {} of {} revisions mirrored, applied up to {} of {}, {} keys, identical {}",
            d["from"],
            d["to"],
            d["revisions_mirrored"],
            d["source_revisions"],
            d["applied_source_revision"],
            d["source_last_revision"],
            d["mirror"]["keys"],
            d["identical"]
        );
    }
    for p in report["phases"].as_array().expect("phases") {
        for l in p["loads"].as_array().expect("loads") {
            println!("{} {}: {} writes/s, lag {}", p["name"], l["cluster"], l["writes_per_s"], l["lag"]);
        }
    }
    println!("actions: {}", report["actions"]);
    println!("problems: {}", report["problems"]);
    assert!(out.status.success(), "demo failed: {}", report["problems"]);
    assert_eq!(report["ok"], true);
    report
}

fn etcd_missing() -> bool {
    match picsou_etcd::cluster::etcd_version() {
        Ok(_) => false,
        Err(e) => {
            println!("SKIPPED: {e}");
            true
        }
    }
}

#[test]
#[ignore = "starts two etcd clusters and six sidecars (about a minute): ci/test.sh runs it"]
fn dr_with_a_kill_and_restart_on_each_side() {
    if etcd_missing() {
        return;
    }
    let r = demo(&[
        "--mode",
        "dr",
        "--puts",
        "4000",
        "--half-rate-puts",
        "0",
        "--delete-every",
        "7",
        "--kill",
        "primary/1@0.5",
        "--restart",
        "primary/1@2.5",
        "--kill",
        "standby/0@1.0",
        "--restart",
        "standby/0@3.0",
    ]);
    let d = &r["directions"][0];
    assert_eq!(d["identical"], true);
    assert_eq!(d["revisions_mirrored"], d["source_revisions"]);
    assert_eq!(r["actions"].as_array().map(Vec::len), Some(4));
}

#[test]
#[ignore = "starts two etcd clusters and six sidecars (about a minute): ci/test.sh runs it"]
fn reconcile_both_ways() {
    if etcd_missing() {
        return;
    }
    let r = demo(&["--mode", "reconcile", "--puts", "2000", "--half-rate-puts", "0", "--delete-every", "5"]);
    assert_eq!(r["directions"].as_array().map(Vec::len), Some(2));
}
