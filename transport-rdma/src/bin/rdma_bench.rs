//! `rdma_bench`: one sender → one receiver over the RDMA transport, next to perftest on the
//! same device: ping-pong latency (`ib_write_lat`) and streaming bandwidth (`ib_write_bw`),
//! printed as ratios and written as JSON.
//!
//! ```text
//! rdma_bench [--device rxe0] [--gid-index N] [--out FILE.json] [--lat-size 64] [--lat-iters 500]
//!            [--bw-size 65536] [--bw-seconds 5] [--polling busy|event] [--spin-us N] [--rounds 1]
//!            [--no-perftest] [--fake]
//! ```
//!
//! Both endpoints run in this process, one thread each, connected over loopback for the
//! bootstrap and over the device for data (perftest runs its server and client as two
//! processes on the same device). Latency is half the round trip of a `--lat-size` frame
//! bounced back (perftest reports half the round trip too); bandwidth is receiver-counted
//! frame bytes of `--bw-size` frames per second, in MiB/s like perftest's MB/sec. Busy polling
//! uses the transport's default spin (`spin_us` = 100: then short sleeps); `--spin-us 60000000`
//! spins without sleeping, as perftest does (on two emulated CPUs that starves soft-RoCE's own
//! kernel work and makes latency bimodal). `--rounds N` alternates ours and perftest N times and
//! reports medians (emulated runs are noisy; the JSON keeps every round). `--fake`
//! runs on the in-memory fake device (no perftest): a smoke test of the harness anywhere.

use std::net::SocketAddr;
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use picsou_core::ReplicaId;
use picsou_core::keys::LinkKeys;
use picsou_runtime::transport::options::RdmaPolling;
use picsou_runtime::transport::{SendStatus, Transport, TransportEvent, TransportOptions, TransportSetup};
use picsou_transport_rdma::RdmaTransport;
use picsou_transport_rdma::fake::FakeDevice;
use picsou_transport_rdma::verbs::Device;
use serde_json::{Value, json};

const A: ReplicaId = ReplicaId::new(0, 0);
const B: ReplicaId = ReplicaId::new(1, 0);

#[derive(Clone, Debug)]
struct Args {
    device: String,
    gid_index: Option<u32>,
    out: Option<String>,
    lat_size: usize,
    lat_iters: usize,
    bw_size: usize,
    bw_seconds: f64,
    polling: RdmaPolling,
    spin_us: Option<u64>,
    perftest: bool,
    fake: bool,
    rounds: u32,
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        device: String::new(),
        gid_index: None,
        out: None,
        lat_size: 64,
        lat_iters: 500,
        bw_size: 65536,
        bw_seconds: 5.0,
        polling: RdmaPolling::Busy,
        spin_us: None,
        perftest: true,
        fake: false,
        rounds: 1,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--device" => a.device = val()?,
            "--gid-index" => a.gid_index = Some(val()?.parse().map_err(|e| format!("--gid-index: {e}"))?),
            "--out" => a.out = Some(val()?),
            "--lat-size" => a.lat_size = val()?.parse().map_err(|e| format!("--lat-size: {e}"))?,
            "--lat-iters" => a.lat_iters = val()?.parse().map_err(|e| format!("--lat-iters: {e}"))?,
            "--bw-size" => a.bw_size = val()?.parse().map_err(|e| format!("--bw-size: {e}"))?,
            "--bw-seconds" => a.bw_seconds = val()?.parse().map_err(|e| format!("--bw-seconds: {e}"))?,
            "--polling" => {
                a.polling = match val()?.as_str() {
                    "busy" => RdmaPolling::Busy,
                    "event" => RdmaPolling::Event,
                    other => return Err(format!("--polling {other}: busy or event")),
                }
            }
            "--spin-us" => a.spin_us = Some(val()?.parse().map_err(|e| format!("--spin-us: {e}"))?),
            "--no-perftest" => a.perftest = false,
            "--rounds" => a.rounds = val()?.parse().map_err(|e| format!("--rounds: {e}"))?,
            "--fake" => a.fake = true,
            "-h" | "--help" => {
                println!("{}", include_str!("rdma_bench.rs").lines().take(20).collect::<Vec<_>>().join("\n"));
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if a.lat_size < 16 || a.bw_size < 16 || a.lat_iters < 10 || a.rounds == 0 {
        return Err("--lat-size and --bw-size at least 16, --lat-iters at least 10, --rounds at least 1".into());
    }
    Ok(a)
}

fn free_addr() -> SocketAddr {
    picsou_runtime::transport::ports::free_loopback_addr().expect("a free loopback port")
}

fn setup(local: ReplicaId, all: &[(ReplicaId, SocketAddr)]) -> TransportSetup {
    TransportSetup {
        local,
        listen: all.iter().find(|(r, _)| *r == local).map(|(_, a)| *a).expect("listed"),
        peers: all.iter().filter(|(r, _)| *r != local).copied().collect(),
        keys: LinkKeys::derived(local, [7; 32]),
        session: picsou_runtime::transport::handshake::SessionContext {
            deployment: [0; 32],
            incarnation: picsou_runtime::transport::handshake::new_incarnation(),
        },
        max_frame_bytes: 16 << 20,
    }
}

fn frame(seq: u64, size: usize) -> Bytes {
    let mut v = vec![0x5au8; size];
    v[..8].copy_from_slice(&seq.to_le_bytes());
    Bytes::from(v)
}

fn seq_of(f: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&f[..8]);
    u64::from_le_bytes(b)
}

