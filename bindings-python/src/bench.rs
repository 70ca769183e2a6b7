//! `picsou.bench(...)`: the grid of `picsou bench` (strategies × message sizes × RSM sizes ×
//! transports), every point a whole deployment run in this process as `picsou.local` runs it,
//! receiver-confirmed; returns the report of `picsou bench --json` as a dict (plots are the
//! CLI's; from Python, plot the dict).

use std::cell::RefCell;
use std::time::Duration;

use picsou_core::{FaultModel, Strategy};
use picsou_runtime::bench::{BenchSpec, run};
use picsou_runtime::deployment::DeploymentConfig;
use picsou_runtime::transport::TransportKind;
use pyo3::prelude::*;

use crate::config::config_arg;
use crate::convert::to_py;
use crate::errors::invalid;
use crate::logs;

fn parse_kind(s: &str) -> PyResult<TransportKind> {
    match s {
        "mem" => Ok(TransportKind::Mem),
        "tcp" => Ok(TransportKind::Tcp),
        "uring" => Ok(TransportKind::Uring),
        "rdma" => Ok(TransportKind::Rdma),
        other => Err(invalid("transports", format!("unknown transport {other:?}: expected mem, tcp, uring or rdma"))),
    }
}

/// Runs a benchmark grid and returns `picsou bench --json`'s report as a dict. `config`: the
/// base deployment (tuning, batching, keys, transport options), as for `local`; the grid
/// replaces its strategy, transport kind, RSMs and load. A point that fails is recorded with
/// `ok = False` and its `error`; Ctrl-C stops the grid and raises `KeyboardInterrupt`.
#[pyfunction]
#[pyo3(name = "bench", signature = (config=None, /, *, strategies=None, sizes=None, n=None, transports=None, bft=false,
    bytes_per_run=16_000_000, min_messages=100, max_messages=100_000, timeout_s=60.0, base_port=24_000))]
#[allow(clippy::too_many_arguments)]
fn run_bench(
    py: Python<'_>,
    config: Option<&Bound<'_, PyAny>>,
    strategies: Option<Vec<String>>,
    sizes: Option<Vec<usize>>,
    n: Option<Vec<usize>>,
    transports: Option<Vec<String>>,
    bft: bool,
    bytes_per_run: u64,
    min_messages: u64,
    max_messages: u64,
    timeout_s: f64,
    base_port: u16,
) -> PyResult<Py<PyAny>> {
    logs::refresh_level(py);
    let base: DeploymentConfig = crate::errors::guard(|| config_arg(config))?;
    let defaults = BenchSpec::default();
    let strategies = match strategies {
        None => defaults.strategies.clone(),
        Some(v) => v
            .iter()
            .map(|s| s.parse::<Strategy>().map_err(|e| invalid("strategies", e.to_string())))
            .collect::<PyResult<Vec<_>>>()?,
    };
    let transports = match transports {
        None => defaults.transports.clone(),
        Some(v) => v.iter().map(|s| parse_kind(s)).collect::<PyResult<Vec<_>>>()?,
    };
    if !(timeout_s.is_finite() && timeout_s > 0.0) {
        return Err(invalid("timeout_s", "must be a positive number of seconds"));
    }
    let spec = BenchSpec {
        strategies,
        sizes: sizes.unwrap_or(defaults.sizes),
        ns: n.unwrap_or(defaults.ns),
        transports,
        fault: if bft { FaultModel::Bft } else { FaultModel::Cft },
        bytes_per_run,
        min_messages,
        max_messages,
        timeout: Duration::from_secs_f64(timeout_s),
        base_port,
    };
    spec.validate().map_err(|e| invalid("bench", e.to_string()))?;
    // A point's run releases the GIL while it waits; an interrupt (or another Python error)
    // stops the grid: the remaining points are skipped and the error is raised.
    let stopped: RefCell<Option<PyErr>> = RefCell::new(None);
    let mut runner = |c: &DeploymentConfig| {
        if stopped.borrow().is_some() {
            return Err("skipped: the benchmark was interrupted".into());
        }
        match crate::local::run(py, c.clone()) {
            Ok(report) => Ok(report),
            Err(e) if e.is_instance_of::<pyo3::exceptions::PyKeyboardInterrupt>(py) => {
                *stopped.borrow_mut() = Some(e);
                Err("interrupted".into())
            }
            Err(e) => Err(e.to_string().into()),
        }
    };
    let report = run(&spec, &base, "in-process", &mut runner, &mut |_, _, _| {});
    logs::flush(py);
    if let Some(e) = stopped.into_inner() {
        return Err(e);
    }
    let report = report.map_err(|e| invalid("bench", e.to_string()))?;
    to_py(py, &report)
}

/// Adds the function to the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(pyo3::wrap_pyfunction!(run_bench, m)?)?;
    Ok(())
}
