//! `picsou bench`: strategies × message sizes × RSM sizes × transports, each point a whole
//! two-RSM deployment on loopback over a real transport, measured receiver-confirmed. Writes
//! `bench.json` and PNG + SVG plots into the output folder; a progress bar runs on stderr.

use std::cell::RefCell;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use picsou_core::{FaultModel, Strategy};
use picsou_runtime::bench::{BenchReport, BenchSpec, run};
use picsou_runtime::deployment::DeploymentConfig;
use picsou_runtime::local::run_in_process;
use picsou_runtime::transport::TransportKind;
use picsou_runtime::transport::mem::MemNetwork;

use crate::deploy_args::KindArg;
use crate::local::run_processes;
use crate::netns::{self, LinkReport, NetnsArgs, Shaping};
use crate::plots;

/// Arguments of `picsou bench`.
#[derive(Debug, Args)]
pub(crate) struct BenchArgs {
    /// Base deployment file (tuning, node batching, keys, transport options); the grid replaces
    /// its strategy, transport kind, RSMs, addresses and load. Default: the embedded default.
    #[arg(long, value_name = "FILE.toml")]
    config: Option<PathBuf>,
    /// Strategies, comma-separated.
    #[arg(long, value_delimiter = ',', default_values = ["picsou", "ost", "ata", "ll", "otu"])]
    strategies: Vec<Strategy>,
    /// Payload sizes in bytes, comma-separated.
    #[arg(long, value_delimiter = ',', default_values = ["100", "1000000"])]
    sizes: Vec<usize>,
    /// Replicas per RSM, comma-separated.
    #[arg(long, value_delimiter = ',', default_values = ["4"])]
    n: Vec<usize>,
    /// Transports, comma-separated.
    #[arg(long, value_delimiter = ',', value_enum, default_values = ["tcp"])]
    transports: Vec<KindArg>,
    /// Byzantine RSMs (every message carries an ed25519 quorum certificate) instead of crash.
    #[arg(long)]
    bft: bool,
    /// Payload bytes each RSM streams per point (message count = this / size).
    #[arg(long, default_value_t = 16_000_000)]
    bytes_per_run: u64,
    /// Fewest messages per point.
    #[arg(long, default_value_t = 100)]
    min_messages: u64,
    /// Most messages per point.
    #[arg(long, default_value_t = 100_000)]
    max_messages: u64,
    /// Give up on a point after this many seconds.
    #[arg(long, default_value_t = 60)]
    timeout_s: u64,
    /// First loopback port; each point uses its own range above it.
    #[arg(long, default_value_t = 24_000)]
    base_port: u16,
    /// One `picsou node` process per replica (like `picsou local`) instead of threads of this
    /// process (`mem` always runs in-process).
    #[arg(long)]
    processes: bool,
    /// Output folder for bench.json and the plots.
    #[arg(long, default_value = "bench-out")]
    out: PathBuf,
    /// Also print the report as one JSON object on stdout.
    #[arg(long)]
    json: bool,
    /// The shaped-link testbed (implies --processes): each point's replicas in their own
    /// network namespaces; bench.json then gives each point's cross-RSM bytes per message.
    #[command(flatten)]
    netns: NetnsArgs,
}