/// Polls until `t` is connected to `peer` both ways.
fn wait_connected<D: Device>(t: &mut RdmaTransport<D>, peer: ReplicaId, stop: &AtomicBool) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut ev = Vec::new();
    while !t.connected(peer) {
        if Instant::now() > deadline || stop.load(Ordering::SeqCst) {
            return Err(format!("not connected to {peer} after 60 s: {}", t.debug_state()));
        }
        ev.clear();
        t.poll(Some(Duration::from_millis(5)), &mut ev).map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Ping-pong: A sends, B bounces; one-way latency = RTT / 2, in µs.
fn latency<D: Device>(
    mut a: RdmaTransport<D>,
    mut b: RdmaTransport<D>,
    size: usize,
    iters: usize,
) -> Result<Value, String> {
    let stop = Arc::new(AtomicBool::new(false));
    let stop_b = stop.clone();
    let echo = std::thread::spawn(move || -> Result<String, String> {
        // No waiting for the connection here: a frame may arrive before our own link to A is
        // up (it is queued meanwhile), and waiting would drop its event.
        let mut ev = Vec::new();
        while !stop_b.load(Ordering::SeqCst) {
            ev.clear();
            b.poll(Some(Duration::from_millis(20)), &mut ev).map_err(|e| e.to_string())?;
            for e in ev.drain(..) {
                if let TransportEvent::Frame { frame, .. } = e {
                    b.send(A, frame.into());
                    b.flush();
                }
            }
        }
        Ok(b.debug_state())
    });
    let result = ping(&mut a, size, iters, &stop);
    stop.store(true, Ordering::SeqCst);
    let echo_state = echo.join().map_err(|_| "the echo thread panicked".to_string())??;
    let samples = result.map_err(|e| format!("{e}; echo side: {echo_state}"))?;
    let avg = samples.iter().sum::<f64>() / samples.len() as f64;
    Ok(json!({
        "size": size,
        "iters": iters,
        "min_us": samples[0],
        "p50_us": percentile(&samples, 0.5),
        "p99_us": percentile(&samples, 0.99),
        "max_us": samples[samples.len() - 1],
        "avg_us": avg,
    }))
}

/// The pinging side of [`latency`]: sorted one-way samples in µs.
fn ping<D: Device>(a: &mut RdmaTransport<D>, size: usize, iters: usize, stop: &AtomicBool) -> Result<Vec<f64>, String> {
    wait_connected(a, B, stop)?;
    let warmup = (iters / 10).max(5);
    let mut samples = Vec::with_capacity(iters);
    let mut ev = Vec::new();
    for i in 0..(warmup + iters) as u64 {
        let start = Instant::now();
        a.send(B, frame(i, size).into());
        a.flush();
        'wait: loop {
            ev.clear();
            a.poll(Some(Duration::from_secs(30)), &mut ev).map_err(|e| e.to_string())?;
            for e in ev.drain(..) {
                match e {
                    TransportEvent::Frame { frame, .. } if seq_of(&frame) == i => break 'wait,
                    TransportEvent::PeerDown { reason, .. } => return Err(format!("peer down: {reason}")),
                    _ => {}
                }
            }
            if start.elapsed() > Duration::from_secs(30) {
                return Err(format!("no echo of {i} after 30 s: {}", a.debug_state()));
            }
        }
        if i >= warmup as u64 {
            samples.push(start.elapsed().as_secs_f64() * 1e6 / 2.0);
        }
    }
    samples.sort_by(f64::total_cmp);
    Ok(samples)
}

