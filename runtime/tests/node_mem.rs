//! Whole deployments of nodes in one process over the in-memory transport: every replica
//! delivers the other RSM's stream in order, exactly once, with the right bytes — under every
//! strategy, under BFT, with a crashed replica, and with a replica restarted mid-run.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use picsou_core::{ReplicaId, Strategy, StreamStart};
use picsou_runtime::deployment::{DeploymentConfig, Senders};
use picsou_runtime::load::{RunOptions, StreamSource, run_replica};
use picsou_runtime::node::{Node, NodeOptions, SubmitError};
use picsou_runtime::transport::TransportKind;
use picsou_runtime::transport::mem::MemNetwork;

fn config(messages: u64, size: usize) -> DeploymentConfig {
    let mut c = DeploymentConfig::embedded_default();
    c.transport.kind = TransportKind::Mem;
    c.load.messages = messages;
    c.load.size = size;
    c
}

fn options(c: &DeploymentConfig) -> NodeOptions {
    NodeOptions::from_tuning(&c.node)
}

/// Limits the engine to `window` messages beyond the QUACK (send window, buffer and receive
/// window alike): a replica started alone never gets acks, so it takes exactly that many.
fn lone_sender_window(c: &mut DeploymentConfig, window: u64) {
    c.tuning.send_window = window;
    c.tuning.max_buffered = window;
    c.tuning.recv_window = window;
}

fn start(net: &MemNetwork, c: &DeploymentConfig, r: ReplicaId) -> Node {
    let peers: Vec<_> = c.replicas().into_iter().filter(|&p| p != r).collect();
    let t = net.transport(r, &peers).expect("register");
    Node::start(c.endpoint_config(r).expect("keys"), options(c), Box::new(t)).expect("start node")
}

/// Runs every replica except `skip` on its own thread and checks every report.
fn run_all(c: &DeploymentConfig, skip: &[ReplicaId]) {
    let net = MemNetwork::new();
    let replicas: Vec<_> = c.replicas().into_iter().filter(|r| !skip.contains(r)).collect();
    let nodes: Vec<_> = replicas.iter().map(|&r| (r, start(&net, c, r))).collect();
    let opts = &RunOptions {
        start_at_unix_ns: 0,
        timeout: Duration::from_secs(60),
        resume: StreamStart::default(),
        checkpoint: None,
        checkpoint_fsync: false,
    };
    let reports: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = nodes.iter().map(|(r, n)| s.spawn(move || run_replica(c, *r, n, opts))).collect();
        handles.into_iter().map(|h| h.join().expect("runner")).collect()
    });
    for rep in &reports {
        assert!(rep.in_order_exact, "{}: {:?}", rep.replica, rep.violation);
        assert!(rep.complete, "{} incomplete: delivered {} of {}", rep.replica, rep.delivered, rep.expected);
        assert_eq!(rep.delivered, rep.expected, "{}", rep.replica);
    }
    for (_, n) in nodes {
        n.shutdown().expect("clean shutdown");
    }
}

#[test]
fn four_plus_four_deliver_in_order_exactly_once_both_directions() {
    run_all(&config(5_000, 100), &[]);
}

#[test]
fn every_strategy_delivers() {
    for s in [Strategy::Ost, Strategy::Ata, Strategy::Ll, Strategy::Otu] {
        let mut c = config(1_000, 64);
        c.strategy = s;
        run_all(&c, &[]);
    }
}

#[test]
fn large_messages_deliver() {
    let mut c = config(200, 256 * 1024);
    c.load.senders = Senders::First;
    run_all(&c, &[]);
}

#[test]
fn a_crashed_replica_on_each_side_does_not_stop_the_stream() {
    // The crashed replicas never start: their frames are dropped by the network (peer down).
    run_all(&config(3_000, 100), &[ReplicaId::new(0, 1), ReplicaId::new(1, 2)]);
}

#[test]
fn bft_with_real_certificates_delivers() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/bft-4x4-tcp.toml")).unwrap();
    let mut c = DeploymentConfig::from_toml_str(&text, "bft-4x4-tcp.toml").unwrap();
    c.transport.kind = TransportKind::Mem;
    c.load.messages = 500;
    c.load.size = 100;
    run_all(&c, &[]);
}

