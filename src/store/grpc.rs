//! The etcd v3 gRPC façade (tonic): KV, Watch, Lease, Maintenance and Cluster over the store.

use std::net::SocketAddr;
use std::path::PathBuf;

/// Where the etcd API is served: `http://IP:PORT` or `unix:///path/to.sock`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl std::str::FromStr for Listen {
    type Err = String;
    fn from_str(s: &str) -> Result<Listen, String> {
        if let Some(path) = s.strip_prefix("unix://") {
            if path.is_empty() {
                return Err(format!("listen URL {s:?} has no socket path"));
            }
            return Ok(Listen::Unix(PathBuf::from(path)));
        }
        let Some(rest) = s.strip_prefix("http://") else {
            return Err(format!(
                "invalid listen URL {s:?}: expected http://IP:PORT or unix:///PATH"
            ));
        };
        let hostport = rest.trim_end_matches('/');
        let hostport = match hostport.strip_prefix("localhost:") {
            Some(port) => format!("127.0.0.1:{port}"),
            None => hostport.to_string(),
        };
        hostport
            .parse::<SocketAddr>()
            .map(Listen::Tcp)
            .map_err(|_| {
                format!("invalid listen URL {s:?}: expected http://IP:PORT or unix:///PATH")
            })
    }
}

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use etcd_client::proto::*;
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::writer::MAX_REQUEST_BYTES;
use super::{Error, KeyRange, Store, WatchFilter};

/// The etcd version we report: 3.5.13 is the first that kube-apiserver trusts for watch
/// progress requests, which the store supports.
pub const ETCD_VERSION: &str = "3.5.13";
/// gRPC messages may exceed the request limit by etcd's overhead allowance, so an oversized
/// put gets etcd's "request is too large" rather than a transport error.
const MAX_DECODING: usize = MAX_REQUEST_BYTES + 512 * 1024;
/// etcd's default `--experimental-watch-progress-notify-interval`.
const PROGRESS_NOTIFY_INTERVAL: Duration = Duration::from_secs(600);

/// How this member describes itself in MemberList.
#[derive(Debug, Clone)]
pub struct Member {
    pub name: String,
    pub client_urls: Vec<String>,
}

/// The one place that maps store errors to etcd's gRPC codes.
fn status(e: Error) -> Status {
    use tonic::Code;
    let code = match &e {
        Error::Compacted | Error::FutureRevision | Error::LeaseTtlTooLarge => Code::OutOfRange,
        Error::EmptyKey
        | Error::KeyNotFound
        | Error::ValueProvided
        | Error::LeaseProvided
        | Error::TooManyOps
        | Error::DuplicateKey
        | Error::RequestTooLarge => Code::InvalidArgument,
        Error::LeaseNotFound => Code::NotFound,
        Error::LeaseExists => Code::FailedPrecondition,
        Error::Stopped => Code::Unavailable,
        Error::Open { .. }
        | Error::Locked { .. }
        | Error::Io { .. }
        | Error::Sql(_)
        | Error::Internal(_) => Code::Internal,
    };
    Status::new(code, e.to_string())
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

#[derive(Clone)]
struct Service {
    store: Store,
    member: Arc<Member>,
}

/// Serves the etcd API of `store` on `listen` until `shutdown` completes.
pub async fn serve(
    store: Store,
    listen: Listen,
    member: Member,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let listen_path = listen.clone();
    let svc = Service {
        store,
        member: Arc::new(member),
    };
    let router = tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .add_service(
            PbKvServer::new(svc.clone())
                .max_decoding_message_size(MAX_DECODING)
                .max_encoding_message_size(usize::MAX),
        )
        .add_service(
            PbWatchServer::new(svc.clone())
                .max_decoding_message_size(MAX_DECODING)
                .max_encoding_message_size(usize::MAX),
        )
        .add_service(PbLeaseServer::new(svc.clone()))
        .add_service(PbMaintenanceServer::new(svc.clone()))
        .add_service(PbClusterServer::new(svc));
    let transport = |e: tonic::transport::Error| Error::Internal(format!("grpc server: {e}"));
    let (tx, rx) = mpsc::channel(64);
    let accept = match listen {
        Listen::Tcp(addr) => {
            let l = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| Error::Io {
                    path: format!("listen address {addr}").into(),
                    source,
                })?;
            tracing::info!(%addr, "etcd API listening");
            tokio::spawn(async move {
                loop {
                    let Ok((sock, _)) = l.accept().await else {
                        continue;
                    };
                    let _ = sock.set_nodelay(true);
                    if !hand_over(sock, &tx).await {
                        return;
                    }
                }
            })
        }
        Listen::Unix(path) => {
            let io = |source| Error::Io {
                path: path.clone(),
                source,
            };
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(io)?;
            }
            // A socket left by a killed process would make bind fail.
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io(e)),
            }
            let l = tokio::net::UnixListener::bind(&path).map_err(io)?;
            // The socket gives full access to the cluster's data: root only.
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
            tracing::info!(path = %path.display(), "etcd API listening");
            let cleanup = path.clone();
            tokio::spawn(async move {
                loop {
                    let Ok((sock, _)) = l.accept().await else {
                        continue;
                    };
                    if !hand_over(sock, &tx).await {
                        let _ = std::fs::remove_file(&cleanup);
                        return;
                    }
                }
            })
        }
    };
    let r = router
        .serve_with_incoming_shutdown(ReceiverStream::new(rx), shutdown)
        .await
        .map_err(transport);
    accept.abort();
    if let Listen::Unix(path) = &listen_path {
        let _ = std::fs::remove_file(path);
    }
    r
}