/// A streams `size`-byte frames to B for `seconds`; B counts. MiB/s of frame bytes.
fn bandwidth<D: Device>(
    mut a: RdmaTransport<D>,
    mut b: RdmaTransport<D>,
    size: usize,
    seconds: f64,
) -> Result<Value, String> {
    let stop = Arc::new(AtomicBool::new(false));
    let stop_b = stop.clone();
    let sink = std::thread::spawn(move || -> Result<(u64, u64, f64), String> {
        let mut ev = Vec::new();
        let (mut frames, mut bytes) = (0u64, 0u64);
        let mut first: Option<(Instant, u64)> = None;
        let mut last = Instant::now();
        while !stop_b.load(Ordering::SeqCst) {
            ev.clear();
            b.poll(Some(Duration::from_millis(20)), &mut ev).map_err(|e| e.to_string())?;
            for e in ev.drain(..) {
                if let TransportEvent::Frame { frame, .. } = e {
                    // Time from the first frame on (connection set-up excluded).
                    if first.is_none() {
                        first = Some((Instant::now(), frame.len() as u64));
                    }
                    frames += 1;
                    bytes += frame.len() as u64;
                    last = Instant::now();
                }
            }
        }
        let (t0, b0) = first.ok_or("no frame arrived")?;
        let secs = last.duration_since(t0).as_secs_f64();
        Ok((frames, bytes - b0, secs))
    });
    wait_connected(&mut a, B, &stop)?;
    let end = Instant::now() + Duration::from_secs_f64(seconds);
    let mut ev = Vec::new();
    let mut seq = 0u64;
    let mut blocked = false;
    while Instant::now() < end {
        while !blocked {
            seq += 1;
            blocked = a.send(B, frame(seq, size).into()) == SendStatus::Full;
        }
        a.flush();
        ev.clear();
        a.poll(Some(Duration::from_millis(1)), &mut ev).map_err(|e| e.to_string())?;
        for e in ev.drain(..) {
            match e {
                TransportEvent::Writable(_) => blocked = false,
                TransportEvent::PeerDown { reason, .. } => return Err(format!("peer down: {reason}")),
                _ => {}
            }
        }
    }
    // Let what is in flight land, then stop the receiver.
    let drain_until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < drain_until {
        ev.clear();
        a.poll(Some(Duration::from_millis(10)), &mut ev).map_err(|e| e.to_string())?;
    }
    stop.store(true, Ordering::SeqCst);
    let (frames, bytes, secs) = sink.join().map_err(|_| "the sink thread panicked".to_string())??;
    let mib_s = if secs > 0.0 { bytes as f64 / secs / (1u64 << 20) as f64 } else { 0.0 };
    Ok(json!({ "size": size, "seconds": secs, "frames": frames, "mib_per_s": mib_s }))
}

/// Makes the transport of a replica among (replica, address) pairs.
type Maker<D> = dyn Fn(ReplicaId, &[(ReplicaId, SocketAddr)]) -> Result<RdmaTransport<D>, String>;

/// Prints one round's numbers.
fn print_round(round: u32, r: &Value, bw_size: usize) {
    let f = |v: &Value| v.as_f64().unwrap_or(f64::NAN);
    let o = &r["ours"];
    println!(
        "round {round}: ours     latency p50 {:.1} µs (p99 {:.1}), bandwidth {:.2} MiB/s ({bw_size} B frames)",
        f(&o["latency"]["p50_us"]),
        f(&o["latency"]["p99_us"]),
        f(&o["bandwidth"]["mib_per_s"]),
    );
    if let Some(p) = r.get("perftest") {
        println!(
            "round {round}: perftest ib_write_lat typical {:.1} µs (p99 {:.1}), ib_write_bw {:.2} MiB/s",
            f(&p["ib_write_lat"]["typical_us"]),
            f(&p["ib_write_lat"]["p99_us"]),
            f(&p["ib_write_bw"]["mib_per_s"]),
        );
    }
}

