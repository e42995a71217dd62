//! etcdctl tests
