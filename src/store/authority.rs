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

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

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

/// Copies an HTTP/2 client byte stream from `from` to `to`, rewriting header blocks as above.
pub async fn filter_client(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
) -> io::Result<()> {
    let mut preface = [0u8; 24];
    from.read_exact(&mut preface).await?;
    if &preface != PREFACE {
        return Err(invalid("not an HTTP/2 connection"));
    }
    to.write_all(&preface).await?;
    let mut decoder = fluke_hpack::Decoder::new();
    let mut encoder = fluke_hpack::Encoder::new();
    // A header block being collected: (stream id, END_STREAM flag, fragment so far).
    let mut pending: Option<(u32, u8, Vec<u8>)> = None;
    loop {
        let mut head = [0u8; 9];
        match from.read_exact(&mut head).await {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return to.shutdown().await,
            Err(e) => return Err(e),
        }
        let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let (kind, flags) = (head[3], head[4]);
        let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        if len > MAX_BLOCK {
            return Err(invalid("frame too large"));
        }
        let mut payload = vec![0u8; len];
        from.read_exact(&mut payload).await?;
        match kind {
            FRAME_HEADERS => {
                let fragment = headers_fragment(flags, &payload)?;
                let block = (stream, flags & FLAG_END_STREAM, fragment.to_vec());
                if flags & FLAG_END_HEADERS != 0 {
                    emit(&mut to, &mut decoder, &mut encoder, block).await?;
                } else {
                    pending = Some(block);
                }
            }
            FRAME_CONTINUATION => {
                let Some(mut block) = pending.take() else {
                    return Err(invalid("CONTINUATION without HEADERS"));
                };
                block.2.extend_from_slice(&payload);
                if block.2.len() > MAX_BLOCK {
                    return Err(invalid("header block too large"));
                }
                if flags & FLAG_END_HEADERS != 0 {
                    emit(&mut to, &mut decoder, &mut encoder, block).await?;
                } else {
                    pending = Some(block);
                }
            }
            _ => {
                to.write_all(&head).await?;
                to.write_all(&payload).await?;
            }
        }
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

async fn emit(
    to: &mut (impl AsyncWrite + Unpin),
    decoder: &mut fluke_hpack::Decoder<'_>,
    encoder: &mut fluke_hpack::Encoder<'_>,
    (stream, end_stream, block): (u32, u8, Vec<u8>),
) -> io::Result<()> {
    let mut headers = decoder
        .decode(&block)
        .map_err(|e| invalid(&format!("bad header block: {e:?}")))?;
    fix_headers(&mut headers);
    let encoded = encoder.encode(headers.iter().map(|(n, v)| (n.as_slice(), v.as_slice())));
    let chunks: Vec<&[u8]> = if encoded.is_empty() {
        vec![&[]]
    } else {
        encoded.chunks(MAX_FRAME).collect()
    };
    let last = chunks.len() - 1;
    let mut out = Vec::with_capacity(encoded.len() + 9 * chunks.len());
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
        out.extend_from_slice(&len.to_be_bytes()[1..]);
        out.extend_from_slice(&[kind, flags]);
        out.extend_from_slice(&stream.to_be_bytes());
        out.extend_from_slice(chunk);
    }
    to.write_all(&out).await
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

    #[tokio::test]
    async fn header_blocks_are_re_encoded_with_a_valid_authority() {
        // A client HEADERS frame whose block is split over a CONTINUATION frame.
        let mut client_enc = fluke_hpack::Encoder::new();
        let block = client_enc.encode([
            (&b":method"[..], &b"POST"[..]),
            (b":authority", b"/run/etcd.sock"),
            (b":path", b"/etcdserverpb.KV/Put"),
        ]);
        let (a, b) = block.split_at(5);
        let mut input = PREFACE.to_vec();
        for (kind, flags, part) in [
            (FRAME_HEADERS, 0u8, a),
            (FRAME_CONTINUATION, FLAG_END_HEADERS, b),
        ] {
            input.extend_from_slice(&(part.len() as u32).to_be_bytes()[1..]);
            input.extend_from_slice(&[kind, flags, 0, 0, 0, 1]);
            input.extend_from_slice(part);
        }
        let mut output = Vec::new();
        filter_client(input.as_slice(), &mut output).await.unwrap();
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
}
