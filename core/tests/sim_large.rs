//! The simulator's speed requirement: 100,000 messages of 100 B between two 19-replica RSMs
//! must take seconds of real time. Ignored by default (it is meant for release builds):
//! `cargo test --release -p picsou-core --test sim_large -- --ignored --nocapture`.

use std::time::Instant;

use picsou_core::sim::{Scenario, run};

#[test]
#[ignore = "large; run in release mode"]
fn hundred_thousand_messages_between_19_replica_rsms() {
    let s = Scenario { sender_n: 19, receiver_n: 19, messages: 100_000, ..Scenario::default() };
    let started = Instant::now();
    let r = run(&s).expect("valid scenario");
    let elapsed = started.elapsed();
    eprintln!("{}", serde_json::to_string(&r).expect("serialisable"));
    eprintln!("real time: {elapsed:.2?}");
    assert!(r.c3b_ok, "{:?}", r.violations);
    assert_eq!(r.delivered, 100_000);
    assert!(elapsed.as_secs() < 60, "took {elapsed:?}");
}

#[test]
#[ignore = "large; run in release mode"]
fn hundred_thousand_messages_with_f_crashed_on_each_side() {
    let crash = ["s13", "s14", "s15", "s16", "s17", "s18", "r2", "r5", "r8", "r11", "r14", "r17"];
    let s = Scenario {
        sender_n: 19,
        receiver_n: 19,
        messages: 100_000,
        crash: crash.iter().map(|c| c.to_string()).collect(),
        ..Scenario::default()
    };
    let started = Instant::now();
    let r = run(&s).expect("valid scenario");
    eprintln!("{}", serde_json::to_string(&r).expect("serialisable"));
    eprintln!("real time: {:.2?}", started.elapsed());
    assert!(r.c3b_ok, "{:?}", r.violations);
}
