//! The guarded apply against a real etcd: several appliers apply the same stream at once,
//! and every message lands exactly once, in order.
//!
//! Needs Debian's `etcd` (installed by `ci/setup.sh`); without it the tests print SKIPPED.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use picsou_etcd::apply::{Applied, Applier, Batch, Progress, TxnLimits, progress_key};
use picsou_etcd::cluster::{Cluster, etcd_version, free_ports};
use picsou_etcd::codec::{KvEvent, RevisionMessage};
use picsou_etcd::etcd::connect_one;
use picsou_etcd::sink::{SinkConfig, SinkStatus, run_sink};

const PREFIX: &str = "/src/";

/// Message `m`: a key of its own (a second application would show as version 2), a key every
/// message overwrites, and a scratch key that the next message deletes every fifth time.
fn message(m: u64) -> RevisionMessage {
    let mut events = vec![
        KvEvent::put(format!("{PREFIX}log/{m:05}"), m.to_string()),
        KvEvent::put(format!("{PREFIX}last"), m.to_string()),
    ];
    if m % 5 == 4 {
        events.push(KvEvent::delete(format!("{PREFIX}scratch/{}", m - 1)));
    } else {
        events.push(KvEvent::put(format!("{PREFIX}scratch/{m}"), "x"));
    }
    RevisionMessage { revision: 1000 + 3 * m, events }
}

