//! Measures the engine's cost per message and its allocations per message, prints a table and
//! writes JSON (default `bench-results/engine.json`, or the path given as the first argument).
//!
//! Workloads (100-byte messages, all replicas in this one thread, no network):
//! - `pair_1x1`: one sender and one receiver — the sender + receiver bookkeeping of one message.
//! - `deployment_4x4_no_loss`: two RSMs of 4 (the sender's share, forwarding to 3 peers, acks).
//! - `deployment_4x4_crashed_receiver`: the same with receiver 2 crashed: a quarter of first
//!   copies are lost and recovered by duplicate-QUACK resends.
//!
//! Allocation counts come from a counting global allocator over the measured phase only.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use picsou_benches::Deployment;

/// Counts allocations, delegating to the system allocator.
struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator; the counter is atomic.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const TICK: Duration = Duration::from_micros(200);

fn measure(name: &str, mut d: Deployment, messages: u64, batch: u64) -> serde_json::Value {
    // Warm up: fill windows, grow rings to their steady-state size.
    d.deliver(messages / 4, batch, TICK);
    let resends_before = d.resends;
    let allocs = ALLOCS.load(Ordering::Relaxed);
    let start = Instant::now();
    let rounds = d.deliver(messages, batch, TICK);
    let secs = start.elapsed().as_secs_f64();
    let allocs = ALLOCS.load(Ordering::Relaxed) - allocs;
    let rate = messages as f64 / secs;
    let per_msg = allocs as f64 / messages as f64;
    let resends = d.resends - resends_before;
    println!("{name:<34} {rate:>12.0} msgs/s  {per_msg:>6.3} allocs/msg  {resends:>7} resends  {rounds:>6} rounds");
    serde_json::json!({
        "workload": name,
        "messages": messages,
        "message_bytes": 100,
        "seconds": secs,
        "msgs_per_s": rate,
        "allocs_per_msg": per_msg,
        "resends": resends,
        "rounds": rounds,
    })
}

fn main() {
    let out = std::env::args().nth(1).unwrap_or_else(|| "bench-results/engine.json".into());
    let quick = std::env::var_os("PICSOU_BENCH_QUICK").is_some();
    let n = if quick { 50_000 } else { 500_000 };
    println!("{:<34} {:>19}  {:>17}  {:>15}", "workload (100 B, one core)", "throughput", "allocations", "");
    let results = vec![
        measure("pair_1x1", Deployment::new(1, 0, 100, &[]), n, 1024),
        measure("deployment_4x4_no_loss", Deployment::new(4, 1, 100, &[]), n, 1024),
        measure("deployment_4x4_crashed_receiver", Deployment::new(4, 1, 100, &[2]), n, 1024),
    ];
    let doc = serde_json::json!({ "benchmark": "engine", "results": results });
    if let Some(dir) = std::path::Path::new(&out).parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    std::fs::write(&out, serde_json::to_string_pretty(&doc).expect("json")).expect("write results");
    println!("wrote {out}");
}
