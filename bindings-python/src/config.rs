//! `Config`: a checked deployment (the TOML file of `picsou node` / `picsou local`).
//!
//! Every way of building one ends in `DeploymentConfig::from_toml_str` / `from_path`, so a
//! configuration built from Python objects is checked exactly like a file, and errors are
//! `ConfigError`s naming the field (`rsm[1].replicas[2].address`). For files and TOML text the
//! error also has the line and column; for dicts and generated configurations it has none
//! (they would point into text the user never wrote).

use picsou_core::proof::{CommitSigner, QuorumCertificate, StreamId};
use picsou_core::{FaultModel, ReplicaId, RsmId, Strategy};
use picsou_runtime::deployment::{DeploymentConfig, KeyMaterial, Senders};
use picsou_runtime::transport::TransportKind;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyInt, PyString};

use crate::bft::{PyQuorumVerifier, PySigningKey, random32};
use crate::convert::{Source, py_to_toml, string, table_to_py, text_or_path, to_py, uint, wrong_type};
use crate::errors::{deployment_error, guard, internal, invalid};

/// A checked deployment: two RSMs, their replicas, the transport, tuning, keys and load.
///
/// `Config(source=None)`: `None` is the embedded default (two CFT RSMs of 4 replicas over TCP
/// on loopback); a dict is `from_dict`; TOML text or a path is `from_toml`.
#[pyclass(frozen, module = "picsou", name = "Config")]
pub struct PyConfig {
    /// The checked deployment.
    pub inner: DeploymentConfig,
}