/// A client connection, TCP or Unix.
pub trait Conn: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static> Conn for T {}

/// What tonic serves: a client connection read through the `:authority` filter.
type Incoming = super::authority::Filtered<Box<dyn Conn>>;

impl tonic::transport::server::Connected for Incoming {
    type ConnectInfo = ();
    fn connect_info(&self) -> Self::ConnectInfo {}
}

/// Gives tonic the connection `sock`, read through the `:authority` filter. False when the
/// server is gone.
async fn hand_over(sock: impl Conn, tx: &mpsc::Sender<std::io::Result<Incoming>>) -> bool {
    let conn: Box<dyn Conn> = Box::new(sock);
    tx.send(Ok(super::authority::Filtered::new(conn)))
        .await
        .is_ok()
}

#[tonic::async_trait]
impl PbKvService for Service {
    async fn range(&self, r: Request<PbRangeRequest>) -> Result<Response<PbRangeResponse>, Status> {
        self.store
            .range(r.into_inner())
            .await
            .map(Response::new)
            .map_err(status)
    }

    type RangeStreamStream = BoxStream<PbRangeStreamResponse>;

    async fn range_stream(
        &self,
        _: Request<PbRangeRequest>,
    ) -> Result<Response<Self::RangeStreamStream>, Status> {
        Err(Status::unimplemented(
            "RangeStream is not supported; use Range with limit",
        ))
    }

    async fn put(&self, r: Request<PbPutRequest>) -> Result<Response<PbPutResponse>, Status> {
        self.store
            .put(r.into_inner())
            .await
            .map(Response::new)
            .map_err(status)
    }

    async fn delete_range(
        &self,
        r: Request<PbDeleteRequest>,
    ) -> Result<Response<PbDeleteResponse>, Status> {
        self.store
            .delete_range(r.into_inner())
            .await
            .map(Response::new)
            .map_err(status)
    }

    async fn txn(&self, r: Request<PbTxnRequest>) -> Result<Response<PbTxnResponse>, Status> {
        self.store
            .txn(r.into_inner())
            .await
            .map(Response::new)
            .map_err(status)
    }

    async fn compact(
        &self,
        r: Request<PbCompactionRequest>,
    ) -> Result<Response<PbCompactionResponse>, Status> {
        let r = r.into_inner();
        self.store
            .compact(r.revision, r.physical)
            .await
            .map_err(status)?;
        Ok(Response::new(PbCompactionResponse {
            header: Some(self.store.header()),
        }))
    }
}

#[tonic::async_trait]
impl PbLeaseService for Service {
    async fn lease_grant(
        &self,
        r: Request<PbLeaseGrantRequest>,
    ) -> Result<Response<PbLeaseGrantResponse>, Status> {
        let r = r.into_inner();
        let (id, ttl) = self.store.lease_grant(r.id, r.ttl).await.map_err(status)?;
        Ok(Response::new(PbLeaseGrantResponse {
            header: Some(self.store.header()),
            id,
            ttl,
            error: String::new(),
        }))
    }

    async fn lease_revoke(
        &self,
        r: Request<PbLeaseRevokeRequest>,
    ) -> Result<Response<PbLeaseRevokeResponse>, Status> {
        self.store
            .lease_revoke(r.into_inner().id)
            .await
            .map_err(status)?;
        Ok(Response::new(PbLeaseRevokeResponse {
            header: Some(self.store.header()),
        }))
    }

