//! Golden traces of the engine: every frame (time, source, destination, bytes), every event and
//! every `poll_timeout` answer of a few small deployments, hashed, must stay exactly what they
//! were. A refactoring of the engine's internals must not change a single output or its order;
//! the simulator's reports (`scripts/sim_regression.sh`) check the same at a coarser grain.
//!
//! When a change is *meant* to alter behaviour, run with `PICSOU_PRINT_TRACES=1`, check why
//! each changed digest changed, and update the constants.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use picsou_core::config::{Dissemination, FaultModel, Membership, ProtocolParams, RsmSpec, Strategy};
use picsou_core::keys::LinkKeys;
use picsou_core::proof::NoProof;
use picsou_core::{Endpoint, EndpointConfig, Event, ReplicaId, Time};

/// A frame in flight: arrival time, tie-break, source, destination, bytes.
type Flight = Reverse<(Time, u64, usize, usize, Bytes)>;

/// xorshift64*: deterministic pseudo-random choices of the network.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

struct Setup {
    strategy: Strategy,
    membership: Membership,
    params: ProtocolParams,
    messages: u64,
    size: usize,
    /// Per mille of cross-RSM frames a transport drops.
    drop_permille: u64,
    /// Per mille of frames inside the receiving RSM a transport drops.
    internal_drop_permille: u64,
    /// Replicas (global index) that crash, and when (ms).
    crashes: Vec<(usize, u64)>,
    /// Latency inside the receiving RSM.
    internal_latency: Duration,
    /// Toggle blocked links now and then.
    blocking: bool,
    run_for: Duration,
}

fn uniform(n0: usize, n1: usize, fault: FaultModel) -> Membership {
    let f = |n: usize| match fault {
        FaultModel::Cft => (n as u64 - 1) / 2,
        FaultModel::Bft => (n as u64 - 1) / 3,
    };
    Membership::new(RsmSpec::uniform("a", n0, fault, f(n0)), RsmSpec::uniform("b", n1, fault, f(n1))).unwrap()
}

fn base(strategy: Strategy) -> Setup {
    Setup {
        strategy,
        membership: uniform(4, 4, FaultModel::Cft),
        params: ProtocolParams::default(),
        messages: 300,
        size: 100,
        drop_permille: 0,
        internal_drop_permille: 0,
        crashes: Vec::new(),
        internal_latency: Duration::from_micros(100),
        blocking: false,
        run_for: Duration::from_millis(400),
    }
}

