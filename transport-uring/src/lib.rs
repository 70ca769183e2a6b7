//! io_uring transport (placeholder).
