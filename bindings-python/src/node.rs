//! `Node`: one real replica of a deployment, running in this process over the configured
//! transport (a thin handle on `picsou_runtime::node::Node`), and `MemNetwork`.
//!
//! In-memory deployments: every `Node` of a `kind = "mem"` deployment must sit on the same
//! in-process switch. Pass one `MemNetwork()` as `network=` to every node of the deployment,
//! or pass none: nodes then share a process-wide network per deployment, keyed by the
//! configuration's contents (two `Config`s that render to the same TOML share one network),
//! which lives as long as one of its nodes does. Two *different* deployments that should not
//! talk each get their own network automatically; two copies of the *same* deployment in one
//! process need explicit, distinct `MemNetwork`s.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use picsou_core::adversary::Byzantine;
use picsou_core::identity::Identity;
use picsou_core::proof::{CommitSigner, Ed25519QuorumVerifier, ProofVerifier, StreamId};
use picsou_core::{FaultModel, ReplicaId};
use picsou_runtime::deployment::{DeploymentConfig, DeploymentError, read_identity_file};
use picsou_runtime::node::{Delivery, Node, NodeError, NodeOptions, NodeStats, SubmitError};
use picsou_runtime::transport::TransportKind;
use picsou_runtime::transport::mem::MemNetwork;
use pyo3::exceptions::PyTimeoutError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::config::{certify_with, config_arg, replica_arg};
use crate::convert::{bytes_arg, seq_arg, sequence_arg, to_py};
use crate::errors::{deployment_error, guard, invalid, misuse, node_error, proof_error, state_transfer_error};
use crate::logs;
use crate::wait::{Step, seconds, wait_for};

/// An in-process network for `kind = "mem"` deployments: every node of one deployment must be
/// on the same one. `link_bytes` bounds the bytes queued per link (default 8 MiB).
#[pyclass(frozen, module = "picsou", name = "MemNetwork")]
pub struct PyMemNetwork {
    net: MemNetwork,
}

#[pymethods]
impl PyMemNetwork {
    #[new]
    #[pyo3(signature = (link_bytes=None))]
    fn new(link_bytes: Option<&Bound<'_, PyAny>>) -> PyResult<Self> {
        Ok(Self {
            net: match link_bytes.filter(|b| !b.is_none()) {
                Some(b) => {
                    MemNetwork::with_link_bytes(crate::convert::uint(b, "link_bytes", usize::MAX as u64)? as usize)
                }
                None => MemNetwork::new(),
            },
        })
    }

    fn __repr__(&self) -> String {
        "picsou.MemNetwork()".into()
    }
}

/// Process-wide in-memory networks, one per deployment, with the number of nodes using each.
static SHARED: Mutex<BTreeMap<String, (MemNetwork, usize)>> = Mutex::new(BTreeMap::new());

/// A node's use of a shared network; the network is forgotten when the last lease goes.
struct Lease(String);

impl Drop for Lease {
    fn drop(&mut self) {
        let mut nets = SHARED.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(entry) = nets.get_mut(&self.0) {
            entry.1 -= 1;
            if entry.1 == 0 {
                nets.remove(&self.0);
            }
        }
    }
}

/// The shared network of the deployment `c`.
fn shared_network(c: &DeploymentConfig) -> (MemNetwork, Lease) {
    let text = c.to_toml_string();
    // The first line names the source: equal deployments from different sources share.
    let key = text.split_once('\n').map_or(text.clone(), |(_, rest)| rest.to_string());
    let mut nets = SHARED.lock().unwrap_or_else(PoisonError::into_inner);
    let entry = nets.entry(key.clone()).or_insert_with(|| (MemNetwork::new(), 0));
    entry.1 += 1;
    (entry.0.clone(), Lease(key))
}

/// How a node ended.
#[derive(Clone)]
enum Outcome {
    Stats(Box<NodeStats>),
    Failed(FailKind, String),
}

#[derive(Clone, Copy)]
enum FailKind {
    Config,
    Transport,
    Internal,
}

