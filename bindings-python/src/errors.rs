//! The exception hierarchy, and the one place where Rust errors become Python exceptions.
//!
//! ```text
//! PicsouError                 base of everything the package raises on purpose
//! ├── ConfigError             an invalid deployment, scenario or setting (.field, .reason,
//! │                           .file, .line, .column)
//! ├── TransportError          a transport could not start or failed (port in use, ...)
//! ├── ProtocolError           the protocol's guarantees did not hold (C3B violations)
//! │   └── ProofError          a commit certificate does not verify
//! └── MisuseError             the API was used wrongly (closed node, out-of-order submit, ...)
//! ```
//!
//! Wrong argument *types* raise the built-in `TypeError`; a submission that times out raises
//! the built-in `TimeoutError`; Ctrl-C raises `KeyboardInterrupt`. A Rust panic is caught
//! and raised as a plain `PicsouError` ("internal error"), never as pyo3's `PanicException`.

use std::panic::{AssertUnwindSafe, catch_unwind};

use picsou_core::ConfigError as CoreConfigError;
use picsou_core::proof::ProofError as CoreProofError;
use picsou_runtime::TransportError as RtTransportError;
use picsou_runtime::deployment::DeploymentError;
use picsou_runtime::node::NodeError;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;

pyo3::create_exception!(picsou, PicsouError, PyException, "Base class of every error picsou raises on purpose.");
pyo3::create_exception!(
    picsou,
    ConfigError,
    PicsouError,
    "An invalid deployment, scenario or setting. `field` names it (e.g. `rsm[0].f`), `reason` says \
     what is wrong; `file`, `line` and `column` locate it when it comes from a file."
);
pyo3::create_exception!(picsou, TransportError, PicsouError, "A transport could not start, or failed.");
pyo3::create_exception!(picsou, ProtocolError, PicsouError, "The protocol's guarantees did not hold.");
pyo3::create_exception!(picsou, ProofError, ProtocolError, "A commit certificate does not verify.");
pyo3::create_exception!(
    picsou,
    MisuseError,
    PicsouError,
    "The API was used wrongly: a closed node, an out-of-order submission, a bad argument value."
);

pyo3::create_exception!(
    picsou,
    StateTransferNeeded,
    PicsouError,
    "This replica fell further behind than its peers retain: repairs can no longer bring it back. \
     `next` is the first seq it lacks, `peers_at` where its peers are. Install a snapshot of the \
     RSM's state taken at some seq `s >= next` (a peer's checkpoint) and start a new `Node` with \
     `resume_receive=s`."
);

/// A `StateTransferNeeded` with its attributes set.
pub fn state_transfer_error(node: &str, next: u64, peers_at: u64) -> PyErr {
    let err = StateTransferNeeded::new_err(format!(
        "node {node}: state transfer needed: it lacks seq {next} and its peers (at {peers_at}) no longer retain it"
    ));
    Python::attach(|py| {
        let value = err.value(py);
        let _ = value.setattr("next", next);
        let _ = value.setattr("peers_at", peers_at);
    });
    err
}

/// Adds the exception classes to the module.
pub fn register(py: Python<'_>, m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("PicsouError", py.get_type::<PicsouError>())?;
    m.add("ConfigError", py.get_type::<ConfigError>())?;
    m.add("TransportError", py.get_type::<TransportError>())?;
    m.add("ProtocolError", py.get_type::<ProtocolError>())?;
    m.add("ProofError", py.get_type::<ProofError>())?;
    m.add("MisuseError", py.get_type::<MisuseError>())?;
    m.add("StateTransferNeeded", py.get_type::<StateTransferNeeded>())?;
    Ok(())
}

/// A `ConfigError` with its attributes set. `file`, `line` and `column` are `None` when unknown.
pub fn config_error(
    file: Option<&str>,
    line: Option<usize>,
    column: Option<usize>,
    field: &str,
    reason: &str,
) -> PyErr {
    let mut msg = String::new();
    if let Some(f) = file {
        msg.push_str(f);
        match (line, column) {
            (Some(l), Some(c)) => msg.push_str(&format!(":{l}:{c}")),
            (Some(l), None) => msg.push_str(&format!(":{l}")),
            _ => {}
        }
        msg.push_str(": ");
    }
    if !field.is_empty() {
        msg.push_str(field);
        msg.push_str(": ");
    }
    msg.push_str(reason);
    let err = ConfigError::new_err(msg);
    Python::attach(|py| {
        let v = err.value(py);
        // Setting attributes on a fresh exception instance cannot fail.
        let _ = v.setattr("field", field);
        let _ = v.setattr("reason", reason);
        let _ = v.setattr("file", file);
        let _ = v.setattr("line", line);
        let _ = v.setattr("column", column);
    });
    err
}

/// A `ConfigError` for a named field with no file.
pub fn invalid(field: &str, reason: impl AsRef<str>) -> PyErr {
    config_error(None, None, None, field, reason.as_ref())
}

/// A deployment file error. `located`: whether its line and column refer to text the user
/// wrote (false for TOML this package generated, e.g. from a dict).
pub fn deployment_error(e: &DeploymentError, located: bool) -> PyErr {
    let (line, column) = if located { (e.line, e.column) } else { (None, None) };
    config_error(Some(&e.file), line, column, &e.field, &e.reason)
}

/// A core configuration error (scenario validation, TOML parsing of a scenario).
pub fn core_config_error(e: &CoreConfigError) -> PyErr {
    match e {
        CoreConfigError::Invalid { field, reason } => invalid(field, reason),
        CoreConfigError::Parse { source_name, message } => {
            config_error(Some(source_name), None, None, "", message.trim_end())
        }
        other => invalid("", other.to_string()),
    }
}

/// A transport error.
pub fn transport_error(e: &RtTransportError) -> PyErr {
    TransportError::new_err(e.to_string())
}

/// A node that failed to start or stopped with an error.
pub fn node_error(e: &NodeError) -> PyErr {
    match e {
        NodeError::Config(c) => core_config_error(c),
        NodeError::Transport(t) => transport_error(t),
        NodeError::Panicked(msg) => internal(msg),
        other => TransportError::new_err(other.to_string()),
    }
}

/// A commit certificate that does not verify.
pub fn proof_error(e: &CoreProofError) -> PyErr {
    ProofError::new_err(e.to_string())
}

/// API misuse.
pub fn misuse(msg: impl Into<String>) -> PyErr {
    MisuseError::new_err(msg.into())
}

/// A bug: a panic caught at the boundary.
pub fn internal(msg: &str) -> PyErr {
    PicsouError::new_err(format!("internal error in picsou (please report it): {msg}"))
}

pub use picsou_runtime::node::panic_message;

/// Runs `f`, turning a panic into a `PicsouError` instead of pyo3's `PanicException` (a
/// `BaseException` that `except Exception` would not catch).
pub fn guard<T>(f: impl FnOnce() -> PyResult<T>) -> PyResult<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(p) => Err(internal(&panic_message(p.as_ref()))),
    }
}