/// A one-member etcd in a temporary folder (kept alive by the returned values), and its
/// endpoint; `None` (after printing SKIPPED) without etcd.
async fn start_etcd() -> Option<(tempfile::TempDir, Cluster, String)> {
    if let Err(e) = etcd_version() {
        println!("SKIPPED: {e}");
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let base = free_ports(2, None).expect("free ports");
    let mut c = Cluster::new("t", 1, base, dir.path(), &["--max-txn-ops=1024".to_string()]);
    c.start_all().expect("start etcd");
    c.wait_ready(Duration::from_secs(30)).await.unwrap();
    let endpoint = c.endpoints()[0].clone();
    Some((dir, c, endpoint))
}

async fn check(endpoint: &str, n: u64) {
    let mut client = connect_one(endpoint).await.unwrap();
    let p = client.get(progress_key("src"), None).await.unwrap();
    let p = Progress::parse(p.kvs()[0].value()).unwrap();
    assert_eq!(p.next, n, "every message applied");
    assert_eq!(p.source_revision, 1000 + 3 * (n - 1));
    let logs = client.get(format!("{PREFIX}log/"), Some(etcd_client::GetOptions::new().with_prefix())).await.unwrap();
    assert_eq!(logs.kvs().len() as u64, n);
    let mut last_create = 0;
    for (m, kv) in logs.kvs().iter().enumerate() {
        assert_eq!(kv.value(), m.to_string().as_bytes());
        assert_eq!(kv.version(), 1, "message {m} applied more than once");
        assert!(kv.create_revision() >= last_create, "message {m} applied out of order");
        last_create = kv.create_revision();
    }
    let last = client.get(format!("{PREFIX}last"), None).await.unwrap();
    assert_eq!(last.kvs()[0].value(), (n - 1).to_string().as_bytes());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appliers_apply_each_message_exactly_once_in_order() {
    let Some((_dir, _cluster, endpoint)) = start_etcd().await else { return };
    let n: u64 = 400;
    let msgs: Arc<Vec<RevisionMessage>> = Arc::new((0..n).map(message).collect());
    let mut tasks = Vec::new();
    for a in 0..4u64 {
        let (endpoint, msgs) = (endpoint.clone(), msgs.clone());
        tasks.push(tokio::spawn(async move {
            let client = connect_one(&endpoint).await.unwrap();
            let mut applier = Applier::new(client.kv_client(), "src", &format!("test/{a}"));
            let mut next = applier.init().await.unwrap().next;
            let (mut won, mut lost) = (0u64, 0u64);
            // Each applier cuts its batches differently (1 to 7 messages, by applier).
            let limits = TxnLimits { max_ops: 1 + 3 * (1 + ((a as usize * 3) % 7)), max_bytes: 1 << 20 };
            while next < n {
                let mut batch = Batch::new(next);
                for m in &msgs[next as usize..] {
                    if !batch.try_add(m, PREFIX.as_bytes(), limits).unwrap() {
                        break;
                    }
                }
                match applier.apply(&batch).await.unwrap() {
                    Applied::Done(p) => {
                        assert_eq!(p.next, next + batch.len());
                        won += batch.len();
                        next = p.next;
                    }
                    Applied::Lost(p) => {
                        assert!(p.next != next, "the guard refused a batch at the progress");
                        lost += 1;
                        next = next.max(p.next);
                    }
                }
            }
            (won, lost)
        }));
    }
    let mut total = 0;
    let mut lost = 0;
    for t in tasks {
        let (w, l) = t.await.unwrap();
        total += w;
        lost += l;
    }
    assert_eq!(total, n, "the appliers together applied every message once");
    assert!(lost > 0, "the appliers raced (otherwise this test shows nothing)");
    check(&endpoint, n).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranked_sinks_take_over_when_the_first_stops() {
    let Some((_dir, _cluster, endpoint)) = start_etcd().await else { return };
    let n: u64 = 300;
    let payloads: Vec<(u64, Bytes)> = (0..n).map(|m| (m, Bytes::from(message(m).encode().unwrap()))).collect();
    let mut senders = Vec::new();
    let mut statuses = Vec::new();
    let mut handles = Vec::new();
    for rank in 0..3u32 {
        let client = connect_one(&endpoint).await.unwrap();
        let mut applier = Applier::new(client.kv_client(), "src", &format!("test/{rank}"));
        let p = applier.init().await.unwrap();
        let status = Arc::new(SinkStatus::default());
        status.known_next.store(p.next, std::sync::atomic::Ordering::Release);
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        let config = SinkConfig {
            endpoint: endpoint.clone(),
            prefix: PREFIX.as_bytes().to_vec(),
            rank,
            takeover: Duration::from_millis(100),
            limits: TxnLimits { max_ops: 64, max_bytes: 1 << 20 },
        };
        handles.push(tokio::spawn(run_sink(config, applier, rx, status.clone())));
        senders.push(tx);
        statuses.push(status);
    }
    // Everyone delivers the first half; then rank 0 stops (its sidecar died) and the others
    // deliver the rest.
    let half = (n / 2) as usize;
    for chunk in payloads[..half].chunks(10) {
        for tx in &senders {
            tx.send(chunk.to_vec()).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let wait_until = |target: u64, statuses: Vec<Arc<SinkStatus>>| async move {
        for _ in 0..1000 {
            if statuses.iter().any(|s| s.known_next.load(std::sync::atomic::Ordering::Acquire) >= target) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("progress did not reach {target}");
    };
    wait_until(half as u64, statuses.clone()).await;
    handles[0].abort();
    for chunk in payloads[half..].chunks(10) {
        for tx in &senders[1..] {
            tx.send(chunk.to_vec()).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    wait_until(n, statuses[1..].to_vec()).await;
    let o = std::sync::atomic::Ordering::Relaxed;
    let applied: Vec<u64> = statuses.iter().map(|s| s.applied.load(o)).collect();
    let takeovers: u64 = statuses.iter().map(|s| s.takeovers.load(o)).sum();
    // Exactly once is checked on etcd's own state (`check`). The counters count a transaction
    // only when its success response arrives, so they can miss one that etcd committed: rank 0
    // aborted between the commit and the count, or a response lost to an error (then retried
    // and lost to the guard). Seen on a loaded CI host: [150, 136, 0]. At most `max_ops`
    // messages per such transaction.
    let errors: u64 = statuses.iter().map(|s| s.errors.load(o)).sum();
    let total: u64 = applied.iter().sum();
    assert!(total <= n, "counted at most once: {applied:?}");
    assert!(total + 64 * (errors + 1) >= n, "only uncounted commits are missing: {applied:?}, {errors} errors");
    assert!(applied[0] > 0 && applied[0] <= half as u64, "rank 0 applied only before it stopped: {applied:?}");
    assert!(takeovers >= 1, "rank 1 took over");
    check(&endpoint, n).await;
}
