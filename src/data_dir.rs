//! The one place that names every path under `--data-dir` (default `/var/lib/rk3s`).
//!
//! Other modules ask this type for paths instead of joining strings, so the on-disk layout of
//! DESIGN.md §1 is written down exactly once.

use std::path::{Path, PathBuf};

/// The default `--data-dir`.
pub const DEFAULT: &str = "/var/lib/rk3s";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    pub fn new(root: impl Into<PathBuf>) -> DataDir {
        DataDir { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `server/`: everything that only a server node has.
    pub fn server(&self) -> PathBuf {
        self.root.join("server")
    }

    /// `server/db/`: the embedded datastore.
    pub fn db_dir(&self) -> PathBuf {
        self.server().join("db")
    }

    /// `server/db/state.db`: the SQLite database of the embedded store.
    pub fn state_db(&self) -> PathBuf {
        self.db_dir().join("state.db")
    }

    /// `server/db/snapshots/`: `rk3s etcd-snapshot save` writes here.
    pub fn snapshots_dir(&self) -> PathBuf {
        self.db_dir().join("snapshots")
    }

    /// `server/etcd.sock`: the etcd v3 API of the embedded store, always served.
    pub fn etcd_socket(&self) -> PathBuf {
        self.server().join("etcd.sock")
    }

    /// `server/tls/`: CAs, serving and client certificates.
    pub fn tls_dir(&self) -> PathBuf {
        self.server().join("tls")
    }

    /// `server/manifests/`: manifests applied automatically at start.
    pub fn manifests_dir(&self) -> PathBuf {
        self.server().join("manifests")
    }

    /// `server/token`: the join token for agents.
    pub fn token_file(&self) -> PathBuf {
        self.server().join("token")
    }

    /// `agent/`: everything a node (server or agent) keeps.
    pub fn agent(&self) -> PathBuf {
        self.root.join("agent")
    }

    /// `storage/`: the local-path provisioner's volume directories.
    pub fn storage(&self) -> PathBuf {
        self.root.join("storage")
    }

    /// `agent/images/`: airgap image tarballs imported at start.
    pub fn agent_images(&self) -> PathBuf {
        self.agent().join("images")
    }
}

impl Default for DataDir {
    fn default() -> DataDir {
        DataDir::new(DEFAULT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_follow_the_documented_layout() {
        let d = DataDir::new("/var/lib/rk3s");
        assert_eq!(d.state_db(), Path::new("/var/lib/rk3s/server/db/state.db"));
        assert_eq!(d.etcd_socket(), Path::new("/var/lib/rk3s/server/etcd.sock"));
        assert_eq!(
            d.snapshots_dir(),
            Path::new("/var/lib/rk3s/server/db/snapshots")
        );
        assert_eq!(d.agent_images(), Path::new("/var/lib/rk3s/agent/images"));
    }
}