/// A pair of connected transports from `make`.
fn pair<D: Device>(make: &Maker<D>) -> Result<(RdmaTransport<D>, RdmaTransport<D>), String> {
    let all = [(A, free_addr()), (B, free_addr())];
    Ok((make(A, &all)?, make(B, &all)?))
}

fn run<D: Device>(args: &Args, make: &Maker<D>) -> Result<Value, String> {
    let (a, b) = pair(make)?;
    let device = a.device().to_string();
    let inline = a.max_inline();
    eprintln!("rdma_bench: {device}, inline {inline} B: latency, {} × {} B", args.lat_iters, args.lat_size);
    let lat = latency(a, b, args.lat_size, args.lat_iters)?;
    let (a, b) = pair(make)?;
    eprintln!("rdma_bench: bandwidth, {} B frames for {} s", args.bw_size, args.bw_seconds);
    let bw = bandwidth(a, b, args.bw_size, args.bw_seconds)?;
    Ok(json!({ "device": device, "inline": inline, "latency": lat, "bandwidth": bw }))
}

/// Runs a perftest pair (server, then client against 127.0.0.1) and returns the client's
/// output.
fn perftest(tool: &str, common: &[String]) -> Result<String, String> {
    let port = free_addr().port().to_string();
    let mut server = Command::new(tool)
        .args(common)
        .args(["-p", &port])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("{tool}: {e} (install perftest)"))?;
    let mut last = String::new();
    for _ in 0..20 {
        std::thread::sleep(Duration::from_millis(500));
        let out = Command::new(tool)
            .args(common)
            .args(["-p", &port, "127.0.0.1"])
            .output()
            .map_err(|e| format!("{tool}: {e}"))?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() {
            let _ = server.wait();
            return Ok(text);
        }
        last = format!("{text}{}", String::from_utf8_lossy(&out.stderr));
        if !last.contains("Couldn't connect") && !last.contains("Unable to open file descriptor") {
            break;
        }
    }
    let _ = server.kill();
    let _ = server.wait();
    Err(format!("{tool} failed: {last}"))
}

/// The first line of numbers under perftest's result header.
fn result_row(text: &str, header: &str) -> Option<Vec<f64>> {
    let mut lines = text.lines().skip_while(|l| !l.contains(header));
    lines.next()?;
    lines.map(|l| l.split_whitespace().filter_map(|w| w.parse::<f64>().ok()).collect::<Vec<_>>()).find(|v| v.len() >= 4)
}

fn perftest_side(args: &Args) -> Result<Value, String> {
    let mut common = vec!["-F".to_string()];
    if !args.device.is_empty() {
        common.extend(["-d".into(), args.device.clone()]);
    }
    if let Some(g) = args.gid_index {
        common.extend(["-x".into(), g.to_string()]);
    }
    let mut lat_args = common.clone();
    lat_args.extend(["-s".into(), args.lat_size.to_string(), "-n".into(), args.lat_iters.to_string()]);
    eprintln!("rdma_bench: ib_write_lat {}", lat_args.join(" "));
    let lat = perftest("ib_write_lat", &lat_args)?;
    // #bytes #iterations t_min t_max t_typical t_avg t_stdev 99% 99.9%
    let l = result_row(&lat, "t_typical").ok_or_else(|| format!("no result in ib_write_lat output:\n{lat}"))?;
    let mut bw_args = common;
    let secs = args.bw_seconds.ceil().max(1.0) as u64;
    bw_args.extend(["-s".into(), args.bw_size.to_string(), "-D".into(), secs.to_string()]);
    eprintln!("rdma_bench: ib_write_bw {}", bw_args.join(" "));
    let bw = perftest("ib_write_bw", &bw_args)?;
    // #bytes #iterations BW peak[MB/sec] BW average[MB/sec] MsgRate[Mpps]
    let b = result_row(&bw, "BW average").ok_or_else(|| format!("no result in ib_write_bw output:\n{bw}"))?;
    Ok(json!({
        "ib_write_lat": {
            "size": l[0], "iters": l[1], "min_us": l[2], "max_us": l[3], "typical_us": l[4], "avg_us": l[5],
            "p99_us": l.get(7).copied().unwrap_or(f64::NAN),
        },
        "ib_write_bw": { "size": b[0], "seconds": secs, "mib_per_s": b[3] },
    }))
}

