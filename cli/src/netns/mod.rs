//! The shaped-link testbed: every replica of a two-RSM deployment in its own Linux network
//! namespace, the two RSMs on two bridges ("datacenters") joined through a router namespace,
//! and each replica's cross-RSM egress shaped by htb (optionally delayed by netem).
//!
//! ```text
//!   picsou-P-S-0-0 ─┐                           ┌─ picsou-P-S-1-0
//!   picsou-P-S-0-1 ─┤ br0 10.77.1.1   10.77.2.1 br1 ├─ picsou-P-S-1-1
//!        …          └──────── picsou-P-S-r ───────┘        …
//!   10.77.1.(i+2)/24        (ip_forward = 1)          10.77.2.(i+2)/24
//! ```
//!
//! Everything is built with the `ip` and `tc` commands (iproute2). All links and qdiscs live
//! inside the namespaces this module creates (the host's own links and sysctls are not touched),
//! so deleting the namespaces removes everything. A [`Testbed`] deletes them when dropped; a
//! SIGINT/SIGTERM handler ([`install_signal_cleanup`]) deletes them when the run is interrupted;
//! and [`clean_leftovers`] deletes those of a crashed run (names carry the creating process's
//! id, so another live run's namespaces are left alone).

mod shape;
mod topology;

use std::fmt;
use std::process::Command;
use std::sync::Mutex;

use clap::Args;
use picsou_runtime::local::DeploymentReport;
use serde::Serialize;

pub(crate) use shape::{LinkCounters, Shaping};
pub(crate) use topology::Testbed;

/// Prefix of every namespace this module creates.
pub(crate) const PREFIX: &str = "picsou-";

