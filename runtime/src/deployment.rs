//! Deployment configuration (placeholder: being written).
