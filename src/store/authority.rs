//! Part of the gRPC adapter: an HTTP/2 filter that makes the `:authority` of old etcd clients
//! acceptable to the h2 server under tonic.
//!
//! etcd 3.4's clientv3 (etcdctl 3.4, kube-apiserver of that era) sends `:authority` values that
//! are not RFC 3986 authorities: the socket path for `unix://` endpoints, `http://host:port` for
//! per-endpoint commands such as `endpoint status` (fixed in etcd 3.5, etcd-io/etcd#13192).
//! etcd's own Go server ignores them; h2 resets such streams with PROTOCOL_ERROR and offers no
//! switch. So each connection's client-to-server bytes pass through this filter: it decodes
//! every header block (keeping the client's HPACK table), replaces an invalid `:authority` with
//! `localhost`, and re-encodes the block with its own encoder, whose table h2's decoder then
//! mirrors. All other frames, and the server-to-client direction, pass through untouched.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_HEADERS: u8 = 0x1;
const FRAME_CONTINUATION: u8 = 0x9;
const FLAG_END_STREAM: u8 = 0x1;
const FLAG_END_HEADERS: u8 = 0x4;
const FLAG_PADDED: u8 = 0x8;
const FLAG_PRIORITY: u8 = 0x20;
/// The default SETTINGS_MAX_FRAME_SIZE, which every peer must accept.
const MAX_FRAME: usize = 16_384;
/// A header block larger than this is refused (h2's own default list size limit is 16 KiB).
const MAX_BLOCK: usize = 1 << 20;