#[test]
fn a_restarted_receiver_resumes_from_its_checkpoint_and_catches_up() {
    let mut c = config(4_000, 100);
    c.load.senders = Senders::First;
    let net = MemNetwork::new();
    let victim = ReplicaId::new(1, 3);
    let others: Vec<_> = c.replicas().into_iter().filter(|&r| r != victim).collect();
    let nodes: Vec<_> = others.iter().map(|&r| (r, start(&net, &c, r))).collect();
    let first = start(&net, &c, victim);
    let source = StreamSource::new(&c, ReplicaId::new(0, 0).rsm);
    let senders: Vec<_> = nodes.iter().filter(|(r, _)| r.rsm.0 == 0).collect();
    for seq in 0..1_000 {
        let (p, q) = source.message(seq);
        for (_, n) in &senders {
            n.submit(seq, p.clone(), q.clone()).unwrap();
        }
    }
    // The first incarnation applies what it gets; its checkpoint lags a little behind.
    let mut applied = 0;
    while applied < 600 {
        let d = first.next_delivery(Some(Duration::from_secs(30))).unwrap().expect("first incarnation stalled");
        assert_eq!(d.seq, applied);
        applied += 1;
    }
    let checkpoint = applied - 100;
    drop(first);
    let mut opts = options(&c);
    opts.resume = StreamStart { transmit: 0, receive: checkpoint };
    let peers: Vec<_> = c.replicas().into_iter().filter(|&p| p != victim).collect();
    let t = net.transport(victim, &peers).unwrap();
    let restarted = Node::start(c.endpoint_config(victim).expect("keys"), opts, Box::new(t)).unwrap();
    for seq in 1_000..4_000 {
        let (p, q) = source.message(seq);
        for (_, n) in &senders {
            n.submit(seq, p.clone(), q.clone()).unwrap();
        }
    }
    let mut next = checkpoint;
    while next < 4_000 {
        let d = restarted.next_delivery(Some(Duration::from_secs(30))).unwrap().expect("restarted replica stalled");
        assert_eq!(d.seq, next);
        assert!(source.matches(d.seq, &d.payload));
        next += 1;
    }
}

#[test]
fn submit_misuse_gets_typed_errors() {
    let c = config(10, 10);
    let net = MemNetwork::new();
    let r = ReplicaId::new(0, 0);
    let n = start(&net, &c, r);
    assert_eq!(n.submit(1, Bytes::new(), Bytes::new()), Err(SubmitError::OutOfOrder { expected: 0, got: 1 }));
    let big = Bytes::from(vec![0; c.tuning.max_payload_bytes + 1]);
    assert!(matches!(n.submit(0, big, Bytes::new()), Err(SubmitError::PayloadTooLarge { .. })));
    n.submit(0, Bytes::from_static(b"x"), Bytes::new()).unwrap();
    assert_eq!(n.submit(0, Bytes::new(), Bytes::new()), Err(SubmitError::OutOfOrder { expected: 1, got: 0 }));
    assert_eq!(n.next_delivery(Some(Duration::from_millis(10))), Ok(None));
    let stats = n.shutdown().unwrap();
    assert_eq!(stats.transmitted, 1);
}

