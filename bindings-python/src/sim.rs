//! The deterministic simulator from Python: `Scenario`, `simulate`, `SimResult`, and the
//! parallel runner behind `picsou.sweep`.
//!
//! Every flag of `picsou sim` is a keyword, spelled with underscores (`--sender-n` →
//! `sender_n`), and applied exactly as the command applies it (see `cli/src/sim.rs`): `n`, then
//! `stake` (whose length sets `n` unless `n` is given), then the per-side `sender_*` /
//! `receiver_*`; `send_window` raises `max_buffered` and `recv_window` when needed; lists
//! (`crash`, `byzantine`, `partition`) replace the scenario file's. One keyword has no flag:
//! `params`, a dict of engine tuning (`ProtocolParams`, e.g. `{"dup_threshold": 3}`), applied
//! before `phi_bits` and `send_window`.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Instant;

use picsou_core::adversary::Byzantine;
use picsou_core::{FaultModel, ProtocolParams, Strategy};
use picsou_sim::{Partition, Scenario, ScenarioOverrides, SimReport, run};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};
use serde::Deserialize;

use crate::convert::{
    Source, boolean, list_or_csv, number, py_to_toml, string, table_to_py, text_or_path, to_py, uint, wrong_type,
};
use crate::errors::{ProtocolError, core_config_error, guard, internal, invalid};
use crate::logs;
use crate::wait::recv;

/// Every keyword `Scenario`, `simulate` and `sweep` accept: the flags of `picsou sim`, plus
/// `params`.
pub const KEYWORDS: &[&str] = &[
    "strategy",
    "n",
    "sender_n",
    "receiver_n",
    "f",
    "sender_f",
    "receiver_f",
    "fault",
    "stake",
    "sender_stake",
    "receiver_stake",
    "size",
    "messages",
    "nic_mbps",
    "local_latency_ms",
    "cross_latency_ms",
    "cross_link_mbps",
    "loss",
    "local_loss",
    "jitter_ms",
    "partition",
    "crash",
    "byzantine",
    "seed",
    "phi_bits",
    "send_window",
    "cpu_us_per_frame",
    "cpu_ns_per_byte",
    "warmup_fraction",
    "max_virtual_seconds",
    "timeline_ms",
    "real_signatures",
    "params",
];

/// The keyword arguments, checked and typed; `None` = not given (keep the scenario's value).
#[derive(Default)]
struct Flags {
    overrides: ScenarioOverrides,
    /// Engine tuning, applied before the flags (so `phi_bits` and `send_window` win).
    params: Option<toml::Table>,
}

/// The closest keyword to a misspelt one, for the error message.
fn suggestion(key: &str) -> Option<&'static str> {
    fn distance(a: &str, b: &str) -> usize {
        let b: Vec<char> = b.chars().collect();
        let mut prev: Vec<usize> = (0..=b.len()).collect();
        for (i, ca) in a.chars().enumerate() {
            let mut cur = vec![i + 1];
            for (j, cb) in b.iter().enumerate() {
                cur.push((prev[j] + usize::from(ca != *cb)).min(prev[j + 1] + 1).min(cur[j] + 1));
            }
            prev = cur;
        }
        prev[b.len()]
    }
    let k = key.replace('-', "_");
    KEYWORDS.iter().copied().map(|w| (distance(&k, w), w)).filter(|(d, _)| *d <= 2).min().map(|(_, w)| w)
}

fn stakes(obj: &Bound<'_, PyAny>, field: &str) -> PyResult<Vec<u64>> {
    list_or_csv(obj, field, |x, f| {
        if let Ok(s) = x.cast::<PyString>() {
            let t = s.to_str()?;
            return t.parse::<u64>().map_err(|_| invalid(f, format!("{t:?} is not a stake (a positive integer)")));
        }
        uint(x, f, u64::MAX)
    })
}

