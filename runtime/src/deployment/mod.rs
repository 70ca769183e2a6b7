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
//! ]
//!
//! [[rsm]]
//! name = "beta"
//! # ...
//!
//! [transport]                         # kind = mem | tcp | uring | rdma, and per-kind tables
//! [tuning]                            # picsou_core::ProtocolParams
//! [node]                              # batch_messages, batch_linger_us, queue_capacity, queue_mib, stats_interval_ms
//! [keys]                              # secret or secret_file; signing_seed (required with bft)
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
//! `locate` (spans → lines and field paths), `render` (back to TOML), `address`, `keys`,
//! `rsm`, `node_tuning`, `load_spec`, `embedded`, `error`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

use picsou_core::keys::LinkKeys;
use picsou_core::proof::{CommitSigner, Ed25519QuorumVerifier, NoProof, ProofVerifier, derive_signing_key};
use picsou_core::{EndpointConfig, FaultModel, Membership, ProtocolParams, ReplicaId, RsmId, Strategy};

use crate::transport::{TransportOptions, TransportSetup};

mod address;
mod embedded;
mod error;
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
pub use keys::KeyMaterial;
pub use load_spec::{LoadSpec, Senders};
pub use node_tuning::NodeTuning;
pub use rsm::{ReplicaConfig, RsmConfig};

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

    /// Everything `local`'s [`Endpoint`](picsou_core::Endpoint) needs: link keys derived from
    /// the deployment secret, and a verifier of the commit proofs of the stream `local`
    /// receives — [`NoProof`] when the other RSM is CFT, else an [`Ed25519QuorumVerifier`] over
    /// the other RSM's derived public keys, stakes and f.
    ///
    /// # Panics
    /// If the other RSM is BFT and `keys.signing_seed` is `None` (parsing rejects that).
    pub fn endpoint_config(&self, local: ReplicaId) -> EndpointConfig {
        EndpointConfig::new(
            Arc::new(self.membership()),
            local,
            self.strategy,
            self.tuning.clone(),
            LinkKeys::derived(local, self.keys.secret),
            self.verifier(local.rsm.other()),
        )
    }

    /// The verifier of the commit proofs of messages sent by `sender`.
    fn verifier(&self, sender: RsmId) -> Arc<dyn ProofVerifier> {
        let rsm = self.rsm(sender);
        if rsm.fault == FaultModel::Cft {
            return Arc::new(NoProof);
        }
        let seed = self
            .keys
            .signing_seed
            .unwrap_or_else(|| panic!("RSM {:?} is bft but the deployment has no keys.signing_seed", rsm.name));
        let public = (0..rsm.n()).map(|i| derive_signing_key(&seed, sender, i as u16).verifying_key()).collect();
        Arc::new(Ed25519QuorumVerifier::new(public, rsm.spec().stakes(), rsm.f))
    }

    /// The commit-proof signers of every replica of `rsm`, in index order (keys derived from
    /// `keys.signing_seed`); empty when the deployment has no signing seed.
    pub fn commit_signers(&self, rsm: RsmId) -> Vec<CommitSigner> {
        let Some(seed) = self.keys.signing_seed else { return Vec::new() };
        (0..self.rsm(rsm).n()).map(|i| CommitSigner::new(i as u16, derive_signing_key(&seed, rsm, i as u16))).collect()
    }

    /// What `local`'s transport needs: its own address to listen on, every other replica of
    /// both RSMs with its address, the link keys, and the largest frame to accept
    /// (`tuning.max_frame_bytes_accepted`).
    pub fn transport_setup(&self, local: ReplicaId) -> TransportSetup {
        TransportSetup {
            local,
            listen: self.address(local),
            peers: self.replicas().into_iter().filter(|&r| r != local).map(|r| (r, self.address(r))).collect(),
            keys: LinkKeys::derived(local, self.keys.secret),
            max_frame_bytes: self.tuning.max_frame_bytes_accepted,
        }
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