/// Runs `s` and hashes everything the endpoints output.
fn trace(s: &Setup, seed: u64) -> String {
    let m = Arc::new(s.membership.clone());
    let (n0, n1) = (m.rsms[0].n(), m.rsms[1].n());
    let rid = |i: usize| if i < n0 { ReplicaId::new(0, i as u16) } else { ReplicaId::new(1, (i - n0) as u16) };
    let idx = |r: ReplicaId| if r.rsm.0 == 0 { usize::from(r.index) } else { n0 + usize::from(r.index) };
    let mut eps: Vec<Endpoint> = (0..n0 + n1)
        .map(|i| {
            let local = rid(i);
            let cfg = EndpointConfig::new(
                m.clone(),
                local,
                s.strategy,
                s.params.clone(),
                LinkKeys::derived(local, [3; 32]),
                Arc::new(NoProof),
            );
            Endpoint::new(cfg, Time::ZERO).unwrap()
        })
        .collect();
    let mut rng = Rng(seed | 1);
    let mut h = blake3::Hasher::new();
    let mut queue: BinaryHeap<Flight> = BinaryHeap::new();
    let mut tie = 0u64;
    let mut now = Time::ZERO;
    let end = Time::ZERO + s.run_for;
    let mut crashed = BTreeSet::new();
    let mut blocked: Vec<(Time, usize, usize)> = Vec::new();
    let payload = |seq: u64| {
        let mut p = vec![(seq % 251) as u8; s.size];
        p[..8.min(s.size)].copy_from_slice(&seq.to_le_bytes()[..8.min(s.size)]);
        Bytes::from(p)
    };
    let app = s.params.dissemination == Dissemination::Application;
    loop {
        for &(r, at) in &s.crashes {
            if now >= Time::ZERO + Duration::from_millis(at) {
                crashed.insert(r);
            }
        }
        // Unblock links whose time has come.
        blocked.retain(|&(at, i, to)| {
            if at <= now {
                eps[i].set_blocked(rid(to), false);
                false
            } else {
                true
            }
        });
        for i in 0..eps.len() {
            if crashed.contains(&i) {
                continue;
            }
            if i < n0 {
                while eps[i].next_submit() < s.messages && eps[i].submit_capacity() > 0 {
                    let seq = eps[i].next_submit();
                    eps[i].submit(now, seq, payload(seq), Bytes::new()).unwrap();
                }
            }
            while let Some(t) = eps[i].poll_transmit(now) {
                let to = idx(t.to);
                let bytes = t.frame.into_bytes();
                h.update(&[1]);
                h.update(&now.as_nanos().to_le_bytes());
                h.update(&(i as u64).to_le_bytes());
                h.update(&(to as u64).to_le_bytes());
                h.update(&(bytes.len() as u64).to_le_bytes());
                h.update(&bytes);
                let cross = (i < n0) != (to < n0);
                if cross && rng.below(1000) < s.drop_permille {
                    continue;
                }
                if !cross && i >= n0 && rng.below(1000) < s.internal_drop_permille {
                    continue;
                }
                let latency = if cross {
                    Duration::from_micros(500 + rng.below(300))
                } else if i >= n0 {
                    s.internal_latency + Duration::from_micros(rng.below(50))
                } else {
                    Duration::from_micros(100 + rng.below(50))
                };
                tie += 1;
                queue.push(Reverse((now + latency, tie, i, to, bytes)));
                if s.blocking && rng.below(100) < 3 {
                    eps[i].set_blocked(rid(to), true);
                    blocked.push((now + Duration::from_micros(200 + rng.below(2000)), i, to));
                }
            }
            let mut spread = Vec::new();
            while let Some(e) = eps[i].poll_event() {
                h.update(&[2]);
                h.update(&(i as u64).to_le_bytes());
                h.update(format!("{e:?}").as_bytes());
                if let Event::Received { seq, .. } = e {
                    spread.push(seq);
                }
            }
            if app {
                let rsm = if i < n0 { 0..n0 } else { n0..eps.len() };
                for seq in spread {
                    for j in rsm.clone().filter(|&j| j != i && !crashed.contains(&j)) {
                        let _ = eps[j].local_has(now, seq);
                    }
                }
            }
            h.update(&[3]);
            h.update(format!("{:?}", eps[i].poll_timeout()).as_bytes());
        }
        if now >= end {
            break;
        }
        let next_frame = queue.peek().map(|Reverse(e)| e.0);
        let next_timer = (0..eps.len()).filter(|i| !crashed.contains(i)).filter_map(|i| eps[i].poll_timeout()).min();
        let next_unblock = blocked.iter().map(|b| b.0).min();
        let Some(t) = [next_frame, next_timer, next_unblock].into_iter().flatten().min() else { break };
        now = now.max(t).min(end);
        while let Some(Reverse(e)) = queue.peek() {
            if e.0 > now {
                break;
            }
            let Reverse((_, _, from, to, frame)) = queue.pop().unwrap();
            if !crashed.contains(&to) {
                eps[to].handle_frame(now, rid(from), frame);
            }
        }
        for (i, ep) in eps.iter_mut().enumerate() {
            if !crashed.contains(&i) && ep.poll_timeout().is_some_and(|t| t <= now) {
                ep.handle_timeout(now);
            }
        }
    }
    for (i, ep) in eps.iter().enumerate() {
        h.update(format!("{i} {:?} {} {}", ep.stats(), ep.quacked(), ep.received()).as_bytes());
    }
    if std::env::var_os("PICSOU_PRINT_TRACES").is_some() {
        let sum = |f: fn(&picsou_core::EndpointStats) -> u64| eps.iter().map(|e| f(&e.stats())).sum::<u64>();
        println!(
            "frames {} resends {} forwards {} repairs {} delivered {} ack-only {}",
            sum(|s| s.frames_sent),
            sum(|s| s.resends),
            sum(|s| s.forwards),
            sum(|s| s.repairs),
            sum(|s| s.delivered),
            sum(|s| s.ack_only_frames)
        );
    }
    h.finalize().to_hex()[..16].to_string()
}

