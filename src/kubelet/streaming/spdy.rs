//! SPDY/3.1 server-side session codec for the kubelet streaming endpoints.
//!
//! kubectl ≤ 1.29 runs `exec`, `attach` and `cp` over SPDY/3.1, and `port-forward` always
//! uses SPDY (since kubectl 1.31 tunnelled inside WebSocket binary messages). The client is
//! Go's `moby/spdystream`, built on the Go SPDY/3 framer. The HTTP upgrade is done by the
//! caller, who hands the raw byte stream to [`Session::serve`]; this module speaks the
//! framing layer only:
//!
//! * every `SYN_STREAM` from the peer is answered with an empty `SYN_REPLY` and handed out
//!   as a [`Stream`] (headers plus an [`AsyncRead`] half and an [`AsyncWrite`] half);
//! * `PING`s with odd ids (the client's) are echoed; `SETTINGS` are accepted
//!   (`INITIAL_WINDOW_SIZE` honoured); `WINDOW_UPDATE`s are applied; `RST_STREAM` fails the
//!   stream; `GOAWAY` ends the stream receiver; unknown control frame types are ignored as
//!   the SPDY/3 spec asks;
//! * name/value header blocks use one zlib context per direction for the whole session,
//!   primed with the SPDY/3 dictionary ([`SPDY3_DICTIONARY`]);
//! * malformed input ends the session: a `GOAWAY` with `PROTOCOL_ERROR` is sent, the error
//!   is logged, every stream half then reports an error. Nothing here panics on input.
//!
//! # Flow control, and what spdystream does
//!
//! Facts read in `moby/spdystream` (`connection.go`, `stream.go`, `spdy/read.go`, as
//! vendored by kubernetes): spdystream never sends `WINDOW_UPDATE` or `SETTINGS`; its frame
//! handler has no case for either (they fall into "unhandled frame type", which is only
//! logged); `Stream.Write` sends one DATA frame per call without looking at any window. Its
//! framer *parses* both frame types, so sending them to it is harmless, but a control frame
//! of an unknown type makes its `ReadFrame` fail, which ends its whole connection: this
//! module therefore only ever sends `SYN_REPLY`, `RST_STREAM`, `PING`, `GOAWAY`,
//! `WINDOW_UPDATE` and DATA. spdystream drops DATA that arrives before the stream's
//! `SYN_REPLY`, so the reply is always queued before any data of that stream. A stream is
//! half-closed by a DATA frame with FIN (spdystream's `Close`); FIN on `SYN_STREAM`,
//! `SYN_REPLY` or `HEADERS` is honoured too.
//!
//! Consequences:
//! * **Sending**: we count the SPDY/3.1 windows (per stream, initial 64 KiB, and per session)
//!   from the start, but only *wait* on them once the peer shows it uses flow control: the
//!   per-stream window once it sent a `SETTINGS` with `INITIAL_WINDOW_SIZE` or any
//!   `WINDOW_UPDATE`, the session window once it sent a session-level (`stream 0`)
//!   `WINDOW_UPDATE`. Against spdystream, writes are therefore limited only by TCP
//!   back-pressure (and a bounded outgoing queue, [`Config::out_queue_limit`]).
//! * **Receiving**: we advertise the default 64 KiB windows and send `WINDOW_UPDATE`s
//!   (stream and session) as the reader consumes data, so a peer that does flow control
//!   never has more than 64 KiB in flight per stream. spdystream ignores them and keeps
//!   sending, so each stream also has a bounded buffer ([`Config::max_stream_buffer`]): when
//!   it is full, the connection reader stops reading (TCP back-pressure reaches the peer, as
//!   with Go's kubelet, whose spdystream handler blocks on an unbuffered channel). While it
//!   waits, frames of other streams wait too; if the slow reader consumes nothing for
//!   [`Config::stall_timeout`], that stream is reset (`RST_STREAM FLOW_CONTROL_ERROR`, its
//!   reader gets an error) and the session carries on. So a stuck reader stalls the others
//!   for at most `stall_timeout`.
//!
//! The byte stream may deliver frames in arbitrary pieces (the WebSocket tunnel of
//! `port-forward` splits frames across messages): frames are reassembled before parsing.
//!
//! # Tasks
//!
//! [`Session::serve`] spawns two tasks (connection reader, connection writer). Both end when
//! the connection ends (EOF, I/O error, protocol error, or [`Session::close`]); a stream's
//! reader then reports `UnexpectedEof` unless the peer had sent FIN.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, ReadBuf};
use tokio::sync::{Notify, mpsc, watch};
use tokio::time::Instant;
use tracing::{debug, warn};

/// The zlib dictionary of SPDY/3 (spec §2.6.10.1): 1423 bytes, Adler-32 `0xe3c6a7c2`.
/// Both compression contexts of a session are primed with it.
pub const SPDY3_DICTIONARY: &[u8; 1423] = b"\
    \0\0\0\x07options\0\0\0\x04head\0\0\0\x04post\0\0\0\x03put\0\0\0\x06delete\
    \0\0\0\x05trace\0\0\0\x06accept\0\0\0\x0eaccept-charset\0\0\0\x0faccept-encoding\
    \0\0\0\x0faccept-language\0\0\0\x0daccept-ranges\0\0\0\x03age\0\0\0\x05allow\
    \0\0\0\x0dauthorization\0\0\0\x0dcache-control\0\0\0\x0aconnection\0\0\0\x0ccontent-base\
    \0\0\0\x10content-encoding\0\0\0\x10content-language\0\0\0\x0econtent-length\
    \0\0\0\x10content-location\0\0\0\x0bcontent-md5\0\0\0\x0dcontent-range\0\0\0\x0ccontent-type\
    \0\0\0\x04date\0\0\0\x04etag\0\0\0\x06expect\0\0\0\x07expires\0\0\0\x04from\
    \0\0\0\x04host\0\0\0\x08if-match\0\0\0\x11if-modified-since\0\0\0\x0dif-none-match\
    \0\0\0\x08if-range\0\0\0\x13if-unmodified-since\0\0\0\x0dlast-modified\0\0\0\x08location\
    \0\0\0\x0cmax-forwards\0\0\0\x06pragma\0\0\0\x12proxy-authenticate\0\0\0\x13proxy-authorization\
    \0\0\0\x05range\0\0\0\x07referer\0\0\0\x0bretry-after\0\0\0\x06server\0\0\0\x02te\
    \0\0\0\x07trailer\0\0\0\x11transfer-encoding\0\0\0\x07upgrade\0\0\0\x0auser-agent\
    \0\0\0\x04vary\0\0\0\x03via\0\0\0\x07warning\0\0\0\x10www-authenticate\0\0\0\x06method\
    \0\0\0\x03get\0\0\0\x06status\0\0\0\x06200 OK\0\0\0\x07version\0\0\0\x08HTTP/1.1\
    \0\0\0\x03url\0\0\0\x06public\0\0\0\x0aset-cookie\0\0\0\x0akeep-alive\0\0\0\x06origin\
    10010120120220520630030230330430530630740240540640740840941041141241341441541641\
    7502504505203 Non-Authoritative Information204 No Content301 Moved Permanently40\
    0 Bad Request401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error\
    501 Not Implemented503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept O\
    ct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,imag\
    e/png,image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,text/\
    javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1\
    ,utf-,*,enq=0.";

/// Adler-32 of [`SPDY3_DICTIONARY`]; zlib streams name their dictionary by it.
const SPDY3_DICTIONARY_ADLER32: u32 = 0xe3c6_a7c2;

const SPDY_VERSION: u16 = 3;

const TYPE_SYN_STREAM: u16 = 1;
const TYPE_SYN_REPLY: u16 = 2;
const TYPE_RST_STREAM: u16 = 3;
const TYPE_SETTINGS: u16 = 4;
const TYPE_PING: u16 = 6;
const TYPE_GOAWAY: u16 = 7;
const TYPE_HEADERS: u16 = 8;
const TYPE_WINDOW_UPDATE: u16 = 9;

const FLAG_FIN: u8 = 0x01;
const FLAG_UNIDIRECTIONAL: u8 = 0x02;

/// `RST_STREAM` status codes (SPDY/3 §2.6.3).
const RST_PROTOCOL_ERROR: u32 = 1;
const RST_INVALID_STREAM: u32 = 2;
const RST_REFUSED_STREAM: u32 = 3;
const RST_CANCEL: u32 = 5;
const RST_FLOW_CONTROL_ERROR: u32 = 7;

/// `GOAWAY` status codes.
const GOAWAY_OK: u32 = 0;
const GOAWAY_PROTOCOL_ERROR: u32 = 1;

const SETTINGS_INITIAL_WINDOW_SIZE: u32 = 7;

/// Initial per-stream and per-session window of SPDY/3.1.
const DEFAULT_WINDOW: i64 = 65_536;
/// Largest window the protocol allows (2^31 - 1).
const MAX_WINDOW: i64 = 0x7fff_ffff;
/// We credit consumed bytes back once half the window has been consumed.
const WINDOW_UPDATE_THRESHOLD: u32 = (DEFAULT_WINDOW / 2) as u32;
/// Largest DATA payload we send in one frame.
const MAX_DATA_CHUNK: usize = 32 * 1024;
/// Largest control frame payload we accept (header blocks of kubectl are a few hundred bytes).
const MAX_CONTROL_FRAME: usize = 1024 * 1024;
/// Largest decompressed header block we accept (guards against zlib bombs).
const MAX_HEADER_BLOCK: usize = 256 * 1024;
/// Largest number of name/value pairs in one header block.
const MAX_HEADER_PAIRS: u32 = 1024;
/// Most bytes the writer task takes from the queue for one batch.
const WRITE_BATCH: usize = 256 * 1024;