fn outcome_error(kind: FailKind, msg: &str) -> PyErr {
    match kind {
        FailKind::Config => invalid("", msg),
        FailKind::Transport => crate::errors::TransportError::new_err(msg.to_string()),
        FailKind::Internal => crate::errors::internal(msg),
    }
}

enum State {
    Running(Arc<Node>),
    Finishing,
    Done(Outcome),
}

/// One replica of a deployment, running over the deployment's transport in this process.
///
/// `Node(config, rsm, replica, *, network=None, byzantine=None)`: `config` is a `Config` (or
/// TOML text, a path, a dict), `rsm` the RSM's name (or 0 / 1), `replica` its id. Use it as a
/// context manager, or call `close()`.
#[pyclass(frozen, module = "picsou", name = "Node")]
pub struct PyNode {
    state: Mutex<State>,
    next_seq: AtomicU64,
    local: ReplicaId,
    name: String,
    rsm_name: String,
    kind: &'static str,
    verifier: Option<Ed25519QuorumVerifier>,
    /// The signers of this RSM's certificates, loaded once (identity files are read at start,
    /// not per message); the error says which identities are missing.
    signers: Result<Vec<CommitSigner>, DeploymentError>,
    // Dropped after `state` (declaration order): the node leaves the network first.
    _lease: Option<Lease>,
}

/// What waiting for the node found.
enum Got<T> {
    Value(T),
    Closed,
    Stopped,
    /// The replica fell beyond its peers' retention: `(next, peers_at)`.
    StateTransfer(u64, u64),
}

impl PyNode {
    fn live(&self) -> Option<Arc<Node>> {
        match &*self.state.lock().unwrap_or_else(PoisonError::into_inner) {
            State::Running(n) => Some(n.clone()),
            _ => None,
        }
    }

    fn closed_error(&self) -> PyErr {
        misuse(format!("node {} is closed", self.name))
    }

    /// Stops the node (if running) and returns how it ended; waits for other threads' calls
    /// to let go of it, without the GIL.
    fn finish(&self, py: Python<'_>) -> Outcome {
        let taken = {
            let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            match std::mem::replace(&mut *s, State::Finishing) {
                State::Running(n) => Some(n),
                State::Finishing => None,
                State::Done(o) => {
                    *s = State::Done(o.clone());
                    return o;
                }
            }
        };
        if let Some(arc) = taken {
            let outcome = py.detach(move || {
                let mut arc = arc;
                let node = loop {
                    match Arc::try_unwrap(arc) {
                        Ok(n) => break n,
                        Err(a) => {
                            arc = a;
                            std::thread::sleep(Duration::from_millis(2));
                        }
                    }
                };
                match node.shutdown() {
                    Ok(stats) => Outcome::Stats(Box::new(stats)),
                    Err(e) => {
                        let kind = match e {
                            NodeError::Config(_) => FailKind::Config,
                            NodeError::Panicked(_) => FailKind::Internal,
                            _ => FailKind::Transport,
                        };
                        Outcome::Failed(kind, e.to_string())
                    }
                }
            });
            *self.state.lock().unwrap_or_else(PoisonError::into_inner) = State::Done(outcome.clone());
            logs::flush(py);
            return outcome;
        }
        // Another thread is finishing it: wait for its outcome.
        loop {
            if let State::Done(o) = &*self.state.lock().unwrap_or_else(PoisonError::into_inner) {
                return o.clone();
            }
            py.detach(|| std::thread::sleep(Duration::from_millis(2)));
        }
    }

    /// The error for a node that stopped by itself (its transport failed).
    fn stopped_error(&self, py: Python<'_>) -> PyErr {
        match self.finish(py) {
            Outcome::Failed(kind, msg) => outcome_error(kind, &format!("node {} stopped: {msg}", self.name)),
            Outcome::Stats(_) => misuse(format!("node {} has stopped", self.name)),
        }
    }

