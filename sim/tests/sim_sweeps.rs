//! Sweeps of the deterministic simulator: Picsou must keep C3B under every fault the model
//! allows (crashes, each Byzantine behaviour, loss, reordering, partitions, unequal sizes and
//! stakes), the baselines must work without faults, and runs must be reproducible.
//!
//! Message counts are kept small so the whole file runs in a couple of minutes in the test
//! profile; `picsou sim` and the benches run the large configurations.

use std::collections::BTreeMap;

use picsou_core::adversary::Behavior;
use picsou_core::config::{FaultModel, Strategy};
use picsou_sim::{Partition, Scenario, SimReport, run};

/// Runs `s` and checks C3B held and everything was delivered; `what` labels failures.
fn check(what: &str, s: &Scenario) -> SimReport {
    let r = run(s).unwrap_or_else(|e| panic!("{what}: invalid scenario: {e}"));
    assert!(r.c3b_ok, "{what}: C3B violated (seed {}): {:#?}", s.seed, r.violations);
    assert_eq!(r.delivered, s.messages, "{what}");
    r
}

fn base(n: usize, messages: u64) -> Scenario {
    Scenario { sender_n: n, receiver_n: n, messages, ..Scenario::default() }
}

/// The artifact's crash pattern (indices ≡ 2 mod 3), which places exactly f = (n−1)/3 faults.
fn spread(prefix: char, n: usize, count: usize) -> Vec<String> {
    (0..n).filter(|i| i % 3 == 2).take(count).map(|i| format!("{prefix}{i}")).collect()
}

/// The last `count` replicas.
fn last(prefix: char, n: usize, count: usize) -> Vec<String> {
    (n - count..n).map(|i| format!("{prefix}{i}")).collect()
}

fn bft_f(n: usize) -> usize {
    (n - 1) / 3
}

#[test]
fn picsou_without_faults_sends_each_message_once() {
    for n in [4, 7, 19] {
        let r = check(&format!("n={n}"), &base(n, 2_000));
        // Without faults nothing needs resending; allow a little slack for spurious resends
        // caused by timing, but the cross traffic must stay close to one copy per message.
        assert!(
            r.cross_bytes_per_message < 3.0 * 100.0 + 200.0,
            "n={n}: {} cross bytes per message",
            r.cross_bytes_per_message
        );
        assert!(r.throughput_msgs_per_s > 0.0 && r.latency_p50_ms > 0.0);
    }
}

#[test]
fn picsou_with_f_crashed_replicas_on_either_side() {
    for n in [4, 7, 19] {
        let f = bft_f(n);
        for (label, crash) in [
            ("senders spread", spread('s', n, f)),
            ("receivers spread", spread('r', n, f)),
            ("senders last", last('s', n, f)),
            ("receivers last", last('r', n, f)),
            ("both sides", spread('s', n, f).into_iter().chain(last('r', n, f)).collect()),
        ] {
            let s = Scenario { crash, ..base(n, 1_000) };
            let r = check(&format!("n={n} {label} {:?}", s.crash), &s);
            // The first copy, at most f_s + f_r resends along the rotation, and one reassignment
            // (a message whose first pair has a replica known to be down goes to a trusted pair).
            assert!(
                r.max_sends_per_message <= 2 + 2 * f as u64,
                "n={n} {label}: {} sends of one message",
                r.max_sends_per_message
            );
        }
    }
}

#[test]
fn picsou_with_crashes_during_the_run() {
    for n in [4, 7] {
        let f = bft_f(n);
        let mut crash: Vec<String> = (0..f).map(|i| format!("s{i}@{}", 2 + i)).collect();
        crash.extend((0..f).map(|i| format!("r{}@{}", n - 1 - i, 3 + i)));
        let s = Scenario { crash, ..base(n, 3_000) };
        check(&format!("n={n} mid-run crashes {:?}", s.crash), &s);
    }
}

#[test]
fn picsou_under_cft_with_a_minority_crashed() {
    for n in [3, 4, 7] {
        let f = (n - 1) / 2;
        let s = Scenario {
            fault: FaultModel::Cft,
            crash: spread('s', n, f).into_iter().chain(last('r', n, f)).collect(),
            ..base(n, 1_000)
        };
        // Spread may place fewer than f on small n; that is fine.
        check(&format!("cft n={n} {:?}", s.crash), &s);
    }
}

