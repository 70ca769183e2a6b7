//! Local etcd clusters for the demo and the tests: members as child processes on loopback,
//! data directories under a given folder, free ports found by binding.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::etcd::connect_one;

/// The etcd executable: `$PICSOU_ETCD` or `etcd` on the `PATH`.
pub fn etcd_binary() -> String {
    std::env::var("PICSOU_ETCD").unwrap_or_else(|_| "etcd".into())
}

/// The installed etcd's version line, or why there is none.
pub fn etcd_version() -> Result<String, String> {
    let bin = etcd_binary();
    let out = Command::new(&bin)
        .arg("--version")
        .output()
        .map_err(|e| format!("cannot run {bin:?}: {e} (install Debian's etcd-server: `bash ci/setup.sh` does it)"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text.lines().next().unwrap_or("etcd").trim().to_string())
}

/// `count` consecutive free loopback ports from a random base (or from `base`).
pub fn free_ports(count: u16, base: Option<u16>) -> Result<u16, String> {
    let fits = |b: u16| (0..count).all(|i| TcpListener::bind(("127.0.0.1", b + i)).is_ok());
    if let Some(b) = base {
        return if fits(b) { Ok(b) } else { Err(format!("ports {b}..{} are not all free", b + count)) };
    }
    for _ in 0..200 {
        let mut r = [0u8; 2];
        getrandom::fill(&mut r).map_err(|e| e.to_string())?;
        let b = 20_000 + (u16::from_le_bytes(r) % 40_000);
        if fits(b) {
            return Ok(b);
        }
    }
    Err(format!("found no {count} consecutive free ports"))
}

/// One member.
#[derive(Debug)]
pub struct Member {
    /// `primary-1`.
    pub name: String,
    /// Client port on 127.0.0.1.
    pub client_port: u16,
    /// Peer port on 127.0.0.1.
    pub peer_port: u16,
    args: Vec<String>,
    log: PathBuf,
    child: Option<Child>,
}

impl Member {
    /// `127.0.0.1:client_port`.
    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }

    /// The process id while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

/// A cluster of members on loopback.
#[derive(Debug)]
pub struct Cluster {
    /// Its name (also the members' name prefix).
    pub name: String,
    /// Its members, in id order.
    pub members: Vec<Member>,
    /// Niceness the members run at (through `nice`; 0: as this process).
    pub nice: u8,
}

impl Cluster {
    /// A cluster of `n` members using ports `base .. base + 2n` (client, peer per member),
    /// data and logs under `dir`. `extra` flags go to every member.
    pub fn new(name: &str, n: usize, base: u16, dir: &Path, extra: &[String]) -> Self {
        let ports: Vec<(u16, u16)> = (0..n as u16).map(|i| (base + 2 * i, base + 2 * i + 1)).collect();
        let token = format!("{name}-{base}");
        let initial: Vec<String> =
            ports.iter().enumerate().map(|(i, (_, p))| format!("{name}-{i}=http://127.0.0.1:{p}")).collect();
        let initial = initial.join(",");
        let members = ports
            .iter()
            .enumerate()
            .map(|(i, &(c, p))| {
                let mname = format!("{name}-{i}");
                let data = dir.join(&mname);
                let mut args = vec![
                    format!("--name={mname}"),
                    format!("--data-dir={}", data.display()),
                    format!("--listen-client-urls=http://127.0.0.1:{c}"),
                    format!("--advertise-client-urls=http://127.0.0.1:{c}"),
                    format!("--listen-peer-urls=http://127.0.0.1:{p}"),
                    format!("--initial-advertise-peer-urls=http://127.0.0.1:{p}"),
                    format!("--initial-cluster={initial}"),
                    format!("--initial-cluster-token={token}"),
                    "--initial-cluster-state=new".into(),
                    "--logger=zap".into(),
                    "--log-level=warn".into(),
                ];
                args.extend(extra.iter().cloned());
                Member {
                    name: mname.clone(),
                    client_port: c,
                    peer_port: p,
                    args,
                    log: dir.join(format!("{mname}.log")),
                    child: None,
                }
            })
            .collect();
        Self { name: name.into(), members, nice: 0 }
    }

    /// Every member's client endpoint.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(Member::endpoint).collect()
    }

    /// Starts member `i` (again, after a kill: it rejoins from its data directory).
    pub fn start(&mut self, i: usize) -> Result<(), String> {
        let m = &mut self.members[i];
        if m.child.is_some() {
            return Ok(());
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&m.log)
            .map_err(|e| format!("{}: {e}", m.log.display()))?;
        let log2 = log.try_clone().map_err(|e| e.to_string())?;
        let mut cmd = if self.nice > 0 {
            let mut c = Command::new("nice");
            c.arg("-n").arg(self.nice.to_string()).arg(etcd_binary());
            c
        } else {
            Command::new(etcd_binary())
        };
        let child = cmd
            .args(&m.args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .map_err(|e| format!("cannot start etcd ({}): {e}", etcd_binary()))?;
        m.child = Some(child);
        Ok(())
    }

    /// Starts every member.
    pub fn start_all(&mut self) -> Result<(), String> {
        (0..self.members.len()).try_for_each(|i| self.start(i))
    }

    /// SIGKILLs member `i`.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Waits until every running member answers a status request and the cluster has a
    /// leader.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        for m in self.members.iter().filter(|m| m.child.is_some()) {
            loop {
                let ok = async {
                    let mut c = connect_one(&m.endpoint()).await.ok()?;
                    let s = c.status().await.ok()?;
                    (s.leader() != 0).then_some(())
                };
                if tokio::time::timeout(Duration::from_secs(2), ok).await.ok().flatten().is_some() {
                    break;
                }
                if Instant::now() > deadline {
                    return Err(format!(
                        "etcd member {} did not become ready in {timeout:?} (log: {})",
                        m.name,
                        m.log.display()
                    ));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Ok(())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }
}