    /// Waits up to `timeout` (`None`: no limit) for the next delivery.
    fn next(&self, py: Python<'_>, timeout: Option<Duration>) -> PyResult<Got<Option<Delivery>>> {
        let r = wait_for(py, timeout, |slice| {
            let Some(n) = self.live() else { return Step::Ready(Got::Closed) };
            match n.next_delivery(Some(slice)) {
                Ok(Some(d)) => Step::Ready(Got::Value(d)),
                Ok(None) => Step::Pending,
                Err(SubmitError::StateTransferNeeded { next, peers_at }) => {
                    Step::Ready(Got::StateTransfer(next, peers_at))
                }
                Err(_) => Step::Ready(Got::Stopped),
            }
        })?;
        Ok(match r {
            None => Got::Value(None),
            Some(Got::Value(d)) => Got::Value(Some(d)),
            Some(Got::Closed) => Got::Closed,
            Some(Got::Stopped) => Got::Stopped,
            Some(Got::StateTransfer(next, at)) => Got::StateTransfer(next, at),
        })
    }

    /// This RSM's certificate signers, or why this process cannot sign.
    fn signers(&self) -> PyResult<&[CommitSigner]> {
        self.signers.as_deref().map_err(|e| deployment_error(e, false))
    }

    fn delivery_tuple<'py>(py: Python<'py>, d: &Delivery) -> (u64, Bound<'py, PyBytes>) {
        (d.seq, PyBytes::new(py, &d.payload))
    }

    /// The proof to submit with `payload`: the given one (checked under BFT), or under BFT the
    /// certificate signed with the deployment's keys.
    fn proof(&self, py: Python<'_>, seq: u64, payload: &Bytes, proof: Option<&Bound<'_, PyAny>>) -> PyResult<Bytes> {
        let rsm = self.local.rsm;
        let given = match proof.filter(|p| !p.is_none()) {
            Some(p) => Some(bytes_arg(p, "proof")?),
            None => None,
        };
        match (&self.verifier, given) {
            (None, given) => Ok(Bytes::from(given.unwrap_or_default())),
            (Some(v), Some(p)) => {
                let stream = StreamId { from: rsm, to: rsm.other() };
                py.detach(|| v.verify(stream, seq, payload, &p)).map_err(|e| proof_error(&e))?;
                Ok(Bytes::from(p))
            }
            (Some(_), None) => {
                let signers = self.signers()?;
                Ok(Bytes::from(py.detach(|| certify_with(signers, rsm, seq, payload))))
            }
        }
    }

    fn submit_error(&self, py: Python<'_>, e: SubmitError) -> PyErr {
        match e {
            SubmitError::Stopped | SubmitError::NodeFailed { .. } => {
                if self.live().is_some() {
                    self.stopped_error(py)
                } else {
                    self.closed_error()
                }
            }
            SubmitError::Full => PyTimeoutError::new_err(format!("node {}: submit queue still full", self.name)),
            other => misuse(format!("node {}: {other}", self.name)),
        }
    }
}

