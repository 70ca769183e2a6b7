//! Reading a deployment file: TOML → [`RawFile`] → every semantic check → [`DeploymentConfig`].
//! Every error goes through the [`Locator`], so it names the file, line and field.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use picsou_core::{ConfigError, FaultModel, RsmSpec};
use toml::de::DeTable;

use super::address::resolve;
use super::keys::{KeyMaterial, decode_hex};
use super::load_spec::LoadSpec;
use super::locate::Locator;
use super::node_tuning::NodeTuning;
use super::raw::{RawFile, RawKeys, RawLoad, RawNode, RawRsm};
use super::rsm::{ReplicaConfig, RsmConfig};
use super::{DeploymentConfig, DeploymentError};
use crate::transport::{TransportKind, TransportOptions};

/// Address given to replicas without one when the transport has no addresses (`mem`).
const PLACEHOLDER: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 0);

/// What [`parse`] makes of the `[keys]` table and the replicas' public keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Keys {
    /// Checked: per-replica keys, or a shared secret on loopback.
    Checked,
    /// Ignored: the file is a template for `picsou keygen`, which makes the keys.
    Template,
}

/// Parses and checks `text`, read from `source`; `secret_file` is relative to `base_dir`.
pub(super) fn parse(text: &str, source: &str, base_dir: &Path) -> Result<DeploymentConfig, DeploymentError> {
    parse_with(text, source, base_dir, Keys::Checked)
}

/// [`parse`], with the keys checked or ignored.
pub(super) fn parse_with(
    text: &str,
    source: &str,
    base_dir: &Path,
    keys: Keys,
) -> Result<DeploymentConfig, DeploymentError> {
    let (table, errors) = DeTable::parse_recoverable(text);
    let loc = Locator::new(source, text, table.get_ref());
    if let Some(e) = errors.first() {
        return Err(serde_error(&loc, e, true));
    }
    let raw: RawFile = toml::from_str(text).map_err(|e| serde_error(&loc, &e, false))?;
    Checker { loc: &loc, keys }.check(raw, base_dir)
}

/// A TOML syntax (`syntax`) or type error as a [`DeploymentError`]: the field is the innermost
/// key or value around the error's span (plus the missing field's name for "missing field"
/// errors).
fn serde_error(loc: &Locator<'_>, e: &toml::de::Error, syntax: bool) -> DeploymentError {
    let prefix = if syntax { "invalid TOML: " } else { "" };
    let message = e.message().trim_end();
    let missing = message.strip_prefix("missing field `").and_then(|m| m.strip_suffix('`'));
    let reason = match missing {
        Some(name) => format!("{prefix}missing required field `{name}`{}", missing_hint(name)),
        None => format!("{prefix}{message}"),
    };
    let Some(span) = e.span() else {
        return DeploymentError::unlocated(loc.source(), "", reason);
    };
    // The document itself has the empty span 0..0: missing top-level fields are nowhere.
    let at_root = !syntax && span.is_empty() && span.start == 0;
    let path = match (at_root, syntax) {
        (true, _) => None,
        (false, true) => loc.path_near_key(&span),
        (false, false) => loc.path_at(&span),
    };
    let mut field = path.unwrap_or_default().to_owned();
    if let Some(name) = missing {
        field = if field.is_empty() { name.to_owned() } else { format!("{field}.{name}") };
    }
    if at_root { DeploymentError::unlocated(loc.source(), &field, reason) } else { loc.at_span(&field, span, reason) }
}

fn missing_hint(name: &str) -> &'static str {
    match name {
        "rsm" => ": a deployment has exactly two [[rsm]] tables",
        "fault" => " (\"cft\" or \"bft\")",
        "f" => " (the faulty stake the RSM tolerates)",
        "id" => " (replica ids are 0, 1, ..., n-1)",
        _ => "",
    }
}

/// Semantic checks, in file order.
struct Checker<'l, 'a> {
    loc: &'l Locator<'a>,
    keys: Keys,
}