/// Why the testbed could not be built, measured or removed.
#[derive(Debug)]
pub(crate) enum NetnsError {
    /// The process lacks a capability that creating namespaces and qdiscs needs.
    NotPermitted { capability: &'static str },
    /// `ip` or `tc` is not installed.
    ToolMissing { tool: &'static str, reason: String },
    /// An `ip`/`tc` command failed.
    Command { command: String, status: String, stderr: String },
    /// The kernel lacks a queueing discipline that the requested shaping needs.
    MissingQdisc { qdisc: &'static str, module: &'static str, flag: &'static str },
    /// A shaping flag has a value that cannot be used.
    BadValue { flag: &'static str, reason: String },
    /// The deployment does not fit the address plan.
    Topology(String),
    /// `tc -s` printed something this module cannot read.
    Parse { what: String, text: String },
}

impl fmt::Display for NetnsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotPermitted { capability } => write!(
                f,
                "--netns needs root (the {capability} capability) to create network namespaces, veth links \
                 and qdiscs; run as root or with sudo"
            ),
            Self::ToolMissing { tool, reason } => {
                write!(f, "--netns needs the `{tool}` command (Debian package iproute2): {reason}")
            }
            Self::Command { command, status, stderr } => {
                write!(f, "`{command}` failed ({status}): {}", stderr.trim())
            }
            Self::MissingQdisc { qdisc, module, flag } => write!(
                f,
                "{flag} needs the `{qdisc}` queueing discipline, which this kernel does not have \
                 (module {module} is not built in or loaded)"
            ),
            Self::BadValue { flag, reason } => write!(f, "{flag}: {reason}"),
            Self::Topology(s) => write!(f, "{s}"),
            Self::Parse { what, text } => write!(f, "cannot read {what} from: {}", text.trim()),
        }
    }
}

impl std::error::Error for NetnsError {}

/// The testbed's command-line flags, shared by `picsou local` and `picsou bench`.
#[derive(Clone, Debug, Default, Args)]
pub(crate) struct NetnsArgs {
    /// Run every replica process in its own network namespace: the two RSMs on two bridges
    /// joined through a router namespace, addresses 10.77.(RSM+1).(ID+2). Needs root.
    #[arg(long)]
    pub(crate) netns: bool,
    /// With --netns: cap each replica's egress to the other RSM at this many Mbit/s (htb).
    #[arg(long, value_name = "MBIT/S", requires = "netns")]
    pub(crate) wan_mbps: Option<f64>,
    /// With --netns: cap each replica's egress to its own RSM at this many Mbit/s (htb).
    #[arg(long, value_name = "MBIT/S", requires = "netns")]
    pub(crate) lan_mbps: Option<f64>,
    /// With --netns: add this one-way delay to cross-RSM traffic (netem; the kernel must have it).
    #[arg(long, value_name = "MS", requires = "netns")]
    pub(crate) wan_delay_ms: Option<f64>,
}

impl NetnsArgs {
    /// The shaping the flags ask for, checked.
    pub(crate) fn shaping(&self) -> Result<Shaping, NetnsError> {
        let s = Shaping { wan_mbps: self.wan_mbps, lan_mbps: self.lan_mbps, wan_delay_ms: self.wan_delay_ms };
        s.validate()?;
        Ok(s)
    }
}

/// Everything a testbed run needs before the first namespace: the tools and capabilities,
/// the signal handler (call before other threads start), and the removal of a crashed run's
/// leftovers (reported on stderr).
pub(crate) fn prepare(who: &str) -> Result<(), NetnsError> {
    preflight()?;
    install_signal_cleanup()?;
    for name in clean_leftovers()? {
        eprintln!("{who}: removed network namespace {name}, left over by a run that no longer exists");
    }
    Ok(())
}

/// Ethernet (14) + IPv4 (20) + TCP with timestamps (32) bytes per segment.
pub(crate) const SEGMENT_OVERHEAD: u64 = 66;
/// TCP payload per segment at the veth links' MTU of 1500.
pub(crate) const MSS: u64 = 1448;

/// What crossed the link between the RSMs during one deployment.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct LinkReport {
    /// The shaping applied.
    pub(crate) shaping: Shaping,
    /// Bytes (whole frames) and packets the replicas sent to the other RSM, both directions.
    pub(crate) cross_rsm: LinkCounters,
    /// Messages that had to cross: the sum over directions of messages sent.
    pub(crate) messages_crossed: u64,
    /// cross_rsm.bytes / messages_crossed.
    pub(crate) cross_rsm_bytes_per_message: f64,
    /// One copy of a message plus headers: (payload + record header) framed in TCP segments of
    /// 1448 bytes with 66 bytes of Ethernet/IP/TCP headers each.
    pub(crate) one_copy_bytes: f64,
    /// cross_rsm_bytes_per_message / one_copy_bytes (1.0 = exactly one copy crossed).
    pub(crate) copies: f64,
}

impl LinkReport {
    /// The link report of `report`, given the counters' growth during it.
    pub(crate) fn new(shaping: Shaping, cross_rsm: LinkCounters, report: &DeploymentReport) -> Self {
        let messages_crossed: u64 = report.directions.iter().map(|d| d.messages).sum();
        let size = report.directions.first().map_or(0, |d| d.size) as u64;
        let record = size + picsou_core::wire::RECORD_HEADER_LEN as u64;
        let one_copy_bytes = record as f64 * (MSS + SEGMENT_OVERHEAD) as f64 / MSS as f64;
        let per = if messages_crossed == 0 { 0.0 } else { cross_rsm.bytes as f64 / messages_crossed as f64 };
        Self {
            shaping,
            cross_rsm,
            messages_crossed,
            cross_rsm_bytes_per_message: per,
            one_copy_bytes,
            copies: if one_copy_bytes > 0.0 { per / one_copy_bytes } else { 0.0 },
        }
    }
}

