//! C API for picsou (libpicsou): work in progress (see the issue tracker).