fn partition_item(x: &Bound<'_, PyAny>, field: &str) -> PyResult<Partition> {
    if let Ok(s) = x.cast::<PyString>() {
        return Partition::from_str(s.to_str()?).map_err(|e| invalid(field, e));
    }
    if let Ok(d) = x.cast::<PyDict>() {
        let get = |k: &str| -> PyResult<f64> {
            match d.get_item(k)? {
                Some(v) => number(&v, &format!("{field}.{k}")),
                None => Err(invalid(field, format!("a partition dict needs start_ms and end_ms; {k} is missing"))),
            }
        };
        return Ok(Partition { start_ms: get("start_ms")?, end_ms: get("end_ms")? });
    }
    if x.is_instance_of::<PyTuple>() || x.is_instance_of::<PyList>() {
        let v: Vec<Bound<'_, PyAny>> = x.try_iter()?.collect::<PyResult<_>>()?;
        if v.len() == 2 {
            return Ok(Partition { start_ms: number(&v[0], field)?, end_ms: number(&v[1], field)? });
        }
        return Err(invalid(field, format!("a partition is (start_ms, end_ms): got {} values", v.len())));
    }
    Err(wrong_type(field, "\"START_MS-END_MS\", (start_ms, end_ms) or a dict", x))
}

fn partitions(obj: &Bound<'_, PyAny>) -> PyResult<Vec<Partition>> {
    // One partition given directly: (10, 20) or [10, 20].
    if obj.is_instance_of::<PyTuple>() || obj.is_instance_of::<PyList>() {
        let v: Vec<Bound<'_, PyAny>> = obj.try_iter()?.collect::<PyResult<_>>()?;
        if v.len() == 2 && v.iter().all(|x| x.is_instance_of::<PyInt>() || x.is_instance_of::<PyFloat>()) {
            return Ok(vec![partition_item(obj, "partition")?]);
        }
    }
    list_or_csv(obj, "partition", partition_item)
}

fn behavior(name: &str, b: &str) -> PyResult<(String, Byzantine)> {
    let b = Byzantine::from_str(b.trim()).map_err(|e| invalid("byzantine", format!("{}: {e}", name.trim())))?;
    Ok((name.trim().to_string(), b))
}

fn byzantine(obj: &Bound<'_, PyAny>) -> PyResult<Vec<(String, Byzantine)>> {
    if let Ok(d) = obj.cast::<PyDict>() {
        return d
            .iter()
            .map(|(k, v)| behavior(&string(&k, "byzantine keys")?, &string(&v, "byzantine values")?))
            .collect();
    }
    list_or_csv(obj, "byzantine", |x, f| {
        let s = string(x, f)?;
        let (name, b) = s
            .split_once('=')
            .ok_or_else(|| invalid(f, format!("{s:?} should be REPLICA=BEHAVIOUR, e.g. r1=inflate-ack")))?;
        behavior(name, b)
    })
}

fn usize_arg(v: &Bound<'_, PyAny>, k: &str) -> PyResult<usize> {
    Ok(uint(v, k, usize::MAX as u64)? as usize)
}