/// Each Byzantine behaviour on the side where it matters, on f replicas.
#[test]
fn picsou_with_each_byzantine_behaviour() {
    let receiver_side: Vec<Behavior> = Behavior::ALL.into_iter().filter(|b| !b.acts_as_sender()).collect();
    let sender_side: Vec<Behavior> = Behavior::ALL.into_iter().filter(|b| b.acts_as_sender()).collect();
    for n in [4, 7] {
        let f = bft_f(n);
        for &b in &receiver_side {
            for names in [spread('r', n, f), last('r', n, f)] {
                let s = Scenario { byzantine: names.iter().map(|x| (x.clone(), b.into())).collect(), ..base(n, 1_000) };
                check(&format!("n={n} {} on {names:?}", b.name()), &s);
            }
        }
        for &b in &sender_side {
            for names in [spread('s', n, f), last('s', n, f)] {
                let s = Scenario { byzantine: names.iter().map(|x| (x.clone(), b.into())).collect(), ..base(n, 1_000) };
                let r = check(&format!("n={n} {} on {names:?}", b.name()), &s);
                if b == Behavior::Forge {
                    assert!(r.misbehaviors_detected > 0, "n={n}: forged messages went unnoticed");
                }
            }
        }
    }
}

/// Every behaviour starting mid-run, on f replicas of the side it acts on, with a crash of
/// the other side at another time: C3B holds, everything is delivered, and the report's
/// timeline accounts for every message.
#[test]
fn picsou_with_each_behaviour_starting_mid_run() {
    use picsou_core::adversary::Byzantine;
    let n = 4;
    for b in Behavior::ALL {
        for onset_ms in [3, 20] {
            let side = if b.acts_as_sender() { 's' } else { 'r' };
            let other = if side == 's' { "r0@10" } else { "s0@10" };
            let byz = Byzantine { behavior: b, onset: std::time::Duration::from_millis(onset_ms) };
            let s = Scenario {
                byzantine: BTreeMap::from([(format!("{side}1"), byz)]),
                crash: vec![other.to_string()],
                ..base(n, 3_000)
            };
            let what = format!("{byz} with crash {other}");
            let r = check(&what, &s);
            assert_eq!(r.timeline.delivered.iter().sum::<u64>(), s.messages, "{what}");
            assert_eq!(r.fault_onset_ms, Some(onset_ms.min(10) as f64), "{what}");
        }
    }
}

#[test]
fn picsou_with_byzantine_replicas_at_scale() {
    let n = 19;
    let f = bft_f(n);
    for (side, b) in [('r', Behavior::InflateAck), ('r', Behavior::LiePhi), ('s', Behavior::Forge)] {
        let s =
            Scenario { byzantine: spread(side, n, f).into_iter().map(|x| (x, b.into())).collect(), ..base(n, 1_000) };
        check(&format!("n=19 {}", b.name()), &s);
    }
}

#[test]
fn picsou_with_byzantine_and_crashed_replicas_on_both_sides() {
    let n = 7;
    let s = Scenario {
        crash: vec!["s1".into(), "r4".into()],
        byzantine: BTreeMap::from([("s5".into(), Behavior::Forge.into()), ("r2".into(), Behavior::InflateAck.into())]),
        loss: 0.02,
        jitter_ms: 0.3,
        ..base(n, 1_500)
    };
    check("mixed faults", &s);
}

#[test]
fn picsou_with_loss() {
    for n in [4, 7] {
        for (loss, local_loss) in [(0.01, 0.0), (0.1, 0.0), (0.0, 0.1), (0.1, 0.1)] {
            let s = Scenario { loss, local_loss, ..base(n, 1_500) };
            check(&format!("n={n} loss={loss} local_loss={local_loss}"), &s);
        }
    }
    // Loss together with f crashes.
    let s = Scenario { loss: 0.1, local_loss: 0.05, crash: vec!["s2".into(), "r2".into()], ..base(4, 1_500) };
    check("loss and crashes", &s);
}

#[test]
fn picsou_with_reordering_across_links() {
    for n in [4, 7, 19] {
        let s = Scenario { jitter_ms: 0.8, ..base(n, 1_500) };
        check(&format!("n={n} jitter"), &s);
    }
    let s = Scenario { jitter_ms: 2.0, crash: vec!["r0".into()], ..base(4, 1_500) };
    check("jitter and a crash", &s);
}