    type LeaseKeepAliveStream = BoxStream<PbLeaseKeepAliveResponse>;

    async fn lease_keep_alive(
        &self,
        r: Request<Streaming<PbLeaseKeepAliveRequest>>,
    ) -> Result<Response<Self::LeaseKeepAliveStream>, Status> {
        let mut inbound = r.into_inner();
        let (tx, rx) = mpsc::channel(16);
        let store = self.store.clone();
        tokio::spawn(async move {
            while let Ok(Some(req)) = inbound.message().await {
                // etcd answers an unknown lease with TTL 0 rather than an error.
                let ttl = store.lease_keep_alive(req.id).unwrap_or(0);
                let resp = PbLeaseKeepAliveResponse {
                    header: Some(store.header()),
                    id: req.id,
                    ttl,
                };
                if tx.send(Ok(resp)).await.is_err() {
                    break;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn lease_time_to_live(
        &self,
        r: Request<PbLeaseTimeToLiveRequest>,
    ) -> Result<Response<PbLeaseTimeToLiveResponse>, Status> {
        let r = r.into_inner();
        Ok(Response::new(self.store.lease_time_to_live(r.id, r.keys)))
    }

    async fn lease_leases(
        &self,
        _: Request<PbLeaseLeasesRequest>,
    ) -> Result<Response<PbLeaseLeasesResponse>, Status> {
        Ok(Response::new(PbLeaseLeasesResponse {
            header: Some(self.store.header()),
            leases: self
                .store
                .leases()
                .into_iter()
                .map(|id| PbLeaseStatus { id })
                .collect(),
        }))
    }
}

#[tonic::async_trait]
impl PbWatchService for Service {
    type WatchStream = BoxStream<PbWatchResponse>;

    async fn watch(
        &self,
        r: Request<Streaming<PbWatchRequest>>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let inbound = r.into_inner();
        let (tx, rx) = mpsc::channel(256);
        tokio::spawn(watch_stream(self.store.clone(), inbound, tx));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

type WatchTx = mpsc::Sender<Result<PbWatchResponse, Status>>;

/// One client watch stream: many watchers, created and cancelled by the client's requests.
async fn watch_stream(store: Store, mut inbound: Streaming<PbWatchRequest>, tx: WatchTx) {
    let mut watchers: HashMap<i64, (tokio::task::JoinHandle<()>, Arc<AtomicI64>)> = HashMap::new();
    let mut next_id = 0i64;
    loop {
        let msg = tokio::select! {
            m = inbound.message() => m,
            _ = tx.closed() => break,
        };
        let Ok(Some(msg)) = msg else { break };
        watchers.retain(|_, (task, _)| !task.is_finished());
        match msg.request_union {
            Some(PbWatchRequestUnion::CreateRequest(c)) => {
                let header = Some(store.header());
                let id = if c.watch_id != 0 {
                    c.watch_id
                } else {
                    while watchers.contains_key(&next_id) {
                        next_id += 1;
                    }
                    next_id
                };
                if watchers.contains_key(&id) || id < 0 {
                    let resp = PbWatchResponse {
                        header,
                        watch_id: -1,
                        created: true,
                        canceled: true,
                        cancel_reason: "mvcc: duplicate watch ID provided on the WatchStream"
                            .into(),
                        ..Default::default()
                    };
                    if tx.send(Ok(resp)).await.is_err() {
                        break;
                    }
                    continue;
                }
                let filter = WatchFilter {
                    no_put: c.filters.contains(&0),
                    no_delete: c.filters.contains(&1),
                    prev_kv: c.prev_kv,
                };
                let range = KeyRange::new(&c.key, &c.range_end);
                let watch = store.watch(range, c.start_revision, filter);
                let synced = watch.synced();
                let created = PbWatchResponse {
                    header,
                    watch_id: id,
                    created: true,
                    ..Default::default()
                };
                // "created" goes out before the watcher can send anything.
                if tx.send(Ok(created)).await.is_err() {
                    break;
                }
                let opts = WatcherOptions {
                    id,
                    fragment: c.fragment,
                    progress_notify: c.progress_notify,
                };
                let task = tokio::spawn(run_watcher(store.clone(), watch, opts, tx.clone()));
                watchers.insert(id, (task, synced));
            }
            Some(PbWatchRequestUnion::CancelRequest(c)) => {
                if let Some((task, _)) = watchers.remove(&c.watch_id) {
                    task.abort();
                    let resp = PbWatchResponse {
                        header: Some(store.header()),
                        watch_id: c.watch_id,
                        canceled: true,
                        ..Default::default()
                    };
                    if tx.send(Ok(resp)).await.is_err() {
                        break;
                    }
                }
            }
            Some(PbWatchRequestUnion::ProgressRequest(_)) => {
                // Only claim a revision every watcher has fully delivered.
                let revision = watchers
                    .values()
                    .map(|(_, s)| s.load(Ordering::Acquire))
                    .min()
                    .unwrap_or_else(|| store.revision());
                let (cluster_id, member_id) = store.ids();
                let resp = PbWatchResponse {
                    header: Some(PbResponseHeader {
                        cluster_id,
                        member_id,
                        revision,
                        raft_term: 1,
                    }),
                    watch_id: -1,
                    ..Default::default()
                };
                if tx.send(Ok(resp)).await.is_err() {
                    break;
                }
            }
            None => {}
        }
    }
    for (task, _) in watchers.into_values() {
        task.abort();
    }
}

struct WatcherOptions {
    id: i64,
    fragment: bool,
    progress_notify: bool,
}

async fn run_watcher(store: Store, mut watch: super::Watch, opts: WatcherOptions, tx: WatchTx) {
    loop {
        let next = if opts.progress_notify {
            match tokio::time::timeout(PROGRESS_NOTIFY_INTERVAL, watch.next()).await {
                Ok(r) => r,
                Err(_) => {
                    let (cluster_id, member_id) = store.ids();
                    let revision = watch.synced().load(Ordering::Acquire);
                    let resp = PbWatchResponse {
                        header: Some(PbResponseHeader {
                            cluster_id,
                            member_id,
                            revision,
                            raft_term: 1,
                        }),
                        watch_id: opts.id,
                        ..Default::default()
                    };
                    if tx.send(Ok(resp)).await.is_err() {
                        return;
                    }
                    continue;
                }
            }
        } else {
            watch.next().await
        };
        match next {
            Ok(events) => {
                for resp in responses(&store, opts.id, opts.fragment, events) {
                    if tx.send(Ok(resp)).await.is_err() {
                        return;
                    }
                }
            }
            Err(Error::Compacted) => {
                let resp = PbWatchResponse {
                    header: Some(store.header()),
                    watch_id: opts.id,
                    canceled: true,
                    compact_revision: store.compact_revision(),
                    cancel_reason: Error::Compacted.to_string(),
                    ..Default::default()
                };
                let _ = tx.send(Ok(resp)).await;
                return;
            }
            Err(e) => {
                tracing::debug!(watch_id = opts.id, error = %e, "watcher stopped");
                let _ = tx.send(Err(status(e))).await;
                return;
            }
        }
    }
}

/// Wraps events in responses; with `fragment`, splits a response over the request size limit
/// into several, all but the last marked `fragment` (etcd's watch fragmentation).
fn responses(store: &Store, id: i64, fragment: bool, events: Vec<PbEvent>) -> Vec<PbWatchResponse> {
    let header = Some(store.header());
    let whole = PbWatchResponse {
        header,
        watch_id: id,
        events,
        ..Default::default()
    };
    if !fragment || prost::Message::encoded_len(&whole) <= MAX_REQUEST_BYTES {
        return vec![whole];
    }
    let mut out = Vec::new();
    let mut chunk = Vec::new();
    let mut size = 0;
    for e in whole.events {
        let len = prost::Message::encoded_len(&e) + 8;
        if !chunk.is_empty() && size + len > MAX_REQUEST_BYTES {
            out.push(PbWatchResponse {
                header,
                watch_id: id,
                fragment: true,
                events: std::mem::take(&mut chunk),
                ..Default::default()
            });
            size = 0;
        }
        size += len;
        chunk.push(e);
    }
    out.push(PbWatchResponse {
        header,
        watch_id: id,
        events: chunk,
        ..Default::default()
    });
    out
}

#[tonic::async_trait]
impl PbMaintenanceService for Service {
    async fn alarm(&self, _: Request<PbAlarmRequest>) -> Result<Response<PbAlarmResponse>, Status> {
        // No space or corruption alarms exist in this store.
        Ok(Response::new(PbAlarmResponse {
            header: Some(self.store.header()),
            alarms: Vec::new(),
        }))
    }

    async fn status(
        &self,
        _: Request<PbStatusRequest>,
    ) -> Result<Response<PbStatusResponse>, Status> {
        let s = self.store.status().await.map_err(status)?;
        let (_, member_id) = self.store.ids();
        Ok(Response::new(PbStatusResponse {
            header: Some(self.store.header()),
            version: ETCD_VERSION.into(),
            db_size: s.db_size,
            leader: member_id,
            raft_index: s.revision as u64,
            raft_term: 1,
            raft_applied_index: s.revision as u64,
            errors: Vec::new(),
            db_size_in_use: s.db_size_in_use,
            is_learner: false,
            storage_version: String::new(),
            db_size_quota: 0,
            downgrade_info: None,
        }))
    }

    async fn defragment(
        &self,
        _: Request<PbDefragmentRequest>,
    ) -> Result<Response<PbDefragmentResponse>, Status> {
        self.store.defragment().await.map_err(status)?;
        Ok(Response::new(PbDefragmentResponse {
            header: Some(self.store.header()),
        }))
    }

    async fn hash(&self, _: Request<PbHashRequest>) -> Result<Response<PbHashResponse>, Status> {
        Err(Status::unimplemented(
            "Hash is not supported by the rk3s store",
        ))
    }

    async fn hash_kv(
        &self,
        _: Request<PbHashKvRequest>,
    ) -> Result<Response<PbHashKvResponse>, Status> {
        Err(Status::unimplemented(
            "HashKV is not supported by the rk3s store",
        ))
    }

    type SnapshotStream = BoxStream<PbSnapshotResponse>;

    async fn snapshot(
        &self,
        _: Request<PbSnapshotRequest>,
    ) -> Result<Response<Self::SnapshotStream>, Status> {
        Err(Status::unimplemented(
            "the rk3s store does not stream etcd snapshots; use `rk3s etcd-snapshot save` on the server",
        ))
    }

    async fn move_leader(
        &self,
        _: Request<PbMoveLeaderRequest>,
    ) -> Result<Response<PbMoveLeaderResponse>, Status> {
        Err(Status::unimplemented(
            "the rk3s store has a single member and no leader to move",
        ))
    }

    async fn downgrade(
        &self,
        _: Request<PbDowngradeRequest>,
    ) -> Result<Response<PbDowngradeResponse>, Status> {
        Err(Status::unimplemented(
            "Downgrade is not supported by the rk3s store",
        ))
    }
}

const SINGLE_MEMBER: &str =
    "the embedded rk3s store has a single member; use an external etcd cluster for HA";

#[tonic::async_trait]
impl PbClusterService for Service {
    async fn member_add(
        &self,
        _: Request<PbMemberAddRequest>,
    ) -> Result<Response<PbMemberAddResponse>, Status> {
        Err(Status::failed_precondition(SINGLE_MEMBER))
    }

    async fn member_remove(
        &self,
        _: Request<PbMemberRemoveRequest>,
    ) -> Result<Response<PbMemberRemoveResponse>, Status> {
        Err(Status::failed_precondition(SINGLE_MEMBER))
    }

    async fn member_update(
        &self,
        _: Request<PbMemberUpdateRequest>,
    ) -> Result<Response<PbMemberUpdateResponse>, Status> {
        Err(Status::failed_precondition(SINGLE_MEMBER))
    }

    async fn member_list(
        &self,
        _: Request<PbMemberListRequest>,
    ) -> Result<Response<PbMemberListResponse>, Status> {
        let (_, id) = self.store.ids();
        Ok(Response::new(PbMemberListResponse {
            header: Some(self.store.header()),
            members: vec![PbMember {
                id,
                name: self.member.name.clone(),
                peer_ur_ls: Vec::new(),
                client_ur_ls: self.member.client_urls.clone(),
                is_learner: false,
            }],
        }))
    }

    async fn member_promote(
        &self,
        _: Request<PbMemberPromoteRequest>,
    ) -> Result<Response<PbMemberPromoteResponse>, Status> {
        Err(Status::failed_precondition(SINGLE_MEMBER))
    }
}

#[cfg(test)]
mod tests {
    //! The façade driven by a real etcd client library (the `etcd-client` crate) over TCP.

    use super::*;
    use crate::store::Config;
    use etcd_client::{Client, Compare, CompareOp, EventType, GetOptions, PutOptions, Txn, TxnOp};

    async fn start(dir: &tempfile::TempDir) -> (Client, tokio::sync::oneshot::Sender<()>) {
        let mut cfg = Config::sqlite(dir.path().join("state.db"));
        cfg.compaction_interval = Duration::ZERO;
        let store = Store::open(&cfg).unwrap();
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        let (stop, rx) = tokio::sync::oneshot::channel::<()>();
        let member = Member {
            name: "test".into(),
            client_urls: vec![format!("http://{addr}")],
        };
        tokio::spawn(serve(store, Listen::Tcp(addr), member, async {
            let _ = rx.await;
        }));
        for _ in 0..100 {
            if let Ok(c) = Client::connect([format!("http://{addr}")], None).await
                && c.clone().status().await.is_ok()
            {
                return (c, stop);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("server did not come up on {addr}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn etcd_client_kv_txn_watch_lease_status() {
        let dir = tempfile::tempdir().unwrap();
        let (mut c, _stop) = start(&dir).await;
        let r = c.put("foo", "bar", None).await.unwrap();
        assert_eq!(r.header().unwrap().revision(), 2);
        let g = c.get("foo", None).await.unwrap();
        assert_eq!(g.kvs()[0].value(), b"bar");

        let mut ws = c
            .watch(
                "w/",
                Some(
                    etcd_client::WatchOptions::new()
                        .with_prefix()
                        .with_prev_key(),
                ),
            )
            .await
            .unwrap();
        let created = ws.message().await.unwrap().unwrap();
        assert!(created.created());
        c.put("w/1", "a", None).await.unwrap();
        c.put("w/1", "b", None).await.unwrap();
        c.delete("w/1", None).await.unwrap();
        let mut seen = Vec::new();
        while seen.len() < 3 {
            let resp = ws.message().await.unwrap().unwrap();
            for e in resp.events() {
                let prev = e.prev_kv().map(|p| p.value().to_vec());
                seen.push((e.event_type(), e.kv().unwrap().mod_revision(), prev));
            }
        }
        assert_eq!(
            seen,
            vec![
                (EventType::Put, 3, None),
                (EventType::Put, 4, Some(b"a".to_vec())),
                (EventType::Delete, 5, Some(b"b".to_vec())),
            ]
        );

        let txn = Txn::new()
            .when([Compare::mod_revision("foo", CompareOp::Equal, 2)])
            .and_then([TxnOp::put("foo", "baz", None)])
            .or_else([TxnOp::get("foo", None)]);
        assert!(c.txn(txn.clone()).await.unwrap().succeeded());
        assert!(!c.txn(txn).await.unwrap().succeeded());

        let lease = c.lease_grant(30, None).await.unwrap();
        c.put("l", "v", Some(PutOptions::new().with_lease(lease.id())))
            .await
            .unwrap();
        let (mut keeper, mut stream) = c.lease_keep_alive(lease.id()).await.unwrap();
        keeper.keep_alive().await.unwrap();
        let ka = stream.message().await.unwrap().unwrap();
        assert_eq!(ka.ttl(), 30);
        c.lease_revoke(lease.id()).await.unwrap();
        assert_eq!(c.get("l", None).await.unwrap().count(), 0);

        let e = c.lease_revoke(lease.id()).await.unwrap_err().to_string();
        assert!(e.contains("requested lease not found"), "{e}");
        let rev = c
            .get("foo", None)
            .await
            .unwrap()
            .header()
            .unwrap()
            .revision();
        c.compact(rev, None).await.unwrap();
        let e = c
            .get("foo", Some(GetOptions::new().with_revision(rev - 1)))
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("required revision has been compacted"), "{e}");

        let st = c.status().await.unwrap();
        assert_eq!(st.version(), ETCD_VERSION);
        assert!(st.db_size() > 0);
        let members = c.member_list().await.unwrap();
        assert_eq!(members.members().len(), 1);
        assert_eq!(members.members()[0].name(), "test");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_watch_below_the_compact_revision_is_cancelled_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let (mut c, _stop) = start(&dir).await;
        for i in 0..5 {
            c.put("k", format!("{i}"), None).await.unwrap();
        }
        c.compact(5, None).await.unwrap();
        let mut ws = c
            .watch(
                "k",
                Some(etcd_client::WatchOptions::new().with_start_revision(2)),
            )
            .await
            .unwrap();
        let mut cancelled = None;
        while let Some(resp) = ws.message().await.unwrap() {
            if resp.canceled() {
                cancelled = Some(resp.compact_revision());
                break;
            }
        }
        assert_eq!(cancelled, Some(5));
    }
}