impl Flags {
    /// Checks and converts the keyword arguments. Unknown keywords are a `TypeError`, like
    /// any Python function's.
    fn parse(kwargs: Option<&Bound<'_, PyDict>>, function: &str) -> PyResult<Self> {
        let mut f = Self::default();
        let Some(kwargs) = kwargs else { return Ok(f) };
        for (k, v) in kwargs.iter() {
            let key = string(&k, "keyword")?;
            if v.is_none() && KEYWORDS.contains(&key.as_str()) {
                continue;
            }
            let k = key.as_str();
            let o = &mut f.overrides;
            match k {
                "strategy" => {
                    o.strategy = Some(Strategy::from_str(&string(&v, k)?).map_err(|e| core_config_error(&e))?)
                }
                "n" => o.n = Some(usize_arg(&v, k)?),
                "sender_n" => o.sender_n = Some(usize_arg(&v, k)?),
                "receiver_n" => o.receiver_n = Some(usize_arg(&v, k)?),
                "f" => o.f = Some(uint(&v, k, u64::MAX)?),
                "sender_f" => o.sender_f = Some(uint(&v, k, u64::MAX)?),
                "receiver_f" => o.receiver_f = Some(uint(&v, k, u64::MAX)?),
                "fault" => {
                    o.fault = Some(match string(&v, k)?.as_str() {
                        "cft" => FaultModel::Cft,
                        "bft" => FaultModel::Bft,
                        other => return Err(invalid("fault", format!("{other:?}: expected \"cft\" or \"bft\""))),
                    })
                }
                "stake" => o.stake = Some(stakes(&v, k)?),
                "sender_stake" => o.sender_stake = Some(stakes(&v, k)?),
                "receiver_stake" => o.receiver_stake = Some(stakes(&v, k)?),
                "size" => o.size = Some(usize_arg(&v, k)?),
                "messages" => o.messages = Some(uint(&v, k, u64::MAX)?),
                "nic_mbps" => o.nic_mbps = Some(number(&v, k)?),
                "local_latency_ms" => o.local_latency_ms = Some(number(&v, k)?),
                "cross_latency_ms" => o.cross_latency_ms = Some(number(&v, k)?),
                "loss" => o.loss = Some(number(&v, k)?),
                "local_loss" => o.local_loss = Some(number(&v, k)?),
                "jitter_ms" => o.jitter_ms = Some(number(&v, k)?),
                "cpu_us_per_frame" => o.cpu_us_per_frame = Some(number(&v, k)?),
                "cpu_ns_per_byte" => o.cpu_ns_per_byte = Some(number(&v, k)?),
                "warmup_fraction" => o.warmup_fraction = Some(number(&v, k)?),
                "max_virtual_seconds" => o.max_virtual_seconds = Some(number(&v, k)?),
                "timeline_ms" => o.timeline_ms = Some(number(&v, k)?),
                "cross_link_mbps" => o.cross_link_mbps = Some(number(&v, k)?),
                "partition" => o.partitions = Some(partitions(&v)?),
                "crash" => o.crash = Some(list_or_csv(&v, k, string)?),
                "byzantine" => o.byzantine = Some(byzantine(&v)?),
                "seed" => o.seed = Some(uint(&v, k, u64::MAX)?),
                "phi_bits" => o.phi_bits = Some(uint(&v, k, u64::from(u32::MAX))? as u32),
                "send_window" => o.send_window = Some(uint(&v, k, u64::MAX)?),
                "real_signatures" => o.real_signatures = Some(boolean(&v, k)?),
                "params" => match py_to_toml(&v, "params")? {
                    toml::Value::Table(t) => f.params = Some(t),
                    _ => return Err(wrong_type("params", "a dict of engine tuning", &v)),
                },
                other => {
                    let hint = suggestion(other).map(|s| format!("; did you mean '{s}'?")).unwrap_or_default();
                    return Err(PyTypeError::new_err(format!(
                        "{function}() got an unexpected keyword argument '{other}'{hint}"
                    )));
                }
            }
        }
        Ok(f)
    }

    /// Applies the keywords to `s`: `params` first, then the overrides `picsou sim`'s flags
    /// apply too (one shared definition in the core).
    fn apply(self, s: &mut Scenario) -> PyResult<()> {
        if let Some(over) = self.params {
            let mut table = toml::Table::try_from(&s.params).map_err(|e| internal(&e.to_string()))?;
            for (k, v) in over {
                table.insert(k, v);
            }
            s.params = ProtocolParams::deserialize(toml::Value::Table(table))
                .map_err(|e| invalid("params", e.to_string().trim_end()))?;
        }
        self.overrides.apply(s).map_err(|e| core_config_error(&e))
    }
}

/// A simulated experiment: a scenario file (or the defaults) with keyword overrides, checked.
///
/// `Scenario(base=None, /, **keywords)`: `base` is TOML text, a path to a scenario file, a
/// dict of the file's fields, or another `Scenario`; every keyword is a flag of `picsou sim`.
#[pyclass(frozen, module = "picsou", name = "Scenario")]
pub struct PyScenario {
    inner: Scenario,
    overrides: Py<PyDict>,
}