impl Checker<'_, '_> {
    fn check(&self, raw: RawFile, base_dir: &Path) -> Result<DeploymentConfig, DeploymentError> {
        let kind = raw.transport.kind;
        let rsms = self.rsms(raw.rsm, kind)?;
        // Whether the two fault models can talk safely.
        let membership = picsou_core::Membership { rsms: [rsms[0].spec(), rsms[1].spec()] };
        membership.validate().map_err(|e| self.config_error(e, str::to_owned))?;
        self.transport(&raw.transport)?;
        raw.tuning.validate().map_err(|e| self.config_error(e, |f| f.replace("params.", "tuning.")))?;
        let node = self.node(&raw.node)?;
        let keys = self.keys(&raw.keys, &rsms, kind, base_dir)?;
        let load = self.load(&raw.load, raw.tuning.max_payload_bytes)?;
        Ok(DeploymentConfig {
            source: self.loc.source().to_owned(),
            strategy: raw.strategy,
            rsms,
            transport: raw.transport,
            tuning: raw.tuning,
            node,
            keys,
            load,
        })
    }

    /// A core [`ConfigError`], with its field renamed by `rename` and located.
    fn config_error(&self, e: ConfigError, rename: impl FnOnce(&str) -> String) -> DeploymentError {
        match e {
            ConfigError::Invalid { field, reason } => self.loc.at(&rename(&field), reason),
            other => self.loc.at("", other.to_string()),
        }
    }

    fn rsms(&self, raw: Vec<RawRsm>, kind: TransportKind) -> Result<[RsmConfig; 2], DeploymentError> {
        if raw.len() != 2 {
            let reason = format!(
                "found {} [[rsm]] table{}; a deployment connects exactly two RSMs, so it has exactly two",
                raw.len(),
                if raw.len() == 1 { "" } else { "s" }
            );
            // Point at the surplus table, the only one, or `rsm = []`.
            let at = match raw.len() {
                0 => "rsm".to_owned(),
                1 => "rsm[0]".to_owned(),
                _ => "rsm[2]".to_owned(),
            };
            let mut e = self.loc.at(&at, reason);
            e.field = "rsm".to_owned();
            return Err(e);
        }
        let [r0, r1]: [RawRsm; 2] = raw.try_into().unwrap_or_else(|_| unreachable!("two RSMs"));
        let (a, ids_a) = self.rsm(0, r0, kind)?;
        let (b, ids_b) = self.rsm(1, r1, kind)?;
        if a.name == b.name {
            return Err(self.loc.at(
                "rsm[1].name",
                format!(
                    "both RSMs are named {:?}; the two names must differ (they select an RSM on the command line)",
                    a.name
                ),
            ));
        }
        self.distinct_addresses([&a, &b], [&ids_a, &ids_b], kind)?;
        Ok([a, b])
    }

