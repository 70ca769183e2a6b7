//! Transport micro benchmark: one sender streams to one receiver over loopback, through the tcp
//! and the uring transports, next to `iperf3` on the same loopback as the reference for what
//! the kernel's TCP can do. Prints a table and ratios and writes JSON (default
//! `bench-results/transport.json`, or the path given as the first argument).
//!
//! Workloads: messages of 1 MiB and of 64 B, each in its own frame (frame = 60 bytes of
//! header, count and tag + 19 bytes of record header + the payload, as the engine builds
//! them; the bytes are a valid length prefix and magic followed by filler, since transports
//! never look further). The sender sends until `Full`, flushes, waits for `Writable`, like the
//! node does; the receiver counts frames. Rates are the receiver's, over the measured window
//! after a warm-up.
//!
//! `iperf3 -s -1` + `iperf3 -c 127.0.0.1 -t T -J -l 1M` (and `-l 64`) give the reference; if
//! the binary is missing the reference is recorded as skipped with the reason.
//!
//! `PICSOU_BENCH_QUICK=1` shortens every run (the whole benchmark then takes well under 30 s).
//! `PICSOU_BENCH_ONLY=uring` (or `tcp`, `iperf3`, `uring:64`, `tcp:1048576`) restricts the
//! runs, for profiling one of them.

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use picsou_core::ReplicaId;
use picsou_core::keys::LinkKeys;
use picsou_runtime::transport::tcp::TcpTransport;
use picsou_runtime::transport::{
    SendStatus, Transport, TransportError, TransportEvent, TransportOptions, TransportSetup,
};
use picsou_transport_uring::UringTransport;
use serde_json::{Value, json};

const SENDER: ReplicaId = ReplicaId::new(0, 0);
const RECEIVER: ReplicaId = ReplicaId::new(1, 0);
/// Frame bytes around one message's payload: 60 (header, record count, tag) + 19 (record
/// header).
const OVERHEAD: usize = 60 + 19;
const MIB: usize = 1 << 20;

/// How long runs last.
#[derive(Clone, Copy)]
struct Timing {
    warmup: Duration,
    measure: Duration,
}

/// One measured run.
struct Run {
    transport: &'static str,
    message_bytes: usize,
    messages: u64,
    seconds: f64,
}

impl Run {
    fn msgs_per_s(&self) -> f64 {
        self.messages as f64 / self.seconds
    }
    fn payload_mb_per_s(&self) -> f64 {
        self.msgs_per_s() * self.message_bytes as f64 / 1e6
    }
    fn json(&self) -> Value {
        json!({
            "transport": self.transport,
            "message_bytes": self.message_bytes,
            "frame_bytes": self.message_bytes + OVERHEAD,
            "messages": self.messages,
            "seconds": self.seconds,
            "msgs_per_s": self.msgs_per_s(),
            "payload_mb_per_s": self.payload_mb_per_s(),
        })
    }
}

fn free_addr() -> SocketAddr {
    picsou_runtime::transport::ports::free_loopback_addr().expect("a free loopback port")
}

fn setup(local: ReplicaId, all: &[(ReplicaId, SocketAddr)]) -> TransportSetup {
    TransportSetup {
        local,
        listen: all.iter().find(|(id, _)| *id == local).map(|(_, a)| *a).expect("listed"),
        peers: all.iter().filter(|(id, _)| *id != local).copied().collect(),
        keys: LinkKeys::derived(local, [9; 32]),
        session: picsou_runtime::transport::handshake::SessionContext {
            deployment: [0; 32],
            incarnation: picsou_runtime::transport::handshake::new_incarnation(),
        },
        max_frame_bytes: 2 * MIB,
    }
}

/// A frame carrying one message of `payload` bytes. Static (leaked once per run), so cloning
/// it costs nothing: with one shared `Bytes`, every send would fight over its reference count
/// with the transport dropping the previous clones, which real frames (each its own
/// allocation) never do.
fn frame(payload: usize) -> Bytes {
    let len = payload + OVERHEAD;
    let mut f = vec![0xa5u8; len];
    f[..4].copy_from_slice(&(len as u32).to_le_bytes());
    f[4..6].copy_from_slice(b"PQ");
    Bytes::from_static(Box::leak(f.into_boxed_slice()))
}

type Make = fn(TransportSetup, &TransportOptions) -> Result<Box<dyn Transport>, TransportError>;

