//! RDMA verbs transport for picsou (sideway), Mu-style one-sided writes: work in progress (see the issue tracker).
