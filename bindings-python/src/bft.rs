//! Commit certificates for Byzantine-fault-tolerant RSMs: ed25519 keys, signing a message's
//! certificate, verifying one. Thin wrappers over `picsou_core::proof`.
//!
//! A message's certificate is ed25519 signatures, by replicas of the sending RSM holding at
//! least f + 1 stake, over the commit digest of (stream, seq, payload); `stream` is
//! `(from_rsm, to_rsm)`, `(0, 1)` for the first RSM's messages to the second.

use ed25519_dalek::{SigningKey, VerifyingKey};
use picsou_core::RsmId;
use picsou_core::proof::{
    CommitSigner, Ed25519QuorumVerifier, ProofVerifier, QuorumCertificate, Share, StreamId, commit_digest,
    derive_signing_key,
};
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::convert::{bytes_arg, seq_arg, uint, wrong_type};
use crate::errors::{internal, invalid, misuse, proof_error};

/// 32 random bytes from the operating system: fresh key material (signing keys here, a
/// deployment's link-key secret in `config`).
pub fn random32() -> PyResult<[u8; 32]> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).map_err(|e| internal(&format!("no randomness from the operating system: {e}")))?;
    Ok(b)
}

/// A `(from_rsm, to_rsm)` pair: `(0, 1)` or `(1, 0)`.
fn stream_arg(stream: Option<(u8, u8)>) -> PyResult<StreamId> {
    match stream.unwrap_or((0, 1)) {
        (from, to) if (from, to) == (0, 1) || (from, to) == (1, 0) => Ok(StreamId { from: RsmId(from), to: RsmId(to) }),
        other => Err(misuse(format!("stream must be (0, 1) or (1, 0) (from RSM, to RSM), not {other:?}"))),
    }
}

/// A deployment id (`Config.deployment_id`): 32 bytes, or zero when not given (signers and
/// verifiers made outside a deployment).
fn deployment_arg(deployment: Option<&Bound<'_, PyAny>>) -> PyResult<[u8; 32]> {
    deployment.map_or(Ok([0; 32]), |d| seed32(d, "deployment"))
}

fn seed32(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<[u8; 32]> {
    let b = bytes_arg(obj, what)?;
    <[u8; 32]>::try_from(b.as_slice()).map_err(|_| invalid(what, format!("must be 32 bytes, not {}", b.len())))
}

/// An ed25519 signing key of one replica.
#[pyclass(frozen, module = "picsou", name = "SigningKey")]
pub struct PySigningKey {
    key: SigningKey,
}

impl PySigningKey {
    /// Wraps a key.
    pub fn from_key(key: SigningKey) -> Self {
        Self { key }
    }
}

#[pymethods]
impl PySigningKey {
    /// A fresh key from the operating system's randomness.
    #[staticmethod]
    fn generate() -> PyResult<Self> {
        Ok(Self { key: SigningKey::from_bytes(&random32()?) })
    }

    /// The key with this 32-byte secret seed.
    #[staticmethod]
    fn from_seed(seed: &Bound<'_, PyAny>) -> PyResult<Self> {
        Ok(Self { key: SigningKey::from_bytes(&seed32(seed, "seed")?) })
    }

    /// The key of replica `index` of RSM `rsm` (0 or 1) derived from a deployment's
    /// `keys.signing_seed`, as every replica of a deployment derives it.
    #[staticmethod]
    fn derive(master: &Bound<'_, PyAny>, rsm: &Bound<'_, PyAny>, index: &Bound<'_, PyAny>) -> PyResult<Self> {
        let rsm = uint(rsm, "rsm", 1)? as u8;
        let index = uint(index, "index", u64::from(u16::MAX))? as u16;
        Ok(Self { key: derive_signing_key(&seed32(master, "master")?, RsmId(rsm), index) })
    }

    /// The 32-byte secret seed (keep it secret).
    #[getter]
    fn seed<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.key.to_bytes())
    }

    /// The 32-byte public key verifiers hold.
    #[getter]
    fn public_key<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, self.key.verifying_key().as_bytes())
    }

    /// This replica's share of the certificate of `(stream, seq, payload)` in `deployment`
    /// (`Config.deployment_id`; default: none, zero): `(index, signature)`.
    #[pyo3(signature = (index, seq, payload, stream=None, *, deployment=None))]
    fn sign_share<'py>(
        &self,
        py: Python<'py>,
        index: &Bound<'_, PyAny>,
        seq: &Bound<'_, PyAny>,
        payload: &Bound<'_, PyAny>,
        stream: Option<(u8, u8)>,
        deployment: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<(u16, Bound<'py, PyBytes>)> {
        let index = uint(index, "index", u64::from(u16::MAX))? as u16;
        let (seq, payload, stream) = (seq_arg(seq, "seq")?, bytes_arg(payload, "payload")?, stream_arg(stream)?);
        let signer = CommitSigner::new(index, self.key.clone()).in_deployment(deployment_arg(deployment)?);
        let (i, sig) = signer.sign_share(stream, seq, &payload);
        Ok((i, PyBytes::new(py, &sig)))
    }

    fn __repr__(&self) -> String {
        let public: String = self.key.verifying_key().as_bytes().iter().take(8).map(|b| format!("{b:02x}")).collect();
        format!("picsou.SigningKey(public={public}...)")
    }
}