fn make_tcp(s: TransportSetup, o: &TransportOptions) -> Result<Box<dyn Transport>, TransportError> {
    Ok(Box::new(TcpTransport::new(s, &o.tcp)?))
}

fn make_uring(s: TransportSetup, o: &TransportOptions) -> Result<Box<dyn Transport>, TransportError> {
    Ok(Box::new(UringTransport::new(s, o)?))
}

/// Streams `payload`-byte messages from a sender to a receiver for `timing`.
fn run(transport: &'static str, make: Make, payload: usize, timing: Timing) -> Result<Run, String> {
    let all = [(SENDER, free_addr()), (RECEIVER, free_addr())];
    let opts = TransportOptions::default();
    // The receiver first, so the sender's first dial finds it listening.
    let mut rx = make(setup(RECEIVER, &all), &opts).map_err(|e| e.to_string())?;
    let mut tx = make(setup(SENDER, &all), &opts).map_err(|e| e.to_string())?;
    let stop = Arc::new(AtomicBool::new(false));
    let received = Arc::new(AtomicU64::new(0));

    let receiver = {
        let (stop, received) = (stop.clone(), received.clone());
        std::thread::spawn(move || {
            let mut events = Vec::with_capacity(4096);
            while !stop.load(Ordering::Relaxed) {
                events.clear();
                if rx.poll(Some(Duration::from_millis(10)), &mut events).is_err() {
                    break;
                }
                let n = events.iter().filter(|e| matches!(e, TransportEvent::Frame { .. })).count();
                received.fetch_add(n as u64, Ordering::Relaxed);
            }
            drop(rx);
        })
    };
    let sender = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let f = frame(payload);
            let burst = (256 * 1024 / f.len()).clamp(1, 1024);
            let mut blocked = false;
            let mut events = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                if !blocked {
                    for _ in 0..burst {
                        if tx.send(RECEIVER, f.clone().into()) == SendStatus::Full {
                            blocked = true;
                            break;
                        }
                    }
                    tx.flush();
                }
                events.clear();
                let wait = if blocked { Duration::from_millis(5) } else { Duration::ZERO };
                if tx.poll(Some(wait), &mut events).is_err() {
                    break;
                }
                if events.iter().any(|e| matches!(e, TransportEvent::Writable(RECEIVER))) {
                    blocked = false;
                }
            }
            drop(tx);
        })
    };

    std::thread::sleep(timing.warmup);
    let (n0, t0) = (received.load(Ordering::Relaxed), Instant::now());
    std::thread::sleep(timing.measure);
    let (n1, t1) = (received.load(Ordering::Relaxed), Instant::now());
    stop.store(true, Ordering::Relaxed);
    let _ = sender.join();
    let _ = receiver.join();
    if n1 == n0 {
        return Err("no message arrived in the measured window".into());
    }
    Ok(Run { transport, message_bytes: payload, messages: n1 - n0, seconds: (t1 - t0).as_secs_f64() })
}

/// `iperf3` over loopback with writes of `len` bytes; `Err` says why it could not run.
fn iperf3(len: usize, timing: Timing) -> Result<Run, String> {
    let port = free_addr().port().to_string();
    let mut server = Command::new("iperf3")
        .args(["-s", "-1", "-p", &port])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run iperf3: {e}"))?;
    std::thread::sleep(Duration::from_millis(300));
    let secs = timing.measure.as_secs().max(1).to_string();
    let omit = timing.warmup.as_secs().max(1).to_string();
    let l = if len == MIB { "1M".to_string() } else { len.to_string() };
    let out = Command::new("iperf3")
        .args(["-c", "127.0.0.1", "-p", &port, "-t", &secs, "-O", &omit, "-J", "-l", &l])
        .output()
        .map_err(|e| format!("cannot run iperf3: {e}"));
    let _ = server.kill();
    let _ = server.wait();
    let out = out?;
    let doc: Value = serde_json::from_slice(&out.stdout).map_err(|e| format!("iperf3 output: {e}"))?;
    if let Some(err) = doc.get("error").and_then(Value::as_str) {
        return Err(format!("iperf3: {err}"));
    }
    let sum = &doc["end"]["sum_received"];
    let bytes = sum["bytes"].as_f64().ok_or("iperf3 output lacks end.sum_received.bytes")?;
    let seconds = sum["seconds"].as_f64().ok_or("iperf3 output lacks end.sum_received.seconds")?;
    Ok(Run { transport: "iperf3", message_bytes: len, messages: (bytes / len as f64) as u64, seconds })
}