/// Limits of a session; [`Config::default`] suits kubectl.
#[derive(Clone, Debug)]
pub struct Config {
    /// Bytes buffered per stream for a reader that is behind (see the module docs).
    pub max_stream_buffer: usize,
    /// How long the connection reader waits for a full stream buffer to drain before it
    /// resets that stream.
    pub stall_timeout: Duration,
    /// Concurrently open streams; more `SYN_STREAM`s are refused.
    pub max_streams: usize,
    /// DATA bytes queued for the connection writer before stream writers wait.
    pub out_queue_limit: usize,
    /// New streams not yet taken from the receiver before the connection reader waits.
    pub incoming_capacity: usize,
    /// How long closing (GOAWAY, pending writes) may take before the connection is dropped.
    pub close_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_stream_buffer: 1024 * 1024,
            stall_timeout: Duration::from_secs(60),
            max_streams: 256,
            out_queue_limit: 256 * 1024,
            incoming_capacity: 16,
            close_timeout: Duration::from_secs(10),
        }
    }
}

/// Why a session ended abnormally (logged; stream halves see an `io::Error`).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("header block: {0}")]
    HeaderBlock(String),
}

fn protocol(msg: impl Into<String>) -> Error {
    Error::Protocol(msg.into())
}

// ---------------------------------------------------------------------------------------
// Frame encoding and header blocks
// ---------------------------------------------------------------------------------------

fn control_frame(frame_type: u16, flags: u8, payload: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(8 + payload.len());
    b.put_u16(0x8000 | SPDY_VERSION);
    b.put_u16(frame_type);
    b.put_u32((u32::from(flags) << 24) | (payload.len() as u32 & 0x00ff_ffff));
    b.put_slice(payload);
    b.freeze()
}

fn data_frame(stream_id: u32, flags: u8, payload: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(8 + payload.len());
    b.put_u32(stream_id & 0x7fff_ffff);
    b.put_u32((u32::from(flags) << 24) | (payload.len() as u32 & 0x00ff_ffff));
    b.put_slice(payload);
    b.freeze()
}

fn rst_stream_frame(stream_id: u32, status: u32) -> Bytes {
    let mut p = [0u8; 8];
    p[..4].copy_from_slice(&(stream_id & 0x7fff_ffff).to_be_bytes());
    p[4..].copy_from_slice(&status.to_be_bytes());
    control_frame(TYPE_RST_STREAM, 0, &p)
}

fn window_update_frame(stream_id: u32, delta: u32) -> Bytes {
    let mut p = [0u8; 8];
    p[..4].copy_from_slice(&(stream_id & 0x7fff_ffff).to_be_bytes());
    p[4..].copy_from_slice(&(delta & 0x7fff_ffff).to_be_bytes());
    control_frame(TYPE_WINDOW_UPDATE, 0, &p)
}

fn goaway_frame(last_good: u32, status: u32) -> Bytes {
    let mut p = [0u8; 8];
    p[..4].copy_from_slice(&(last_good & 0x7fff_ffff).to_be_bytes());
    p[4..].copy_from_slice(&status.to_be_bytes());
    control_frame(TYPE_GOAWAY, 0, &p)
}

/// Serialises a SPDY/3 name/value block (before compression): 32-bit counts and lengths;
/// repeated names are joined with NUL as the spec requires.
fn encode_header_block(headers: &[(String, String)]) -> Vec<u8> {
    let mut merged: Vec<(String, String)> = Vec::new();
    for (name, value) in headers {
        let name = name.to_ascii_lowercase();
        match merged.iter_mut().find(|(n, _)| *n == name) {
            Some((_, v)) => {
                v.push('\0');
                v.push_str(value);
            }
            None => merged.push((name, value.clone())),
        }
    }
    let mut out = Vec::new();
    out.extend_from_slice(&(merged.len() as u32).to_be_bytes());
    for (name, value) in &merged {
        out.extend_from_slice(&(name.len() as u32).to_be_bytes());
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&(value.len() as u32).to_be_bytes());
        out.extend_from_slice(value.as_bytes());
    }
    out
}

/// Parses a decompressed name/value block. Names are lower-cased; a value holding NULs
/// yields one pair per part.
fn parse_header_block(mut buf: &[u8]) -> Result<Vec<(String, String)>, Error> {
    fn take<'a>(buf: &mut &'a [u8], n: usize) -> Result<&'a [u8], Error> {
        if buf.len() < n {
            return Err(Error::HeaderBlock("truncated name/value block".into()));
        }
        let (head, rest) = buf.split_at(n);
        *buf = rest;
        Ok(head)
    }
    fn take_u32(buf: &mut &[u8]) -> Result<u32, Error> {
        let b = take(buf, 4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    let count = take_u32(&mut buf)?;
    if count > MAX_HEADER_PAIRS {
        return Err(Error::HeaderBlock(format!("{count} header pairs")));
    }
    let mut headers = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let len = take_u32(&mut buf)? as usize;
        let name = take(&mut buf, len)?;
        if name.is_empty() {
            return Err(Error::HeaderBlock("empty header name".into()));
        }
        let name = String::from_utf8_lossy(name).to_ascii_lowercase();
        let len = take_u32(&mut buf)? as usize;
        let value = take(&mut buf, len)?;
        for part in value.split(|b| *b == 0) {
            headers.push((name.clone(), String::from_utf8_lossy(part).into_owned()));
        }
    }
    if !buf.is_empty() {
        return Err(Error::HeaderBlock(format!(
            "{} bytes after the name/value block",
            buf.len()
        )));
    }
    Ok(headers)
}

/// Compression side of one direction of a session: one zlib stream for every header block
/// we send, each block ending with a sync flush so the peer can decode it at once.
struct HeaderCompressor {
    z: Compress,
    primed: bool,
}

impl HeaderCompressor {
    fn new() -> Self {
        HeaderCompressor {
            z: Compress::new(Compression::default(), true),
            primed: false,
        }
    }

    fn compress(&mut self, block: &[u8]) -> Result<Vec<u8>, Error> {
        if !self.primed {
            self.z
                .set_dictionary(SPDY3_DICTIONARY)
                .map_err(|e| Error::HeaderBlock(format!("deflate dictionary: {e}")))?;
            self.primed = true;
        }
        let start = self.z.total_in();
        let mut out = Vec::with_capacity(block.len() + 64);
        loop {
            if out.capacity() - out.len() < 64 {
                out.reserve(256);
            }
            let consumed = (self.z.total_in() - start) as usize;
            self.z
                .compress_vec(&block[consumed..], &mut out, FlushCompress::Sync)
                .map_err(|e| Error::HeaderBlock(format!("deflate: {e}")))?;
            let consumed = (self.z.total_in() - start) as usize;
            // A sync flush is complete once all input is in and zlib left spare room.
            if consumed == block.len() && out.len() < out.capacity() {
                return Ok(out);
            }
        }
    }
}

/// Decompression side of one direction of a session.
struct HeaderDecompressor {
    z: Decompress,
}

impl HeaderDecompressor {
    fn new() -> Self {
        HeaderDecompressor {
            z: Decompress::new(true),
        }
    }