#[test]
fn picsou_survives_a_partition_that_heals() {
    for n in [4, 7] {
        let s = Scenario { partitions: vec![Partition { start_ms: 0.5, end_ms: 40.0 }], ..base(n, 3_000) };
        let r = check(&format!("n={n} partition"), &s);
        assert!(r.virtual_seconds > 0.040, "delivered before the heal?");
    }
    // Two partitions, with a crashed receiver.
    let s = Scenario {
        partitions: vec![Partition { start_ms: 0.2, end_ms: 10.0 }, Partition { start_ms: 15.0, end_ms: 30.0 }],
        crash: vec!["r1".into()],
        messages: 20_000,
        ..Scenario::default()
    };
    check("two partitions", &s);
}

#[test]
fn picsou_between_rsms_of_different_sizes() {
    for (ns, nr) in [(4, 7), (7, 4), (4, 19), (19, 4)] {
        let s = Scenario { sender_n: ns, receiver_n: nr, messages: 1_500, ..Scenario::default() };
        check(&format!("{ns} to {nr}"), &s);
        let s = Scenario {
            sender_n: ns,
            receiver_n: nr,
            messages: 1_500,
            crash: last('s', ns, bft_f(ns)).into_iter().chain(spread('r', nr, bft_f(nr))).collect(),
            ..Scenario::default()
        };
        check(&format!("{ns} to {nr} with crashes"), &s);
    }
}

#[test]
fn picsou_with_unequal_stake() {
    let stake = Some(vec![4, 1, 1, 1]);
    let s =
        Scenario { sender_stake: stake.clone(), receiver_stake: stake.clone(), messages: 2_000, ..Scenario::default() };
    check("4,1,1,1", &s);
    // Total stake 7 tolerates f = 2: crash two stake-1 replicas on each side.
    let s = Scenario {
        sender_stake: stake.clone(),
        receiver_stake: stake.clone(),
        crash: vec!["s1".into(), "s3".into(), "r2".into(), "r3".into()],
        messages: 2_000,
        ..Scenario::default()
    };
    check("4,1,1,1 with crashes", &s);
    // With f = 1 (as the artifact sized it), the heavy replica may not fail but a light one may.
    let s = Scenario {
        sender_stake: stake.clone(),
        receiver_stake: Some(vec![1, 1, 1, 4]),
        sender_f: Some(1),
        receiver_f: Some(1),
        byzantine: BTreeMap::from([("r0".into(), Behavior::ZeroAck.into())]),
        crash: vec!["s2".into()],
        messages: 2_000,
        ..Scenario::default()
    };
    check("4,1,1,1 vs 1,1,1,4 with f = 1", &s);
}

#[test]
fn picsou_with_large_messages() {
    for (size, messages) in [(100_000, 200), (1_000_000, 30)] {
        let s = Scenario { size, messages, crash: vec!["s1".into(), "r2".into()], ..Scenario::default() };
        let r = check(&format!("{size} B"), &s);
        assert!(r.throughput_mb_per_s > 0.0);
    }
}

#[test]
fn picsou_with_real_signatures_and_cpu_cost() {
    let s = Scenario {
        real_signatures: true,
        byzantine: BTreeMap::from([("s3".into(), Behavior::Forge.into())]),
        cpu_us_per_frame: 5.0,
        cpu_ns_per_byte: 1.0,
        messages: 300,
        ..Scenario::default()
    };
    let r = check("real signatures", &s);
    assert!(r.misbehaviors_detected > 0);
}

#[test]
fn baselines_work_without_faults() {
    for strategy in Strategy::ALL {
        for (ns, nr) in [(4, 4), (7, 4)] {
            let s = Scenario { strategy, sender_n: ns, receiver_n: nr, messages: 1_000, ..Scenario::default() };
            let r = check(&format!("{} {ns} to {nr}", strategy.name()), &s);
            assert_eq!(r.strategy, strategy.name());
            if strategy == Strategy::Ata {
                assert_eq!(r.max_sends_per_message, (ns * nr) as u64);
            }
        }
    }
}

#[test]
fn same_seed_same_report_different_seed_may_differ() {
    let s = Scenario {
        loss: 0.05,
        local_loss: 0.02,
        jitter_ms: 0.5,
        crash: vec!["s1".into()],
        byzantine: BTreeMap::from([("r2".into(), Behavior::LiePhi.into())]),
        messages: 1_500,
        ..Scenario::default()
    };
    let a = run(&s).unwrap();
    let b = run(&s).unwrap();
    assert_eq!(a, b);
    assert_eq!(serde_json::to_string(&a).unwrap(), serde_json::to_string(&b).unwrap());
    let differs = (2..6).any(|seed| {
        let other = run(&Scenario { seed, ..s.clone() }).unwrap();
        assert!(other.c3b_ok, "seed {seed}: {:?}", other.violations);
        other != a
    });
    assert!(differs, "the seed should change loss and jitter draws");
}