fn ratio(a: Option<&Run>, b: Option<&Run>, f: fn(&Run) -> f64) -> Option<f64> {
    Some(f(a?) / f(b?))
}

fn main() {
    let out = std::env::args().nth(1).unwrap_or_else(|| "bench-results/transport.json".into());
    let quick = std::env::var_os("PICSOU_BENCH_QUICK").is_some_and(|v| v != "0");
    let timing = if quick {
        Timing { warmup: Duration::from_millis(500), measure: Duration::from_secs(2) }
    } else {
        Timing { warmup: Duration::from_secs(1), measure: Duration::from_secs(5) }
    };
    let uring_probe = picsou_transport_uring::probe();
    let sizes = [MIB, 64];
    let mut runs: Vec<Run> = Vec::new();
    let mut skipped: Vec<Value> = Vec::new();
    let mut skip = |what: String, size: usize, why: String| {
        println!("{what:<8} {size:>8} B  skipped: {why}");
        skipped.push(json!({ "transport": what, "message_bytes": size, "skipped": why }));
    };
    let only = std::env::var("PICSOU_BENCH_ONLY").unwrap_or_default();
    let selected = |name: &str, size: usize| {
        only.is_empty() || only == name || only == format!("{name}:{size}") || only == size.to_string()
    };
    println!("{:<8} {:>10}  {:>14}  {:>14}", "", "message", "messages/s", "payload MB/s");
    for &size in &sizes {
        let candidates: [(&'static str, Make); 2] = [("tcp", make_tcp), ("uring", make_uring)];
        for (name, make) in candidates {
            if !selected(name, size) {
                continue;
            }
            if name == "uring"
                && let Err(why) = &uring_probe
            {
                skip(name.into(), size, format!("io_uring unavailable: {why}"));
                continue;
            }
            match run(name, make, size, timing) {
                Ok(r) => {
                    println!("{:<8} {:>8} B  {:>14.0}  {:>14.1}", name, size, r.msgs_per_s(), r.payload_mb_per_s());
                    runs.push(r);
                }
                Err(why) => skip(name.into(), size, why),
            }
        }
        if !selected("iperf3", size) {
            continue;
        }
        match iperf3(size, timing) {
            Ok(r) => {
                println!("{:<8} {:>8} B  {:>14.0}  {:>14.1}", "iperf3", size, r.msgs_per_s(), r.payload_mb_per_s());
                runs.push(r);
            }
            Err(why) => skip("iperf3".into(), size, why),
        }
    }
    let find = |t: &str, size: usize| runs.iter().find(|r| r.transport == t && r.message_bytes == size);
    let mut ratios = serde_json::Map::new();
    println!();
    for &size in &sizes {
        let label = if size == MIB { "1MiB".to_string() } else { format!("{size}B") };
        let pairs =
            [("uring/iperf3", "uring", "iperf3"), ("uring/tcp", "uring", "tcp"), ("tcp/iperf3", "tcp", "iperf3")];
        for (name, a, b) in pairs {
            let r = ratio(find(a, size), find(b, size), Run::payload_mb_per_s);
            if let Some(r) = r {
                println!("{label:>5} {name:<13} {r:>6.2}×");
            }
            ratios.insert(format!("{name} {label}"), r.map_or(Value::Null, Value::from));
        }
    }
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_string();
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let doc = json!({
        "benchmark": "transport",
        "quick": quick,
        "host": { "kernel": kernel, "cpus": cpus },
        "warmup_s": timing.warmup.as_secs_f64(),
        "measure_s": timing.measure.as_secs_f64(),
        "frame_overhead_bytes": OVERHEAD,
        "results": runs.iter().map(Run::json).collect::<Vec<_>>(),
        "skipped": skipped,
        "ratios": ratios,
        "targets": {
            "uring/iperf3 1MiB >= 0.9": ratios.get("uring/iperf3 1MiB").and_then(Value::as_f64).map(|r| r >= 0.9),
            "uring/tcp 64B >= 1.0": ratios.get("uring/tcp 64B").and_then(Value::as_f64).map(|r| r >= 1.0),
        },
    });
    if let Some(dir) = std::path::Path::new(&out).parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    std::fs::write(&out, serde_json::to_string_pretty(&doc).expect("json")).expect("write results");
    println!("wrote {out}");
}