    fn decompress(&mut self, block: &[u8]) -> Result<Vec<u8>, Error> {
        let start = self.z.total_in();
        let mut out: Vec<u8> = Vec::with_capacity(1024);
        loop {
            if out.len() == out.capacity() {
                if out.len() >= MAX_HEADER_BLOCK {
                    return Err(Error::HeaderBlock("header block too large".into()));
                }
                out.reserve(out.len().max(1024));
            }
            let consumed = (self.z.total_in() - start) as usize;
            let produced = out.len();
            match self
                .z
                .decompress_vec(&block[consumed..], &mut out, FlushDecompress::Sync)
            {
                Ok(Status::StreamEnd) => {
                    return Err(Error::HeaderBlock("zlib stream ended".into()));
                }
                Ok(_) => {}
                Err(e) => match e.needs_dictionary() {
                    Some(SPDY3_DICTIONARY_ADLER32) => {
                        self.z
                            .set_dictionary(SPDY3_DICTIONARY)
                            .map_err(|e| Error::HeaderBlock(format!("inflate dictionary: {e}")))?;
                        continue;
                    }
                    Some(other) => {
                        return Err(Error::HeaderBlock(format!(
                            "peer wants zlib dictionary {other:#010x}, not SPDY/3's"
                        )));
                    }
                    None => return Err(Error::HeaderBlock(format!("inflate: {e}"))),
                },
            }
            let now_consumed = (self.z.total_in() - start) as usize;
            if now_consumed == block.len() && out.len() < out.capacity() {
                return Ok(out);
            }
            if now_consumed == consumed && out.len() == produced {
                return Err(Error::HeaderBlock("truncated compressed block".into()));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Shared session state
// ---------------------------------------------------------------------------------------

struct StreamState {
    recv: VecDeque<Bytes>,
    recv_len: usize,
    consumed_total: u64,
    recv_unacked: u32,
    remote_fin: bool,
    reset: bool,
    reader_open: bool,
    writer_open: bool,
    read_waker: Option<Waker>,
    send_window: i64,
    local_fin: bool,
    write_waker: Option<Waker>,
    /// Bytes of our frames for this stream not yet written to the connection.
    queued: usize,
    flush_waker: Option<Waker>,
}

impl StreamState {
    fn wake_all(&mut self) {
        for w in [
            self.read_waker.take(),
            self.write_waker.take(),
            self.flush_waker.take(),
        ]
        .into_iter()
        .flatten()
        {
            w.wake();
        }
    }
}

struct State {
    ctrl: VecDeque<Bytes>,
    data: VecDeque<(u32, Bytes)>,
    data_queued: usize,
    space_waiters: Vec<Waker>,
    streams: HashMap<u32, StreamState>,
    compressor: HeaderCompressor,
    /// The connection is unusable: every stream operation fails.
    dead: bool,
    /// The writer closes the connection once its queue is empty; no new DATA is accepted.
    closing: bool,
    goaway_sent: bool,
    last_good_stream: u32,
    initial_send_window: i64,
    session_send_window: i64,
    enforce_stream_windows: bool,
    enforce_session_window: bool,
    session_recv_unacked: u32,
    tasks_running: u8,
}

struct Shared {
    state: Mutex<State>,
    /// Wakes the writer task (a stored permit: no wake-up is lost).
    writer_wake: Notify,
    /// Wakes the reader task waiting for stream buffer space.
    space: Notify,
    /// Set to stop both tasks now.
    shutdown: watch::Sender<bool>,
    /// Set once both tasks have ended.
    done: watch::Sender<bool>,
    config: Config,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A poisoned lock only means another thread panicked while holding it; the state
        // itself is still consistent enough to tear the session down.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn push_ctrl(&self, st: &mut State, frame: Bytes) {
        if st.dead && !st.closing {
            return;
        }
        st.ctrl.push_back(frame);
        self.writer_wake.notify_one();
    }

    /// Credits `n` consumed (or discarded) bytes of `id` back to the peer.
    fn credit(&self, st: &mut State, id: u32, n: usize) {
        let n = n.min(u32::MAX as usize) as u32;
        let mut frames = Vec::new();
        if let Some(s) = st.streams.get_mut(&id)
            && !s.remote_fin
            && !s.reset
        {
            s.recv_unacked = s.recv_unacked.saturating_add(n);
            if s.recv_unacked >= WINDOW_UPDATE_THRESHOLD {
                frames.push(window_update_frame(id, s.recv_unacked));
                s.recv_unacked = 0;
            }
        }
        st.session_recv_unacked = st.session_recv_unacked.saturating_add(n);
        if st.session_recv_unacked >= WINDOW_UPDATE_THRESHOLD {
            frames.push(window_update_frame(0, st.session_recv_unacked));
            st.session_recv_unacked = 0;
        }
        for f in frames {
            self.push_ctrl(st, f);
        }
    }

    /// Marks a stream reset (by either side): buffered and queued data are dropped and
    /// both halves fail from now on.
    fn mark_reset(&self, st: &mut State, id: u32) {
        let Some(s) = st.streams.get_mut(&id) else {
            return;
        };
        s.reset = true;
        let discarded = s.recv_len;
        s.recv.clear();
        s.recv_len = 0;
        s.queued = 0;
        s.wake_all();
        let before = st.data.len();
        let mut dropped = 0;
        st.data.retain(|(sid, f)| {
            if *sid == id {
                dropped += f.len();
                false
            } else {
                true
            }
        });
        if st.data.len() != before {
            st.data_queued = st.data_queued.saturating_sub(dropped);
            for w in st.space_waiters.drain(..) {
                w.wake();
            }
        }
        if discarded > 0 {
            self.credit(st, id, discarded);
        }
        self.space.notify_waiters();
        Self::maybe_remove(st, id);
    }

    fn maybe_remove(st: &mut State, id: u32) {
        if let Some(s) = st.streams.get(&id)
            && !s.reader_open
            && !s.writer_open
        {
            st.streams.remove(&id);
        }
    }

    /// The connection can no longer be used: fail every stream and wake every waiter.
    fn fail_all(&self, st: &mut State) {
        st.dead = true;
        st.data.clear();
        st.data_queued = 0;
        for s in st.streams.values_mut() {
            s.queued = 0;
            s.wake_all();
        }
        for w in st.space_waiters.drain(..) {
            w.wake();
        }
        st.streams.retain(|_, s| s.reader_open || s.writer_open);
        self.space.notify_waiters();
    }

    fn task_ended(&self) {
        let mut st = self.lock();
        st.tasks_running = st.tasks_running.saturating_sub(1);
        if st.tasks_running == 0 {
            self.fail_all(&mut st);
            drop(st);
            self.done.send_replace(true);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Public API
// ---------------------------------------------------------------------------------------

/// Handle on a running session; cheap to clone.
#[derive(Clone)]
pub struct Session {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").finish_non_exhaustive()
    }
}

/// One peer-initiated stream, already answered with `SYN_REPLY`.
pub struct Stream {
    id: u32,
    headers: Vec<(String, String)>,
    /// `None` once split.
    shared: Option<Arc<Shared>>,
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stream")
            .field("id", &self.id)
            .field("headers", &self.headers)
            .finish()
    }
}

/// Receiving half of a [`Stream`]: EOF once the peer sent FIN, an error after
/// `RST_STREAM` or when the connection ended first.
pub struct StreamReader {
    id: u32,
    shared: Arc<Shared>,
}

/// Sending half of a [`Stream`]. `poll_shutdown` sends FIN (an empty DATA frame with the
/// FIN flag) and waits until it is written; dropping the writer without shutdown also
/// queues the FIN.
pub struct StreamWriter {
    id: u32,
    shared: Arc<Shared>,
}

impl Stream {
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The `SYN_STREAM` headers, names lower-case, in the order sent (a multi-valued
    /// header appears once per value).
    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }

    /// First value of header `name` (compared case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn split(mut self) -> (StreamReader, StreamWriter) {
        // Infallible: `shared` is only taken here, and `split` consumes the stream.
        let shared = self
            .shared
            .take()
            .expect("a Stream is split at most once, since split consumes it");
        (
            StreamReader {
                id: self.id,
                shared: shared.clone(),
            },
            StreamWriter {
                id: self.id,
                shared,
            },
        )
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        if let Some(shared) = self.shared.take() {
            drop(StreamReader {
                id: self.id,
                shared: shared.clone(),
            });
            drop(StreamWriter {
                id: self.id,
                shared,
            });
        }
    }
}

impl Session {
    /// Runs the session over `io` with [`Config::default`]. See [`Session::serve_with`].
    pub fn serve<IO>(io: IO) -> (Session, mpsc::Receiver<Stream>)
    where
        IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        Self::serve_with(io, Config::default())
    }

    /// Runs the session over `io` (two tasks spawned on the current tokio runtime).
    /// Incoming `SYN_STREAM`s are auto-answered with `SYN_REPLY` and delivered on the
    /// receiver. The receiver ends when the connection ends or the peer sends `GOAWAY`.
    pub fn serve_with<IO>(io: IO, config: Config) -> (Session, mpsc::Receiver<Stream>)
    where
        IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let (tx, rx) = mpsc::channel(config.incoming_capacity.max(1));
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                ctrl: VecDeque::new(),
                data: VecDeque::new(),
                data_queued: 0,
                space_waiters: Vec::new(),
                streams: HashMap::new(),
                compressor: HeaderCompressor::new(),
                dead: false,
                closing: false,
                goaway_sent: false,
                last_good_stream: 0,
                initial_send_window: DEFAULT_WINDOW,
                session_send_window: DEFAULT_WINDOW,
                enforce_stream_windows: false,
                enforce_session_window: false,
                session_recv_unacked: 0,
                tasks_running: 2,
            }),
            writer_wake: Notify::new(),
            space: Notify::new(),
            shutdown: watch::channel(false).0,
            done: watch::channel(false).0,
            config,
        });
        let (rd, wr) = tokio::io::split(io);
        tokio::spawn(reader_task(shared.clone(), rd, tx));
        tokio::spawn(writer_task(shared.clone(), wr));
        (Session { shared }, rx)
    }

    /// Sends `GOAWAY` (status OK, last accepted stream), refuses new streams and new DATA,
    /// writes what is already queued, then closes the connection. Returns once both tasks
    /// have ended (at most [`Config::close_timeout`] after the queue stopped draining).
    pub async fn close(&self) {
        {
            let mut st = self.shared.lock();
            if !st.dead && !st.goaway_sent {
                st.goaway_sent = true;
                let f = goaway_frame(st.last_good_stream, GOAWAY_OK);
                self.shared.push_ctrl(&mut st, f);
            }
            st.closing = true;
            for s in st.streams.values_mut() {
                s.wake_all();
            }
        }
        self.shared.writer_wake.notify_one();
        self.closed().await;
    }

    /// Resolves once the connection has ended and both tasks are gone.
    pub async fn closed(&self) {
        let mut rx = self.shared.done.subscribe();
        // The sender lives in `shared`, which we hold: `wait_for` cannot fail.
        let _ = rx.wait_for(|done| *done).await;
    }

    /// Resets stream `stream_id` (`RST_STREAM` with status CANCEL): both halves fail from
    /// now on. Unknown or finished streams are ignored.
    pub fn reset(&self, stream_id: u32) {
        let mut st = self.shared.lock();
        let Some(s) = st.streams.get(&stream_id) else {
            return;
        };
        if s.reset {
            return;
        }
        let f = rst_stream_frame(stream_id, RST_CANCEL);
        self.shared.push_ctrl(&mut st, f);
        self.shared.mark_reset(&mut st, stream_id);
    }
}

impl AsyncRead for StreamReader {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let shared = &self.shared;
        let mut st = shared.lock();
        let dead = st.dead;
        let Some(s) = st.streams.get_mut(&self.id) else {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "SPDY connection closed",
            )));
        };
        if s.reset {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                "SPDY stream reset",
            )));
        }
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        if let Some(front) = s.recv.front_mut() {
            let n = front.len().min(buf.remaining());
            buf.put_slice(&front[..n]);
            front.advance(n);
            if front.is_empty() {
                s.recv.pop_front();
            }
            s.recv_len -= n;
            s.consumed_total += n as u64;
            shared.credit(&mut st, self.id, n);
            shared.space.notify_waiters();
            return Poll::Ready(Ok(()));
        }
        if s.remote_fin {
            return Poll::Ready(Ok(()));
        }
        if dead {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "SPDY connection closed before the stream ended",
            )));
        }
        s.read_waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl Drop for StreamReader {
    fn drop(&mut self) {
        let mut st = self.shared.lock();
        let Some(s) = st.streams.get_mut(&self.id) else {
            return;
        };
        s.reader_open = false;
        let discarded = s.recv_len;
        s.recv.clear();
        s.recv_len = 0;
        if discarded > 0 {
            self.shared.credit(&mut st, self.id, discarded);
        }
        self.shared.space.notify_waiters();
        Shared::maybe_remove(&mut st, self.id);
    }
}

