//! In-memory transport (placeholder).