#[test]
fn invalid_scenarios_are_config_errors_not_runs() {
    let too_many = Scenario { crash: vec!["s0".into(), "s1".into()], ..Scenario::default() };
    assert!(run(&too_many).is_err());
    let cft_byz = Scenario {
        fault: FaultModel::Cft,
        byzantine: BTreeMap::from([("r0".into(), Behavior::Silent.into())]),
        ..Scenario::default()
    };
    assert!(run(&cft_byz).is_err());
}

/// A seeded random mix of everything above: sizes, fault model, crashes (at the start or
/// during the run), Byzantine behaviours on either side, loss, jitter and partitions. A failure
/// prints the scenario as TOML, to replay with `picsou sim --scenario FILE`.
#[test]
fn random_fault_mixes() {
    use picsou_sim::rng::SimRng;
    for case in 1..=120u64 {
        let mut rng = SimRng::derive(case, "sweep");
        let mut pick = |xs: &[f64]| xs[rng.up_to(xs.len() as u64 - 1) as usize];
        let sizes = [4.0, 5.0, 7.0, 10.0, 13.0];
        let (ns, nr) = (pick(&sizes) as usize, pick(&sizes) as usize);
        let fault = if pick(&[0.0, 0.0, 0.0, 1.0]) == 1.0 { FaultModel::Cft } else { FaultModel::Bft };
        let loss = pick(&[0.0, 0.02, 0.1]);
        let local_loss = pick(&[0.0, 0.02, 0.1]);
        let jitter_ms = pick(&[0.0, 0.3, 1.0]);
        let partitions = if pick(&[0.0, 1.0, 0.0]) == 1.0 {
            let start = pick(&[0.5, 3.0, 8.0]);
            vec![Partition { start_ms: start, end_ms: start + pick(&[5.0, 20.0]) }]
        } else {
            Vec::new()
        };
        let mut crash = Vec::new();
        let mut byzantine = BTreeMap::new();
        for (prefix, n) in [('s', ns), ('r', nr)] {
            let f = match fault {
                FaultModel::Bft => (n - 1) / 3,
                FaultModel::Cft => (n - 1) / 2,
            };
            let count = pick(&(0..=f).map(|x| x as f64).collect::<Vec<_>>()) as usize;
            let mut chosen: Vec<usize> = Vec::new();
            while chosen.len() < count {
                let i = pick(&(0..n).map(|x| x as f64).collect::<Vec<_>>()) as usize;
                if !chosen.contains(&i) {
                    chosen.push(i);
                }
            }
            for i in chosen {
                let name = format!("{prefix}{i}");
                if fault == FaultModel::Bft && pick(&[0.0, 1.0]) == 1.0 {
                    let b = Behavior::ALL[pick(&[0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0]) as usize];
                    byzantine.insert(name, b.into());
                } else {
                    let at = pick(&[0.0, 0.0, 2.0, 10.0]);
                    crash.push(if at == 0.0 { name } else { format!("{name}@{at}") });
                }
            }
        }
        let s = Scenario {
            sender_n: ns,
            receiver_n: nr,
            fault,
            loss,
            local_loss,
            jitter_ms,
            partitions,
            crash,
            byzantine,
            messages: 800,
            seed: case,
            ..Scenario::default()
        };
        check(&format!("random case {case}:\n{}", s.to_toml()), &s);
    }
}

/// Regression: a receiver once trimmed delivered messages (over `retention_bytes`) whose
/// forwards to a blocked peer were still queued, and some correct replicas never got them. A
/// WAN with a rate-limited link and a retention far below the send window reproduces that.
#[test]
fn picsou_keeps_messages_until_queued_forwards_leave() {
    let mut s = base(7, 300);
    s.size = 100_000;
    s.cross_link_mbps = Some(200.0);
    s.cross_latency_ms = 20.0;
    s.params.retention_bytes = 1 << 20;
    check("small retention, WAN", &s);
    s.crash = spread('r', 7, 2);
    check("small retention, WAN, crashed receivers", &s);
}