impl PyScenario {
    /// Builds and checks a scenario; `function` names the caller in `TypeError`s.
    pub fn build(
        py: Python<'_>,
        base: Option<&Bound<'_, PyAny>>,
        kwargs: Option<&Bound<'_, PyDict>>,
        function: &str,
    ) -> PyResult<Self> {
        let overrides = PyDict::new(py);
        let mut s = match base {
            None => Scenario::default(),
            Some(b) if b.is_none() => Scenario::default(),
            Some(b) => {
                if let Ok(other) = b.cast::<Self>() {
                    let o = other.get();
                    overrides.update(o.overrides.bind(py).as_mapping())?;
                    o.inner.clone()
                } else if b.is_instance_of::<PyDict>() {
                    let text = toml::to_string(&py_to_toml(b, "")?).map_err(|e| invalid("", e.to_string()))?;
                    Scenario::from_toml(&text, "<dict>").map_err(|e| core_config_error(&e))?
                } else {
                    match text_or_path(b, "scenario")? {
                        Source::Text(t) => Scenario::from_toml(&t, "<text>").map_err(|e| core_config_error(&e))?,
                        Source::Path(p) => {
                            let name = p.display().to_string();
                            let text = std::fs::read_to_string(&p).map_err(|e| {
                                crate::errors::config_error(
                                    Some(&name),
                                    None,
                                    None,
                                    "",
                                    &format!("cannot read scenario file: {e}"),
                                )
                            })?;
                            Scenario::from_toml(&text, &name).map_err(|e| core_config_error(&e))?
                        }
                    }
                }
            }
        };
        Flags::parse(kwargs, function)?.apply(&mut s)?;
        if let Some(k) = kwargs {
            for (key, v) in k.iter() {
                if !v.is_none() {
                    overrides.set_item(key, v)?;
                }
            }
        }
        s.resolve().map_err(|e| core_config_error(&e))?;
        Ok(Self { inner: s, overrides: overrides.unbind() })
    }

    /// The core scenario.
    pub fn scenario(&self) -> &Scenario {
        &self.inner
    }
}

#[pymethods]
impl PyScenario {
    #[new]
    #[pyo3(signature = (base=None, /, **overrides))]
    fn new(py: Python<'_>, base: Option<&Bound<'_, PyAny>>, overrides: Option<&Bound<'_, PyDict>>) -> PyResult<Self> {
        guard(|| Self::build(py, base, overrides, "Scenario"))
    }

    /// A copy with more keyword overrides.
    #[pyo3(signature = (**overrides))]
    fn replace(slf: &Bound<'_, Self>, overrides: Option<&Bound<'_, PyDict>>) -> PyResult<Self> {
        guard(|| Self::build(slf.py(), Some(slf.as_any()), overrides, "replace"))
    }

    /// The effective scenario as TOML (what `picsou sim --print-scenario` prints).
    fn to_toml(&self) -> String {
        self.inner.to_toml()
    }

    /// The effective scenario as a dict (the TOML file's fields).
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let t: toml::Table = toml::from_str(&self.inner.to_toml()).map_err(|e| internal(&e.to_string()))?;
        table_to_py(py, &t)
    }

    /// The keyword overrides this scenario was built with (those of its base included).
    #[getter]
    fn overrides<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        self.overrides.bind(py).copy()
    }

    /// Runs the scenario (see `simulate`).
    fn run(slf: &Bound<'_, Self>) -> PyResult<SimResult> {
        let py = slf.py();
        let r = run_one(py, &slf.get().inner);
        logs::flush(py);
        let (report, secs) = r?;
        Ok(SimResult::new(report, secs, slf))
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        let o = self.overrides.bind(py).repr().map(|r| r.to_string()).unwrap_or_default();
        format!(
            "picsou.Scenario(<{} from {} to {} replicas>, overrides={o})",
            self.inner.strategy.name(),
            self.inner.sender_n,
            self.inner.receiver_n
        )
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other.cast::<Self>().is_ok_and(|o| o.get().inner == self.inner)
    }
}