    /// Checks `rsm[i]`; returns it with its replica ids in file order.
    fn rsm(&self, i: usize, raw: RawRsm, kind: TransportKind) -> Result<(RsmConfig, Vec<u16>), DeploymentError> {
        let at = |field: &str| format!("rsm[{i}].{field}");
        if raw.name.trim().is_empty() {
            return Err(self.loc.at(&at("name"), "the name must not be empty"));
        }
        let n = raw.replicas.len();
        // File position of each id, to find duplicates and then sort.
        let mut position: HashMap<u16, usize> = HashMap::with_capacity(n);
        let mut replicas = Vec::with_capacity(n);
        for (j, r) in raw.replicas.iter().enumerate() {
            let here = at(&format!("replicas[{j}]"));
            if let Some(first) = position.insert(r.id, j) {
                return Err(self.loc.at(
                    &format!("{here}.id"),
                    format!(
                        "duplicate replica id {} (also the id of {}); ids must be distinct",
                        r.id,
                        at(&format!("replicas[{first}]"))
                    ),
                ));
            }
            if r.stake == 0 {
                return Err(self.loc.at(&format!("{here}.stake"), "stake must be at least 1"));
            }
            let address = self.address(&here, r.address.as_deref(), kind)?;
            let public_key = match &r.public_key {
                Some(hex) => Some(self.public_key(&format!("{here}.public_key"), hex)?),
                None => None,
            };
            replicas.push(ReplicaConfig { id: r.id, address, stake: r.stake, public_key });
        }
        // Unique ids that are not exactly 0..n: some id is n or more.
        if let Some((j, r)) = raw.replicas.iter().enumerate().find(|(_, r)| usize::from(r.id) >= n) {
            let missing: Vec<String> =
                (0..n).filter(|k| !position.contains_key(&(*k as u16))).take(5).map(|k| k.to_string()).collect();
            return Err(self.loc.at(
                &at(&format!("replicas[{j}].id")),
                format!(
                    "replica id {} is out of range: the {n} replicas of RSM {:?} must have ids 0 to {} (missing: {})",
                    r.id,
                    raw.name,
                    n.saturating_sub(1),
                    missing.join(", ")
                ),
            ));
        }
        let file_ids: Vec<u16> = replicas.iter().map(|r| r.id).collect();
        replicas.sort_by_key(|r| r.id);
        let rsm = RsmConfig { name: raw.name, fault: raw.fault, f: raw.f, replicas };
        // Core's checks (zero replicas, total stake, f against the fault model). Its field
        // names use sorted indices: map them back to file positions.
        let sorted_to_file: Vec<usize> = rsm.replicas.iter().map(|r| position[&r.id]).collect();
        let spec: RsmSpec = rsm.spec();
        spec.validate(&format!("rsm[{i}]")).map_err(|e| {
            self.config_error(e, |field| {
                let prefix = format!("rsm[{i}].replicas[");
                let Some(rest) = field.strip_prefix(&prefix) else { return field.to_owned() };
                let Some((index, tail)) = rest.split_once(']') else { return field.to_owned() };
                match index.parse::<usize>().ok().and_then(|k| sorted_to_file.get(k)) {
                    Some(j) => format!("{prefix}{j}]{tail}"),
                    None => field.to_owned(),
                }
            })
        })?;
        Ok((rsm, file_ids))
    }

    fn address(&self, replica: &str, text: Option<&str>, kind: TransportKind) -> Result<SocketAddr, DeploymentError> {
        let field = format!("{replica}.address");
        let Some(text) = text else {
            if kind == TransportKind::Mem {
                return Ok(PLACEHOLDER);
            }
            return Err(self.loc.at(
                &field,
                format!(
                    "missing required field `address` (\"ip:port\" or \"host:port\"; only transport kind \"mem\" needs none, this file uses {:?})",
                    kind.name()
                ),
            ));
        };
        let addr = resolve(text).map_err(|reason| self.loc.at(&field, reason))?;
        if kind != TransportKind::Mem {
            if addr.port() == 0 {
                return Err(self
                    .loc
                    .at(&field, format!("port 0 in {text:?}: peers must know the port to dial; pick a fixed port")));
            }
            if addr.ip().is_unspecified() {
                return Err(self.loc.at(
                    &field,
                    format!(
                        "{text:?} is an unspecified address that peers cannot dial; give this replica's own address"
                    ),
                ));
            }
        }
        Ok(addr)
    }

