//! Deterministic discrete-event simulator of two RSMs running the engine, with a C3B checker.
//!
//! STUB — being written (helper D).
