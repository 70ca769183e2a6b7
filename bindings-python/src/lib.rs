//! Python bindings for picsou: work in progress (see the issue tracker).