fn main() -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("rdma_bench: {e}");
            return ExitCode::from(2);
        }
    };
    let mut opts = TransportOptions::default();
    opts.rdma.device = args.device.clone();
    opts.rdma.gid_index = args.gid_index;
    opts.rdma.polling = args.polling;
    opts.rdma.ring_bytes = 4 << 20;
    if let Some(spin) = args.spin_us {
        opts.rdma.spin_us = spin;
    }
    opts.tcp.max_queued_bytes = 8 << 20;
    let with_perftest = args.perftest && !args.fake;
    let mut rounds = Vec::new();
    for round in 1..=args.rounds {
        eprintln!("rdma_bench: round {round} of {}", args.rounds);
        let ours = if args.fake {
            let event = args.polling == RdmaPolling::Event;
            let opts = opts.clone();
            let make = move |id, all: &[(ReplicaId, SocketAddr)]| {
                RdmaTransport::with_device(FakeDevice::new(event), setup(id, all), &opts).map_err(|e| e.to_string())
            };
            run(&args, &make)
        } else {
            let opts = opts.clone();
            let make = move |id, all: &[(ReplicaId, SocketAddr)]| {
                picsou_transport_rdma::open_hw(setup(id, all), &opts).map_err(|e| e.to_string())
            };
            run(&args, &make)
        };
        let ours = match ours {
            Ok(v) => v,
            Err(e) => {
                eprintln!("rdma_bench: {e}");
                return ExitCode::FAILURE;
            }
        };
        let mut r = json!({ "ours": ours });
        if with_perftest {
            match perftest_side(&args) {
                Ok(p) => r["perftest"] = p,
                Err(e) => {
                    eprintln!("rdma_bench: perftest: {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
        print_round(round, &r, args.bw_size);
        rounds.push(r);
    }
    let med = |path: &[&str]| {
        let mut v: Vec<f64> = rounds
            .iter()
            .filter_map(|r| path.iter().try_fold(r, |x, k| x.get(*k)).and_then(Value::as_f64))
            .filter(|x| x.is_finite())
            .collect();
        v.sort_by(f64::total_cmp);
        if v.is_empty() { f64::NAN } else { v[v.len() / 2] }
    };
    let ours_lat = med(&["ours", "latency", "p50_us"]);
    let ours_bw = med(&["ours", "bandwidth", "mib_per_s"]);
    let mut report = json!({
        "polling": format!("{:?}", args.polling).to_lowercase(),
        "device": rounds[0]["ours"]["device"].clone(),
        "inline": rounds[0]["ours"]["inline"].clone(),
        "latency_size": args.lat_size,
        "bandwidth_size": args.bw_size,
        "rounds": rounds,
        "median": { "ours_latency_p50_us": ours_lat, "ours_bandwidth_mib_per_s": ours_bw },
    });
    println!(
        "median of {} rounds: ours latency p50 {ours_lat:.1} µs, bandwidth {ours_bw:.2} MiB/s ({} B frames)",
        args.rounds, args.bw_size
    );
    if with_perftest {
        let p_lat = med(&["perftest", "ib_write_lat", "typical_us"]);
        let p_bw = med(&["perftest", "ib_write_bw", "mib_per_s"]);
        report["median"]["ib_write_lat_typical_us"] = json!(p_lat);
        report["median"]["ib_write_bw_mib_per_s"] = json!(p_bw);
        report["ratios"] = json!({
            "latency_p50_vs_ib_write_lat_typical": ours_lat / p_lat,
            "bandwidth_vs_ib_write_bw": ours_bw / p_bw,
        });
        println!("median of {} rounds: ib_write_lat typical {p_lat:.1} µs, ib_write_bw {p_bw:.2} MiB/s", args.rounds);
        println!(
            "ratios:   latency ours/perftest {:.2} (lower is better), bandwidth ours/perftest {:.2} (higher is better)",
            ours_lat / p_lat,
            ours_bw / p_bw
        );
    }
    let text = serde_json::to_string_pretty(&report).unwrap_or_default();
    if let Some(path) = &args.out {
        if let Some(dir) = std::path::Path::new(path).parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        if let Err(e) = std::fs::write(path, format!("{text}\n")) {
            eprintln!("rdma_bench: write {path}: {e}");
            return ExitCode::FAILURE;
        }
        eprintln!("rdma_bench: wrote {path}");
    } else {
        println!("{text}");
    }
    ExitCode::SUCCESS
}