/// 64 lowercase hexadecimal digits.
pub fn hex32(bytes: &[u8; 32]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Parses generated or dict-built TOML (errors without line and column).
fn from_generated(text: &str, source: &str) -> PyResult<DeploymentConfig> {
    DeploymentConfig::from_toml_str(text, source).map_err(|e| deployment_error(&e, false))
}

/// A deployment from a dict of the file's tables.
fn from_dict(d: &Bound<'_, PyAny>) -> PyResult<DeploymentConfig> {
    let value = py_to_toml(d, "")?;
    let text = toml::to_string(&value).map_err(|e| invalid("", format!("cannot be written as TOML: {e}")))?;
    from_generated(&text, "<dict>")
}

/// A deployment from TOML text or a path.
fn from_toml(source: &Bound<'_, PyAny>, name: Option<&str>) -> PyResult<DeploymentConfig> {
    match text_or_path(source, "source")? {
        Source::Text(t) => {
            DeploymentConfig::from_toml_str(&t, name.unwrap_or("<text>")).map_err(|e| deployment_error(&e, true))
        }
        Source::Path(p) => DeploymentConfig::from_path(&p).map_err(|e| deployment_error(&e, true)),
    }
}

/// A deployment from what Python code passes as `config`: a `Config`, a dict, TOML text or a
/// path (`None`: the embedded default).
pub fn config_arg(obj: Option<&Bound<'_, PyAny>>) -> PyResult<DeploymentConfig> {
    match obj {
        None => Ok(DeploymentConfig::embedded_default()),
        Some(o) if o.is_none() => Ok(DeploymentConfig::embedded_default()),
        Some(o) => {
            if let Ok(c) = o.cast::<PyConfig>() {
                Ok(c.get().inner.clone())
            } else if o.is_instance_of::<PyDict>() {
                from_dict(o)
            } else {
                from_toml(o, None)
            }
        }
    }
}

/// An RSM given as its name or as 0 / 1.
pub fn rsm_arg(c: &DeploymentConfig, rsm: &Bound<'_, PyAny>) -> PyResult<RsmId> {
    let text = if rsm.is_instance_of::<PyInt>() {
        uint(rsm, "rsm", 255)?.to_string()
    } else if rsm.is_instance_of::<PyString>() {
        string(rsm, "rsm")?
    } else {
        return Err(wrong_type("rsm", "an RSM name (str) or 0 / 1", rsm));
    };
    c.rsm_id(&text).map_err(|e| deployment_error(&e, false))
}

/// A replica given as (RSM name or 0 / 1, id).
pub fn replica_arg(c: &DeploymentConfig, rsm: &Bound<'_, PyAny>, replica: &Bound<'_, PyAny>) -> PyResult<ReplicaId> {
    let rsm_id = rsm_arg(c, rsm)?;
    let id = uint(replica, "replica", u64::from(u16::MAX))? as u16;
    c.replica(&rsm_id.0.to_string(), id).map_err(|e| deployment_error(&e, false))
}

/// Overrides of a deployment's most-changed fields, as `picsou local` / `picsou node` flags
/// apply them; the result is checked again as a whole (e.g. `transport="tcp"` on a `mem`
/// file without addresses is a `ConfigError` naming the address).
#[allow(clippy::too_many_arguments)]
pub fn apply_overrides(
    c: &DeploymentConfig,
    transport: Option<&str>,
    strategy: Option<&str>,
    messages: Option<&Bound<'_, PyAny>>,
    size: Option<&Bound<'_, PyAny>>,
    senders: Option<&str>,
    rate: Option<&Bound<'_, PyAny>>,
    base_port: Option<&Bound<'_, PyAny>>,
) -> PyResult<DeploymentConfig> {
    let mut c = c.clone();
    let mut changed = false;
    if let Some(b) = base_port.filter(|b| !b.is_none()) {
        let base = uint(b, "base_port", u64::from(u16::MAX))? as u16;
        let needed = c.replicas().len() as u64;
        if u64::from(base) + needed > 65_536 {
            return Err(invalid("base_port", format!("{base} + {needed} replicas would need ports above 65535")));
        }
        c = c.with_loopback_ports(base);
        changed = true;
    }
    if let Some(t) = transport {
        c.transport.kind = kind(t)?;
        changed = true;
    }
    if let Some(s) = strategy {
        c.strategy = s.parse::<Strategy>().map_err(|e| crate::errors::core_config_error(&e))?;
    }
    if let Some(m) = messages.filter(|m| !m.is_none()) {
        c.load.messages = uint(m, "messages", u64::MAX)?;
    }
    if let Some(s) = size.filter(|s| !s.is_none()) {
        c.load.size = uint(s, "size", usize::MAX as u64)? as usize;
        changed = true;
    }
    if let Some(s) = senders {
        c.load.senders = match s {
            "both" => Senders::Both,
            "first" => Senders::First,
            "second" => Senders::Second,
            other => {
                return Err(invalid("load.senders", format!("{other:?}: expected \"both\", \"first\" or \"second\"")));
            }
        };
    }
    if let Some(r) = rate.filter(|r| !r.is_none()) {
        c.load.rate = uint(r, "rate", u64::MAX)?;
    }
    if !changed {
        return Ok(c);
    }
    let mut checked = from_generated(&c.to_toml_string(), &c.source)?;
    checked.source = c.source;
    Ok(checked)
}

fn kind(t: &str) -> PyResult<TransportKind> {
    Ok(match t {
        "mem" => TransportKind::Mem,
        "tcp" => TransportKind::Tcp,
        "uring" => TransportKind::Uring,
        "rdma" => TransportKind::Rdma,
        other => {
            return Err(invalid(
                "transport.kind",
                format!("{other:?}: expected \"mem\", \"tcp\", \"uring\" or \"rdma\""),
            ));
        }
    })
}

/// The certificate for message `seq` of `rsm`'s stream (empty for CFT), signed by
/// [`DeploymentConfig::certificate_signers`]: an error when this process does not hold the
/// identities of replicas with f + 1 stake.
pub fn certify(c: &DeploymentConfig, rsm: RsmId, seq: u64, payload: &[u8]) -> PyResult<Vec<u8>> {
    let signers = c.certificate_signers(rsm).map_err(|e| deployment_error(&e, false))?;
    Ok(certify_with(&signers, rsm, seq, payload))
}

/// The certificate for message `seq` of `rsm`'s stream signed by `signers` (empty if none).
pub fn certify_with(signers: &[CommitSigner], rsm: RsmId, seq: u64, payload: &[u8]) -> Vec<u8> {
    if signers.is_empty() {
        return Vec::new();
    }
    let stream = StreamId { from: rsm, to: rsm.other() };
    QuorumCertificate::assemble(signers.iter().map(|s| s.sign_share(stream, seq, payload))).encode()
}

#[pymethods]
impl PyConfig {
    #[new]
    #[pyo3(signature = (source=None))]
    fn new(source: Option<&Bound<'_, PyAny>>) -> PyResult<Self> {
        guard(|| Ok(Self { inner: config_arg(source)? }))
    }

    /// A deployment from a file path or TOML text (a `str` with a newline, `=` or `[` is text);
    /// `name` labels errors for text.
    #[staticmethod]
    #[pyo3(signature = (source, name=None))]
    fn from_toml(source: &Bound<'_, PyAny>, name: Option<&str>) -> PyResult<Self> {
        guard(|| Ok(Self { inner: from_toml(source, name)? }))
    }

    /// A deployment from a dict shaped like the file: `{"strategy": ..., "rsm": [{...}, {...}],
    /// "transport": {"kind": "mem"}, "keys": {"secret": "<64 hex digits>"}, "load": {...}}`.
    /// `None` values are left out.
    #[staticmethod]
    fn from_dict(d: &Bound<'_, PyAny>) -> PyResult<Self> {
        if !d.is_instance_of::<PyDict>() {
            return Err(wrong_type("from_dict()'s argument", "a dict", d));
        }
        guard(|| Ok(Self { inner: from_dict(d)? }))
    }

    /// The embedded default deployment (what `picsou local` runs with no arguments).
    #[staticmethod]
    fn default() -> Self {
        Self { inner: DeploymentConfig::embedded_default() }
    }

    /// Two RSMs on this machine: `n` replicas each (or `n` and `receiver_n`), `f` the largest
    /// valid unless given, over `transport` ("mem", "tcp", "uring"); socket transports listen
    /// on 127.0.0.1 ports `base_port`, `base_port + 1`, .... `secret` and `signing_seed`
    /// (32 bytes) default to fresh random ones; `signing_seed` only when an RSM is BFT.
    #[staticmethod]
    #[pyo3(signature = (n=4, *, receiver_n=None, f=None, fault="cft", transport="mem", strategy="picsou",
        base_port=27100, names=None, messages=None, size=None, senders=None,
        rate=None, timeout_s=None, secret=None, signing_seed=None))]
    #[allow(clippy::too_many_arguments)]
    fn loopback(
        n: i64,
        receiver_n: Option<&Bound<'_, PyAny>>,
        f: Option<&Bound<'_, PyAny>>,
        fault: &str,
        transport: &str,
        strategy: &str,
        base_port: i64,
        names: Option<(String, String)>,
        messages: Option<&Bound<'_, PyAny>>,
        size: Option<&Bound<'_, PyAny>>,
        senders: Option<&str>,
        rate: Option<&Bound<'_, PyAny>>,
        timeout_s: Option<&Bound<'_, PyAny>>,
        secret: Option<&Bound<'_, PyAny>>,
        signing_seed: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let n0 = u64::try_from(n)
            .ok()
            .filter(|&n| n <= 65_535)
            .ok_or_else(|| invalid("n", format!("{n} replicas: must be between 0 and 65535")))?;
        let n1 = match receiver_n.filter(|x| !x.is_none()) {
            Some(r) => uint(r, "receiver_n", 65_535)?,
            None => n0,
        };
        let fault_model = match fault {
            "cft" => FaultModel::Cft,
            "bft" => FaultModel::Bft,
            other => return Err(invalid("fault", format!("{other:?}: expected \"cft\" or \"bft\""))),
        };
        let kind = kind(transport)?;
        let base = u64::try_from(base_port)
            .ok()
            .filter(|&b| b <= 65_535)
            .ok_or_else(|| invalid("base_port", format!("{base_port} is not a port number")))?;
        if kind != TransportKind::Mem && base + n0 + n1 > 65_536 {
            return Err(invalid("base_port", format!("{base} + {} replicas would need ports above 65535", n0 + n1)));
        }
        let key = |v: Option<&Bound<'_, PyAny>>, what: &str| -> PyResult<[u8; 32]> {
            match v.filter(|x| !x.is_none()) {
                None => random32(),
                Some(b) => {
                    let bytes = crate::convert::bytes_arg(b, what)?;
                    <[u8; 32]>::try_from(bytes.as_slice())
                        .map_err(|_| invalid(&format!("keys.{what}"), format!("must be 32 bytes, not {}", bytes.len())))
                }
            }
        };
        let names = names.unwrap_or_else(|| ("alpha".to_string(), "beta".to_string()));
        let mut t = toml::Table::new();
        t.insert("strategy".into(), strategy.into());
        let mut rsms = Vec::new();
        let mut port = base;
        for (i, (name, count)) in [(&names.0, n0), (&names.1, n1)].into_iter().enumerate() {
            let f_value = match f.filter(|x| !x.is_none()) {
                Some(v) => uint(v, "f", u64::MAX)?,
                None => match fault_model {
                    FaultModel::Cft => count.saturating_sub(1) / 2,
                    FaultModel::Bft => count.saturating_sub(1) / 3,
                },
            };
            let mut replicas = Vec::new();
            for id in 0..count {
                let mut r = toml::Table::new();
                r.insert("id".into(), toml::Value::Integer(id as i64));
                if kind != TransportKind::Mem {
                    r.insert("address".into(), format!("127.0.0.1:{port}").into());
                }
                port += 1;
                replicas.push(toml::Value::Table(r));
            }
            let mut rsm = toml::Table::new();
            rsm.insert("name".into(), name.as_str().into());
            rsm.insert("fault".into(), fault.into());
            rsm.insert(
                "f".into(),
                toml::Value::Integer(i64::try_from(f_value).map_err(|_| invalid(&format!("rsm[{i}].f"), "too large"))?),
            );
            rsm.insert("replicas".into(), toml::Value::Array(replicas));
            rsms.push(toml::Value::Table(rsm));
        }
        t.insert("rsm".into(), toml::Value::Array(rsms));
        let mut tr = toml::Table::new();
        tr.insert("kind".into(), transport.into());
        t.insert("transport".into(), toml::Value::Table(tr));
        let mut keys = toml::Table::new();
        keys.insert("secret".into(), hex32(&key(secret, "secret")?).into());
        if fault_model == FaultModel::Bft || signing_seed.is_some_and(|s| !s.is_none()) {
            keys.insert("signing_seed".into(), hex32(&key(signing_seed, "signing_seed")?).into());
        }
        t.insert("keys".into(), toml::Value::Table(keys));
        let mut load = toml::Table::new();
        for (k, v) in [("messages", messages), ("size", size), ("rate", rate), ("timeout_s", timeout_s)] {
            if let Some(v) = v.filter(|x| !x.is_none()) {
                load.insert(k.into(), py_to_toml(v, &format!("load.{k}"))?);
            }
        }
        if let Some(s) = senders {
            load.insert("senders".into(), s.into());
        }
        t.insert("load".into(), toml::Value::Table(load));
        let text = toml::to_string(&t).map_err(|e| internal(&e.to_string()))?;
        Ok(Self { inner: from_generated(&text, "<loopback>")? })
    }

    /// A copy with the overrides of `picsou local` / `picsou node` applied (`base_port` moves
    /// every replica to 127.0.0.1 ports `base_port`, `base_port + 1`, ...).
    #[pyo3(signature = (*, transport=None, strategy=None, messages=None, size=None, senders=None, rate=None, base_port=None))]
    #[allow(clippy::too_many_arguments)]
    fn with_overrides(
        &self,
        transport: Option<&str>,
        strategy: Option<&str>,
        messages: Option<&Bound<'_, PyAny>>,
        size: Option<&Bound<'_, PyAny>>,
        senders: Option<&str>,
        rate: Option<&Bound<'_, PyAny>>,
        base_port: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        guard(|| {
            Ok(Self {
                inner: apply_overrides(&self.inner, transport, strategy, messages, size, senders, rate, base_port)?,
            })
        })
    }

    /// A copy with per-replica keys (`picsou keygen`): a fresh random identity for every
    /// replica, each written to `out_dir/<rsm>-<id>.key` (mode 0600), the public keys in the
    /// deployment and `keys.identity_file` pointing at those files. Existing key files are an
    /// error unless `overwrite`. Write `to_toml()` next to them to hand the deployment out.
    #[pyo3(signature = (out_dir, *, overwrite=false))]
    fn generate_keys(&self, py: Python<'_>, out_dir: std::path::PathBuf, overwrite: bool) -> PyResult<Self> {
        let generated = py.detach(|| picsou_runtime::deployment::keygen::generate(&self.inner, &out_dir, overwrite));
        let inner = generated.map_err(|e| invalid("out_dir", e.to_string()))?;
        // Checked like a file: it must parse back, and every identity file must load.
        let inner = DeploymentConfig::from_toml_str(&inner.to_toml_string(), &self.inner.source)
            .map_err(|e| deployment_error(&e, false))?;
        Ok(Self { inner })
    }

    /// A deployment file read as a template for `generate_keys`: everything checked but the
    /// keys (a multi-host file without keys parses).
    #[staticmethod]
    fn template(path: std::path::PathBuf) -> PyResult<Self> {
        guard(|| {
            Ok(Self { inner: DeploymentConfig::template_from_path(&path).map_err(|e| deployment_error(&e, true))? })
        })
    }

    /// Whether each replica has its own identity (public keys listed) rather than a shared
    /// secret.
    #[getter]
    fn per_replica_keys(&self) -> bool {
        self.inner.per_replica_keys()
    }

    /// The deployment id (32 bytes): a digest of both RSMs' names, fault models, f, stakes and
    /// public keys. Commit certificates and session handshakes are bound to it: pass it as
    /// `deployment=` to `SigningKey.sign_share`, `sign_certificate` and `QuorumVerifier` when
    /// signing or checking certificates for this deployment.
    #[getter]
    fn deployment_id<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.inner.deployment_id())
    }

    /// The deployment as a TOML file that parses back to an equal configuration (secrets
    /// inline, in hexadecimal).
    fn to_toml(&self) -> String {
        self.inner.to_toml_string()
    }

    /// The deployment as a dict (the shape `from_dict` takes).
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let t: toml::Table = toml::from_str(&self.inner.to_toml_string()).map_err(|e| internal(&e.to_string()))?;
        table_to_py(py, &t)
    }

    /// Where the configuration came from (a file name, `<text>`, `<dict>`, ...).
    #[getter]
    fn source(&self) -> &str {
        &self.inner.source
    }

    /// Dissemination strategy.
    #[getter]
    fn strategy(&self) -> &str {
        self.inner.strategy.name()
    }

    /// Transport kind: "mem", "tcp", "uring" or "rdma".
    #[getter]
    fn transport(&self) -> &str {
        self.inner.transport.kind.name()
    }

    /// The two RSMs: `[{"name", "fault", "f", "replicas": [{"id", "address", "stake"}]}, ...]`.
    #[getter]
    fn rsms(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let v: Vec<serde_json::Value> = self
            .inner
            .rsms
            .iter()
            .map(|r| {
                serde_json::json!({
                    "name": r.name,
                    "fault": match r.fault { FaultModel::Cft => "cft", FaultModel::Bft => "bft" },
                    "f": r.f,
                    "replicas": r.replicas.iter().map(|x| serde_json::json!({
                        "id": x.id, "address": x.address.to_string(), "stake": x.stake,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        to_py(py, &v)
    }

    /// The synthetic load of `picsou local`: `{"messages", "size", "senders", "rate", "timeout_s"}`.
    #[getter]
    fn load(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let l = &self.inner.load;
        to_py(
            py,
            &serde_json::json!({
                "messages": l.messages, "size": l.size, "senders": l.senders.name(), "rate": l.rate,
                "timeout_s": l.timeout.as_secs(),
            }),
        )
    }

    /// Every replica as `(rsm name, id)`, the first RSM's first.
    fn replicas(&self) -> Vec<(String, u16)> {
        self.inner.replicas().into_iter().map(|r| (self.inner.rsm(r.rsm).name.clone(), r.index)).collect()
    }

    /// The ed25519 signing keys of `rsm`'s replicas that this process holds: with a shared
    /// secret, every one, derived from `keys.signing_seed` (none without a seed); with
    /// per-replica keys, those whose identity was given or whose identity file is readable.
    fn signing_keys(&self, rsm: &Bound<'_, PyAny>) -> PyResult<Vec<PySigningKey>> {
        let id = rsm_arg(&self.inner, rsm)?;
        Ok(match &self.inner.keys {
            KeyMaterial::Shared { signing_seed: None, .. } => Vec::new(),
            KeyMaterial::Shared { signing_seed: Some(seed), .. } => (0..self.inner.rsm(id).n())
                .map(|i| PySigningKey::from_key(picsou_core::proof::derive_signing_key(seed, id, i as u16)))
                .collect(),
            KeyMaterial::PerReplica { .. } => (0..self.inner.rsm(id).n())
                .filter_map(|i| self.inner.identity(ReplicaId::new(id.0, i as u16)).ok())
                .map(|identity| PySigningKey::from_key(identity.signing_key().clone()))
                .collect(),
        })
    }

    /// The commit certificate of message `seq` of `rsm`'s stream, signed with the deployment's
    /// derived keys by replicas holding f + 1 stake (what `picsou local` sends); `b""` when
    /// `rsm` is CFT.
    fn certify<'py>(
        &self,
        py: Python<'py>,
        rsm: &Bound<'_, PyAny>,
        seq: &Bound<'_, PyAny>,
        payload: &Bound<'_, PyAny>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let id = rsm_arg(&self.inner, rsm)?;
        let seq = crate::convert::seq_arg(seq, "seq")?;
        let payload = crate::convert::bytes_arg(payload, "payload")?;
        let cert = py.detach(|| certify(&self.inner, id, seq, &payload))?;
        Ok(PyBytes::new(py, &cert))
    }

    /// The verifier of `rsm`'s commit certificates, or `None` when `rsm` is CFT.
    fn verifier(&self, rsm: &Bound<'_, PyAny>) -> PyResult<Option<PyQuorumVerifier>> {
        let id = rsm_arg(&self.inner, rsm)?;
        let stream = StreamId { from: id, to: id.other() };
        Ok(self.inner.certificate_verifier(id).map(|v| PyQuorumVerifier::from_verifier(v, Some(stream))))
    }

    fn __repr__(&self) -> String {
        let c = &self.inner;
        format!(
            "picsou.Config({:?}: {} over {}, {:?} {}x {} f={} -> {:?} {}x {} f={})",
            c.source,
            c.strategy.name(),
            c.transport.kind.name(),
            c.rsms[0].name,
            c.rsms[0].n(),
            if c.rsms[0].fault == FaultModel::Bft { "bft" } else { "cft" },
            c.rsms[0].f,
            c.rsms[1].name,
            c.rsms[1].n(),
            if c.rsms[1].fault == FaultModel::Bft { "bft" } else { "cft" },
            c.rsms[1].f,
        )
    }

    /// Equal deployments (wherever they came from).
    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other.cast::<Self>().is_ok_and(|o| {
            let mut a = o.get().inner.clone();
            a.source = self.inner.source.clone();
            a == self.inner
        })
    }
}

/// Adds the class to the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyConfig>()?;
    Ok(())
}