/// Runs `f` on `config` moved into a fresh testbed (`f` gets the moved deployment and the
/// testbed), measuring the cross-RSM counters around it; the testbed is removed afterwards,
/// whatever happened. The namespaces' addresses are off loopback, where a shared secret is
/// refused: a deployment with one gets fresh per-replica keys, in a private temporary
/// directory removed afterwards.
pub(crate) fn with_testbed<T>(
    config: &picsou_runtime::deployment::DeploymentConfig,
    shaping: Shaping,
    f: impl FnOnce(&picsou_runtime::deployment::DeploymentConfig, &Testbed) -> Result<T, String>,
) -> Result<(T, LinkCounters), String> {
    let tb = Testbed::create(config, shaping).map_err(|e| e.to_string())?;
    let moved = tb.deployment(config).map_err(|e| e.to_string())?;
    let keys = tempfile::Builder::new()
        .prefix("picsou-netns-keys-")
        .tempdir()
        .map_err(|e| format!("cannot create a temporary directory for keys: {e}"))?;
    let moved = if moved.per_replica_keys() {
        moved
    } else {
        picsou_runtime::deployment::keygen::generate(&moved, keys.path(), false).map_err(|e| e.to_string())?
    };
    let before = tb.wan_counters().map_err(|e| e.to_string())?;
    let out = f(&moved, &tb)?;
    let after = tb.wan_counters().map_err(|e| e.to_string())?;
    let grown = LinkCounters {
        bytes: after.bytes.saturating_sub(before.bytes),
        packets: after.packets.saturating_sub(before.packets),
    };
    drop(tb);
    drop(keys);
    Ok((out, grown))
}

/// Runs `program args…` and returns its stdout, or a typed error with its stderr.
pub(crate) fn run(program: &'static str, args: &[&str]) -> Result<String, NetnsError> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| NetnsError::ToolMissing { tool: program, reason: e.to_string() })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        Err(NetnsError::Command {
            command: format!("{program} {}", args.join(" ")),
            status: out.status.to_string(),
            stderr,
        })
    }
}

/// Checks that this process may build the testbed: the `ip` and `tc` commands exist, and the
/// effective capabilities include CAP_NET_ADMIN and CAP_SYS_ADMIN (`ip netns add` mounts).
pub(crate) fn preflight() -> Result<(), NetnsError> {
    for tool in ["ip", "tc"] {
        let tool: &'static str = tool;
        Command::new(tool).arg("-V").output().map_err(|e| NetnsError::ToolMissing { tool, reason: e.to_string() })?;
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let cap_eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|h| u64::from_str_radix(h.trim(), 16).ok())
        .unwrap_or(0);
    const CAP_NET_ADMIN: u64 = 12;
    const CAP_SYS_ADMIN: u64 = 21;
    if cap_eff & (1 << CAP_NET_ADMIN) == 0 {
        return Err(NetnsError::NotPermitted { capability: "CAP_NET_ADMIN" });
    }
    if cap_eff & (1 << CAP_SYS_ADMIN) == 0 {
        return Err(NetnsError::NotPermitted { capability: "CAP_SYS_ADMIN" });
    }
    Ok(())
}

/// Names of the existing network namespaces.
pub(crate) fn list_namespaces() -> Result<Vec<String>, NetnsError> {
    let out = run("ip", &["netns", "list"])?;
    // Lines look like `name` or `name (id: 3)`.
    Ok(out.lines().filter_map(|l| l.split_whitespace().next()).map(str::to_string).collect())
}

/// The id of the process that created namespace `name` (`picsou-PID-…`), if it is one of ours.
fn owner_pid(name: &str) -> Option<u32> {
    name.strip_prefix(PREFIX)?.split('-').next()?.parse().ok()
}

/// Deletes one namespace, first killing the processes still inside it (they are replicas this
/// tool started there). Deleting the namespace deletes its links and their qdiscs.
pub(crate) fn delete_namespace(name: &str) -> Result<(), NetnsError> {
    if let Ok(pids) = run("ip", &["netns", "pids", name]) {
        for pid in pids.lines().filter_map(|l| l.trim().parse::<u32>().ok()) {
            let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).output();
        }
    }
    run("ip", &["netns", "del", name]).map(|_| ())
}

