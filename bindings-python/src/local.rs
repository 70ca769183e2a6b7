//! `picsou.local(config)`: a whole deployment in this process, as `picsou local --in-process`
//! runs it (every replica a thread; any transport kind: `mem`, `tcp`, `uring`), returning the
//! receiver-confirmed report as a dict (the JSON of `picsou local --json`).
//!
//! Ctrl-C: the run waits in slices with the GIL released. On `KeyboardInterrupt` the run's
//! cancel flag is set and every replica's transport is woken: each is wrapped in
//! [`Interruptible`], whose next poll returns [`TransportError::Cancelled`], which stops its node
//! quietly (a cancellation is not logged as a failure); the run then unwinds in well under a
//! second and the exception is raised with every thread joined and every socket closed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, mpsc};
use std::time::Duration;

use picsou_core::ReplicaId;
use picsou_runtime::deployment::DeploymentConfig;
use picsou_runtime::local::{DeploymentReport, run_in_process};
use picsou_runtime::node::NodeError;
use picsou_runtime::transport::mem::MemNetwork;
use picsou_runtime::transport::{
    EncodedFrame, SendStatus, Transport, TransportError, TransportEvent, TransportStats, Wake,
};
use pyo3::prelude::*;

use crate::config::{apply_overrides, config_arg};
use crate::convert::to_py;
use crate::errors::{ProtocolError, internal, node_error, panic_message};
use crate::logs;
use crate::wait::recv;

/// A transport that is cancelled at its next `poll` once the run is interrupted.
struct Interruptible {
    inner: Box<dyn Transport>,
    cancel: Arc<AtomicBool>,
}

impl Transport for Interruptible {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    fn send(&mut self, peer: ReplicaId, frame: EncodedFrame) -> SendStatus {
        self.inner.send(peer, frame)
    }

    fn flush(&mut self) {
        self.inner.flush();
    }

    fn poll(&mut self, timeout: Option<Duration>, events: &mut Vec<TransportEvent>) -> Result<(), TransportError> {
        if self.cancel.load(Ordering::SeqCst) {
            return Err(TransportError::Cancelled);
        }
        self.inner.poll(timeout, events)
    }

    fn waker(&self) -> Arc<dyn Wake> {
        self.inner.waker()
    }

    fn set_receiving(&mut self, receiving: bool) {
        self.inner.set_receiving(receiving);
    }

    fn stats(&self) -> TransportStats {
        self.inner.stats()
    }
}

/// Why a run failed, carried from the run's thread (which never touches Python).
enum Fail {
    Node(NodeError),
    Internal(String),
}

type Outcome = Result<DeploymentReport, Fail>;

/// Runs the deployment on a thread of its own, waiting without the GIL.
pub(crate) fn run(py: Python<'_>, config: DeploymentConfig) -> PyResult<DeploymentReport> {
    let cancel = Arc::new(AtomicBool::new(false));
    let wakers: Arc<Mutex<Vec<Arc<dyn Wake>>>> = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = mpsc::channel::<Outcome>();
    {
        let (cancel, wakers) = (cancel.clone(), wakers.clone());
        std::thread::Builder::new()
            .name("picsou-local".into())
            .spawn(move || {
                let net = MemNetwork::new();
                let open = |c: &DeploymentConfig,
                            r: ReplicaId,
                            k: picsou_core::keys::LinkKeys|
                 -> Result<Box<dyn Transport>, TransportError> {
                    let inner = picsou_transports::open(c, r, k, Some(&net))?;
                    wakers.lock().unwrap_or_else(PoisonError::into_inner).push(inner.waker());
                    Ok(Box::new(Interruptible { inner, cancel: cancel.clone() }))
                };
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_in_process(&config, &open)));
                let out = match r {
                    Ok(Ok(report)) => Ok(report),
                    Ok(Err(e)) => Err(Fail::Node(e)),
                    Err(p) => Err(Fail::Internal(panic_message(p.as_ref()))),
                };
                let _ = tx.send(out);
            })
            .map_err(|e| internal(&format!("cannot start the deployment thread: {e}")))?;
    }
    let rx = Mutex::new(rx);
    match recv(py, &rx) {
        Ok(Some(Ok(report))) => Ok(report),
        Ok(Some(Err(Fail::Node(e)))) => Err(node_error(&e)),
        Ok(Some(Err(Fail::Internal(msg)))) => Err(internal(&msg)),
        Ok(None) => Err(internal("the deployment thread died")),
        Err(interrupt) => {
            cancel.store(true, Ordering::SeqCst);
            for w in wakers.lock().unwrap_or_else(PoisonError::into_inner).iter() {
                w.wake();
            }
            // Every node now stops at its next poll: wait for the run to unwind (no signal
            // checks here, a second Ctrl-C must not leave threads behind).
            let _ =
                py.detach(|| rx.lock().unwrap_or_else(PoisonError::into_inner).recv_timeout(Duration::from_secs(30)));
            Err(interrupt)
        }
    }
}

/// Runs a whole deployment in this process and returns `picsou local --json`'s report as a
/// dict. `config`: a `Config`, TOML text, a path or a dict (`None`: the embedded default, 4+4
/// replicas over TCP on loopback); the keywords override it like `picsou local`'s flags.
/// With `check=True` a run that is not `ok` raises `ProtocolError`.
#[pyfunction]
#[pyo3(signature = (config=None, /, *, transport=None, strategy=None, messages=None, size=None, senders=None,
    rate=None, base_port=None, check=false))]
#[allow(clippy::too_many_arguments)]
fn local(
    py: Python<'_>,
    config: Option<&Bound<'_, PyAny>>,
    transport: Option<&str>,
    strategy: Option<&str>,
    messages: Option<&Bound<'_, PyAny>>,
    size: Option<&Bound<'_, PyAny>>,
    senders: Option<&str>,
    rate: Option<&Bound<'_, PyAny>>,
    base_port: Option<&Bound<'_, PyAny>>,
    check: bool,
) -> PyResult<Py<PyAny>> {
    logs::refresh_level(py);
    let c = crate::errors::guard(|| {
        let c = config_arg(config)?;
        apply_overrides(&c, transport, strategy, messages, size, senders, rate, base_port)
    })?;
    let r = run(py, c);
    logs::flush(py);
    let report = r?;
    if check && !report.ok {
        let bad: Vec<String> = report
            .replicas
            .iter()
            .filter(|r| !r.complete || !r.in_order_exact)
            .map(|r| {
                format!(
                    "{} delivered {}/{}{}",
                    r.replica,
                    r.delivered,
                    r.expected,
                    r.violation.as_ref().map(|v| format!(" ({v})")).unwrap_or_default()
                )
            })
            .collect();
        return Err(ProtocolError::new_err(format!(
            "the deployment did not deliver every message in order, exactly once: {}",
            if bad.is_empty() { "incomplete directions".to_string() } else { bad.join("; ") }
        )));
    }
    to_py(py, &report)
}

/// Adds the function to the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(pyo3::wrap_pyfunction!(local, m)?)?;
    Ok(())
}
