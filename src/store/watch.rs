//! Watch fan-out from memory: the writer publishes each committed revision to a broadcast
//! channel and to a bounded history ring; a watcher that starts in the past catches up from the
//! ring, or from SQL when the ring no longer reaches back that far, then follows the broadcast.
//! A watcher that falls behind the broadcast (lagged) catches up from SQL the same way.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use etcd_client::proto::PbEvent;
use tokio::sync::broadcast;

use super::sqlite::{self, EVENT_DELETE, EVENT_PUT};
use super::{Change, Error, KeyRange, Shared};

/// How many revisions the history ring keeps, and how many value bytes at most.
const RING_CHANGES: usize = 10_000;
const RING_BYTES: usize = 8 << 20;
/// Broadcast capacity: a watcher further behind than this catches up from SQL.
const BROADCAST_CAPACITY: usize = 4096;
/// Rows per SQL catch-up query.
const CATCH_UP_ROWS: i64 = 1000;
/// Events handed out per `next` at most when many are ready at once.
const MAX_EVENTS_PER_BATCH: usize = 1000;

pub struct Hub {
    ring: VecDeque<Arc<Change>>,
    ring_bytes: usize,
    tx: broadcast::Sender<Arc<Change>>,
}

fn change_bytes(c: &Change) -> usize {
    c.events
        .iter()
        .map(|e| {
            e.kv.as_ref().map_or(0, |kv| kv.key.len() + kv.value.len())
                + e.prev_kv.as_ref().map_or(0, |kv| kv.value.len())
                + 64
        })
        .sum()
}

impl Hub {
    pub fn new() -> Hub {
        Hub {
            ring: VecDeque::new(),
            ring_bytes: 0,
            tx: broadcast::channel(BROADCAST_CAPACITY).0,
        }
    }

    pub fn push(&mut self, change: Arc<Change>) {
        self.ring_bytes += change_bytes(&change);
        self.ring.push_back(Arc::clone(&change));
        while self.ring.len() > RING_CHANGES
            || (self.ring_bytes > RING_BYTES && self.ring.len() > 1)
        {
            if let Some(old) = self.ring.pop_front() {
                self.ring_bytes -= change_bytes(&old);
            }
        }
        // No receiver is not an error: nobody is watching.
        let _ = self.tx.send(change);
    }
}

/// Which events a watcher wants (etcd's WatchCreateRequest filters and prev_kv).
#[derive(Debug, Clone, Copy, Default)]
pub struct WatchFilter {
    pub no_put: bool,
    pub no_delete: bool,
    pub prev_kv: bool,
}

/// One watcher. Events come in revision order, each revision exactly once.
pub struct Watch {
    shared: Arc<Shared>,
    range: KeyRange,
    filter: WatchFilter,
    /// The next revision to hand out; everything before it has been handed out.
    next: i64,
    /// SQL catch-up is due for `next..=sql_until`.
    sql_until: i64,
    backlog: VecDeque<Arc<Change>>,
    rx: broadcast::Receiver<Arc<Change>>,
    /// `next - 1`, readable from other tasks (for progress notifications).
    synced: Arc<AtomicI64>,
    /// The start revision was below the compact revision: the first `next` says so.
    compacted: bool,
}

impl Watch {
    pub(super) fn new(
        shared: Arc<Shared>,
        range: KeyRange,
        start_revision: i64,
        filter: WatchFilter,
    ) -> Watch {
        let (rx, next, sql_until, backlog, compacted) = {
            let hub = shared.hub.lock().unwrap_or_else(|p| p.into_inner());
            let compacted = start_revision > 0
                && start_revision < shared.compact_revision.load(Ordering::Acquire);
            let rx = hub.tx.subscribe();
            let current = shared.revision.load(Ordering::Acquire);
            if start_revision <= 0 || start_revision > current {
                let next = if start_revision <= 0 {
                    current + 1
                } else {
                    start_revision
                };
                (rx, next, 0, VecDeque::new(), compacted)
            } else if hub
                .ring
                .front()
                .is_some_and(|first| first.revision <= start_revision)
            {
                let backlog = hub
                    .ring
                    .iter()
                    .filter(|c| c.revision >= start_revision)
                    .cloned()
                    .collect();
                (rx, start_revision, 0, backlog, compacted)
            } else {
                (rx, start_revision, current, VecDeque::new(), compacted)
            }
        };
        Watch {
            shared,
            range,
            filter,
            next,
            sql_until,
            backlog,
            rx,
            synced: Arc::new(AtomicI64::new(next - 1)),
            compacted,
        }
    }