    /// No two replicas share an address (in-memory transports ignore addresses). `file_ids`
    /// are each RSM's replica ids in file order, to name replicas by file position.
    fn distinct_addresses(
        &self,
        rsms: [&RsmConfig; 2],
        file_ids: [&[u16]; 2],
        kind: TransportKind,
    ) -> Result<(), DeploymentError> {
        if kind == TransportKind::Mem {
            return Ok(());
        }
        let mut seen: HashMap<SocketAddr, String> = HashMap::new();
        for (i, (rsm, ids)) in rsms.iter().zip(file_ids).enumerate() {
            for (j, &id) in ids.iter().enumerate() {
                let path = format!("rsm[{i}].replicas[{j}]");
                let address = rsm.replicas[usize::from(id)].address;
                let name = format!("{path} ({:?} replica {id})", rsm.name);
                if let Some(other) = seen.insert(address, name.clone()) {
                    return Err(self.loc.at(
                        &format!("{path}.address"),
                        format!(
                            "address {address} of {name} is already the address of {other}; every replica needs its own"
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    fn transport(&self, t: &TransportOptions) -> Result<(), DeploymentError> {
        let tcp = &t.tcp;
        if tcp.max_queued_bytes == 0 {
            return Err(self.loc.at("transport.tcp.max_queued_bytes", "must be positive"));
        }
        if tcp.connect_timeout.is_zero() {
            return Err(self.loc.at("transport.tcp.connect_timeout", "must be positive (milliseconds)"));
        }
        if tcp.backoff_min.is_zero() || tcp.backoff_max < tcp.backoff_min {
            return Err(self.loc.at(
                "transport.tcp.backoff_max",
                "backoff_min must be positive and backoff_max at least backoff_min (milliseconds)",
            ));
        }
        let u = &t.uring;
        if !u.entries.is_power_of_two() {
            return Err(self.loc.at("transport.uring.entries", format!("{} is not a power of two", u.entries)));
        }
        if !u.recv_buffers.is_power_of_two() || u.recv_buffers > 32_768 {
            return Err(self.loc.at(
                "transport.uring.recv_buffers",
                format!("{} is not a power of two between 1 and 32768", u.recv_buffers),
            ));
        }
        if u.recv_buffer_size == 0 {
            return Err(self.loc.at("transport.uring.recv_buffer_size", "must be positive"));
        }
        if t.rdma.ring_bytes == 0 {
            return Err(self.loc.at("transport.rdma.ring_bytes", "must be positive"));
        }
        Ok(())
    }

    fn node(&self, n: &RawNode) -> Result<NodeTuning, DeploymentError> {
        if n.batch_messages == 0 {
            return Err(self.loc.at("node.batch_messages", "must be at least 1"));
        }
        if n.queue_capacity == 0 {
            return Err(self.loc.at("node.queue_capacity", "must be at least 1"));
        }
        if n.queue_mib == 0 || n.queue_mib > 1 << 20 {
            return Err(self.loc.at("node.queue_mib", "must be between 1 and 1048576 (MiB)"));
        }
        if n.stats_interval_ms == 0 {
            return Err(self.loc.at("node.stats_interval_ms", "must be at least 1 (milliseconds)"));
        }
        Ok(NodeTuning {
            batch_messages: n.batch_messages,
            batch_linger: Duration::from_micros(n.batch_linger_us),
            queue_capacity: n.queue_capacity,
            queue_bytes: n.queue_mib << 20,
            stats_interval: Duration::from_millis(n.stats_interval_ms),
        })
    }

    /// A replica's `public_key`: 64 hexadecimal digits encoding a usable ed25519 point.
    fn public_key(&self, field: &str, hex: &str) -> Result<[u8; 32], DeploymentError> {
        let bytes = decode_hex(hex.trim()).map_err(|reason| self.loc.at(field, reason))?;
        picsou_core::identity::check_public(&bytes).map_err(|e| self.loc.at(field, e.to_string()))?;
        Ok(bytes)
    }

    /// `[keys]`: per-replica keys when the replicas list public keys, else a shared secret —
    /// refused off loopback.
    fn keys(
        &self,
        k: &RawKeys,
        rsms: &[RsmConfig; 2],
        kind: TransportKind,
        base_dir: &Path,
    ) -> Result<KeyMaterial, DeploymentError> {
        if self.keys == Keys::Template {
            return Ok(KeyMaterial::PerReplica { identity_file: None, identities: Default::default() });
        }
        let with_key = |has: bool| {
            rsms.iter().enumerate().flat_map(move |(i, r)| {
                r.replicas.iter().filter(move |x| x.public_key.is_some() == has).map(move |x| (i, x.id))
            })
        };
        if let Some((i, id)) = with_key(true).next() {
            if let Some((j, missing)) = with_key(false).next() {
                return Err(self.loc.at(
                    &format!("rsm[{j}].replicas"),
                    format!(
                        "replica {missing} of rsm[{j}] has no public_key, but rsm[{i}]'s replica {id} has one: with \
                         per-replica keys every replica lists its public key (picsou keygen writes them all)"
                    ),
                ));
            }
            for field in [("keys.secret", k.secret.is_some()), ("keys.secret_file", k.secret_file.is_some())] {
                if field.1 {
                    return Err(self.loc.at_key(
                        field.0,
                        "the replicas list public keys (per-replica keys), so the deployment has no shared secret: \
                         remove it",
                    ));
                }
            }
            if k.signing_seed.is_some() {
                return Err(self.loc.at_key(
                    "keys.signing_seed",
                    "with per-replica keys each replica signs commit certificates with its own identity: remove \
                     signing_seed",
                ));
            }
            // Absolute, so that the path survives rendering the configuration for a child process.
            let identity_file = match &k.identity_file {
                Some(f) => Some(
                    std::path::absolute(base_dir.join(f))
                        .map_err(|e| self.loc.at("keys.identity_file", format!("cannot resolve {f:?}: {e}")))?,
                ),
                None => None,
            };
            return Ok(KeyMaterial::PerReplica { identity_file, identities: Default::default() });
        }
        if k.identity_file.is_some() {
            return Err(self.loc.at_key(
                "keys.identity_file",
                "an identity file needs per-replica keys: give every replica its public_key (picsou keygen writes \
                 them)",
            ));
        }
        let secret = match (&k.secret, &k.secret_file) {
            (Some(_), Some(_)) => {
                return Err(self.loc.at_key("keys.secret_file", "give either secret or secret_file, not both"));
            }
            (None, None) => {
                return Err(self.loc.at(
                    "keys",
                    "no keys: give every replica its public_key and [keys] identity_file (picsou keygen --config \
                     FILE --out DIR writes both), or, for a loopback demo, [keys] secret = \"<64 hexadecimal \
                     digits>\" or secret_file",
                ));
            }
            (Some(hex), None) => decode_hex(hex.trim()).map_err(|reason| self.loc.at("keys.secret", reason))?,
            (None, Some(file)) => {
                let path = base_dir.join(file);
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| self.loc.at("keys.secret_file", format!("cannot read {}: {e}", path.display())))?;
                decode_hex(text.trim())
                    .map_err(|reason| self.loc.at("keys.secret_file", format!("{}: {reason}", path.display())))?
            }
        };
        let field = if k.secret.is_some() { "keys.secret" } else { "keys.secret_file" };
        if kind != TransportKind::Mem
            && let Some((i, r)) = rsms
                .iter()
                .enumerate()
                .flat_map(|(i, rsm)| rsm.replicas.iter().map(move |r| (i, r)))
                .find(|(_, r)| !r.address.ip().is_loopback())
        {
            return Err(self.loc.at_key(
                field,
                format!(
                    "a shared secret is for loopback demos and tests only: every holder can impersonate every \
                     replica and forge commit certificates, and rsm[{i}]'s replica {} listens on {}, off \
                     loopback. Generate per-replica keys: picsou keygen --config <this file> --out <dir>, then \
                     use <dir>/deployment.toml and give each host only its own key file",
                    r.id, r.address
                ),
            ));
        }
        let signing_seed = match &k.signing_seed {
            Some(hex) => Some(decode_hex(hex.trim()).map_err(|reason| self.loc.at("keys.signing_seed", reason))?),
            None => None,
        };
        if signing_seed.is_none()
            && let Some((i, r)) = rsms.iter().enumerate().find(|(_, r)| r.fault == FaultModel::Bft)
        {
            return Err(self.loc.at(
                "keys.signing_seed",
                format!(
                    "missing: rsm[{i}] ({:?}) is bft, so its messages carry signed commit proofs; add signing_seed = \"<64 hexadecimal digits>\"",
                    r.name
                ),
            ));
        }
        Ok(KeyMaterial::Shared { secret, signing_seed })
    }

    fn load(&self, l: &RawLoad, max_payload_bytes: usize) -> Result<LoadSpec, DeploymentError> {
        if l.size == 0 || l.size > max_payload_bytes {
            return Err(self.loc.at(
                "load.size",
                format!("{} bytes: must be between 1 and tuning.max_payload_bytes ({max_payload_bytes})", l.size),
            ));
        }
        if l.timeout_s == 0 {
            return Err(self.loc.at("load.timeout_s", "must be at least 1 (seconds)"));
        }
        Ok(LoadSpec {
            messages: l.messages,
            size: l.size,
            senders: l.senders,
            rate: l.rate,
            timeout: Duration::from_secs(l.timeout_s),
        })
    }
}
