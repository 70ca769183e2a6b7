//! The namespaces, bridges, veth links, addresses and routes of one testbed.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU32, Ordering};

use picsou_core::ReplicaId;
use picsou_runtime::deployment::DeploymentConfig;

use super::shape::{LinkCounters, Shaping, WAN_CLASS, class_counters};
use super::{NetnsError, PREFIX, add_registered, delete_namespace, run, unregister};

/// Second octet of every testbed address: 10.77.(rsm + 1).(replica + 2). The addresses exist
/// only inside the testbed's namespaces, so they cannot clash with the host's or another
/// testbed's.
const NET: u8 = 77;
/// Interface name of each replica's link, inside its namespace.
const DEV: &str = "eth0";
/// Most replicas per RSM the /24 plan holds (.2 … .254).
const MAX_PER_RSM: usize = 253;

/// Testbeds created by this process so far (makes names unique within a run).
static SEQ: AtomicU32 = AtomicU32::new(0);

/// A built testbed; dropping it deletes every namespace (and with them every link and qdisc).
#[derive(Debug)]
pub(crate) struct Testbed {
    router: String,
    replicas: HashMap<ReplicaId, String>,
    addresses: HashMap<ReplicaId, Ipv4Addr>,
    /// Every namespace created, in creation order.
    created: Vec<String>,
    shaping: Shaping,
}

fn subnet(rsm: usize) -> String {
    format!("10.{NET}.{}.0/24", rsm + 1)
}

fn gateway(rsm: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, NET, rsm as u8 + 1, 1)
}

impl Testbed {
    /// Builds the namespaces for `config`'s replicas and shapes their links. On any failure
    /// what was built is removed before the error returns.
    pub(crate) fn create(config: &DeploymentConfig, shaping: Shaping) -> Result<Self, NetnsError> {
        shaping.validate()?;
        for rsm in &config.rsms {
            if rsm.replicas.len() > MAX_PER_RSM {
                return Err(NetnsError::Topology(format!(
                    "--netns: RSM {} has {} replicas; the address plan holds at most {MAX_PER_RSM} per RSM",
                    rsm.name,
                    rsm.replicas.len()
                )));
            }
        }
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        let base = format!("{PREFIX}{}-{seq}", std::process::id());
        let mut tb = Self {
            router: format!("{base}-r"),
            replicas: HashMap::new(),
            addresses: HashMap::new(),
            created: Vec::new(),
            shaping,
        };
        tb.build(config, &base)?;
        Ok(tb)
    }

    fn add_namespace(&mut self, name: &str) -> Result<(), NetnsError> {
        add_registered(name)?;
        self.created.push(name.to_string());
        run("ip", &["-n", name, "link", "set", "lo", "up"])?;
        Ok(())
    }

    fn build(&mut self, config: &DeploymentConfig, base: &str) -> Result<(), NetnsError> {
        let router = self.router.clone();
        self.add_namespace(&router)?;
        run("ip", &["netns", "exec", &router, "sysctl", "-qw", "net.ipv4.ip_forward=1"])?;
        for k in 0..2 {
            let br = format!("br{k}");
            run("ip", &["-n", &router, "link", "add", &br, "type", "bridge"])?;
            run("ip", &["-n", &router, "addr", "add", &format!("{}/24", gateway(k)), "dev", &br])?;
            run("ip", &["-n", &router, "link", "set", &br, "up"])?;
        }
        for r in config.replicas() {
            let k = usize::from(r.rsm.0);
            let ns = format!("{base}-{k}-{}", r.index);
            self.add_namespace(&ns)?;
            let peer = format!("v{k}-{}", r.index);
            run("ip", &["-n", &router, "link", "add", &peer, "type", "veth", "peer", "name", DEV, "netns", &ns])?;
            run("ip", &["-n", &router, "link", "set", &peer, "master", &format!("br{k}")])?;
            run("ip", &["-n", &router, "link", "set", &peer, "up"])?;
            let addr = Ipv4Addr::new(10, NET, k as u8 + 1, r.index as u8 + 2);
            run("ip", &["-n", &ns, "addr", "add", &format!("{addr}/24"), "dev", DEV])?;
            run("ip", &["-n", &ns, "link", "set", DEV, "up"])?;
            run("ip", &["-n", &ns, "route", "add", "default", "via", &gateway(k).to_string()])?;
            self.shaping.install(&ns, DEV, &subnet(k), &subnet(1 - k))?;
            self.replicas.insert(r, ns);
            self.addresses.insert(r, addr);
        }
        Ok(())
    }

    /// The namespace replica `r` runs in.
    pub(crate) fn namespace(&self, r: ReplicaId) -> Option<&str> {
        self.replicas.get(&r).map(String::as_str)
    }

    /// `config` with every replica's address moved to its namespace address (ports kept).
    pub(crate) fn deployment(&self, config: &DeploymentConfig) -> Result<DeploymentConfig, NetnsError> {
        let mut c = config.clone();
        for (k, rsm) in c.rsms.iter_mut().enumerate() {
            for rep in &mut rsm.replicas {
                let id =
                    config.replicas().into_iter().find(|r| usize::from(r.rsm.0) == k && r.index == rep.id).ok_or_else(
                        || NetnsError::Topology(format!("replica {}/{} is not in the testbed", rsm.name, rep.id)),
                    )?;
                let ip = self.addresses.get(&id).ok_or_else(|| {
                    NetnsError::Topology(format!("replica {}/{} has no namespace address", rsm.name, rep.id))
                })?;
                rep.address = SocketAddr::new(IpAddr::V4(*ip), rep.address.port());
            }
        }
        Ok(c)
    }

    /// Bytes and packets every replica has sent to the other RSM so far (both directions).
    pub(crate) fn wan_counters(&self) -> Result<LinkCounters, NetnsError> {
        let mut sum = LinkCounters::default();
        for ns in self.replicas.values() {
            sum = sum + class_counters(ns, DEV, WAN_CLASS)?;
        }
        Ok(sum)
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        // Replicas first, the router (holding the bridges and veth peers) last.
        for ns in self.created.iter().rev() {
            if let Err(e) = delete_namespace(ns) {
                eprintln!("picsou: cannot remove network namespace {ns}: {e}");
            }
        }
        unregister(&self.created);
    }
}
