//! Rust `tracing` events forwarded to Python's `logging`, under the logger `picsou` (a target
//! `picsou_runtime::node` becomes the logger `picsou.runtime.node`).
//!
//! Node and transport threads are Rust threads: they must never wait for the GIL (a Python
//! thread that holds it while waiting for them, e.g. in a destructor, would deadlock), and must
//! never touch the interpreter while it shuts down. So a small `tracing` layer only formats an
//! event and appends it to a bounded in-memory queue; Python threads empty the queue into
//! `logging`:
//! - a daemon thread, `picsou-log`, started by the `picsou` package at import
//!   ([`pump_logs`]) and stopped by an `atexit` hook before the interpreter finalizes;
//! - every API call, before it returns ([`flush`]), so that a call's own log lines are
//!   emitted before its result and in order.
//!
//! Filtering: events below the effective level of the `picsou` logger are not even formatted.
//! That level is read at every API call and by the pump every 100 ms, so
//! `logging.getLogger("picsou").setLevel(logging.DEBUG)` takes effect at once for the calling
//! thread and within 100 ms for background threads. With no configuration Python's default
//! (WARNING) applies, like the `picsou` command's default. If more than 10,000 records are
//! waiting (a flood of debug lines), new ones are dropped and counted, and a warning says how
//! many.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, PoisonError};
use std::time::Duration;

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;

/// Most records waiting to be emitted.
const CAPACITY: usize = 10_000;

/// One formatted event.
struct Record {
    level: Level,
    logger: String,
    message: String,
    file: Option<&'static str>,
    line: Option<u32>,
    thread: String,
}

static QUEUE: Mutex<VecDeque<Record>> = Mutex::new(VecDeque::new());
static READY: Condvar = Condvar::new();
static DROPPED: AtomicU64 = AtomicU64::new(0);
static STOP: AtomicBool = AtomicBool::new(false);
/// Most verbose level forwarded: 0 off, 1 error, 2 warn, 3 info, 4 debug, 5 trace.
static MAX_LEVEL: AtomicU8 = AtomicU8::new(2);

fn rank(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 1,
        Level::WARN => 2,
        Level::INFO => 3,
        Level::DEBUG => 4,
        Level::TRACE => 5,
    }
}

/// The Python `logging` level of a `tracing` level (TRACE is 5, below DEBUG).
fn python_level(level: &Level) -> i32 {
    match *level {
        Level::ERROR => 40,
        Level::WARN => 30,
        Level::INFO => 20,
        Level::DEBUG => 10,
        Level::TRACE => 5,
    }
}

/// The `tracing` levels a Python effective level lets through.
fn rank_for_python_level(level: i64) -> u8 {
    match level {
        ..=5 => 5,
        6..=10 => 4,
        11..=20 => 3,
        21..=30 => 2,
        31..=40 => 1,
        _ => 0,
    }
}

/// `picsou_runtime::node` → `picsou.runtime.node`; other crates go under `picsou.ext`.
fn logger_name(target: &str) -> String {
    let dotted = target.replace("::", ".");
    match dotted.strip_prefix("picsou_") {
        Some(rest) => format!("picsou.{rest}"),
        None if dotted == "picsou" || dotted.starts_with("picsou.") => dotted,
        None => format!("picsou.ext.{dotted}"),
    }
}

/// Collects an event's message and fields as `message key=value ...`.
#[derive(Default)]
struct Fields {
    message: String,
    rest: String,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            let _ = write!(self.rest, " {}={value}", field.name());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.rest, " {}={value:?}", field.name());
        }
    }
}

/// The `tracing` layer: filters by [`MAX_LEVEL`], formats, queues.
struct QueueLayer;

impl<S: Subscriber> Layer<S> for QueueLayer {
    fn register_callsite(&self, _: &'static Metadata<'static>) -> tracing::subscriber::Interest {
        // The level can change at run time: ask every time.
        tracing::subscriber::Interest::sometimes()
    }

    fn enabled(&self, metadata: &Metadata<'_>, _: Context<'_, S>) -> bool {
        metadata.is_event() && rank(metadata.level()) <= MAX_LEVEL.load(Ordering::Relaxed)
    }

    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let meta = event.metadata();
        let mut fields = Fields::default();
        event.record(&mut fields);
        let mut message = fields.message;
        message.push_str(&fields.rest);
        let record = Record {
            level: *meta.level(),
            logger: logger_name(meta.target()),
            message,
            file: meta.file(),
            line: meta.line(),
            thread: std::thread::current().name().unwrap_or("rust").to_string(),
        };
        let mut q = QUEUE.lock().unwrap_or_else(PoisonError::into_inner);
        if q.len() >= CAPACITY {
            DROPPED.fetch_add(1, Ordering::Relaxed);
            return;
        }
        q.push_back(record);
        drop(q);
        READY.notify_one();
    }
}