fn check(name: &str, s: &Setup, seed: u64, want: &str) {
    let got = trace(s, seed);
    if std::env::var_os("PICSOU_PRINT_TRACES").is_some() {
        println!("{name}: {got}");
    } else {
        assert_eq!(got, want, "{name}: the engine's outputs changed");
    }
}

#[test]
fn picsou_traces_are_unchanged() {
    let s = Setup { drop_permille: 20, internal_drop_permille: 20, blocking: true, ..base(Strategy::Picsou) };
    check("picsou-cft-4x4-drops-blocking", &s, 1, "3e272fa30fd73ce1");
    let s = Setup {
        membership: uniform(4, 7, FaultModel::Bft),
        crashes: vec![(1, 0), (4 + 5, 1)],
        drop_permille: 10,
        run_for: Duration::from_millis(1500),
        ..base(Strategy::Picsou)
    };
    check("picsou-bft-4x7-crashes", &s, 2, "9733746cbf4528f8");
    let s = Setup {
        membership: Membership::new(
            RsmSpec::with_stakes("a", &[4, 1, 1, 1], FaultModel::Cft, 3),
            RsmSpec::uniform("b", 5, FaultModel::Cft, 2),
        )
        .unwrap(),
        crashes: vec![(4 + 1, 1)],
        blocking: true,
        run_for: Duration::from_millis(1500),
        ..base(Strategy::Picsou)
    };
    check("picsou-stakes-crash-blocking", &s, 3, "dc5a9ddd2f3c9882");
    let s = Setup {
        internal_latency: Duration::from_millis(30),
        crashes: vec![(2, 1)],
        internal_drop_permille: 50,
        run_for: Duration::from_millis(1500),
        ..base(Strategy::Picsou)
    };
    check("picsou-slow-internal-crash", &s, 4, "cccb82b9c8746211");
    let s = Setup {
        params: ProtocolParams { dissemination: Dissemination::Application, ..ProtocolParams::default() },
        drop_permille: 30,
        run_for: Duration::from_millis(1500),
        ..base(Strategy::Picsou)
    };
    check("picsou-application", &s, 5, "cbd334d4c813b52c");
    let s = Setup {
        size: 80_000,
        messages: 60,
        params: ProtocolParams {
            send_window_bytes: 400_000,
            max_buffered_bytes: 800_000,
            max_frame_bytes: 200_000,
            ..ProtocolParams::default()
        },
        blocking: true,
        ..base(Strategy::Picsou)
    };
    check("picsou-large", &s, 6, "bbbde8effd5195f1");
}

#[test]
fn baseline_traces_are_unchanged() {
    for (i, strategy) in [Strategy::Ost, Strategy::Ata, Strategy::Ll, Strategy::Otu].into_iter().enumerate() {
        let s = Setup { drop_permille: 5, blocking: true, ..base(strategy) };
        let want = ["2da332fd26fa3937", "a28283935526e065", "89dd5e59d25810b9", "e6e51119b731532d"][i];
        check(strategy.name(), &s, 10 + i as u64, want);
    }
    let s = Setup { crashes: vec![(0, 1)], run_for: Duration::from_millis(1500), ..base(Strategy::Otu) };
    check("otu-crash", &s, 20, "e42826b70bbcd852");
}