impl StreamWriter {
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Waits until every frame queued for this stream has been written.
    fn poll_drained(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut st = self.shared.lock();
        let dead = st.dead;
        let Some(s) = st.streams.get_mut(&self.id) else {
            return Poll::Ready(Ok(()));
        };
        if s.queued == 0 {
            return Poll::Ready(Ok(()));
        }
        if dead || s.reset {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "SPDY stream ended before its data was written",
            )));
        }
        s.flush_waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl AsyncWrite for StreamWriter {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let shared = &self.shared;
        let mut st = shared.lock();
        if st.dead || st.closing {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "SPDY session closed",
            )));
        }
        let out_full = st.data_queued >= shared.config.out_queue_limit;
        let enforce_stream = st.enforce_stream_windows;
        let enforce_session = st.enforce_session_window;
        let session_window = st.session_send_window;
        let Some(s) = st.streams.get_mut(&self.id) else {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "SPDY stream closed",
            )));
        };
        if s.reset {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                "SPDY stream reset",
            )));
        }
        if s.local_fin {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "write after SPDY stream shutdown",
            )));
        }
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let mut n = buf.len().min(MAX_DATA_CHUNK);
        if enforce_stream {
            if s.send_window <= 0 {
                s.write_waker = Some(cx.waker().clone());
                return Poll::Pending;
            }
            n = n.min(s.send_window as usize);
        }
        if enforce_session {
            if session_window <= 0 {
                s.write_waker = Some(cx.waker().clone());
                return Poll::Pending;
            }
            n = n.min(session_window as usize);
        }
        if out_full {
            if !st.space_waiters.iter().any(|w| w.will_wake(cx.waker())) {
                st.space_waiters.push(cx.waker().clone());
            }
            return Poll::Pending;
        }
        let frame = data_frame(self.id, 0, &buf[..n]);
        let Some(s) = st.streams.get_mut(&self.id) else {
            return Poll::Ready(Err(io::Error::other("SPDY stream vanished")));
        };
        s.send_window -= n as i64;
        s.queued += frame.len();
        st.session_send_window -= n as i64;
        st.data_queued += frame.len();
        st.data.push_back((self.id, frame));
        shared.writer_wake.notify_one();
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_drained(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        {
            let mut st = self.shared.lock();
            let dead = st.dead;
            let Some(s) = st.streams.get_mut(&self.id) else {
                return Poll::Ready(Ok(()));
            };
            if !s.local_fin && !s.reset {
                if dead {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::BrokenPipe,
                        "SPDY session closed",
                    )));
                }
                s.local_fin = true;
                let frame = data_frame(self.id, FLAG_FIN, &[]);
                s.queued += frame.len();
                st.data_queued += frame.len();
                st.data.push_back((self.id, frame));
                self.shared.writer_wake.notify_one();
            }
        }
        self.poll_drained(cx)
    }
}

impl Drop for StreamWriter {
    fn drop(&mut self) {
        let mut st = self.shared.lock();
        let dead = st.dead;
        let Some(s) = st.streams.get_mut(&self.id) else {
            return;
        };
        s.writer_open = false;
        if !s.local_fin && !s.reset && !dead {
            s.local_fin = true;
            let frame = data_frame(self.id, FLAG_FIN, &[]);
            st.data_queued += frame.len();
            st.data.push_back((self.id, frame));
            self.shared.writer_wake.notify_one();
        }
        Shared::maybe_remove(&mut st, self.id);
    }
}

// ---------------------------------------------------------------------------------------
// Connection tasks
// ---------------------------------------------------------------------------------------

async fn wait_shutdown(shared: &Shared) {
    let mut rx = shared.shutdown.subscribe();
    let _ = rx.wait_for(|stop| *stop).await;
}