/// Installs the layer as the process's global `tracing` subscriber (once; a no-op if another
/// subscriber is already installed, e.g. by a Rust program embedding Python).
pub fn install() {
    let _ = tracing_subscriber::registry().with(QueueLayer).try_init();
}

fn logging(py: Python<'_>) -> PyResult<&Bound<'_, PyModule>> {
    static LOGGING: PyOnceLock<Py<PyModule>> = PyOnceLock::new();
    Ok(LOGGING.get_or_try_init(py, || PyModule::import(py, "logging").map(Bound::unbind))?.bind(py))
}

/// Reads the effective level of the `picsou` logger.
pub fn refresh_level(py: Python<'_>) {
    let level = logging(py)
        .and_then(|l| l.call_method1("getLogger", ("picsou",)))
        .and_then(|lg| lg.call_method0("getEffectiveLevel"))
        .and_then(|v| v.extract::<i64>());
    if let Ok(level) = level {
        MAX_LEVEL.store(rank_for_python_level(level), Ordering::Relaxed);
    }
}

/// Emits every queued record through `logging`, on the calling thread.
pub fn flush(py: Python<'_>) {
    let records: Vec<Record> = QUEUE.lock().unwrap_or_else(PoisonError::into_inner).drain(..).collect();
    let dropped = DROPPED.swap(0, Ordering::Relaxed);
    if records.is_empty() && dropped == 0 {
        return;
    }
    let Ok(logging) = logging(py) else { return };
    for r in records {
        // A failing handler is Python's business (logging prints its own error); keep going.
        let _ = emit(logging, &r.logger, python_level(&r.level), &r.message, r.file, r.line, Some(&r.thread));
    }
    if dropped > 0 {
        let msg = format!("{dropped} log records were dropped (more than {CAPACITY} waiting)");
        let _ = emit(logging, "picsou", 30, &msg, None, None, None);
    }
}

fn emit(
    logging: &Bound<'_, PyModule>,
    name: &str,
    level: i32,
    message: &str,
    file: Option<&str>,
    line: Option<u32>,
    thread: Option<&str>,
) -> PyResult<()> {
    let logger = logging.call_method1("getLogger", (name,))?;
    if !logger.call_method1("isEnabledFor", (level,))?.is_truthy()? {
        return Ok(());
    }
    let py = logger.py();
    let record = logger.call_method1(
        "makeRecord",
        (name, level, file.unwrap_or("<rust>"), line.unwrap_or(0), message, pyo3::types::PyTuple::empty(py), py.None()),
    )?;
    if let Some(t) = thread {
        record.setattr("threadName", t)?;
    }
    logger.call_method1("handle", (record,))?;
    Ok(())
}

/// Empties the queue into `logging` until [`stop_log_pump`] is called: the body of the
/// `picsou-log` daemon thread the package starts at import. Waits without the GIL.
#[pyfunction]
fn _pump_logs(py: Python<'_>) -> PyResult<()> {
    while !STOP.load(Ordering::SeqCst) {
        py.detach(|| {
            let q = QUEUE.lock().unwrap_or_else(PoisonError::into_inner);
            if q.is_empty() && !STOP.load(Ordering::SeqCst) {
                let _ = READY.wait_timeout(q, Duration::from_millis(100));
            }
        });
        refresh_level(py);
        flush(py);
    }
    Ok(())
}

/// Makes [`_pump_logs`] return (after emitting what is queued).
#[pyfunction]
fn _stop_log_pump() {
    STOP.store(true, Ordering::SeqCst);
    READY.notify_all();
}

/// Emits the queued records now (what every API call does before returning).
#[pyfunction]
fn flush_logs(py: Python<'_>) {
    refresh_level(py);
    flush(py);
}

/// Adds the functions to the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(pyo3::wrap_pyfunction!(_pump_logs, m)?)?;
    m.add_function(pyo3::wrap_pyfunction!(_stop_log_pump, m)?)?;
    m.add_function(pyo3::wrap_pyfunction!(flush_logs, m)?)?;
    Ok(())
}