#[test]
fn a_full_submit_queue_blocks_or_reports_full() {
    let mut c = config(10, 10);
    c.node.queue_capacity = 4;
    // A lone sender: nobody acks, so the QUACK never moves and the engine stops taking
    // messages at max_buffered; the queue then fills.
    lone_sender_window(&mut c, 16);
    let net = MemNetwork::new();
    let n = Arc::new(start(&net, &c, ReplicaId::new(0, 0)));
    let mut seq = 0;
    // Fill until the queue stays full after the node had time to drain what it could.
    loop {
        let before = seq;
        loop {
            match n.try_submit(seq, Bytes::from_static(b"m"), Bytes::new()) {
                Ok(()) => seq += 1,
                Err(SubmitError::Full) => break,
                Err(e) => panic!("{e}"),
            }
            assert!(seq < 1_000, "never full");
        }
        if seq == before {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(seq, 16 + 1 + 4, "engine window + one held back + queue");
    assert_eq!(
        n.submit_timeout(seq, Bytes::from_static(b"m"), Bytes::new(), Duration::from_millis(20)),
        Err(SubmitError::Full)
    );
}

/// A node whose window is full, with submissions queued behind it, sleeps until acks (or its
/// timers) can open the window: it used to poll without sleeping, burning a core (a fifth of
/// all CPU at 1 MB, where windows are full most of the time).
#[test]
fn a_node_with_a_full_window_and_queued_submissions_sleeps() {
    let mut c = config(10, 10);
    c.node.queue_capacity = 4;
    lone_sender_window(&mut c, 16);
    let net = MemNetwork::new();
    let n = start(&net, &c, ReplicaId::new(0, 0));
    for seq in 0..16 + 1 + 4 {
        n.submit_timeout(seq, Bytes::from_static(b"m"), Bytes::new(), Duration::from_secs(5)).expect("room");
    }
    std::thread::sleep(Duration::from_millis(300));
    let before = n.stats();
    std::thread::sleep(Duration::from_millis(1000));
    let after = n.stats();
    let loops = after.loops - before.loops;
    // Timers (keep-alives, statistics) wake it a few hundred times a second at most; a
    // spinning loop turns hundreds of thousands of times.
    assert!(loops < 5_000, "{loops} loop iterations in 1 s with nothing to do");
    assert_eq!(after.transmitted, 16, "the window stayed full");
}

#[test]
fn the_submit_queue_is_bounded_in_bytes_as_well_as_messages() {
    let mut c = config(10, 10);
    c.node.queue_capacity = 1_000;
    c.node.queue_bytes = 1 << 20;
    // A lone sender again: the engine holds up to 1 MiB beyond the (frozen) QUACK.
    c.tuning.send_window_bytes = 1 << 20;
    c.tuning.max_buffered_bytes = 1 << 20;
    let net = MemNetwork::new();
    let n = start(&net, &c, ReplicaId::new(0, 0));
    let payload = Bytes::from(vec![7u8; 300 << 10]);
    let mut seq = 0;
    loop {
        let before = seq;
        while n.try_submit(seq, payload.clone(), Bytes::new()).is_ok() {
            seq += 1;
            assert!(seq < 100, "never full");
        }
        if seq == before {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // The engine takes messages while it buffers under 1 MiB (4 of 300 KiB), one waits for
    // the window, and the queue holds what fits in 1 MiB (3), far fewer than its 1,000 slots.
    assert_eq!(seq, 4 + 1 + 3);
}

#[test]
fn tiny_queues_still_deliver_everything_in_order() {
    // Four messages or 1 KiB per queue: deliveries are handed over in batches that must
    // respect both bounds, and the node must keep publishing as the application drains them.
    let mut c = config(3000, 300);
    c.node.queue_capacity = 4;
    c.node.queue_bytes = 1024;
    run_all(&c, &[]);
}

#[test]
fn submit_batch_takes_all_or_nothing() {
    let mut c = config(10, 10);
    c.node.queue_capacity = 2;
    // A lone sender: nobody acks, so the engine stops taking messages at max_buffered.
    lone_sender_window(&mut c, 16);
    let net = MemNetwork::new();
    let n = start(&net, &c, ReplicaId::new(0, 0));
    let msg = |s: u64| (Bytes::from(format!("m{s}")), Bytes::new());
    let mut batch: Vec<_> = (1..4).map(msg).collect();
    assert_eq!(n.submit_batch(1, &mut batch, None), Err(SubmitError::OutOfOrder { expected: 0, got: 1 }));
    assert_eq!(batch.len(), 3, "nothing taken");
    let mut batch = vec![msg(0), (Bytes::from(vec![0; c.tuning.max_payload_bytes + 1]), Bytes::new())];
    assert!(matches!(n.submit_batch(0, &mut batch, None), Err(SubmitError::PayloadTooLarge { .. })));
    assert_eq!(batch.len(), 2, "nothing taken");
    // Batches fill the engine's window (16), one batch waits for it, two fill the queue.
    let mut next = 0;
    let mut full_at = None;
    for _ in 0..20 {
        let mut batch: Vec<_> = (next..next + 5).map(msg).collect();
        match n.submit_batch(next, &mut batch, Some(Duration::from_millis(100))) {
            Ok(()) => {
                assert!(batch.is_empty());
                next += 5;
            }
            Err(SubmitError::Full) => {
                assert_eq!(batch.len(), 5, "a refused batch is given back whole");
                full_at = Some(next);
                break;
            }
            Err(e) => panic!("{e}"),
        }
    }
    // 16 taken by the engine (3 batches and 1 message of the 4th), the rest of the 4th
    // pending in the node, then two batches in the queue.
    assert_eq!(full_at, Some(30));
    assert_eq!(
        n.submit_timeout(30, Bytes::from_static(b"x"), Bytes::new(), Duration::from_millis(10)),
        Err(SubmitError::Full)
    );
}

#[test]
fn take_deliveries_hands_out_ready_deliveries_in_order_up_to_max() {
    let c = config(500, 10);
    let net = MemNetwork::new();
    let nodes: Vec<_> = c.replicas().into_iter().map(|r| (r, start(&net, &c, r))).collect();
    let msg = |s: u64| (Bytes::from(format!("message {s}")), Bytes::new());
    for (r, n) in &nodes {
        if r.rsm.0 == 0 {
            let mut batch: Vec<_> = (0..500).map(msg).collect();
            n.submit_batch(0, &mut batch, Some(Duration::from_secs(10))).expect("submitted");
        }
    }
    let (_, receiver) = nodes.iter().find(|(r, _)| r.rsm.0 == 1).expect("a receiver");
    let mut got = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while got.len() < 500 {
        assert!(std::time::Instant::now() < deadline, "only {} delivered", got.len());
        let before = got.len();
        let n = receiver.take_deliveries(7, &mut got);
        assert_eq!(got.len(), before + n);
        assert!(n <= 7, "took {n}");
        if n == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    for (i, d) in got.iter().enumerate() {
        assert_eq!(d.seq, i as u64);
        assert_eq!(d.payload, msg(i as u64).0);
    }
    assert_eq!(receiver.take_deliveries(7, &mut got), 0, "nothing more");
    assert_eq!(receiver.take_deliveries(0, &mut got), 0);
}

/// Application-managed dissemination with both RSMs sending and their send windows full: each
/// replica's acks (`local_has`) must still reach its engine, or every sender waits for acks
/// that wait behind its own submissions (which is how this test failed: stuck, so it runs the
/// deployment on a thread of its own and gives up on it after a minute).
#[test]
fn application_dissemination_acks_are_not_stuck_behind_submissions() {
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        application_dissemination_both_ways(400);
        let _ = done.send(());
    });
    finished.recv_timeout(Duration::from_secs(60)).expect("both streams QUACKed within a minute");
}

fn application_dissemination_both_ways(messages: u64) {
    let mut c = config(messages, 10);
    c.tuning.dissemination = picsou_core::Dissemination::Application;
    c.tuning.send_window = 16;
    c.tuning.max_buffered = 16;
    c.node.queue_capacity = 4;
    let net = MemNetwork::new();
    let nodes: Vec<(ReplicaId, Arc<Node>)> =
        c.replicas().into_iter().map(|r| (r, Arc::new(start(&net, &c, r)))).collect();
    let all_quacked = || nodes.iter().all(|(_, n)| n.quacked() >= messages);
    std::thread::scope(|s| {
        for (r, n) in &nodes {
            let (r, submitter) = (*r, n.clone());
            s.spawn(move || {
                for seq in 0..messages {
                    let payload = Bytes::from(format!("{} says {seq}", r.rsm.0));
                    submitter.submit(seq, payload, Bytes::new()).expect("submitted");
                }
            });
            // The application's own channels: whatever a replica receives, its RSM now holds.
            let peers: Vec<Arc<Node>> = nodes.iter().filter(|(p, _)| p.rsm == r.rsm).map(|(_, n)| n.clone()).collect();
            let n = n.clone();
            s.spawn(move || {
                while !all_quacked() {
                    if let Ok(Some(d)) = n.next_delivery(Some(Duration::from_millis(10))) {
                        assert!(d.proof.is_some(), "application-managed deliveries carry proofs");
                        for p in &peers {
                            p.local_has(d.seq).expect("local_has");
                        }
                    }
                }
            });
        }
    });
}

/// A transport that works until `panic_now` is set, then panics in `poll` (as a bug in the
/// node thread would).
struct PanickingTransport {
    inner: Box<dyn picsou_runtime::transport::Transport>,
    panic_now: Arc<std::sync::atomic::AtomicBool>,
}

impl picsou_runtime::transport::Transport for PanickingTransport {
    fn kind(&self) -> &'static str {
        "panicking"
    }
    fn send(
        &mut self,
        peer: ReplicaId,
        frame: picsou_runtime::transport::EncodedFrame,
    ) -> picsou_runtime::transport::SendStatus {
        self.inner.send(peer, frame)
    }
    fn flush(&mut self) {
        self.inner.flush();
    }
    fn poll(
        &mut self,
        timeout: Option<Duration>,
        events: &mut Vec<picsou_runtime::transport::TransportEvent>,
    ) -> Result<(), picsou_runtime::transport::TransportError> {
        assert!(!self.panic_now.load(std::sync::atomic::Ordering::SeqCst), "injected panic in the node thread");
        self.inner.poll(Some(timeout.map_or(Duration::from_millis(10), |t| t.min(Duration::from_millis(10)))), events)
    }
    fn waker(&self) -> Arc<dyn picsou_runtime::transport::Wake> {
        self.inner.waker()
    }
    fn set_receiving(&mut self, receiving: bool) {
        self.inner.set_receiving(receiving);
    }
    fn stats(&self) -> picsou_runtime::transport::TransportStats {
        self.inner.stats()
    }
}

/// A panic on a node's thread marks the node failed: every call that would wait for it
/// (`submit` on a full queue, `next_delivery(None)`, `local_has`) returns `NodeFailed` instead
/// of waiting forever, and `shutdown` reports the panic.
#[test]
fn a_panic_on_the_node_thread_fails_every_blocking_call() {
    let mut c = config(1_000, 100);
    lone_sender_window(&mut c, 16);
    let net = MemNetwork::new();
    let r = ReplicaId::new(0, 0);
    let peers: Vec<_> = c.replicas().into_iter().filter(|&p| p != r).collect();
    let panic_now = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let t = PanickingTransport {
        inner: Box::new(net.transport(r, &peers).expect("register")),
        panic_now: panic_now.clone(),
    };
    let node = Node::start(c.endpoint_config(r).expect("keys"), options(&c), Box::new(t)).expect("start node");
    node.submit(0, Bytes::from_static(b"before"), Bytes::new()).expect("a live node takes a submission");
    panic_now.store(true, std::sync::atomic::Ordering::SeqCst);
    // Nobody acks (a lone sender): the window and then the queue fill, so these submissions
    // would wait; the panic ends the wait.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut seq = 1;
            let err = loop {
                match node.submit(seq, Bytes::from(vec![0; 100]), Bytes::new()) {
                    Ok(()) => seq += 1,
                    Err(e) => break e,
                }
            };
            tx.send(("submit", err)).unwrap();
        });
        s.spawn(|| tx.send(("next_delivery", node.next_delivery(None).unwrap_err())).unwrap());
        let mut seen = Vec::new();
        for _ in 0..2 {
            let (call, err) = rx.recv_timeout(Duration::from_secs(30)).expect("a blocking call returned");
            assert!(
                matches!(&err, SubmitError::NodeFailed { reason } if reason.contains("injected panic")),
                "{call}: {err:?}"
            );
            seen.push(call);
        }
        seen.sort_unstable();
        assert_eq!(seen, ["next_delivery", "submit"]);
    });
    assert!(node.is_stopped());
    assert!(matches!(node.local_has(0), Err(SubmitError::NodeFailed { .. })));
    let err = node.shutdown().unwrap_err();
    assert!(err.to_string().contains("injected panic"), "{err}");
}
