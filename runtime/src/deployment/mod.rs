//! Deployment configuration: one TOML file describes a whole deployment of two RSMs — their
//! replicas, addresses and stakes, the transport, the protocol tuning, the node's batching,
//! the keys and the synthetic load.
//!
//! ```toml
//! strategy = "picsou"                 # picsou | ost | ata | ll | otu
//!
//! [[rsm]]                             # exactly two; the first is RSM 0
//! name = "alpha"
//! fault = "cft"                       # cft | bft
//! f = 1
//! replicas = [
//!   { id = 0, address = "127.0.0.1:27100" },             # stake defaults to 1
//!   { id = 1, address = "127.0.0.1:27101", stake = 2 },
//!   # with per-replica keys: { id = 2, address = "10.0.0.3:27100", public_key = "<64 hex>" }
//! ]
//!
//! [[rsm]]
//! name = "beta"
//! # ...
//!
//! [transport]                         # kind = mem | tcp | uring | rdma, and per-kind tables
//! [tuning]                            # picsou_core::ProtocolParams
//! [node]                              # batch_messages, batch_linger_us, queue_capacity, queue_mib, stats_interval_ms
//! [keys]                              # identity_file (per-replica keys: each replica lists its
//!                                     # public_key); or, on loopback only, secret or secret_file
//!                                     # and signing_seed (required with bft)
//! [load]                              # messages, size, senders, rate, timeout_s
//! ```
//!
//! Every table rejects unknown keys. Every error — syntax, unknown key, missing field, wrong
//! type, impossible `f`, bad or duplicate address or id, bad key — is a [`DeploymentError`]
//! naming the file, the line and column, and the dotted field path
//! (`rsm[1].replicas[2].address`). The `examples/` directory of the repository has one
//! commented file per kind of deployment.
//!
//! Modules, one concept each: `raw` (serde mirror of the file), `parse` (the checks),
//! `locate` (spans → lines and field paths), `render` (back to TOML), `address`, `keys`
//! (key material, identity files), `keygen` (per-replica keys for `picsou keygen`),
//! `rsm`, `node_tuning`, `load_spec`, `embedded`, `error`.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

use picsou_core::identity::Identity;
use picsou_core::keys::LinkKeys;
use picsou_core::proof::{CommitSigner, Ed25519QuorumVerifier, NoProof, ProofVerifier, derive_signing_key};
use picsou_core::{EndpointConfig, FaultModel, Membership, ProtocolParams, ReplicaId, RsmId, Strategy};

use crate::transport::handshake::{self, SessionContext};
use crate::transport::{TransportOptions, TransportSetup};

mod address;
mod embedded;
mod error;
pub mod keygen;
mod keys;
mod load_spec;
mod locate;
mod node_tuning;
mod parse;
mod raw;
mod render;
mod rsm;

pub use embedded::EMBEDDED_DEFAULT_TOML;
pub use error::DeploymentError;
pub use keys::{KeyMaterial, read_identity_file, write_identity_file};
pub use load_spec::{LoadSpec, Senders};
pub use node_tuning::NodeTuning;
pub use rsm::{ReplicaConfig, RsmConfig};

/// One replica's keys: what it needs to authenticate its links and sign its commit shares.
#[derive(Clone, Debug)]
pub struct ReplicaKeys {
    /// MAC keys of the replica's own links.
    pub links: LinkKeys,
    /// Its commit-certificate signer, when its RSM is BFT.
    pub signer: Option<CommitSigner>,
}

/// Source name of [`DeploymentConfig::embedded_default`].
pub const EMBEDDED_SOURCE: &str = "<embedded default>";

/// A checked deployment: two RSMs and everything their replicas need to run.
///
/// Built only by [`from_path`](Self::from_path), [`from_toml_str`](Self::from_toml_str) and
/// [`embedded_default`](Self::embedded_default), which check every field; the methods assume
/// those checks hold (fields are public for reading, and for tests that tweak a copy).
#[derive(Clone, Debug, PartialEq)]
pub struct DeploymentConfig {
    /// Where the configuration came from: a file name, [`EMBEDDED_SOURCE`], or the source name
    /// given to [`from_toml_str`](Self::from_toml_str).
    pub source: String,
    /// Dissemination strategy.
    pub strategy: Strategy,
    /// RSM 0 (the first `[[rsm]]`) and RSM 1.
    pub rsms: [RsmConfig; 2],
    /// `[transport]`.
    pub transport: TransportOptions,
    /// `[tuning]`: the protocol's parameters.
    pub tuning: ProtocolParams,
    /// `[node]`.
    pub node: NodeTuning,
    /// `[keys]`.
    pub keys: KeyMaterial,
    /// `[load]`.
    pub load: LoadSpec,
}