pub(crate) fn main(args: &BenchArgs) -> ExitCode {
    let base = match &args.config {
        Some(p) => match DeploymentConfig::from_path(p) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("picsou bench: {e}");
                return ExitCode::from(2);
            }
        },
        None => DeploymentConfig::embedded_default(),
    };
    let spec = BenchSpec {
        strategies: args.strategies.clone(),
        sizes: args.sizes.clone(),
        ns: args.n.clone(),
        transports: args.transports.iter().map(|&k| TransportKind::from(k)).collect(),
        fault: if args.bft { FaultModel::Bft } else { FaultModel::Cft },
        bytes_per_run: args.bytes_per_run,
        min_messages: args.min_messages,
        max_messages: args.max_messages,
        timeout: Duration::from_secs(args.timeout_s),
        base_port: args.base_port,
    };
    if let Err(e) = spec.validate() {
        eprintln!("picsou bench: {e}");
        return ExitCode::from(2);
    }
    let shaping = if args.netns.netns {
        match args.netns.shaping().and_then(|s| netns::prepare("picsou bench").map(|()| s)) {
            Ok(s) => Some(s),
            Err(e) => {
                eprintln!("picsou bench: {e}");
                return ExitCode::from(2);
            }
        }
    } else {
        None
    };
    if let Err(e) = std::fs::create_dir_all(&args.out) {
        eprintln!("picsou bench: cannot create {}: {e}", args.out.display());
        return ExitCode::from(2);
    }
    let total = spec.points().len() as u64;
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    if let Some(first) = spec.points().first() {
        bar.set_message(first.label());
    }
    let points = spec.points();
    let processes = args.processes || shaping.is_some();
    // The link report of the point the runner ran last, and of every point in grid order.
    let last_link: RefCell<Option<LinkReport>> = RefCell::new(None);
    let mut links: Vec<Option<LinkReport>> = Vec::new();
    let mut runner = |c: &DeploymentConfig| {
        if let Some(shaping) = shaping {
            if c.transport.kind == TransportKind::Mem {
                return Err("--netns runs real transports only (not mem)".into());
            }
            let (report, counters) = netns::with_testbed(c, shaping, |c, tb| {
                let opts = crate::local::ProcOptions { byzantine: &[], checkpoint_fsync: false, netns: Some(tb) };
                run_processes(c, &[], &opts)
            })?;
            *last_link.borrow_mut() = Some(LinkReport::new(shaping, counters, &report));
            Ok(report)
        } else if processes && c.transport.kind != TransportKind::Mem {
            run_processes(c, &[], &crate::local::ProcOptions { byzantine: &[], checkpoint_fsync: false, netns: None })
                .map_err(Into::into)
        } else {
            let net = MemNetwork::new();
            run_in_process(c, &|c, r, k| picsou_transports::open(c, r, k, Some(&net))).map_err(Into::into)
        }
    };
    let runner_name = if shaping.is_some() {
        "processes in network namespaces"
    } else if processes {
        "processes"
    } else {
        "in-process"
    };
    let report = run(&spec, &base, runner_name, &mut runner, &mut |done, _total, r| {
        let link = last_link.borrow_mut().take();
        let wan = link.as_ref().map_or(String::new(), |l| {
            format!(" {:>10.0} B/msg cross-RSM ({:.2} copies)", l.cross_rsm_bytes_per_message, l.copies)
        });
        links.push(link);
        let line = if r.ok {
            format!("{:<28} {:>12.0} msgs/s {:>9.1} MB/s{wan}", r.point.label(), r.msgs_per_s, r.mb_per_s)
        } else {
            format!("{:<28} FAILED: {}", r.point.label(), r.error.as_deref().unwrap_or("?"))
        };
        bar.println(line);
        bar.inc(1);
        if let Some(next) = points.get(done) {
            bar.set_message(next.label());
        }
    });
    bar.finish_and_clear();
    let report = match report {
        Ok(r) => r,
        Err(e) => {
            eprintln!("picsou bench: {e}");
            return ExitCode::from(2);
        }
    };
    match write_outputs(args, &report, shaping, &links) {
        Ok(files) => {
            for f in files {
                eprintln!("picsou bench: wrote {}", f.display());
            }
        }
        Err(e) => {
            eprintln!("picsou bench: {e}");
            return ExitCode::FAILURE;
        }
    }
    if args.json {
        match serde_json::to_string(&report) {
            Ok(j) => println!("{j}"),
            Err(e) => {
                eprintln!("picsou bench: cannot serialise the report: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        print!("{}", summary(&report));
    }
    if report.results.iter().all(|r| r.ok) { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

/// bench.json and the plots. With the testbed, bench.json also has a `testbed` object (the
/// shaping and the commit measured) and each result a `link` object (cross-RSM bytes).
fn write_outputs(
    args: &BenchArgs,
    report: &BenchReport,
    shaping: Option<Shaping>,
    links: &[Option<LinkReport>],
) -> Result<Vec<PathBuf>, String> {
    let mut value = serde_json::to_value(report).map_err(|e| format!("cannot serialise the report: {e}"))?;
    if let Some(shaping) = shaping {
        let commit = std::process::Command::new("git")
            .args(["rev-parse", "HEAD"])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
        let dirty = std::process::Command::new("git")
            .args(["status", "--porcelain", "--untracked-files=no"])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| !o.stdout.is_empty());
        let load = std::fs::read_to_string("/proc/loadavg").ok().map(|s| s.trim().to_string());
        if let Some(o) = value.as_object_mut() {
            o.insert(
                "testbed".into(),
                serde_json::json!({ "shaping": shaping, "commit": commit, "dirty": dirty, "loadavg_at_end": load }),
            );
        }
        if let Some(results) = value.get_mut("results").and_then(|r| r.as_array_mut()) {
            for (r, l) in results.iter_mut().zip(links) {
                if let (Some(o), Some(l)) = (r.as_object_mut(), l) {
                    o.insert("link".into(), serde_json::to_value(l).map_err(|e| e.to_string())?);
                }
            }
        }
    }
    let json = serde_json::to_string_pretty(&value).map_err(|e| format!("cannot serialise the report: {e}"))?;
    let path = args.out.join("bench.json");
    std::fs::write(&path, json).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    let mut files = vec![path];
    files.extend(plots::draw(report, &args.out)?);
    Ok(files)
}

/// A table: one line per point, plus each strategy's ratio to ATA at the same point.
fn summary(report: &BenchReport) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<8} {:<6} {:>3} {:>9} {:>9} {:>13} {:>10} {:>8} {:>10}",
        "strategy", "kind", "n", "size", "messages", "msgs/s", "MB/s", "vs ATA", "peak MiB"
    );
    for r in &report.results {
        let p = r.point;
        let ata = report.results.iter().find(|o| {
            o.point.strategy == Strategy::Ata
                && o.point.transport == p.transport
                && o.point.n == p.n
                && o.point.size == p.size
        });
        let ratio = match ata {
            Some(a) if a.ok && r.ok && a.msgs_per_s > 0.0 => format!("{:.2}x", r.msgs_per_s / a.msgs_per_s),
            _ => "-".into(),
        };
        let rate = if r.ok { format!("{:.0}", r.msgs_per_s) } else { "FAILED".into() };
        let _ = writeln!(
            s,
            "{:<8} {:<6} {:>3} {:>9} {:>9} {:>13} {:>10.1} {:>8} {:>10.0}",
            p.strategy.name(),
            p.transport.name(),
            p.n,
            p.size,
            p.messages,
            rate,
            r.mb_per_s,
            ratio,
            r.max_peak_rss_kib as f64 / 1024.0
        );
    }
    s
}