/// Checks commit certificates of one sending RSM: valid signatures from distinct replicas
/// holding at least f + 1 stake.
///
/// `QuorumVerifier(public_keys, *, f, stakes=None)`: replica `i` has public key
/// `public_keys[i]` (32 bytes) and stake `stakes[i]` (default 1).
#[pyclass(frozen, module = "picsou", name = "QuorumVerifier")]
pub struct PyQuorumVerifier {
    inner: Ed25519QuorumVerifier,
    stream: Option<StreamId>,
}

impl PyQuorumVerifier {
    /// Wraps a verifier; `stream` is the default stream of `verify`.
    pub fn from_verifier(inner: Ed25519QuorumVerifier, stream: Option<StreamId>) -> Self {
        Self { inner, stream }
    }

    fn check(
        &self,
        seq: &Bound<'_, PyAny>,
        payload: &Bound<'_, PyAny>,
        proof: &Bound<'_, PyAny>,
        stream: Option<(u8, u8)>,
    ) -> PyResult<Result<(), picsou_core::proof::ProofError>> {
        let stream = match stream {
            Some(s) => stream_arg(Some(s))?,
            None => self.stream.unwrap_or(StreamId { from: RsmId(0), to: RsmId(1) }),
        };
        let (seq, payload, proof) = (seq_arg(seq, "seq")?, bytes_arg(payload, "payload")?, bytes_arg(proof, "proof")?);
        Ok(self.inner.verify(stream, seq, &payload, &proof))
    }
}

#[pymethods]
impl PyQuorumVerifier {
    #[new]
    #[pyo3(signature = (public_keys, *, f, stakes=None, deployment=None))]
    fn new(
        public_keys: Vec<Bound<'_, PyAny>>,
        f: &Bound<'_, PyAny>,
        stakes: Option<Vec<Bound<'_, PyAny>>>,
        deployment: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let deployment = deployment_arg(deployment)?;
        let f = uint(f, "f", u64::MAX)?;
        let mut keys = Vec::with_capacity(public_keys.len());
        for (i, k) in public_keys.iter().enumerate() {
            let field = format!("public_keys[{i}]");
            let bytes = seed32(k, &field)?;
            keys.push(
                VerifyingKey::from_bytes(&bytes)
                    .map_err(|e| invalid(&field, format!("not an ed25519 public key: {e}")))?,
            );
        }
        let stakes: Vec<u64> = match stakes {
            None => vec![1; keys.len()],
            Some(s) => {
                s.iter().enumerate().map(|(i, x)| uint(x, &format!("stakes[{i}]"), 1 << 48)).collect::<PyResult<_>>()?
            }
        };
        if stakes.len() != keys.len() {
            return Err(invalid(
                "stakes",
                format!("{} stakes for {} public keys: give one per key", stakes.len(), keys.len()),
            ));
        }
        Ok(Self { inner: Ed25519QuorumVerifier::new(keys, stakes, f).in_deployment(deployment), stream: None })
    }

    /// The stake a certificate must gather (f + 1).
    #[getter]
    fn required_stake(&self) -> u64 {
        self.inner.required_stake()
    }

    /// Raises `ProofError` (saying why) unless `proof` certifies `payload` at `seq` of
    /// `stream` (default: `(0, 1)`, or the stream of the RSM a `Config.verifier` is for).
    #[pyo3(signature = (seq, payload, proof, stream=None))]
    fn verify(
        &self,
        seq: &Bound<'_, PyAny>,
        payload: &Bound<'_, PyAny>,
        proof: &Bound<'_, PyAny>,
        stream: Option<(u8, u8)>,
    ) -> PyResult<()> {
        self.check(seq, payload, proof, stream)?.map_err(|e| proof_error(&e))
    }

    /// `True` if `proof` certifies `payload` at `seq` of `stream`.
    #[pyo3(signature = (seq, payload, proof, stream=None))]
    fn is_valid(
        &self,
        seq: &Bound<'_, PyAny>,
        payload: &Bound<'_, PyAny>,
        proof: &Bound<'_, PyAny>,
        stream: Option<(u8, u8)>,
    ) -> PyResult<bool> {
        Ok(self.check(seq, payload, proof, stream)?.is_ok())
    }