fn invalid(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

/// Whether `v` is a valid URI authority (RFC 3986 characters, non-empty, no path).
fn valid_authority(v: &[u8]) -> bool {
    !v.is_empty()
        && v.iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@[]%".contains(&b))
}

/// The block with any invalid `:authority` replaced; `None` when nothing needs to change.
fn fix_headers(headers: &mut [(Vec<u8>, Vec<u8>)]) {
    for (name, value) in headers.iter_mut() {
        if name.as_slice() == b":authority" && !valid_authority(value) {
            *value = b"localhost".to_vec();
        }
    }
}

/// The client-to-server byte stream of one connection, rewritten frame by frame: whole frames
/// go in ([`Rewriter::feed`]), rewritten bytes come out ([`Rewriter::out`]).
///
/// The first header block decides the mode. A valid `:authority` there (every client of
/// etcd 3.5 and newer, Go or not) means the connection never needs a rewrite: that block and
/// everything after it pass through unchanged, so h2 decodes the client's own HPACK stream. An
/// invalid one (etcd 3.4's clientv3, which keeps one authority per connection) switches to
/// decoding and re-encoding every block.
struct Rewriter {
    decoder: fluke_hpack::Decoder<'static>,
    encoder: fluke_hpack::Encoder<'static>,
    /// A header block being collected: (stream id, END_STREAM flag, fragment so far, the raw
    /// frames that carried it).
    pending: Option<(u32, u8, Vec<u8>, Vec<u8>)>,
    preface_seen: bool,
    /// Decided by the first header block: `Some(true)` passes everything through.
    passthrough: Option<bool>,
    out: Vec<u8>,
}

impl Rewriter {
    fn new() -> Rewriter {
        Rewriter {
            decoder: fluke_hpack::Decoder::new(),
            encoder: fluke_hpack::Encoder::new(),
            pending: None,
            preface_seen: false,
            passthrough: None,
            out: Vec::new(),
        }
    }

    /// Whether all further bytes may go through untouched.
    fn passthrough(&self) -> bool {
        self.passthrough == Some(true) && self.pending.is_none()
    }

    /// Consumes the complete frames at the start of `input` (the preface first), appending their
    /// rewritten bytes to `self.out`; returns how many bytes were consumed.
    fn feed(&mut self, input: &[u8]) -> io::Result<usize> {
        let mut used = 0;
        if !self.preface_seen {
            if input.len() < PREFACE.len() {
                return Ok(0);
            }
            if &input[..PREFACE.len()] != PREFACE {
                return Err(invalid("not an HTTP/2 connection"));
            }
            self.out.extend_from_slice(PREFACE);
            self.preface_seen = true;
            used = PREFACE.len();
        }
        while !self.passthrough() {
            let rest = &input[used..];
            if rest.len() < 9 {
                break;
            }
            let len = u32::from_be_bytes([0, rest[0], rest[1], rest[2]]) as usize;
            if len > MAX_BLOCK {
                return Err(invalid("frame too large"));
            }
            if rest.len() < 9 + len {
                break;
            }
            let frame = &rest[..9 + len];
            used += 9 + len;
            self.frame(frame)?;
        }
        Ok(used)
    }

    fn frame(&mut self, frame: &[u8]) -> io::Result<()> {
        let (kind, flags) = (frame[3], frame[4]);
        let stream = u32::from_be_bytes([frame[5], frame[6], frame[7], frame[8]]) & 0x7fff_ffff;
        let payload = &frame[9..];
        let block = match kind {
            FRAME_HEADERS => {
                if self.pending.is_some() {
                    return Err(invalid("HEADERS inside a header block"));
                }
                let fragment = headers_fragment(flags, payload)?;
                (
                    stream,
                    flags & FLAG_END_STREAM,
                    fragment.to_vec(),
                    frame.to_vec(),
                )
            }
            FRAME_CONTINUATION => {
                let Some(mut block) = self.pending.take() else {
                    return Err(invalid("CONTINUATION without HEADERS"));
                };
                block.2.extend_from_slice(payload);
                block.3.extend_from_slice(frame);
                if block.2.len() > MAX_BLOCK {
                    return Err(invalid("header block too large"));
                }
                block
            }
            _ => {
                self.out.extend_from_slice(frame);
                return Ok(());
            }
        };
        if flags & FLAG_END_HEADERS == 0 {
            self.pending = Some(block);
            return Ok(());
        }
        let (stream, end_stream, fragment, raw) = block;
        let mut headers = self
            .decoder
            .decode(&fragment)
            .map_err(|e| invalid(&format!("bad header block: {e:?}")))?;
        if self.passthrough.is_none() {
            let valid = headers
                .iter()
                .all(|(n, v)| n.as_slice() != b":authority" || valid_authority(v));
            self.passthrough = Some(valid);
            if valid {
                // h2 decodes this block itself, so its HPACK table follows the client's.
                self.out.extend_from_slice(&raw);
                return Ok(());
            }
        }
        fix_headers(&mut headers);
        let encoded = self
            .encoder
            .encode(headers.iter().map(|(n, v)| (n.as_slice(), v.as_slice())));
        let chunks: Vec<&[u8]> = if encoded.is_empty() {
            vec![&[]]
        } else {
            encoded.chunks(MAX_FRAME).collect()
        };
        let last = chunks.len() - 1;
        for (i, chunk) in chunks.into_iter().enumerate() {
            let (kind, mut flags) = if i == 0 {
                (FRAME_HEADERS, end_stream)
            } else {
                (FRAME_CONTINUATION, 0)
            };
            if i == last {
                flags |= FLAG_END_HEADERS;
            }
            let len = chunk.len() as u32;
            self.out.extend_from_slice(&len.to_be_bytes()[1..]);
            self.out.extend_from_slice(&[kind, flags]);
            self.out.extend_from_slice(&stream.to_be_bytes());
            self.out.extend_from_slice(chunk);
        }
        Ok(())
    }
}

/// A client connection as the h2 server reads it: reads go through the [`Rewriter`] (until it
/// switches to passthrough, then straight to the socket), writes go to the socket unchanged.
pub struct Filtered<S> {
    inner: S,
    rewriter: Rewriter,
    /// Client bytes not yet consumed by the rewriter.
    input: Vec<u8>,
    /// Rewritten bytes already handed out.
    out_pos: usize,
    eof: bool,
}

impl<S> Filtered<S> {
    pub fn new(inner: S) -> Filtered<S> {
        Filtered {
            inner,
            rewriter: Rewriter::new(),
            input: Vec::new(),
            out_pos: 0,
            eof: false,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Filtered<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            let out = &mut this.rewriter.out;
            if this.out_pos < out.len() {
                let n = (out.len() - this.out_pos).min(buf.remaining());
                buf.put_slice(&out[this.out_pos..this.out_pos + n]);
                this.out_pos += n;
                if this.out_pos == out.len() {
                    out.clear();
                    this.out_pos = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if this.rewriter.passthrough() {
                if !this.input.is_empty() {
                    // Bytes read past the deciding block: hand them out as they are.
                    let n = this.input.len().min(buf.remaining());
                    buf.put_slice(&this.input[..n]);
                    this.input.drain(..n);
                    return Poll::Ready(Ok(()));
                }
                return Pin::new(&mut this.inner).poll_read(cx, buf);
            }
            if this.eof {
                // Whatever is left is a partial frame: the client went away mid-frame.
                return Poll::Ready(Ok(()));
            }
            let used = this.rewriter.feed(&this.input)?;
            this.input.drain(..used);
            if !this.rewriter.out.is_empty() || this.rewriter.passthrough() {
                continue;
            }
            let mut chunk = [0u8; 16 * 1024];
            let mut read = ReadBuf::new(&mut chunk);
            match Pin::new(&mut this.inner).poll_read(cx, &mut read) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) if read.filled().is_empty() => this.eof = true,
                // Bounded: `feed` refuses a frame longer than MAX_BLOCK once its header is in.
                Poll::Ready(Ok(())) => this.input.extend_from_slice(read.filled()),
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Filtered<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// The header block fragment of a HEADERS frame, without padding and priority fields.
fn headers_fragment(flags: u8, payload: &[u8]) -> io::Result<&[u8]> {
    let mut start = 0;
    let mut end = payload.len();
    if flags & FLAG_PADDED != 0 {
        let pad = *payload
            .first()
            .ok_or_else(|| invalid("empty padded frame"))? as usize;
        start = 1;
        end = end.checked_sub(pad).ok_or_else(|| invalid("bad padding"))?;
    }
    if flags & FLAG_PRIORITY != 0 {
        start += 5;
    }
    payload
        .get(start..end)
        .ok_or_else(|| invalid("bad HEADERS frame"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorities_are_checked_like_rfc3986() {
        assert!(valid_authority(b"127.0.0.1:2379"));
        assert!(valid_authority(b"[::1]:2379"));
        assert!(valid_authority(b"localhost"));
        assert!(!valid_authority(b"/var/lib/rk3s/server/etcd.sock"));
        assert!(!valid_authority(b"http://127.0.0.1:2379"));
        assert!(!valid_authority(b""));
    }

    /// A HEADERS frame whose block is split over a CONTINUATION frame after 5 bytes.
    fn split_headers(block: &[u8], stream: u8) -> Vec<u8> {
        let (a, b) = block.split_at(5);
        let mut input = Vec::new();
        for (kind, flags, part) in [
            (FRAME_HEADERS, 0u8, a),
            (FRAME_CONTINUATION, FLAG_END_HEADERS, b),
        ] {
            input.extend_from_slice(&(part.len() as u32).to_be_bytes()[1..]);
            input.extend_from_slice(&[kind, flags, 0, 0, 0, stream]);
            input.extend_from_slice(part);
        }
        input
    }

    async fn filtered(input: Vec<u8>) -> Vec<u8> {
        use tokio::io::AsyncReadExt;
        let mut output = Vec::new();
        Filtered::new(input.as_slice())
            .read_to_end(&mut output)
            .await
            .unwrap();
        output
    }

    #[tokio::test]
    async fn header_blocks_are_re_encoded_with_a_valid_authority() {
        let mut client_enc = fluke_hpack::Encoder::new();
        let block = client_enc.encode([
            (&b":method"[..], &b"POST"[..]),
            (b":authority", b"/run/etcd.sock"),
            (b":path", b"/etcdserverpb.KV/Put"),
        ]);
        let mut input = PREFACE.to_vec();
        input.extend(split_headers(&block, 1));
        let output = filtered(input).await;
        assert_eq!(&output[..24], PREFACE);
        let frame = &output[24..];
        let len = u32::from_be_bytes([0, frame[0], frame[1], frame[2]]) as usize;
        assert_eq!((frame[3], frame[4]), (FRAME_HEADERS, FLAG_END_HEADERS));
        let headers = fluke_hpack::Decoder::new()
            .decode(&frame[9..9 + len])
            .unwrap();
        assert!(headers.contains(&(b":authority".to_vec(), b"localhost".to_vec())));
        assert!(headers.contains(&(b":path".to_vec(), b"/etcdserverpb.KV/Put".to_vec())));
    }

    #[tokio::test]
    async fn a_valid_first_authority_passes_the_connection_through() {
        let mut client_enc = fluke_hpack::Encoder::new();
        let first = client_enc.encode([
            (&b":method"[..], &b"POST"[..]),
            (b":authority", b"127.0.0.1:2379"),
            (b":path", b"/etcdserverpb.KV/Put"),
        ]);
        // Later blocks are not even looked at.
        let mut input = PREFACE.to_vec();
        input.extend([0, 0, 0, 4, 0, 0, 0, 0, 0]); // an empty SETTINGS frame
        input.extend(split_headers(&first, 1));
        input.extend(split_headers(b"not hpack at all", 3));
        assert_eq!(filtered(input.clone()).await, input);
    }

    #[tokio::test]
    async fn garbage_is_refused() {
        use tokio::io::AsyncReadExt;
        let mut out = Vec::new();
        let err = Filtered::new(&b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..])
            .read_to_end(&mut out)
            .await
            .unwrap_err();
        assert_eq!(err.to_string(), "not an HTTP/2 connection");
    }
}
