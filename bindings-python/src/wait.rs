//! Blocking with the GIL released, in short slices, answering Ctrl-C between them.
//!
//! Every call that may block (a submission, the next delivery, a simulation, a sweep, a local
//! deployment) waits here: each slice of at most [`SLICE`] runs without the GIL, so other
//! Python threads keep running, and between slices `check_signals` lets a pending
//! `KeyboardInterrupt` (or any exception a signal handler raises) through.

use std::time::{Duration, Instant};

use pyo3::prelude::*;

/// Longest time spent without checking for signals.
pub const SLICE: Duration = Duration::from_millis(50);

/// What one slice of waiting found.
pub enum Step<T> {
    /// Done: return this.
    Ready(T),
    /// Nothing yet: wait another slice.
    Pending,
}

/// Calls `step(slice)` (without the GIL) until it is ready or `timeout` has passed (`None`:
/// no limit); `step` should block for at most `slice`. Returns `Ok(None)` on timeout, and the
/// signal handler's exception (usually `KeyboardInterrupt`) if a signal arrives.
pub fn wait_for<T: Send>(
    py: Python<'_>,
    timeout: Option<Duration>,
    mut step: impl FnMut(Duration) -> Step<T> + Send,
) -> PyResult<Option<T>> {
    let deadline = timeout.map(|t| Instant::now() + t);
    loop {
        let slice = match deadline {
            Some(d) => d.saturating_duration_since(Instant::now()).min(SLICE),
            None => SLICE,
        };
        if let Step::Ready(v) = py.detach(|| step(slice)) {
            return Ok(Some(v));
        }
        py.check_signals()?;
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(None);
        }
    }
}

/// Seconds as a [`Duration`]: `None` stays `None`; negative, NaN or huge values are a
/// `MisuseError` naming `what`.
pub fn seconds(value: Option<f64>, what: &str) -> PyResult<Option<Duration>> {
    match value {
        None => Ok(None),
        Some(s) if s.is_finite() && (0.0..=1e9).contains(&s) => Ok(Some(Duration::from_secs_f64(s))),
        Some(s) => Err(crate::errors::misuse(format!("{what} must be a number of seconds between 0 and 1e9, not {s}"))),
    }
}

/// The next value from a channel, waiting in slices (`None` once every sender is gone).
pub fn recv<T: Send>(py: Python<'_>, rx: &std::sync::Mutex<std::sync::mpsc::Receiver<T>>) -> PyResult<Option<T>> {
    use std::sync::mpsc::RecvTimeoutError;
    let r = wait_for(py, None, |slice| {
        let rx = rx.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match rx.recv_timeout(slice) {
            Ok(v) => Step::Ready(Some(v)),
            Err(RecvTimeoutError::Timeout) => Step::Pending,
            Err(RecvTimeoutError::Disconnected) => Step::Ready(None),
        }
    })?;
    Ok(r.flatten())
}