impl DeploymentConfig {
    /// Reads and checks the deployment file at `path`; `keys.secret_file` is relative to the
    /// file's directory.
    pub fn from_path(path: &Path) -> Result<Self, DeploymentError> {
        let source = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| DeploymentError::unlocated(&source, "", format!("cannot read the deployment file: {e}")))?;
        parse::parse(&text, &source, path.parent().unwrap_or(Path::new("")))
    }

    /// Parses and checks a deployment given as text; errors name `source`. A relative
    /// `keys.secret_file` is taken relative to the directory part of `source`, if any, else to
    /// the current directory.
    pub fn from_toml_str(text: &str, source: &str) -> Result<Self, DeploymentError> {
        parse::parse(text, source, Path::new(source).parent().unwrap_or(Path::new("")))
    }

    /// Reads a deployment file as a template for [`keygen::generate`]: every check but the
    /// keys (`[keys]` and the replicas' public keys are ignored, so a multi-host file without
    /// keys parses). The result is for generating keys, not for running.
    pub fn template_from_path(path: &Path) -> Result<Self, DeploymentError> {
        let source = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| DeploymentError::unlocated(&source, "", format!("cannot read the deployment file: {e}")))?;
        parse::parse_with(&text, &source, path.parent().unwrap_or(Path::new("")), parse::Keys::Template)
    }

    /// The deployment of [`EMBEDDED_DEFAULT_TOML`], with source [`EMBEDDED_SOURCE`].
    pub fn embedded_default() -> Self {
        Self::from_toml_str(EMBEDDED_DEFAULT_TOML, EMBEDDED_SOURCE)
            .unwrap_or_else(|e| panic!("the embedded default deployment is invalid: {e}"))
    }

    /// The configuration as a deployment file that parses back to an equal configuration
    /// (apart from `source`), e.g. to hand a derived configuration to a child process. The
    /// secret is written inline, in hexadecimal; durations are written in the file's units
    /// (`batch_linger_us`, `stats_interval_ms`, `timeout_s`, the transport's milliseconds), so a
    /// configuration built by hand with finer durations is rounded down to them.
    pub fn to_toml_string(&self) -> String {
        render::render(self)
    }

    /// One RSM.
    pub fn rsm(&self, id: RsmId) -> &RsmConfig {
        &self.rsms[usize::from(id.0 & 1)]
    }

    /// The two RSMs as the protocol sees them.
    pub fn membership(&self) -> Membership {
        Membership { rsms: [self.rsms[0].spec(), self.rsms[1].spec()] }
    }

    /// The RSM named `name_or_index` (its name, or `0` / `1`).
    pub fn rsm_id(&self, name_or_index: &str) -> Result<RsmId, DeploymentError> {
        if let Some(i) = self.rsms.iter().position(|r| r.name == name_or_index) {
            return Ok(RsmId(i as u8));
        }
        match name_or_index {
            "0" => Ok(RsmId(0)),
            "1" => Ok(RsmId(1)),
            _ => Err(DeploymentError::unlocated(
                &self.source,
                "rsm",
                format!(
                    "no RSM named {name_or_index:?}; this deployment has {:?} (or 0) and {:?} (or 1)",
                    self.rsms[0].name, self.rsms[1].name
                ),
            )),
        }
    }

    /// Replica `id` of the RSM named `rsm` (a name, or `0` / `1`).
    pub fn replica(&self, rsm: &str, id: u16) -> Result<ReplicaId, DeploymentError> {
        let rsm_id = self.rsm_id(rsm)?;
        let spec = self.rsm(rsm_id);
        if usize::from(id) < spec.n() {
            return Ok(ReplicaId { rsm: rsm_id, index: id });
        }
        Err(DeploymentError::unlocated(
            &self.source,
            &format!("rsm[{}].replicas", rsm_id.0),
            format!(
                "RSM {:?} has {} replicas, with ids 0 to {}: there is no replica {id}",
                spec.name,
                spec.n(),
                spec.n() - 1
            ),
        ))
    }

    /// Every replica, RSM 0's first, in index order.
    pub fn replicas(&self) -> Vec<ReplicaId> {
        (0..2u8)
            .flat_map(|rsm| (0..self.rsms[usize::from(rsm)].n()).map(move |i| ReplicaId::new(rsm, i as u16)))
            .collect()
    }

    /// The address of replica `r`.
    ///
    /// # Panics
    /// If `r` is not a replica of this deployment.
    pub fn address(&self, r: ReplicaId) -> SocketAddr {
        self.rsm(r.rsm).replicas[usize::from(r.index)].address
    }

    /// Whether each replica has its own identity (the deployment lists public keys), rather
    /// than a shared secret.
    pub fn per_replica_keys(&self) -> bool {
        matches!(self.keys, KeyMaterial::PerReplica { .. })
    }

    /// The deployment id ([`picsou_core::identity::deployment_id`]): a digest of both RSMs'
    /// names, fault models, f, every replica's stake and public key (zero keys with a shared
    /// secret). Per-replica link keys and every session handshake are bound to it. Addresses
    /// are not part of it, so a replica can move to another host without new keys.
    pub fn deployment_id(&self) -> [u8; 32] {
        let mut members = Vec::new();
        let mut extra = Vec::new();
        for (i, rsm) in self.rsms.iter().enumerate() {
            extra.extend_from_slice(&(rsm.name.len() as u64).to_le_bytes());
            extra.extend_from_slice(rsm.name.as_bytes());
            extra.push(u8::from(rsm.fault == FaultModel::Bft));
            extra.extend_from_slice(&rsm.f.to_le_bytes());
            for r in &rsm.replicas {
                extra.extend_from_slice(&r.stake.to_le_bytes());
                members.push((ReplicaId::new(i as u8, r.id), r.public_key.unwrap_or_default()));
            }
        }
        picsou_core::identity::deployment_id(&members, &extra)
    }

    /// A copy in which replica `local` holds `identity` in memory (instead of reading its
    /// identity file): how the Python and C APIs hand a node its key. Refused with a shared
    /// secret, and when `identity` is not the one whose public key the deployment lists.
    pub fn with_identity(mut self, local: ReplicaId, identity: Identity) -> Result<Self, DeploymentError> {
        let listed = self.listed_public_key(local)?;
        if identity.public() != listed {
            return Err(DeploymentError::unlocated(
                &self.source,
                &self.replica_field(local, "public_key"),
                format!(
                    "the identity given for {} has public key {}, but the deployment lists {} for it",
                    self.replica_name(local),
                    keys::encode_hex(&identity.public()),
                    keys::encode_hex(&listed)
                ),
            ));
        }
        if let KeyMaterial::PerReplica { identities, .. } = &mut self.keys {
            identities.insert(local, identity);
        }
        Ok(self)
    }

    /// [`with_identity`](Self::with_identity) with the identity read from the file at `path`
    /// (see [`read_identity_file`]); the error names the file.
    pub fn with_identity_file(self, local: ReplicaId, path: &Path) -> Result<Self, DeploymentError> {
        let identity = read_identity_file(path)
            .map_err(|reason| DeploymentError::unlocated(&self.source, "keys.identity_file", reason))?;
        self.with_identity(local, identity)
    }

    /// Replica `local`'s identity under per-replica keys: given in memory, or read from its
    /// identity file (which must be private to its owner and match the listed public key).
    pub fn identity(&self, local: ReplicaId) -> Result<Identity, DeploymentError> {
        let listed = self.listed_public_key(local)?;
        let KeyMaterial::PerReplica { identity_file, identities } = &self.keys else {
            unreachable!("listed_public_key refuses shared secrets")
        };
        if let Some(identity) = identities.get(&local) {
            return Ok(identity.clone());
        }
        let field = "keys.identity_file";
        let name = self.replica_name(local);
        let Some(template) = identity_file else {
            return Err(DeploymentError::unlocated(
                &self.source,
                field,
                format!(
                    "no identity for {name}: set [keys] identity_file in the deployment file, or give the key \
                     file to the node (picsou node --key-file, Node(..., key_file=...), \
                     picsou_config_set_identity_file)"
                ),
            ));
        };
        let path = keys::identity_path(template, &self.rsm(local.rsm).name, local.index);
        let identity = read_identity_file(&path)
            .map_err(|reason| DeploymentError::unlocated(&self.source, field, format!("{name}: {reason}")))?;
        if identity.public() != listed {
            return Err(DeploymentError::unlocated(
                &self.source,
                field,
                format!(
                    "{} holds the identity of public key {}, but the deployment lists {} for {name}: wrong file?",
                    path.display(),
                    keys::encode_hex(&identity.public()),
                    keys::encode_hex(&listed)
                ),
            ));
        }
        Ok(identity)
    }

    /// `local`'s keys: the MAC keys of its links and, where its RSM is BFT, its commit signer.
    /// Under per-replica keys this reads `local`'s identity (and nothing else secret).
    pub fn replica_keys(&self, local: ReplicaId) -> Result<ReplicaKeys, DeploymentError> {
        let bft = self.rsm(local.rsm).fault == FaultModel::Bft;
        match &self.keys {
            KeyMaterial::Shared { secret, signing_seed } => Ok(ReplicaKeys {
                links: LinkKeys::derived(local, *secret),
                signer: signing_seed.filter(|_| bft).map(|seed| {
                    CommitSigner::new(local.index, derive_signing_key(&seed, local.rsm, local.index))
                        .in_deployment(self.deployment_id())
                }),
            }),
            KeyMaterial::PerReplica { .. } => {
                let identity = self.identity(local)?;
                let deployment = self.deployment_id();
                let mut table = HashMap::new();
                for peer in self.replicas().into_iter().filter(|&p| p != local) {
                    let public = self.listed_public_key(peer)?;
                    // Parsing checked every public key, so agreement cannot fail; report it
                    // rather than panic if a configuration was altered by hand.
                    let key = identity.link_key(&public, &deployment, local, peer).map_err(|e| {
                        DeploymentError::unlocated(&self.source, &self.replica_field(peer, "public_key"), e.to_string())
                    })?;
                    table.insert(peer, key);
                }
                let signer = bft
                    .then(|| CommitSigner::new(local.index, identity.signing_key().clone()).in_deployment(deployment));
                Ok(ReplicaKeys { links: LinkKeys::table(local, table), signer })
            }
        }
    }

    /// Everything `local`'s [`Endpoint`](picsou_core::Endpoint) needs: its link keys
    /// ([`replica_keys`](Self::replica_keys)) and a verifier of the commit proofs of the
    /// stream it receives — [`NoProof`] when the other RSM is CFT, else an
    /// [`Ed25519QuorumVerifier`] over the other RSM's public keys, stakes and f.
    pub fn endpoint_config(&self, local: ReplicaId) -> Result<EndpointConfig, DeploymentError> {
        Ok(self.endpoint_config_with(local, self.replica_keys(local)?))
    }

    /// [`endpoint_config`](Self::endpoint_config) with keys already loaded.
    pub fn endpoint_config_with(&self, local: ReplicaId, keys: ReplicaKeys) -> EndpointConfig {
        EndpointConfig::new(
            Arc::new(self.membership()),
            local,
            self.strategy,
            self.tuning.clone(),
            keys.links,
            self.verifier(local.rsm.other()),
        )
    }

    /// The verifier of the commit proofs of messages sent by `sender`.
    fn verifier(&self, sender: RsmId) -> Arc<dyn ProofVerifier> {
        match self.certificate_verifier(sender) {
            Some(v) => Arc::new(v),
            None => Arc::new(NoProof),
        }
    }

    /// The verifier of `sender`'s commit certificates: its replicas' public keys (listed, or
    /// derived from the shared signing seed), stakes and f. `None` when `sender` is CFT.
    pub fn certificate_verifier(&self, sender: RsmId) -> Option<Ed25519QuorumVerifier> {
        let rsm = self.rsm(sender);
        if rsm.fault == FaultModel::Cft {
            return None;
        }
        let public = match &self.keys {
            KeyMaterial::Shared { signing_seed, .. } => {
                // Parsing requires a signing seed whenever an RSM is BFT.
                let seed = signing_seed.unwrap_or_default();
                (0..rsm.n()).map(|i| derive_signing_key(&seed, sender, i as u16).verifying_key()).collect()
            }
            // Parsing checked every listed key.
            KeyMaterial::PerReplica { .. } => rsm
                .replicas
                .iter()
                .filter_map(|r| r.public_key.and_then(|k| picsou_core::identity::check_public(&k).ok()))
                .collect(),
        };
        Some(Ed25519QuorumVerifier::new(public, rsm.spec().stakes(), rsm.f).in_deployment(self.deployment_id()))
    }

    /// Signers of `rsm` that this process can sign commit certificates with, in index order,
    /// until they hold f + 1 stake: a stand-in for the RSM's own commit certificate in
    /// synthetic loads. With a shared secret every signer is derived from the signing seed;
    /// with per-replica keys, from the identities this process holds or can read (on one host,
    /// `picsou local` reads them all; a multi-host BFT deployment gets its certificates from
    /// its RSM, through the API). Empty for a CFT RSM.
    pub fn certificate_signers(&self, rsm: RsmId) -> Result<Vec<CommitSigner>, DeploymentError> {
        let spec = self.rsm(rsm);
        if spec.fault == FaultModel::Cft {
            return Ok(Vec::new());
        }
        let deployment = self.deployment_id();
        let mut signers = Vec::new();
        let mut stake = 0;
        let mut missing = Vec::new();
        for r in &spec.replicas {
            if stake > spec.f {
                break;
            }
            let local = ReplicaId::new(rsm.0, r.id);
            let key = match &self.keys {
                KeyMaterial::Shared { signing_seed, .. } => {
                    derive_signing_key(&signing_seed.unwrap_or_default(), rsm, r.id)
                }
                KeyMaterial::PerReplica { .. } => match self.identity(local) {
                    Ok(identity) => identity.signing_key().clone(),
                    Err(e) => {
                        missing.push(e.reason);
                        continue;
                    }
                },
            };
            stake += r.stake;
            signers.push(CommitSigner::new(r.id, key).in_deployment(deployment));
        }
        if stake <= spec.f {
            return Err(DeploymentError::unlocated(
                &self.source,
                "keys.identity_file",
                format!(
                    "the synthetic load of bft RSM {:?} needs commit certificates signed by replicas holding more \
                     than f = {} stake, and this process holds identities worth {stake}: {}",
                    spec.name,
                    spec.f,
                    missing.join("; ")
                ),
            ));
        }
        Ok(signers)
    }

    /// What `local`'s transport needs: its own address to listen on, every other replica of
    /// both RSMs with its address, the link keys, and the largest frame to accept
    /// (`tuning.max_frame_bytes_accepted`).
    pub fn transport_setup(&self, local: ReplicaId) -> Result<TransportSetup, DeploymentError> {
        Ok(self.transport_setup_with(local, self.replica_keys(local)?.links))
    }

    /// [`transport_setup`](Self::transport_setup) with link keys already loaded.
    pub fn transport_setup_with(&self, local: ReplicaId, keys: LinkKeys) -> TransportSetup {
        TransportSetup {
            local,
            listen: self.address(local),
            peers: self.replicas().into_iter().filter(|&r| r != local).map(|r| (r, self.address(r))).collect(),
            keys,
            session: SessionContext { deployment: self.deployment_id(), incarnation: handshake::new_incarnation() },
            max_frame_bytes: self.tuning.max_frame_bytes_accepted,
        }
    }

    /// `rsm-name/index`, as the command line writes replicas.
    pub fn replica_name(&self, r: ReplicaId) -> String {
        format!("{}/{}", self.rsm(r.rsm).name, r.index)
    }

    /// The dotted path of field `name` of replica `r` (by index: sorted order).
    fn replica_field(&self, r: ReplicaId, name: &str) -> String {
        format!("rsm[{}].replicas[{}].{name}", r.rsm.0, r.index)
    }

    /// The public key the deployment lists for `r`; an error with a shared secret.
    fn listed_public_key(&self, r: ReplicaId) -> Result<[u8; 32], DeploymentError> {
        if !self.per_replica_keys() {
            return Err(DeploymentError::unlocated(
                &self.source,
                "keys",
                "this deployment uses a shared secret, not per-replica identities (picsou keygen --config FILE \
                 --out DIR makes a deployment with per-replica keys)",
            ));
        }
        let replica = self.rsm(r.rsm).replicas.get(usize::from(r.index)).ok_or_else(|| {
            DeploymentError::unlocated(&self.source, "rsm", format!("{r} is not a replica of this deployment"))
        })?;
        replica.public_key.ok_or_else(|| {
            DeploymentError::unlocated(&self.source, &self.replica_field(r, "public_key"), "missing public_key")
        })
    }

    /// A copy whose replicas listen on `127.0.0.1:(base + k)`, `k` = 0, 1, … over
    /// [`replicas`](Self::replicas): a whole deployment on loopback, for tests and
    /// `picsou local`, without clashing with another run.
    ///
    /// # Panics
    /// If `base + k` exceeds 65535 for some replica.
    pub fn with_loopback_ports(&self, base: u16) -> Self {
        let mut out = self.clone();
        let mut k: u16 = 0;
        for rsm in &mut out.rsms {
            for r in &mut rsm.replicas {
                let port = base.checked_add(k).unwrap_or_else(|| {
                    panic!("with_loopback_ports({base}): replica {k} would need a port above 65535")
                });
                r.address = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port);
                k += 1;
            }
        }
        out
    }
}