/// Deletes the namespaces left by runs whose process no longer exists; returns their names.
pub(crate) fn clean_leftovers() -> Result<Vec<String>, NetnsError> {
    let mut cleaned = Vec::new();
    // The router namespace last (replicas' veth peers live in it).
    let mut names: Vec<String> = list_namespaces()?.into_iter().filter(|n| n.starts_with(PREFIX)).collect();
    names.sort_by_key(|n| n.ends_with("-r"));
    for name in names {
        let Some(pid) = owner_pid(&name) else { continue };
        if pid == std::process::id() || std::path::Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        delete_namespace(&name)?;
        cleaned.push(name);
    }
    Ok(cleaned)
}

/// Namespaces of live testbeds, for the signal handler.
static LIVE: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Creates namespace `name` and records it for the signal handler, under one lock: the handler
/// holds the same lock from taking the list until the process exits, so no namespace can be
/// created after it took the list and be left behind.
fn add_registered(name: &str) -> Result<(), NetnsError> {
    let mut live = LIVE.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    run("ip", &["netns", "add", name])?;
    live.push(name.to_string());
    Ok(())
}

fn unregister(names: &[String]) {
    if let Ok(mut live) = LIVE.lock() {
        live.retain(|n| !names.contains(n));
    }
}

/// Blocks SIGINT, SIGTERM and SIGHUP in this thread (call it before any other thread starts,
/// so every thread inherits the mask) and starts a thread that waits for them, deletes every
/// live testbed's namespaces and exits with 128 + the signal number. Child processes get the
/// default mask back (std's `Command` resets it).
#[allow(unsafe_code)]
pub(crate) fn install_signal_cleanup() -> Result<(), NetnsError> {
    // SAFETY: sigset_t is plain data (all-zero is a valid value before sigemptyset); the
    // calls only read and write this local set and this thread's mask and dispositions.
    let set = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGHUP);
        let rc = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        // A shell starts background jobs with SIGINT ignored; an ignored signal is discarded
        // rather than left pending, so sigwait would never see it. Blocked, the default
        // action does not run: the thread below takes the signal.
        for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            libc::signal(sig, libc::SIG_DFL);
        }
        if rc != 0 {
            return Err(NetnsError::Topology(format!("cannot block signals: error {rc}")));
        }
        set
    };
    std::thread::Builder::new()
        .name("netns-signals".into())
        .spawn(move || {
            let mut sig: libc::c_int = 0;
            // SAFETY: `set` and `sig` are valid for the call; sigwait only reads and writes them.
            let rc = unsafe { libc::sigwait(&set, &mut sig) };
            if rc != 0 {
                return;
            }
            // Held until exit: no testbed thread creates a namespace after this point.
            let mut live = LIVE.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let names: Vec<String> = std::mem::take(&mut *live);
            eprintln!("picsou: signal {sig}: removing {} network namespace(s)", names.len());
            let (mut routers, replicas): (Vec<String>, Vec<String>) =
                names.into_iter().partition(|n| n.ends_with("-r"));
            let mut all = replicas;
            all.append(&mut routers);
            for n in all {
                if let Err(e) = delete_namespace(&n) {
                    eprintln!("picsou: {e}");
                }
            }
            std::process::exit(128 + sig);
        })
        .map_err(|e| NetnsError::Topology(format!("cannot start the signal thread: {e}")))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_pids_are_read_from_our_names_only() {
        assert_eq!(owner_pid("picsou-1234-0-r"), Some(1234));
        assert_eq!(owner_pid("picsou-1234-0-1-3"), Some(1234));
        assert_eq!(owner_pid("picsou-x-r"), None);
        assert_eq!(owner_pid("other-1234-r"), None);
    }
}