async fn writer_task<W: AsyncWrite + Unpin>(shared: Arc<Shared>, mut wr: W) {
    let mut close_deadline: Option<Instant> = None;
    loop {
        let notified = shared.writer_wake.notified();
        let (batch, closing, dead) = {
            let mut st = shared.lock();
            let mut batch: Vec<(Option<u32>, Bytes)> =
                st.ctrl.drain(..).map(|f| (None, f)).collect();
            let mut taken = 0;
            while taken < WRITE_BATCH {
                let Some((id, f)) = st.data.pop_front() else {
                    break;
                };
                taken += f.len();
                batch.push((Some(id), f));
            }
            (batch, st.closing, st.dead)
        };
        if closing && close_deadline.is_none() {
            close_deadline = Some(Instant::now() + shared.config.close_timeout);
        }
        let deadline = async {
            match close_deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        if batch.is_empty() {
            if closing || dead {
                break;
            }
            tokio::select! {
                _ = notified => continue,
                _ = wait_shutdown(&shared) => break,
            }
        }
        let write = async {
            for (_, f) in &batch {
                wr.write_all(f).await?;
            }
            wr.flush().await
        };
        let result = tokio::select! {
            r = write => r,
            _ = wait_shutdown(&shared) => break,
            _ = deadline => {
                debug!("SPDY close timed out with data still queued");
                break;
            }
        };
        let mut st = shared.lock();
        if let Err(e) = result {
            debug!(error = %e, "SPDY connection write failed");
            shared.fail_all(&mut st);
            break;
        }
        let mut written = 0;
        for (id, f) in &batch {
            let Some(id) = id else { continue };
            written += f.len();
            if let Some(s) = st.streams.get_mut(id) {
                s.queued = s.queued.saturating_sub(f.len());
                if s.queued == 0
                    && let Some(w) = s.flush_waker.take()
                {
                    w.wake();
                }
            }
        }
        if written > 0 {
            st.data_queued = st.data_queued.saturating_sub(written);
            for w in st.space_waiters.drain(..) {
                w.wake();
            }
        }
    }
    // Closing: no more frames. A failing shutdown only means the peer is gone already.
    let _ = tokio::time::timeout(Duration::from_secs(1), wr.shutdown()).await;
    {
        let mut st = shared.lock();
        shared.fail_all(&mut st);
    }
    shared.shutdown.send_replace(true);
    shared.task_ended();
}

async fn reader_task<R: AsyncRead + Unpin>(
    shared: Arc<Shared>,
    rd: R,
    incoming: mpsc::Sender<Stream>,
) {
    let mut conn = ConnReader {
        shared: shared.clone(),
        rd: BufReader::with_capacity(64 * 1024, rd),
        decompressor: HeaderDecompressor::new(),
        incoming: Some(incoming),
        last_peer_stream: 0,
    };
    let result = tokio::select! {
        r = conn.run() => r,
        _ = wait_shutdown(&shared) => Ok(()),
    };
    drop(conn);
    let mut st = shared.lock();
    match result {
        Ok(()) => {
            debug!("SPDY connection ended");
            shared.fail_all(&mut st);
            drop(st);
            shared.shutdown.send_replace(true);
        }
        Err(Error::Io(e)) => {
            debug!(error = %e, "SPDY connection read failed");
            shared.fail_all(&mut st);
            drop(st);
            shared.shutdown.send_replace(true);
        }
        Err(e) => {
            warn!(error = %e, "SPDY peer sent malformed input; closing the session");
            // Tell the peer, then let the writer flush that and close the connection.
            shared.fail_all(&mut st);
            st.closing = true;
            st.goaway_sent = true;
            let f = goaway_frame(st.last_good_stream, GOAWAY_PROTOCOL_ERROR);
            st.ctrl.push_back(f);
            drop(st);
            shared.writer_wake.notify_one();
        }
    }
    shared.task_ended();
}

struct ConnReader<R> {
    shared: Arc<Shared>,
    rd: BufReader<R>,
    decompressor: HeaderDecompressor,
    /// `None` after the peer's GOAWAY or when nobody takes new streams any more.
    incoming: Option<mpsc::Sender<Stream>>,
    last_peer_stream: u32,
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

impl<R: AsyncRead + Unpin> ConnReader<R> {
    async fn run(&mut self) -> Result<(), Error> {
        loop {
            let mut head = [0u8; 8];
            // EOF exactly between frames is the ordinary end of the connection.
            let first = self.rd.read(&mut head[..1]).await?;
            if first == 0 {
                return Ok(());
            }
            self.rd.read_exact(&mut head[1..]).await?;
            let flags = head[4];
            let len = (be32(&head[4..8]) & 0x00ff_ffff) as usize;
            if head[0] & 0x80 != 0 {
                let version = u16::from_be_bytes([head[0], head[1]]) & 0x7fff;
                let frame_type = u16::from_be_bytes([head[2], head[3]]);
                if version != SPDY_VERSION {
                    return Err(protocol(format!("SPDY version {version}")));
                }
                if len > MAX_CONTROL_FRAME {
                    return Err(protocol(format!("control frame of {len} bytes")));
                }
                let mut payload = vec![0u8; len];
                self.rd.read_exact(&mut payload).await?;
                self.control(frame_type, flags, &payload).await?;
            } else {
                let id = be32(&head[0..4]) & 0x7fff_ffff;
                let mut payload = BytesMut::zeroed(len);
                self.rd.read_exact(&mut payload).await?;
                self.data(id, flags, payload.freeze()).await?;
            }
        }
    }

    async fn control(&mut self, frame_type: u16, flags: u8, p: &[u8]) -> Result<(), Error> {
        match frame_type {
            TYPE_SYN_STREAM => self.syn_stream(flags, p).await,
            TYPE_SYN_REPLY | TYPE_HEADERS => {
                if p.len() < 4 {
                    return Err(protocol("short SYN_REPLY/HEADERS"));
                }
                let id = be32(p) & 0x7fff_ffff;
                // Decoded only to keep the shared zlib context in step.
                let raw = self.decompressor.decompress(&p[4..])?;
                parse_header_block(&raw)?;
                if frame_type == TYPE_SYN_REPLY {
                    debug!(stream = id, "ignoring SYN_REPLY: we never open streams");
                } else if flags & FLAG_FIN != 0 {
                    self.remote_fin(id);
                }
                Ok(())
            }
            TYPE_RST_STREAM => {
                if p.len() != 8 {
                    return Err(protocol("RST_STREAM length"));
                }
                let id = be32(p) & 0x7fff_ffff;
                let status = be32(&p[4..]);
                debug!(stream = id, status, "peer reset stream");
                let mut st = self.shared.lock();
                self.shared.mark_reset(&mut st, id);
                Ok(())
            }
            TYPE_SETTINGS => self.settings(p),
            TYPE_PING => {
                if p.len() != 4 {
                    return Err(protocol("PING length"));
                }
                // Odd ids are the client's pings; even ones would answer ours (we send none).
                if be32(p) % 2 == 1 {
                    let mut st = self.shared.lock();
                    self.shared
                        .push_ctrl(&mut st, control_frame(TYPE_PING, 0, p));
                }
                Ok(())
            }
            TYPE_GOAWAY => {
                if p.len() < 4 {
                    return Err(protocol("GOAWAY length"));
                }
                debug!(last_good = be32(p) & 0x7fff_ffff, "peer sent GOAWAY");
                self.incoming = None;
                Ok(())
            }
            TYPE_WINDOW_UPDATE => self.window_update(p),
            other => {
                debug!(frame_type = other, "ignoring unknown SPDY control frame");
                Ok(())
            }
        }
    }

    async fn syn_stream(&mut self, flags: u8, p: &[u8]) -> Result<(), Error> {
        if p.len() < 10 {
            return Err(protocol("short SYN_STREAM"));
        }
        let id = be32(p) & 0x7fff_ffff;
        // Always inflate, even for streams we refuse: the zlib context spans the session.
        let raw = self.decompressor.decompress(&p[10..])?;
        let headers = parse_header_block(&raw)?;
        if id == 0 {
            return Err(protocol("SYN_STREAM for stream 0"));
        }
        let refuse = |this: &Self, status: u32| {
            let mut st = this.shared.lock();
            this.shared.push_ctrl(&mut st, rst_stream_frame(id, status));
        };
        if id.is_multiple_of(2) || id <= self.last_peer_stream {
            debug!(stream = id, "SYN_STREAM with an invalid stream id");
            refuse(self, RST_PROTOCOL_ERROR);
            // The peer now takes the stream id as reset: so do we, if it was open.
            let mut st = self.shared.lock();
            self.shared.mark_reset(&mut st, id);
            return Ok(());
        }
        self.last_peer_stream = id;
        let Some(incoming) = self.incoming.clone() else {
            refuse(self, RST_REFUSED_STREAM);
            return Ok(());
        };
        let unidirectional = flags & FLAG_UNIDIRECTIONAL != 0;
        {
            let mut st = self.shared.lock();
            if st.goaway_sent || st.closing || st.streams.len() >= self.shared.config.max_streams {
                drop(st);
                refuse(self, RST_REFUSED_STREAM);
                return Ok(());
            }
            if !unidirectional {
                let block = encode_header_block(&[]);
                let compressed = st.compressor.compress(&block)?;
                let mut payload = Vec::with_capacity(4 + compressed.len());
                payload.extend_from_slice(&id.to_be_bytes());
                payload.extend_from_slice(&compressed);
                self.shared
                    .push_ctrl(&mut st, control_frame(TYPE_SYN_REPLY, 0, &payload));
            }
            let initial = st.initial_send_window;
            st.last_good_stream = id;
            st.streams.insert(
                id,
                StreamState {
                    recv: VecDeque::new(),
                    recv_len: 0,
                    consumed_total: 0,
                    recv_unacked: 0,
                    remote_fin: flags & FLAG_FIN != 0,
                    reset: false,
                    reader_open: true,
                    writer_open: true,
                    read_waker: None,
                    send_window: initial,
                    local_fin: unidirectional,
                    write_waker: None,
                    queued: 0,
                    flush_waker: None,
                },
            );
        }
        let stream = Stream {
            id,
            headers,
            shared: Some(self.shared.clone()),
        };
        if let Err(mpsc::error::SendError(stream)) = incoming.send(stream).await {
            debug!(stream = id, "nobody takes new SPDY streams; resetting");
            self.incoming = None;
            {
                let mut st = self.shared.lock();
                self.shared
                    .push_ctrl(&mut st, rst_stream_frame(id, RST_REFUSED_STREAM));
                self.shared.mark_reset(&mut st, id);
            }
            drop(stream);
        }
        Ok(())
    }

    fn remote_fin(&self, id: u32) {
        let mut st = self.shared.lock();
        if let Some(s) = st.streams.get_mut(&id) {
            s.remote_fin = true;
            if let Some(w) = s.read_waker.take() {
                w.wake();
            }
        }
    }

    fn settings(&mut self, p: &[u8]) -> Result<(), Error> {
        if p.len() < 4 {
            return Err(protocol("short SETTINGS"));
        }
        let count = be32(p) as usize;
        if count > (p.len() - 4) / 8 || p.len() != 4 + count * 8 {
            return Err(protocol("SETTINGS length"));
        }
        let mut st = self.shared.lock();
        for entry in p[4..].chunks_exact(8) {
            let id = be32(entry) & 0x00ff_ffff;
            let value = be32(&entry[4..]);
            if id != SETTINGS_INITIAL_WINDOW_SIZE {
                continue;
            }
            let value = i64::from(value);
            if value > MAX_WINDOW {
                return Err(protocol("INITIAL_WINDOW_SIZE above 2^31-1"));
            }
            let delta = value - st.initial_send_window;
            st.initial_send_window = value;
            st.enforce_stream_windows = true;
            for s in st.streams.values_mut() {
                s.send_window += delta;
                if let Some(w) = s.write_waker.take() {
                    w.wake();
                }
            }
        }
        Ok(())
    }

    fn window_update(&mut self, p: &[u8]) -> Result<(), Error> {
        if p.len() != 8 {
            return Err(protocol("WINDOW_UPDATE length"));
        }
        let id = be32(p) & 0x7fff_ffff;
        let delta = i64::from(be32(&p[4..]) & 0x7fff_ffff);
        if delta == 0 {
            debug!(stream = id, "ignoring WINDOW_UPDATE of 0");
            return Ok(());
        }
        let mut st = self.shared.lock();
        st.enforce_stream_windows = true;
        if id == 0 {
            st.enforce_session_window = true;
            st.session_send_window += delta;
            if st.session_send_window > MAX_WINDOW {
                return Err(protocol("session window above 2^31-1"));
            }
            for s in st.streams.values_mut() {
                if let Some(w) = s.write_waker.take() {
                    w.wake();
                }
            }
            return Ok(());
        }
        let overflow = match st.streams.get_mut(&id) {
            Some(s) => {
                s.send_window += delta;
                if let Some(w) = s.write_waker.take() {
                    w.wake();
                }
                s.send_window > MAX_WINDOW && !s.reset
            }
            None => false,
        };
        if overflow {
            self.shared
                .push_ctrl(&mut st, rst_stream_frame(id, RST_FLOW_CONTROL_ERROR));
            self.shared.mark_reset(&mut st, id);
        }
        Ok(())
    }

    async fn data(&mut self, id: u32, flags: u8, payload: Bytes) -> Result<(), Error> {
        if id == 0 {
            return Err(protocol("DATA for stream 0"));
        }
        let len = payload.len();
        wait_for_space(&self.shared, id, len).await;
        let mut st = self.shared.lock();
        let usable = match st.streams.get(&id) {
            Some(s) => !s.reset && !s.remote_fin && s.reader_open,
            None => false,
        };
        if !usable {
            let known = st.streams.contains_key(&id);
            if !known && id > self.last_peer_stream {
                debug!(stream = id, "DATA for a stream never opened");
                self.shared
                    .push_ctrl(&mut st, rst_stream_frame(id, RST_INVALID_STREAM));
            }
            // Dropped data still counts against the session window: hand it back.
            if len > 0 {
                self.shared.credit(&mut st, id, len);
            }
            if flags & FLAG_FIN != 0
                && let Some(s) = st.streams.get_mut(&id)
            {
                s.remote_fin = true;
            }
            return Ok(());
        }
        let Some(s) = st.streams.get_mut(&id) else {
            return Ok(());
        };
        if len > 0 {
            s.recv_len += len;
            s.recv.push_back(payload);
        }
        if flags & FLAG_FIN != 0 {
            s.remote_fin = true;
        }
        if let Some(w) = s.read_waker.take() {
            w.wake();
        }
        Ok(())
    }
}

/// Waits until stream `id` can buffer `len` more bytes (see the module docs). A stream
/// whose reader consumes nothing for `stall_timeout` is reset.
async fn wait_for_space(shared: &Shared, id: u32, len: usize) {
    let max = shared.config.max_stream_buffer;
    let stall = shared.config.stall_timeout;
    let mut seen_consumed = None;
    let mut deadline = Instant::now() + stall;
    loop {
        let notified = shared.space.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        {
            let st = shared.lock();
            let Some(s) = st.streams.get(&id) else {
                return;
            };
            if s.reset || !s.reader_open || s.recv_len == 0 || s.recv_len + len <= max {
                return;
            }
            if seen_consumed != Some(s.consumed_total) {
                seen_consumed = Some(s.consumed_total);
                deadline = Instant::now() + stall;
            }
        }
        tokio::select! {
            _ = &mut notified => {}
            _ = tokio::time::sleep_until(deadline) => {
                let mut st = shared.lock();
                let progressed = st
                    .streams
                    .get(&id)
                    .is_some_and(|s| Some(s.consumed_total) != seen_consumed);
                if !progressed {
                    warn!(stream = id, "SPDY stream reader stalled with a full buffer; resetting it");
                    shared
                        .push_ctrl(&mut st, rst_stream_frame(id, RST_FLOW_CONTROL_ERROR));
                    shared.mark_reset(&mut st, id);
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{DuplexStream, duplex};
    use tokio::time::timeout;

    const T: Duration = Duration::from_secs(10);

    #[derive(Debug)]
    enum Frame {
        Control {
            typ: u16,
            flags: u8,
            payload: Vec<u8>,
        },
        Data {
            id: u32,
            flags: u8,
            payload: Vec<u8>,
        },
    }

    /// Test-only client side of the framing layer, with its own zlib contexts.
    struct Client {
        io: DuplexStream,
        comp: HeaderCompressor,
        decomp: HeaderDecompressor,
    }

    impl Client {
        async fn send(&mut self, bytes: &[u8]) {
            self.io.write_all(bytes).await.expect("client write");
        }

        async fn syn_stream_raw(&mut self, id: u32, raw_block: &[u8], flags: u8) {
            let block = self.comp.compress(raw_block).expect("compress");
            let mut p = Vec::new();
            p.extend_from_slice(&id.to_be_bytes());
            p.extend_from_slice(&0u32.to_be_bytes());
            p.push(0); // priority 0 in the top 3 bits
            p.push(0); // slot
            p.extend_from_slice(&block);
            self.send(&control_frame(TYPE_SYN_STREAM, flags, &p)).await;
        }

        async fn syn_stream(&mut self, id: u32, headers: &[(&str, &str)]) {
            let h: Vec<(String, String)> = headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect();
            self.syn_stream_raw(id, &encode_header_block(&h), 0).await;
        }

        async fn data(&mut self, id: u32, bytes: &[u8], fin: bool) {
            let f = data_frame(id, if fin { FLAG_FIN } else { 0 }, bytes);
            self.send(&f).await;
        }

        async fn ping(&mut self, id: u32) {
            self.send(&control_frame(TYPE_PING, 0, &id.to_be_bytes()))
                .await;
        }

        async fn read_frame(&mut self) -> Option<Frame> {
            let mut head = [0u8; 8];
            match timeout(T, self.io.read_exact(&mut head)).await {
                Err(_) => panic!("timed out waiting for a frame"),
                Ok(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => return None,
                Ok(Err(e)) => panic!("client read: {e}"),
                Ok(Ok(_)) => {}
            }
            let flags = head[4];
            let len = (be32(&head[4..8]) & 0x00ff_ffff) as usize;
            let mut payload = vec![0u8; len];
            timeout(T, self.io.read_exact(&mut payload))
                .await
                .expect("timed out reading a frame body")
                .expect("frame body");
            Some(if head[0] & 0x80 != 0 {
                assert_eq!(u16::from_be_bytes([head[0], head[1]]) & 0x7fff, 3);
                Frame::Control {
                    typ: u16::from_be_bytes([head[2], head[3]]),
                    flags,
                    payload,
                }
            } else {
                Frame::Data {
                    id: be32(&head[..4]),
                    flags,
                    payload,
                }
            })
        }

        /// Reads the next frame, skipping WINDOW_UPDATEs.
        async fn next(&mut self) -> Option<Frame> {
            loop {
                match self.read_frame().await? {
                    Frame::Control {
                        typ: TYPE_WINDOW_UPDATE,
                        ..
                    } => continue,
                    f => return Some(f),
                }
            }
        }

        async fn expect_syn_reply(&mut self, id: u32) -> Vec<(String, String)> {
            match self.next().await {
                Some(Frame::Control {
                    typ: TYPE_SYN_REPLY,
                    payload,
                    ..
                }) => {
                    assert_eq!(be32(&payload), id);
                    let raw = self
                        .decomp
                        .decompress(&payload[4..])
                        .expect("inflate reply");
                    parse_header_block(&raw).expect("reply block")
                }
                other => panic!("expected SYN_REPLY for {id}, got {other:?}"),
            }
        }

        /// Reads DATA of stream `id` until FIN; other frames are an error.
        async fn read_to_fin(&mut self, id: u32) -> Vec<u8> {
            let mut out = Vec::new();
            loop {
                match self.next().await {
                    Some(Frame::Data {
                        id: sid,
                        flags,
                        payload,
                    }) if sid == id => {
                        out.extend_from_slice(&payload);
                        if flags & FLAG_FIN != 0 {
                            return out;
                        }
                    }
                    other => panic!("expected DATA on {id}, got {other:?}"),
                }
            }
        }
    }

    fn start(config: Config, buffer: usize) -> (Session, mpsc::Receiver<Stream>, Client) {
        let (server_io, client_io) = duplex(buffer);
        let (session, rx) = Session::serve_with(server_io, config);
        let client = Client {
            io: client_io,
            comp: HeaderCompressor::new(),
            decomp: HeaderDecompressor::new(),
        };
        (session, rx, client)
    }

    async fn accept(rx: &mut mpsc::Receiver<Stream>) -> Stream {
        timeout(T, rx.recv())
            .await
            .expect("timed out waiting for a stream")
            .expect("stream receiver ended")
    }

    async fn read_all(r: &mut StreamReader) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        timeout(T, r.read_to_end(&mut out))
            .await
            .expect("timed out reading a stream")?;
        Ok(out)
    }

    fn adler32(data: &[u8]) -> u32 {
        let (mut a, mut b) = (1u32, 0u32);
        for &x in data {
            a = (a + u32::from(x)) % 65_521;
            b = (b + a) % 65_521;
        }
        (b << 16) | a
    }

    fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    }

    #[test]
    fn dictionary_is_the_spdy3_one() {
        // SPDY/3 §2.6.10.1: 1423 bytes; zlib names it by its Adler-32, 0xe3c6a7c2.
        assert_eq!(SPDY3_DICTIONARY.len(), 1423);
        assert_eq!(adler32(SPDY3_DICTIONARY), 0xe3c6_a7c2);
        assert_eq!(adler32(SPDY3_DICTIONARY), SPDY3_DICTIONARY_ADLER32);
        assert!(SPDY3_DICTIONARY.starts_with(b"\0\0\0\x07options\0\0\0\x04head"));
        assert!(SPDY3_DICTIONARY.ends_with(b"charset=iso-8859-1,utf-,*,enq=0."));
    }

    #[test]
    fn malformed_header_blocks_are_errors() {
        assert!(parse_header_block(&[0, 0, 0]).is_err());
        assert!(parse_header_block(&[0, 0, 0, 1, 0, 0, 0, 9, b'a']).is_err());
        assert!(parse_header_block(&[0xff, 0xff, 0xff, 0xff]).is_err());
        let mut d = HeaderDecompressor::new();
        assert!(d.decompress(b"\x78\xf9garbage-not-zlib").is_err());
        // A zlib stream naming another dictionary is refused.
        let mut d = HeaderDecompressor::new();
        assert!(d.decompress(&[0x78, 0xbb, 0, 0, 0, 1, 0x63, 0, 0]).is_err());
    }

    #[tokio::test]
    async fn decodes_a_syn_stream_compressed_by_another_implementation() {
        // A SYN_STREAM (stream 1, `:method GET`, `:path /`) from node-spdy's test suite.
        let hex = "800300010000002c0000000100000000000078f9e3c6a7c202e50e507ab442a45a77\
                   d7105006b32a4804974d8cfa00000000ffff";
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
            .collect();
        let (_session, mut rx, mut client) = start(Config::default(), 1 << 16);
        // One byte per write, as frames split across WebSocket messages arrive.
        for b in &bytes {
            client.send(std::slice::from_ref(b)).await;
            tokio::task::yield_now().await;
        }
        let stream = accept(&mut rx).await;
        assert_eq!(stream.id(), 1);
        assert_eq!(stream.header(":method"), Some("GET"));
        assert_eq!(stream.header(":path"), Some("/"));
        assert_eq!(client.expect_syn_reply(1).await, vec![]);
    }

    #[tokio::test]
    async fn headers_round_trip_with_one_zlib_context_per_direction() {
        let (_session, mut rx, mut client) = start(Config::default(), 1 << 16);
        // Hand-built block: mixed-case name and a NUL-separated multi-value.
        let mut raw = Vec::new();
        raw.extend_from_slice(&2u32.to_be_bytes());
        for (n, v) in [("StreamType", &b"error"[..]), ("x-multi", &b"a\0b"[..])] {
            raw.extend_from_slice(&(n.len() as u32).to_be_bytes());
            raw.extend_from_slice(n.as_bytes());
            raw.extend_from_slice(&(v.len() as u32).to_be_bytes());
            raw.extend_from_slice(v);
        }
        client.syn_stream_raw(1, &raw, 0).await;
        // The second block is compressed in the same client context (back-references).
        client
            .syn_stream(
                3,
                &[("streamtype", "data"), ("port", "8080"), ("requestid", "0")],
            )
            .await;
        let s1 = accept(&mut rx).await;
        let s3 = accept(&mut rx).await;
        assert_eq!(s1.id(), 1);
        assert_eq!(
            s1.headers(),
            &[
                ("streamtype".to_string(), "error".to_string()),
                ("x-multi".to_string(), "a".to_string()),
                ("x-multi".to_string(), "b".to_string()),
            ]
        );
        assert_eq!(s1.header("StreamType"), Some("error"));
        assert_eq!(s3.header("streamType"), Some("data"));
        assert_eq!(s3.header("port"), Some("8080"));
        assert_eq!(s3.header("missing"), None);

        // Our SYN_REPLYs: one zlib stream primed with the SPDY/3 dictionary (FDICT set,
        // DICTID = its Adler-32), decodable by a fresh client context.
        let first = client.read_frame().await;
        let Some(Frame::Control {
            typ: TYPE_SYN_REPLY,
            flags: 0,
            payload,
        }) = first
        else {
            panic!("expected SYN_REPLY, got {first:?}");
        };
        assert_eq!(be32(&payload), 1);
        let z = &payload[4..];
        assert_eq!(z[0], 0x78);
        assert_ne!(z[1] & 0x20, 0, "FDICT flag");
        assert_eq!(be32(&z[2..6]), 0xe3c6_a7c2);
        let raw = client.decomp.decompress(z).expect("inflate");
        assert_eq!(parse_header_block(&raw).expect("block"), vec![]);
        assert_eq!(client.expect_syn_reply(3).await, vec![]);
    }

    #[tokio::test]
    async fn paired_streams_exchange_data_and_fin_both_ways() {
        let (_session, mut rx, mut client) = start(Config::default(), 1 << 16);
        client
            .syn_stream(1, &[("streamtype", "error"), ("requestid", "7")])
            .await;
        client
            .syn_stream(3, &[("streamtype", "data"), ("requestid", "7")])
            .await;
        client.data(3, b"hello ", false).await;
        client.data(3, b"world", true).await;

        let server = tokio::spawn(async move {
            let a = accept(&mut rx).await;
            let b = accept(&mut rx).await;
            assert_eq!(a.header("requestid"), b.header("requestid"));
            let (error, data) = if a.header("streamtype") == Some("error") {
                (a, b)
            } else {
                (b, a)
            };
            let (mut dr, mut dw) = data.split();
            let got = read_all(&mut dr).await.expect("data stream");
            assert_eq!(got, b"hello world");
            dw.write_all(&got.to_ascii_uppercase())
                .await
                .expect("write");
            dw.shutdown().await.expect("shutdown");
            // Dropping the writer without shutdown still sends FIN.
            let (_er, mut ew) = error.split();
            ew.write_all(b"no error").await.expect("write");
            drop(ew);
        });

        assert_eq!(client.expect_syn_reply(1).await, vec![]);
        assert_eq!(client.expect_syn_reply(3).await, vec![]);
        let mut data = Vec::new();
        let mut error = Vec::new();
        let (mut fin1, mut fin3) = (false, false);
        while !(fin1 && fin3) {
            match client.next().await {
                Some(Frame::Data { id, flags, payload }) => {
                    let fin = flags & FLAG_FIN != 0;
                    match id {
                        1 => {
                            error.extend_from_slice(&payload);
                            fin1 |= fin;
                        }
                        3 => {
                            data.extend_from_slice(&payload);
                            fin3 |= fin;
                        }
                        _ => panic!("DATA for stream {id}"),
                    }
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(data, b"HELLO WORLD");
        assert_eq!(error, b"no error");
        timeout(T, server)
            .await
            .expect("server")
            .expect("server task");
    }

    #[tokio::test]
    async fn large_transfers_respect_flow_control_both_ways() {
        const TOTAL: usize = 300 * 1024;
        let (_session, mut rx, mut client) = start(Config::default(), 64 * 1024);
        // Show that we use flow control: INITIAL_WINDOW_SIZE and a session update.
        let mut settings = Vec::new();
        settings.extend_from_slice(&1u32.to_be_bytes());
        settings.extend_from_slice(&SETTINGS_INITIAL_WINDOW_SIZE.to_be_bytes());
        settings.extend_from_slice(&65_536u32.to_be_bytes());
        client
            .send(&control_frame(TYPE_SETTINGS, 0, &settings))
            .await;
        client.send(&window_update_frame(0, 1)).await;
        client.syn_stream(1, &[("streamtype", "data")]).await;

        let server = tokio::spawn(async move {
            let (mut r, mut w) = accept(&mut rx).await.split();
            // Echo: the server's sends are bounded by the client's windows.
            let n = tokio::io::copy(&mut r, &mut w).await.expect("echo");
            w.shutdown().await.expect("shutdown");
            n
        });

        let payload = pattern(TOTAL, 3);
        let (mut send_stream, mut send_session) = (65_536i64, 65_537i64);
        let (mut recv_stream, mut recv_session) = (65_536i64, 65_536i64);
        let mut sent = 0;
        let mut echoed = Vec::new();
        let mut got_fin = false;
        let mut updates_seen = 0;
        while !got_fin {
            let room = send_stream.min(send_session);
            if sent < TOTAL && room > 0 {
                let n = (TOTAL - sent).min(16 * 1024).min(room as usize);
                let fin = sent + n == TOTAL;
                client.data(1, &payload[sent..sent + n], fin).await;
                sent += n;
                send_stream -= n as i64;
                send_session -= n as i64;
                continue;
            }
            match client.read_frame().await.expect("frame") {
                Frame::Control {
                    typ: TYPE_WINDOW_UPDATE,
                    payload,
                    ..
                } => {
                    updates_seen += 1;
                    let delta = i64::from(be32(&payload[4..]));
                    match be32(&payload) {
                        0 => send_session += delta,
                        1 => send_stream += delta,
                        other => panic!("WINDOW_UPDATE for {other}"),
                    }
                }
                Frame::Control {
                    typ: TYPE_SYN_REPLY,
                    payload,
                    ..
                } => {
                    client.decomp.decompress(&payload[4..]).expect("reply");
                }
                Frame::Data { id, flags, payload } => {
                    assert_eq!(id, 1);
                    recv_stream -= payload.len() as i64;
                    recv_session -= payload.len() as i64;
                    assert!(recv_stream >= 0, "server overran the stream window");
                    assert!(recv_session >= 0, "server overran the session window");
                    echoed.extend_from_slice(&payload);
                    got_fin = flags & FLAG_FIN != 0;
                    if !payload.is_empty() {
                        let n = payload.len() as u32;
                        client.send(&window_update_frame(1, n)).await;
                        client.send(&window_update_frame(0, n)).await;
                        recv_stream += i64::from(n);
                        recv_session += i64::from(n);
                    }
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(sent, TOTAL);
        assert_eq!(echoed.len(), TOTAL);
        assert!(echoed == payload, "echo differs");
        assert!(updates_seen >= 4, "server credited consumed data back");
        let n = timeout(T, server).await.expect("server").expect("task");
        assert_eq!(n as usize, TOTAL);
    }

    #[tokio::test]
    async fn peer_without_flow_control_is_not_throttled() {
        // Like spdystream: no SETTINGS, no WINDOW_UPDATE, and more than 64 KiB each way.
        const TOTAL: usize = 1024 * 1024;
        let (_session, mut rx, mut client) = start(Config::default(), 64 * 1024);
        client.syn_stream(1, &[("streamtype", "stdin")]).await;
        let server = tokio::spawn(async move {
            let (mut r, mut w) = accept(&mut rx).await.split();
            let writer = tokio::spawn(async move {
                w.write_all(&pattern(TOTAL, 9)).await.expect("write");
                w.shutdown().await.expect("shutdown");
            });
            let got = read_all(&mut r).await.expect("read");
            writer.await.expect("writer");
            got
        });
        let data = pattern(TOTAL, 5);
        for chunk in data.chunks(40 * 1024) {
            client.data(1, chunk, false).await;
        }
        client.data(1, &[], true).await;
        client.expect_syn_reply(1).await;
        let got = client.read_to_fin(1).await;
        assert!(got == pattern(TOTAL, 9), "server data differs");
        let received = timeout(T, server).await.expect("server").expect("task");
        assert!(received == data, "client data differs");
    }

    #[tokio::test]
    async fn pings_from_the_client_are_echoed() {
        let (_session, _rx, mut client) = start(Config::default(), 1 << 16);
        client.ping(1).await;
        match client.next().await {
            Some(Frame::Control {
                typ: TYPE_PING,
                payload,
                ..
            }) => assert_eq!(be32(&payload), 1),
            other => panic!("expected PING, got {other:?}"),
        }
        // Even ids would be answers to our own pings: not echoed.
        client.ping(2).await;
        client.ping(5).await;
        match client.next().await {
            Some(Frame::Control {
                typ: TYPE_PING,
                payload,
                ..
            }) => assert_eq!(be32(&payload), 5),
            other => panic!("expected PING 5, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn rst_stream_fails_both_halves_and_reset_sends_cancel() {
        let (session, mut rx, mut client) = start(Config::default(), 1 << 16);
        client.syn_stream(1, &[("streamtype", "stdin")]).await;
        let (mut r, mut w) = accept(&mut rx).await.split();
        client.expect_syn_reply(1).await;
        client.data(1, b"abc", false).await;
        client.send(&rst_stream_frame(1, RST_CANCEL)).await;
        let err = loop {
            let mut buf = [0u8; 16];
            match timeout(T, r.read(&mut buf)).await.expect("read") {
                Ok(0) => panic!("EOF instead of reset"),
                Ok(_) => continue,
                Err(e) => break e,
            }
        };
        assert_eq!(err.kind(), io::ErrorKind::ConnectionReset);
        assert!(w.write_all(b"x").await.is_err());

        client.syn_stream(3, &[("streamtype", "stdout")]).await;
        let s3 = accept(&mut rx).await;
        client.expect_syn_reply(3).await;
        session.reset(s3.id());
        match client.next().await {
            Some(Frame::Control {
                typ: TYPE_RST_STREAM,
                payload,
                ..
            }) => {
                assert_eq!(be32(&payload), 3);
                assert_eq!(be32(&payload[4..]), RST_CANCEL);
            }
            other => panic!("expected RST_STREAM, got {other:?}"),
        }
        let (mut r3, mut w3) = s3.split();
        assert!(read_all(&mut r3).await.is_err());
        assert!(w3.write_all(b"x").await.is_err());
    }

    #[tokio::test]
    async fn goaway_from_the_peer_ends_the_receiver_but_not_open_streams() {
        let (_session, mut rx, mut client) = start(Config::default(), 1 << 16);
        client.syn_stream(1, &[("streamtype", "data")]).await;
        let s1 = accept(&mut rx).await;
        client.expect_syn_reply(1).await;
        client.send(&goaway_frame(0, GOAWAY_OK)).await;
        client.syn_stream(3, &[("streamtype", "data")]).await;
        match client.next().await {
            Some(Frame::Control {
                typ: TYPE_RST_STREAM,
                payload,
                ..
            }) => {
                assert_eq!(be32(&payload), 3);
                assert_eq!(be32(&payload[4..]), RST_REFUSED_STREAM);
            }
            other => panic!("expected RST_STREAM, got {other:?}"),
        }
        assert!(timeout(T, rx.recv()).await.expect("recv").is_none());
        let (_r, mut w) = s1.split();
        w.write_all(b"still here").await.expect("write");
        w.shutdown().await.expect("shutdown");
        assert_eq!(client.read_to_fin(1).await, b"still here");
    }

    #[tokio::test]
    async fn close_sends_goaway_after_queued_data_then_closes() {
        let (session, mut rx, mut client) = start(Config::default(), 1 << 16);
        client.syn_stream(1, &[("streamtype", "stdout")]).await;
        let (_r, mut w) = accept(&mut rx).await.split();
        w.write_all(b"bye").await.expect("write");
        let closer = tokio::spawn({
            let session = session.clone();
            async move { session.close().await }
        });
        client.expect_syn_reply(1).await;
        let mut got_goaway = false;
        let mut data = Vec::new();
        while let Some(f) = client.next().await {
            match f {
                Frame::Control {
                    typ: TYPE_GOAWAY,
                    payload,
                    ..
                } => {
                    assert_eq!(be32(&payload), 1, "last good stream");
                    assert_eq!(be32(&payload[4..]), GOAWAY_OK);
                    got_goaway = true;
                }
                Frame::Data { id: 1, payload, .. } => data.extend_from_slice(&payload),
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!(got_goaway);
        assert_eq!(data, b"bye");
        timeout(T, closer).await.expect("close").expect("task");
        assert!(w.write_all(b"more").await.is_err());
        assert!(timeout(T, rx.recv()).await.expect("recv").is_none());
    }

    #[tokio::test]
    async fn unknown_frames_are_ignored_but_garbage_ends_the_session() {
        let (session, mut rx, mut client) = start(Config::default(), 1 << 16);
        client.syn_stream(1, &[("streamtype", "stdin")]).await;
        let (mut r, _w) = accept(&mut rx).await.split();
        client.expect_syn_reply(1).await;
        // An unknown control type (spec: ignore), then a PING still answered.
        client.send(&control_frame(0x00ff, 0, &[1, 2, 3, 4])).await;
        client.ping(7).await;
        assert!(matches!(
            client.next().await,
            Some(Frame::Control { typ: TYPE_PING, .. })
        ));
        // A control frame of SPDY version 2 is garbage.
        client
            .send(&[0x80, 0x02, 0x00, 0x06, 0x00, 0x00, 0x00, 0x04, 0, 0, 0, 9])
            .await;
        match client.next().await {
            Some(Frame::Control {
                typ: TYPE_GOAWAY,
                payload,
                ..
            }) => assert_eq!(be32(&payload[4..]), GOAWAY_PROTOCOL_ERROR),
            other => panic!("expected GOAWAY, got {other:?}"),
        }
        assert!(client.next().await.is_none(), "connection closed");
        assert!(timeout(T, rx.recv()).await.expect("recv").is_none());
        assert!(read_all(&mut r).await.is_err());
        timeout(T, session.closed()).await.expect("tasks ended");
    }

    #[tokio::test]
    async fn connection_drop_mid_stream_fails_the_stream_and_ends_tasks() {
        let (session, mut rx, mut client) = start(Config::default(), 1 << 16);
        client.syn_stream(1, &[("streamtype", "stdin")]).await;
        client.data(1, b"partial", false).await;
        let (mut r, mut w) = accept(&mut rx).await.split();
        let mut buf = [0u8; 7];
        timeout(T, r.read_exact(&mut buf))
            .await
            .expect("read")
            .expect("partial data");
        assert_eq!(&buf, b"partial");
        drop(client);
        let err = read_all(&mut r).await.expect_err("no FIN was sent");
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        timeout(T, session.closed()).await.expect("tasks ended");
        assert!(w.write_all(b"x").await.is_err());
        assert!(timeout(T, rx.recv()).await.expect("recv").is_none());
    }

    #[tokio::test]
    async fn a_stalled_reader_is_reset_and_other_streams_go_on() {
        let config = Config {
            max_stream_buffer: 1024,
            stall_timeout: Duration::from_millis(300),
            ..Config::default()
        };
        let (_session, mut rx, mut client) = start(config, 1 << 16);
        client.syn_stream(1, &[("streamtype", "stdin")]).await;
        client.syn_stream(3, &[("streamtype", "resize")]).await;
        let (mut stuck, _w1) = accept(&mut rx).await.split();
        let (mut other, _w3) = accept(&mut rx).await.split();
        // Stream 1 gets 4 KiB nobody reads (no flow control, like spdystream).
        for _ in 0..4 {
            client.data(1, &[7u8; 1024], false).await;
        }
        client.data(3, b"{\"Width\":80}", true).await;
        assert_eq!(
            read_all(&mut other).await.expect("other"),
            b"{\"Width\":80}"
        );
        client.expect_syn_reply(1).await;
        client.expect_syn_reply(3).await;
        match client.next().await {
            Some(Frame::Control {
                typ: TYPE_RST_STREAM,
                payload,
                ..
            }) => {
                assert_eq!(be32(&payload), 1);
                assert_eq!(be32(&payload[4..]), RST_FLOW_CONTROL_ERROR);
            }
            other => panic!("expected RST_STREAM, got {other:?}"),
        }
        let err = read_all(&mut stuck).await.expect_err("reset");
        assert_eq!(err.kind(), io::ErrorKind::ConnectionReset);
    }

    #[tokio::test]
    async fn initial_window_size_from_settings_limits_our_sends() {
        let (_session, mut rx, mut client) = start(Config::default(), 1 << 16);
        let mut settings = Vec::new();
        settings.extend_from_slice(&1u32.to_be_bytes());
        settings.extend_from_slice(&SETTINGS_INITIAL_WINDOW_SIZE.to_be_bytes());
        settings.extend_from_slice(&1000u32.to_be_bytes());
        client
            .send(&control_frame(TYPE_SETTINGS, 0, &settings))
            .await;
        client.syn_stream(1, &[("streamtype", "stdout")]).await;
        let (_r, mut w) = accept(&mut rx).await.split();
        let writer = tokio::spawn(async move {
            w.write_all(&pattern(5000, 1)).await.expect("write");
            w.shutdown().await.expect("shutdown");
        });
        client.expect_syn_reply(1).await;
        let mut got = Vec::new();
        while got.len() < 1000 {
            match client.next().await {
                Some(Frame::Data { id: 1, payload, .. }) => got.extend_from_slice(&payload),
                other => panic!("expected DATA, got {other:?}"),
            }
        }
        assert_eq!(got.len(), 1000, "no more than the window");
        // Nothing else may come before the PING answer: the window is used up.
        client.ping(9).await;
        assert!(matches!(
            client.next().await,
            Some(Frame::Control { typ: TYPE_PING, .. })
        ));
        client.send(&window_update_frame(1, 4000)).await;
        got.extend_from_slice(&client.read_to_fin(1).await);
        assert!(got == pattern(5000, 1));
        timeout(T, writer).await.expect("writer").expect("task");
    }

    #[tokio::test]
    async fn fin_on_syn_stream_and_data_for_unknown_streams() {
        let (_session, mut rx, mut client) = start(Config::default(), 1 << 16);
        let raw = encode_header_block(&[("streamtype".into(), "error".into())]);
        client.syn_stream_raw(1, &raw, FLAG_FIN).await;
        let (mut r, _w) = accept(&mut rx).await.split();
        assert_eq!(read_all(&mut r).await.expect("EOF at once"), b"");
        client.expect_syn_reply(1).await;
        // DATA for a stream that was never opened is answered with INVALID_STREAM.
        client.data(5, b"stray", false).await;
        match client.next().await {
            Some(Frame::Control {
                typ: TYPE_RST_STREAM,
                payload,
                ..
            }) => {
                assert_eq!(be32(&payload), 5);
                assert_eq!(be32(&payload[4..]), RST_INVALID_STREAM);
            }
            other => panic!("expected RST_STREAM, got {other:?}"),
        }
        // A stream id that goes backwards is a protocol error for that stream only.
        client.syn_stream(3, &[("streamtype", "data")]).await;
        client.syn_stream(3, &[("streamtype", "data")]).await;
        let s3 = accept(&mut rx).await;
        assert_eq!(s3.id(), 3);
        client.expect_syn_reply(3).await;
        match client.next().await {
            Some(Frame::Control {
                typ: TYPE_RST_STREAM,
                payload,
                ..
            }) => assert_eq!(be32(&payload[4..]), RST_PROTOCOL_ERROR),
            other => panic!("expected RST_STREAM, got {other:?}"),
        }
        let (mut r3, _w3) = s3.split();
        assert!(
            read_all(&mut r3).await.is_err(),
            "stream 3 is reset on our side too"
        );
    }
}