#[pymethods]
impl PyNode {
    #[new]
    #[pyo3(signature = (config, rsm, replica, *, network=None, byzantine=None, resume_transmit=0, resume_receive=0, key_file=None, identity=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        config: &Bound<'_, PyAny>,
        rsm: &Bound<'_, PyAny>,
        replica: &Bound<'_, PyAny>,
        network: Option<&Bound<'_, PyAny>>,
        byzantine: Option<&str>,
        resume_transmit: u64,
        resume_receive: u64,
        key_file: Option<&Bound<'_, PyAny>>,
        identity: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        logs::refresh_level(py);
        let r = guard(|| {
            let c = config_arg(Some(config))?;
            let local = replica_arg(&c, rsm, replica)?;
            let c = with_identity(c, local, key_file, identity)?;
            let keys = c.replica_keys(local).map_err(|e| deployment_error(&e, false))?;
            let behavior = match byzantine {
                None => None,
                Some(b) => Some(b.parse::<Byzantine>().map_err(|e| invalid("byzantine", e.to_string()))?),
            };
            let explicit = match network.filter(|n| !n.is_none()) {
                None => None,
                Some(n) => Some(
                    n.cast::<PyMemNetwork>()
                        .map_err(|_| crate::convert::wrong_type("network", "a picsou.MemNetwork", n))?
                        .get()
                        .net
                        .clone(),
                ),
            };
            let (net, lease) = match (c.transport.kind, explicit) {
                (TransportKind::Mem, Some(n)) => (Some(n), None),
                (TransportKind::Mem, None) => {
                    let (n, l) = shared_network(&c);
                    (Some(n), Some(l))
                }
                (other, Some(_)) => {
                    return Err(misuse(format!(
                        "network= is for kind = \"mem\" deployments; this one uses {:?}",
                        other.name()
                    )));
                }
                (_, None) => (None, None),
            };
            let links = keys.links.clone();
            let mut ec = c.endpoint_config_with(local, keys);
            ec.behavior = behavior;
            let mut options = NodeOptions::from_tuning(&c.node);
            options.resume = picsou_core::StreamStart { transmit: resume_transmit, receive: resume_receive };
            let node = py
                .detach(|| match picsou_transports::open(&c, local, links, net.as_ref()) {
                    Ok(transport) => Node::start(ec, options, transport),
                    Err(e) => Err(NodeError::Transport(e)),
                })
                .map_err(|e| node_error(&e))?;
            let verifier = c.certificate_verifier(local.rsm);
            let signers = c.certificate_signers(local.rsm);
            let spec = c.rsm(local.rsm);
            Ok(Self {
                state: Mutex::new(State::Running(Arc::new(node))),
                next_seq: AtomicU64::new(resume_transmit),
                local,
                name: format!("{}/{}", spec.name, local.index),
                rsm_name: spec.name.clone(),
                kind: c.transport.kind.name(),
                verifier: if spec.fault == FaultModel::Bft { verifier } else { None },
                signers,
                _lease: lease,
            })
        });
        logs::flush(py);
        r
    }

    /// Submits message `seq` of this RSM's committed stream (0, 1, 2, ...: every replica of
    /// the sending RSM submits the whole stream; the protocol decides who sends what).
    /// `proof`: the message's commit certificate; under BFT, `None` signs one with the
    /// deployment's keys and a given one is checked first (`ProofError`). Blocks while the
    /// node is backlogged, up to `timeout` seconds (`None`: no limit), then `TimeoutError`.
    #[pyo3(signature = (seq, payload, proof=None, timeout=None))]
    fn submit(
        &self,
        py: Python<'_>,
        seq: &Bound<'_, PyAny>,
        payload: &Bound<'_, PyAny>,
        proof: Option<&Bound<'_, PyAny>>,
        timeout: Option<f64>,
    ) -> PyResult<()> {
        let seq = seq_arg(seq, "seq")?;
        let payload = Bytes::from(bytes_arg(payload, "payload")?);
        let timeout = seconds(timeout, "timeout")?;
        if self.live().is_none() {
            return Err(self.closed_error());
        }
        let proof = self.proof(py, seq, &payload, proof)?;
        let r = wait_for(py, timeout, |slice| {
            let Some(n) = self.live() else { return Step::Ready(Err(SubmitError::Stopped)) };
            match n.submit_timeout(seq, payload.clone(), proof.clone(), slice) {
                Err(SubmitError::Full) => Step::Pending,
                other => Step::Ready(other),
            }
        })?;
        match r {
            Some(Ok(())) => {
                self.next_seq.store(seq + 1, Ordering::SeqCst);
                Ok(())
            }
            Some(Err(e)) => Err(self.submit_error(py, e)),
            None => Err(self.submit_error(py, SubmitError::Full)),
        }
    }

    /// Like `submit`, but never blocks: `False` if the queue is full.
    #[pyo3(signature = (seq, payload, proof=None))]
    fn try_submit(
        &self,
        py: Python<'_>,
        seq: &Bound<'_, PyAny>,
        payload: &Bound<'_, PyAny>,
        proof: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        let seq = seq_arg(seq, "seq")?;
        let payload = Bytes::from(bytes_arg(payload, "payload")?);
        let Some(n) = self.live() else { return Err(self.closed_error()) };
        let proof = self.proof(py, seq, &payload, proof)?;
        match n.try_submit(seq, payload, proof) {
            Ok(()) => {
                self.next_seq.store(seq + 1, Ordering::SeqCst);
                Ok(true)
            }
            Err(SubmitError::Full) => Ok(false),
            Err(e) => {
                drop(n);
                Err(self.submit_error(py, e))
            }
        }
    }

    /// Submits `payloads` as messages `first, first + 1, …` in one queue operation: for an
    /// RSM that commits in batches, far cheaper per message than `submit` (one crossing into
    /// the node instead of one per message). `proofs`, if given, has one entry per payload
    /// (`None` entries as in `submit`). All or nothing: on any error (`PicsouError` for a wrong
    /// `first`, lengths that differ or a payload over the limit; `ProofError`; `TimeoutError`
    /// when the queue stayed full for `timeout` seconds) no message was submitted.
    #[pyo3(signature = (first, payloads, proofs=None, timeout=None))]
    fn submit_many(
        &self,
        py: Python<'_>,
        first: &Bound<'_, PyAny>,
        payloads: &Bound<'_, PyAny>,
        proofs: Option<&Bound<'_, PyAny>>,
        timeout: Option<f64>,
    ) -> PyResult<()> {
        let first = seq_arg(first, "first")?;
        let timeout = seconds(timeout, "timeout")?;
        if self.live().is_none() {
            return Err(self.closed_error());
        }
        let payloads = sequence_arg(payloads, "payloads")?;
        let proofs = match proofs.filter(|p| !p.is_none()) {
            Some(p) => {
                let p = sequence_arg(p, "proofs")?;
                if p.len() != payloads.len() {
                    return Err(misuse(format!(
                        "proofs: {} given for {} payloads (one per payload, or None)",
                        p.len(),
                        payloads.len()
                    )));
                }
                p.into_iter().map(Some).collect()
            }
            None => vec![None; payloads.len()],
        };
        let mut messages = Vec::with_capacity(payloads.len());
        for (i, (payload, proof)) in payloads.iter().zip(&proofs).enumerate() {
            let payload = Bytes::from(bytes_arg(payload, &format!("payloads[{i}]"))?);
            let seq = first.checked_add(i as u64).ok_or_else(|| misuse("first: the batch runs past the last seq"))?;
            let proof = self.proof(py, seq, &payload, proof.as_ref())?;
            messages.push((payload, proof));
        }
        let count = messages.len() as u64;
        let r = wait_for(py, timeout, |slice| {
            let Some(n) = self.live() else { return Step::Ready(Err(SubmitError::Stopped)) };
            // On `Full` the batch is given back whole, ready for the next slice.
            match n.submit_batch(first, &mut messages, Some(slice)) {
                Err(SubmitError::Full) => Step::Pending,
                other => Step::Ready(other),
            }
        })?;
        match r {
            Some(Ok(())) => {
                self.next_seq.store(first + count, Ordering::SeqCst);
                Ok(())
            }
            Some(Err(e)) => Err(self.submit_error(py, e)),
            None => Err(self.submit_error(py, SubmitError::Full)),
        }
    }

    /// The next message of the incoming stream as `(seq, payload)`, waiting at most `timeout`
    /// seconds (`None`: until one arrives); `None` on timeout or if the node is closed
    /// meanwhile. Raises `TransportError` if the node stopped on a failure.
    #[pyo3(signature = (timeout=None))]
    fn next_delivery<'py>(
        &self,
        py: Python<'py>,
        timeout: Option<f64>,
    ) -> PyResult<Option<(u64, Bound<'py, PyBytes>)>> {
        let timeout = seconds(timeout, "timeout")?;
        if self.live().is_none() {
            return Err(self.closed_error());
        }
        match self.next(py, timeout)? {
            Got::Value(d) => Ok(d.map(|d| Self::delivery_tuple(py, &d))),
            Got::Closed => Ok(None),
            Got::Stopped => Err(self.stopped_error(py)),
            Got::StateTransfer(next, at) => Err(state_transfer_error(&self.name, next, at)),
        }
    }

    /// Up to `max` deliveries: waits at most `timeout` seconds for the first (`None`: no
    /// limit), then takes what is ready without waiting. Empty on timeout.
    #[pyo3(signature = (max=1024, timeout=None))]
    fn take_deliveries<'py>(
        &self,
        py: Python<'py>,
        max: usize,
        timeout: Option<f64>,
    ) -> PyResult<Vec<(u64, Bound<'py, PyBytes>)>> {
        let timeout = seconds(timeout, "timeout")?;
        let Some(n) = self.live() else { return Err(self.closed_error()) };
        drop(n);
        let mut out = Vec::new();
        if max == 0 {
            return Ok(out);
        }
        match self.next(py, timeout)? {
            Got::Value(Some(d)) => out.push(Self::delivery_tuple(py, &d)),
            Got::Value(None) | Got::Closed => return Ok(out),
            Got::Stopped => return Err(self.stopped_error(py)),
            Got::StateTransfer(next, at) => return Err(state_transfer_error(&self.name, next, at)),
        }
        if let Some(n) = self.live() {
            let mut ready = Vec::new();
            n.take_deliveries(max - out.len(), &mut ready);
            out.extend(ready.iter().map(|d| Self::delivery_tuple(py, d)));
        }
        Ok(out)
    }

    /// Iterates over deliveries as `(seq, payload)`: each step waits at most `timeout`
    /// seconds (`None`: no limit); iteration ends when none arrives in time, after `count`
    /// deliveries, or when the node is closed.
    #[pyo3(signature = (timeout=None, count=None))]
    fn deliveries(slf: &Bound<'_, Self>, timeout: Option<f64>, count: Option<u64>) -> PyResult<DeliveryIterator> {
        let timeout = seconds(timeout, "timeout")?;
        if slf.get().live().is_none() {
            return Err(slf.get().closed_error());
        }
        Ok(DeliveryIterator { node: slf.clone().unbind(), timeout, remaining: count })
    }

    /// Application-managed dissemination: this RSM now holds `seq` of the incoming stream.
    fn local_has(&self, py: Python<'_>, seq: &Bound<'_, PyAny>) -> PyResult<()> {
        let seq = seq_arg(seq, "seq")?;
        let Some(n) = self.live() else { return Err(self.closed_error()) };
        let r = py.detach(|| n.local_has(seq));
        drop(n);
        r.map_err(|e| self.submit_error(py, e))
    }

    /// The commit certificate this node would attach to `payload` at `seq` (`b""` under CFT).
    fn certify<'py>(
        &self,
        py: Python<'py>,
        seq: &Bound<'_, PyAny>,
        payload: &Bound<'_, PyAny>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let seq = seq_arg(seq, "seq")?;
        let payload = bytes_arg(payload, "payload")?;
        let signers = self.signers()?;
        let c = py.detach(|| certify_with(signers, self.local.rsm, seq, &payload));
        Ok(PyBytes::new(py, &c))
    }

    /// Counters (refreshed every `[node] stats_interval_ms`): engine, transport, and the
    /// node's own (`transmitted`, `delivered`, `misbehaviors`, `peer_downs`, ...). After
    /// `close()`, the final ones.
    fn stats(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        if let Some(n) = self.live() {
            return to_py(py, &n.stats());
        }
        match &*self.state.lock().unwrap_or_else(PoisonError::into_inner) {
            State::Done(Outcome::Stats(s)) => to_py(py, s),
            _ => Err(self.closed_error()),
        }
    }

    /// Stops the node and returns its final counters (again on later calls). Raises
    /// `TransportError` if it had stopped on a failure.
    fn close(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        match self.finish(py) {
            Outcome::Stats(s) => to_py(py, &s),
            Outcome::Failed(kind, msg) => Err(outcome_error(kind, &format!("node {} stopped: {msg}", self.name))),
        }
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    /// Closes the node; a failure is raised only if no exception is already on its way.
    #[pyo3(signature = (exc_type=None, exc=None, tb=None))]
    fn __exit__(
        &self,
        py: Python<'_>,
        exc_type: Option<&Bound<'_, PyAny>>,
        exc: Option<&Bound<'_, PyAny>>,
        tb: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        let _ = (exc, tb);
        let r = self.close(py);
        match (r, exc_type.is_some_and(|t| !t.is_none())) {
            (Err(e), false) => Err(e),
            _ => Ok(false),
        }
    }

    /// The replica, as `rsm/id` (e.g. `alpha/2`).
    #[getter]
    fn replica(&self) -> &str {
        &self.name
    }
    /// Its RSM's name.
    #[getter]
    fn rsm(&self) -> &str {
        &self.rsm_name
    }
    /// Its id in its RSM.
    #[getter]
    fn index(&self) -> u16 {
        self.local.index
    }
    /// Transport kind in use.
    #[getter]
    fn transport(&self) -> &str {
        self.kind
    }
    /// The seq `submit` expects next.
    #[getter]
    fn next_seq(&self) -> u64 {
        self.next_seq.load(Ordering::SeqCst)
    }
    /// The QUACK of this RSM's outgoing stream: every seq below it is held by a correct
    /// replica of the other RSM (0 once closed).
    #[getter]
    fn quacked(&self) -> u64 {
        self.live().map_or(0, |n| n.quacked())
    }
    /// The cumulative ack of the incoming stream at this replica (0 once closed).
    #[getter]
    fn received(&self) -> u64 {
        self.live().map_or(0, |n| n.received())
    }
    /// `True` once `close()` was called.
    #[getter]
    fn closed(&self) -> bool {
        self.live().is_none()
    }
    /// `True` once the node thread has stopped (closed, or failed).
    #[getter]
    fn stopped(&self) -> bool {
        self.live().is_none_or(|n| n.is_stopped())
    }

    fn __repr__(&self) -> String {
        let state = if self.closed() {
            "closed"
        } else if self.stopped() {
            "stopped"
        } else {
            "running"
        };
        format!("picsou.Node({} over {}, {state})", self.name, self.kind)
    }
}