    fn __repr__(&self) -> String {
        format!("picsou.QuorumVerifier(required_stake={})", self.inner.required_stake())
    }
}

/// The 32-byte digest a certificate signs: BLAKE3 over (deployment, stream, seq, payload).
#[pyfunction(name = "commit_digest")]
#[pyo3(signature = (seq, payload, stream=None, *, deployment=None))]
fn commit_digest_of<'py>(
    py: Python<'py>,
    seq: &Bound<'_, PyAny>,
    payload: &Bound<'_, PyAny>,
    stream: Option<(u8, u8)>,
    deployment: Option<&Bound<'_, PyAny>>,
) -> PyResult<Bound<'py, PyBytes>> {
    let deployment = deployment_arg(deployment)?;
    let d = commit_digest(&deployment, stream_arg(stream)?, seq_arg(seq, "seq")?, &bytes_arg(payload, "payload")?);
    Ok(PyBytes::new(py, &d))
}

/// A certificate from `(index, signature)` shares (sorted by index, repeats dropped), encoded.
#[pyfunction]
fn assemble_certificate<'py>(py: Python<'py>, shares: Vec<Bound<'_, PyAny>>) -> PyResult<Bound<'py, PyBytes>> {
    let mut out: Vec<Share> = Vec::with_capacity(shares.len());
    for (i, s) in shares.iter().enumerate() {
        let (index, sig): (Bound<'_, PyAny>, Bound<'_, PyAny>) =
            s.extract().map_err(|_| wrong_type(&format!("shares[{i}]"), "an (index, signature) tuple", s))?;
        let index = uint(&index, &format!("shares[{i}] index"), u64::from(u16::MAX))? as u16;
        let sig = bytes_arg(&sig, &format!("shares[{i}] signature"))?;
        let sig = <[u8; 64]>::try_from(sig.as_slice())
            .map_err(|_| misuse(format!("shares[{i}]: a signature is 64 bytes, not {}", sig.len())))?;
        out.push((index, sig));
    }
    Ok(PyBytes::new(py, &QuorumCertificate::assemble(out).encode()))
}

/// The `(index, signature)` shares of an encoded certificate; `ProofError` if malformed.
#[pyfunction]
fn certificate_shares<'py>(py: Python<'py>, proof: &Bound<'_, PyAny>) -> PyResult<Vec<(u16, Bound<'py, PyBytes>)>> {
    let q = QuorumCertificate::decode(&bytes_arg(proof, "proof")?).map_err(|e| proof_error(&e))?;
    Ok(q.shares.iter().map(|(i, s)| (*i, PyBytes::new(py, s))).collect())
}

/// The certificate of `(stream, seq, payload)` in `deployment` signed by every `(index, key)`
/// of `signers`.
#[pyfunction]
#[pyo3(signature = (signers, seq, payload, stream=None, *, deployment=None))]
fn sign_certificate<'py>(
    py: Python<'py>,
    signers: Vec<(Bound<'_, PyAny>, PyRef<'_, PySigningKey>)>,
    seq: &Bound<'_, PyAny>,
    payload: &Bound<'_, PyAny>,
    stream: Option<(u8, u8)>,
    deployment: Option<&Bound<'_, PyAny>>,
) -> PyResult<Bound<'py, PyBytes>> {
    let (seq, payload, stream) = (seq_arg(seq, "seq")?, bytes_arg(payload, "payload")?, stream_arg(stream)?);
    let deployment = deployment_arg(deployment)?;
    let mut shares = Vec::with_capacity(signers.len());
    for (i, (index, key)) in signers.iter().enumerate() {
        let index = uint(index, &format!("signers[{i}] index"), u64::from(u16::MAX))? as u16;
        shares.push(
            CommitSigner::new(index, key.key.clone()).in_deployment(deployment).sign_share(stream, seq, &payload),
        );
    }
    Ok(PyBytes::new(py, &QuorumCertificate::assemble(shares).encode()))
}

/// Adds the classes and functions to the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PySigningKey>()?;
    m.add_class::<PyQuorumVerifier>()?;
    m.add_function(pyo3::wrap_pyfunction!(commit_digest_of, m)?)?;
    m.add_function(pyo3::wrap_pyfunction!(assemble_certificate, m)?)?;
    m.add_function(pyo3::wrap_pyfunction!(certificate_shares, m)?)?;
    m.add_function(pyo3::wrap_pyfunction!(sign_certificate, m)?)?;
    Ok(())
}
