//! # picsou-python
//!
//! The extension module `picsou._picsou` behind the `picsou` Python package: a thin pyo3 layer
//! over the Rust crates, with no protocol logic of its own.
//!
//! Modules, one concept each:
//! - [`errors`]: the exception hierarchy and the mapping of Rust errors (and panics) onto it;
//! - [`convert`]: Python objects ↔ TOML and JSON values, and argument checks;
//! - [`wait`]: blocking with the GIL released, in slices, answering Ctrl-C;
//! - [`logs`]: `tracing` events forwarded to Python's `logging`;
//! - [`sim`]: `Scenario`, `SimResult`, `simulate` and the parallel runner behind `sweep`;
//! - [`config`]: `Config`, a checked deployment;
//! - [`node`]: `Node` (one replica over the configured transport) and `MemNetwork`;
//! - [`local`]: `local`, a whole deployment in this process;
//! - [`bench`]: `bench`, the `picsou bench` grid in this process;
//! - [`bft`]: commit-certificate helpers (ed25519 keys, signing, verifying).

use pyo3::prelude::*;

pub mod bench;
pub mod bft;
pub mod config;
pub mod convert;
pub mod errors;
pub mod local;
pub mod logs;
pub mod node;
pub mod sim;
pub mod wait;

/// The extension module.
#[pymodule]
fn _picsou(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    errors::register(py, m)?;
    logs::register(m)?;
    sim::register(m)?;
    config::register(m)?;
    node::register(m)?;
    local::register(m)?;
    bench::register(m)?;
    bft::register(m)?;
    logs::install();
    Ok(())
}