/// The iterator `Node.deliveries()` returns.
#[pyclass(module = "picsou")]
pub struct DeliveryIterator {
    node: Py<PyNode>,
    timeout: Option<Duration>,
    remaining: Option<u64>,
}

#[pymethods]
impl DeliveryIterator {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__<'py>(&mut self, py: Python<'py>) -> PyResult<Option<(u64, Bound<'py, PyBytes>)>> {
        if self.remaining == Some(0) {
            return Ok(None);
        }
        let node = self.node.bind(py).get();
        match node.next(py, self.timeout)? {
            Got::Value(Some(d)) => {
                if let Some(r) = &mut self.remaining {
                    *r -= 1;
                }
                Ok(Some(PyNode::delivery_tuple(py, &d)))
            }
            Got::Value(None) | Got::Closed => {
                self.remaining = Some(0);
                Ok(None)
            }
            Got::Stopped => Err(node.stopped_error(py)),
            Got::StateTransfer(next, at) => Err(state_transfer_error(&node.name, next, at)),
        }
    }
}

/// Adds the classes to the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyMemNetwork>()?;
    m.add_class::<PyNode>()?;
    m.add_class::<DeliveryIterator>()?;
    Ok(())
}

/// `config` with replica `local`'s identity from `key_file` (a path) or `identity` (its 32-byte
/// seed), if either is given.
fn with_identity(
    config: DeploymentConfig,
    local: ReplicaId,
    key_file: Option<&Bound<'_, PyAny>>,
    identity: Option<&Bound<'_, PyAny>>,
) -> PyResult<DeploymentConfig> {
    let key_file = key_file.filter(|k| !k.is_none());
    let identity = identity.filter(|k| !k.is_none());
    let identity = match (key_file, identity) {
        (None, None) => return Ok(config),
        (Some(_), Some(_)) => return Err(misuse("give key_file or identity, not both")),
        (Some(path), None) => {
            let path: std::path::PathBuf =
                path.extract().map_err(|_| crate::convert::wrong_type("key_file", "a path", path))?;
            read_identity_file(&path).map_err(|reason| invalid("key_file", reason))?
        }
        (None, Some(seed)) => {
            let bytes = bytes_arg(seed, "identity")?;
            let seed: [u8; 32] = bytes
                .as_slice()
                .try_into()
                .map_err(|_| invalid("identity", format!("{} bytes; an identity is a 32-byte seed", bytes.len())))?;
            Identity::from_seed(&seed)
        }
    };
    config.with_identity(local, identity).map_err(|e| deployment_error(&e, false))
}