    /// The revision up to which everything has been handed out, shared with other tasks.
    pub fn synced(&self) -> Arc<AtomicI64> {
        Arc::clone(&self.synced)
    }

    fn advance(&mut self, revision: i64) {
        self.next = revision + 1;
        self.synced.store(revision, Ordering::Release);
    }

    fn matching(&self, change: &Change, out: &mut Vec<PbEvent>) {
        for e in &change.events {
            let Some(kv) = &e.kv else { continue };
            if !self.range.contains(&kv.key)
                || (self.filter.no_put && e.r#type == EVENT_PUT)
                || (self.filter.no_delete && e.r#type == EVENT_DELETE)
            {
                continue;
            }
            let mut e = e.clone();
            if !self.filter.prev_kv {
                e.prev_kv = None;
            }
            out.push(e);
        }
    }

    /// Waits for the next matching events; `Err(Compacted)` when the watcher's position was
    /// compacted away, `Err(Stopped)` when the store shuts down.
    pub async fn next(&mut self) -> Result<Vec<PbEvent>, Error> {
        if self.compacted {
            return Err(Error::Compacted);
        }
        let mut out = Vec::new();
        loop {
            if self.sql_until >= self.next {
                self.catch_up(&mut out).await?;
                if !out.is_empty() {
                    return Ok(out);
                }
                continue;
            }
            while let Some(change) = self.backlog.pop_front() {
                if change.revision >= self.next {
                    self.matching(&change, &mut out);
                    self.advance(change.revision);
                    if out.len() >= MAX_EVENTS_PER_BATCH {
                        return Ok(out);
                    }
                }
            }
            if !out.is_empty() {
                return Ok(out);
            }
            let first = self.rx.recv().await;
            let mut received = Some(first);
            while let Some(r) = received.take() {
                match r {
                    Ok(change) => {
                        if change.revision >= self.next {
                            self.matching(&change, &mut out);
                            self.advance(change.revision);
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        self.sql_until = self.shared.revision.load(Ordering::Acquire);
                        break;
                    }
                    Err(broadcast::error::RecvError::Closed) => return Err(Error::Stopped),
                }
                if out.len() >= MAX_EVENTS_PER_BATCH {
                    break;
                }
                // Take whatever else is already there, so a burst becomes one response.
                match self.rx.try_recv() {
                    Ok(c) => received = Some(Ok(c)),
                    Err(broadcast::error::TryRecvError::Lagged(n)) => {
                        received = Some(Err(broadcast::error::RecvError::Lagged(n)))
                    }
                    Err(_) => {}
                }
            }
            if !out.is_empty() {
                return Ok(out);
            }
        }
    }

    /// One SQL catch-up step: up to CATCH_UP_ROWS rows, whole revisions only.
    async fn catch_up(&mut self, out: &mut Vec<PbEvent>) -> Result<(), Error> {
        if self.next < self.shared.compact_revision.load(Ordering::Acquire) {
            return Err(Error::Compacted);
        }
        let (from, to) = (self.next, self.sql_until);
        let mut limit = CATCH_UP_ROWS;
        let rows = loop {
            let rows = self
                .shared
                .read(move |conn, _| sqlite::events(conn, from, to, limit))
                .await?;
            if (rows.len() as i64) < limit {
                break rows;
            }
            // Drop the last, possibly partial, revision unless it is the only one.
            let last = rows.last().map_or(0, |r| r.0);
            if rows.first().map_or(0, |r| r.0) != last {
                let mut rows = rows;
                rows.retain(|r| r.0 != last);
                break rows;
            }
            limit *= 2;
        };
        let complete = (rows.len() as i64) < CATCH_UP_ROWS;
        let mut change = Change {
            revision: 0,
            events: Vec::new(),
        };
        let mut last = self.next - 1;
        for (revision, event) in rows {
            if revision != change.revision && !change.events.is_empty() {
                self.matching(&change, out);
                change.events.clear();
            }
            change.revision = revision;
            change.events.push(event);
            last = revision;
        }
        if !change.events.is_empty() {
            self.matching(&change, out);
        }
        // A compaction may have removed rows while we read: check again before trusting them.
        if self.next < self.shared.compact_revision.load(Ordering::Acquire) {
            out.clear();
            return Err(Error::Compacted);
        }
        self.advance(if complete { to } else { last });
        Ok(())
    }
}