/// What one simulation measured: the fields of `picsou sim --json`, as attributes and as
/// `to_dict()`; plus `params` (the keyword overrides), `scenario` and `real_seconds`.
#[pyclass(frozen, module = "picsou")]
pub struct SimResult {
    report: SimReport,
    real_seconds: f64,
    scenario: Py<PyScenario>,
}

impl SimResult {
    fn new(report: SimReport, real_seconds: f64, scenario: &Bound<'_, PyScenario>) -> Self {
        Self { report, real_seconds, scenario: scenario.clone().unbind() }
    }
}

#[pymethods]
impl SimResult {
    /// The report as a dict, equal to `json.loads` of `picsou sim --json`'s output.
    fn to_dict(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        to_py(py, &self.report)
    }

    /// Raises `ProtocolError` listing the violations if the C3B checker found any.
    fn check(&self) -> PyResult<()> {
        if self.report.c3b_ok {
            return Ok(());
        }
        Err(ProtocolError::new_err(format!(
            "C3B violated ({} {} from {} to {}, seed {}): {}",
            self.report.strategy,
            self.report.fault,
            self.report.sender_n,
            self.report.receiver_n,
            self.report.seed,
            self.report.violations.join("; ")
        )))
    }

    /// The scenario that ran.
    #[getter]
    fn scenario(&self, py: Python<'_>) -> Py<PyScenario> {
        self.scenario.clone_ref(py)
    }
    /// The keyword overrides of the scenario (in a sweep: the grid point).
    #[getter]
    fn params<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        self.scenario.bind(py).get().overrides.bind(py).copy()
    }
    /// Wall-clock seconds the run took (not part of the report, which is deterministic).
    #[getter]
    fn real_seconds(&self) -> f64 {
        self.real_seconds
    }
    /// Strategy name (`picsou`, `ost`, `ata`, `ll`, `otu`).
    #[getter]
    fn strategy(&self) -> &str {
        &self.report.strategy
    }
    /// Replicas of the sending RSM.
    #[getter]
    fn sender_n(&self) -> usize {
        self.report.sender_n
    }
    /// Replicas of the receiving RSM.
    #[getter]
    fn receiver_n(&self) -> usize {
        self.report.receiver_n
    }
    /// Faulty stake the sending RSM tolerates.
    #[getter]
    fn sender_f(&self) -> u64 {
        self.report.sender_f
    }
    /// Faulty stake the receiving RSM tolerates.
    #[getter]
    fn receiver_f(&self) -> u64 {
        self.report.receiver_f
    }
    /// Fault model (`cft` or `bft`).
    #[getter]
    fn fault(&self) -> &str {
        &self.report.fault
    }
    /// Bytes per message.
    #[getter]
    fn size(&self) -> usize {
        self.report.size
    }
    /// Messages RSM 0 sent.
    #[getter]
    fn messages(&self) -> u64 {
        self.report.messages
    }
    /// Seed of the run.
    #[getter]
    fn seed(&self) -> u64 {
        self.report.seed
    }
    /// True if the C3B checker found no violation.
    #[getter]
    fn c3b_ok(&self) -> bool {
        self.report.c3b_ok
    }
    /// What went wrong, one sentence each.
    #[getter]
    fn violations(&self) -> Vec<String> {
        self.report.violations.clone()
    }
    /// Messages delivered by every correct receiver.
    #[getter]
    fn delivered(&self) -> u64 {
        self.report.delivered
    }
    /// Messages per second of virtual time after the warm-up.
    #[getter]
    fn throughput_msgs_per_s(&self) -> f64 {
        self.report.throughput_msgs_per_s
    }
    /// Throughput in MB/s (10^6 bytes).
    #[getter]
    fn throughput_mb_per_s(&self) -> f64 {
        self.report.throughput_mb_per_s
    }
    /// Bytes every replica sent per message.
    #[getter]
    fn wire_bytes_per_message(&self) -> f64 {
        self.report.wire_bytes_per_message
    }
    /// Bytes sent between the two RSMs per message.
    #[getter]
    fn cross_bytes_per_message(&self) -> f64 {
        self.report.cross_bytes_per_message
    }
    /// Resends by honest sender replicas.
    #[getter]
    fn resends(&self) -> u64 {
        self.report.resends
    }
    /// Cross-RSM copies per message plus the most resends any message needed.
    #[getter]
    fn max_sends_per_message(&self) -> u64 {
        self.report.max_sends_per_message
    }
    /// Median latency in ms.
    #[getter]
    fn latency_p50_ms(&self) -> f64 {
        self.report.latency_p50_ms
    }
    /// 99th percentile latency in ms.
    #[getter]
    fn latency_p99_ms(&self) -> f64 {
        self.report.latency_p99_ms
    }
    /// Virtual time at the end of the run, in seconds.
    #[getter]
    fn virtual_seconds(&self) -> f64 {
        self.report.virtual_seconds
    }
    /// Frames sent by all replicas.
    #[getter]
    fn frames(&self) -> u64 {
        self.report.frames
    }
    /// Accusations of Byzantine replicas by honest replicas.
    #[getter]
    fn misbehaviors_detected(&self) -> u64 {
        self.report.misbehaviors_detected
    }
    /// Engine counters summed over every replica, as a dict.
    #[getter]
    fn engine(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        to_py(py, &self.report.engine)
    }
    /// Messages completed per interval of virtual time, as a dict (`interval_ms`, `delivered`).
    #[getter]
    fn timeline(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        to_py(py, &self.report.timeline)
    }
    /// Virtual time of the first fault in ms, or None.
    #[getter]
    fn fault_onset_ms(&self) -> Option<f64> {
        self.report.fault_onset_ms
    }
    /// From the first fault until the rate is back within 10% of its later steady state, in
    /// ms, or None.
    #[getter]
    fn recovery_ms(&self) -> Option<f64> {
        self.report.recovery_ms
    }

    fn __repr__(&self) -> String {
        let r = &self.report;
        format!(
            "picsou.SimResult({} {}->{} {} f={}/{}, {} x {} B: c3b_ok={}, delivered={}, {:.0} msg/s, {:.2} MB/s)",
            r.strategy,
            r.sender_n,
            r.receiver_n,
            r.fault,
            r.sender_f,
            r.receiver_f,
            r.messages,
            r.size,
            r.c3b_ok,
            r.delivered,
            r.throughput_msgs_per_s,
            r.throughput_mb_per_s
        )
    }
}

