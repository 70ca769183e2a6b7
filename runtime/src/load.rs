//! Synthetic load (placeholder).
