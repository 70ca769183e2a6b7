//! Node driver (placeholder).