type RunOutcome = Result<(SimReport, f64), String>;

/// Runs one scenario on a worker thread and times it; panics become `Err`.
fn run_timed(s: &Scenario) -> RunOutcome {
    let started = Instant::now();
    match catch_unwind(AssertUnwindSafe(|| run(s))) {
        Ok(Ok(r)) => Ok((r, started.elapsed().as_secs_f64())),
        Ok(Err(e)) => Err(format!("invalid scenario: {e}")),
        Err(p) => Err(crate::errors::panic_message(p.as_ref())),
    }
}

/// Runs one scenario on a thread of its own, waiting without the GIL and answering Ctrl-C (the
/// simulation then finishes in the background and its result is dropped).
fn run_one(py: Python<'_>, s: &Scenario) -> PyResult<(SimReport, f64)> {
    logs::refresh_level(py);
    let (tx, rx) = mpsc::channel();
    let s = s.clone();
    std::thread::Builder::new()
        .name("picsou-sim".into())
        .spawn(move || {
            let _ = tx.send(run_timed(&s));
        })
        .map_err(|e| internal(&format!("cannot start a simulation thread: {e}")))?;
    let rx = std::sync::Mutex::new(rx);
    let out = recv(py, &rx)?;
    out.unwrap_or_else(|| Err("the simulation thread died".into())).map_err(|e| internal(&e))
}

/// Runs a scenario in the deterministic simulator.
///
/// `simulate(base=None, /, **keywords)`: `base` and keywords as for `Scenario` (every flag of
/// `picsou sim`). Returns a `SimResult`; a C3B violation is in the result (`c3b_ok`,
/// `violations`, `check()`), not an exception. Invalid scenarios raise `ConfigError`.
#[pyfunction]
#[pyo3(signature = (base=None, /, **overrides))]
fn simulate(
    py: Python<'_>,
    base: Option<&Bound<'_, PyAny>>,
    overrides: Option<&Bound<'_, PyDict>>,
) -> PyResult<SimResult> {
    let sc = Bound::new(py, guard(|| PyScenario::build(py, base, overrides, "simulate"))?)?;
    PyScenario::run(&sc)
}

/// Runs scenarios on `threads` worker threads (default: one per CPU) with the GIL released;
/// returns the results in the same order. Ctrl-C stops handing out runs and raises
/// `KeyboardInterrupt` at once (runs in progress finish in the background, unreported).
#[pyfunction]
#[pyo3(signature = (scenarios, threads=None))]
fn run_scenarios(
    py: Python<'_>,
    scenarios: Vec<Bound<'_, PyScenario>>,
    threads: Option<&Bound<'_, PyAny>>,
) -> PyResult<Vec<SimResult>> {
    logs::refresh_level(py);
    let threads = match threads {
        Some(t) if !t.is_none() => {
            let t = uint(t, "threads", 4096)? as usize;
            if t == 0 {
                return Err(invalid("threads", "must be at least 1"));
            }
            t
        }
        _ => std::thread::available_parallelism().map(usize::from).unwrap_or(1),
    };
    let list: Arc<Vec<Scenario>> = Arc::new(scenarios.iter().map(|s| s.get().inner.clone()).collect());
    let total = list.len();
    let next = Arc::new(AtomicUsize::new(0));
    let cancel = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel::<(usize, RunOutcome)>();
    for w in 0..threads.min(total) {
        let (list, next, cancel, tx) = (list.clone(), next.clone(), cancel.clone(), tx.clone());
        std::thread::Builder::new()
            .name(format!("picsou-sweep-{w}"))
            .spawn(move || {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= list.len() || cancel.load(Ordering::SeqCst) {
                        break;
                    }
                    if tx.send((i, run_timed(&list[i]))).is_err() {
                        break;
                    }
                }
            })
            .map_err(|e| internal(&format!("cannot start a sweep thread: {e}")))?;
    }
    drop(tx);
    let rx = std::sync::Mutex::new(rx);
    let mut results: Vec<Option<RunOutcome>> = (0..total).map(|_| None).collect();
    let mut got = 0;
    while got < total {
        let step = recv(py, &rx);
        match step {
            Ok(Some((i, r))) => {
                results[i] = Some(r);
                got += 1;
            }
            Ok(_) => return Err(internal("a sweep thread died")),
            Err(e) => {
                cancel.store(true, Ordering::SeqCst);
                logs::flush(py);
                return Err(e);
            }
        }
    }
    logs::flush(py);
    let mut out = Vec::with_capacity(total);
    for (i, (r, sc)) in results.into_iter().zip(&scenarios).enumerate() {
        match r {
            Some(Ok((report, secs))) => out.push(SimResult::new(report, secs, sc)),
            Some(Err(e)) => return Err(internal(&format!("run {i}: {e}"))),
            None => return Err(internal(&format!("run {i} produced no result"))),
        }
    }
    Ok(out)
}

/// Adds the classes and functions to the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyScenario>()?;
    m.add_class::<SimResult>()?;
    m.add_function(pyo3::wrap_pyfunction!(simulate, m)?)?;
    m.add_function(pyo3::wrap_pyfunction!(run_scenarios, m)?)?;
    m.add("SIM_KEYWORDS", KEYWORDS.to_vec())?;
    Ok(())
}
