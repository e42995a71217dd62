//! CRI container log framing: `<RFC3339Nano UTC> <stdout|stderr> <F|P> <text>\n`, one record per
//! line of output (the format the kubelet's `kubectl logs` reader parses).
//!
//! Same rules as containerd's CRI logger: a line longer than 16 KiB is split into `P` (partial)
//! records followed by a final `F` record; text left without a newline when the stream closes is
//! written as an `F` record (containerd reads it with `bufio.ReadLine`, which reports it as a full
//! line).

use std::io::Write;
use std::time::SystemTime;

/// containerd's default `max_container_log_line_size`.
pub const MAX_LINE: usize = 16 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// Splits one output stream into CRI records; holds the unterminated tail between reads.
pub struct LineFramer {
    stream: Stream,
    pending: Vec<u8>,
}

impl LineFramer {
    pub fn new(stream: Stream) -> Self {
        LineFramer {
            stream,
            pending: Vec::new(),
        }
    }

    /// Frames `data`, appending the complete records to `out`, stamped with `now`.
    pub fn push(&mut self, data: &[u8], now: SystemTime, out: &mut Vec<u8>) {
        let stamp = timestamp(now);
        let mut rest = data;
        while !rest.is_empty() {
            match rest.iter().position(|&b| b == b'\n') {
                Some(i) if self.pending.len() + i <= MAX_LINE => {
                    self.pending.extend_from_slice(&rest[..i]);
                    self.record(&stamp, b'F', out);
                    rest = &rest[i + 1..];
                }
                _ => {
                    let room = MAX_LINE - self.pending.len();
                    let take = room.min(rest.len());
                    self.pending.extend_from_slice(&rest[..take]);
                    rest = &rest[take..];
                    if self.pending.len() == MAX_LINE && rest.first().is_some_and(|&b| b != b'\n') {
                        // A full 16 KiB with more text to come on the same line: emit a partial
                        // record. A newline right after ends the line as an `F` record instead.
                        self.record(&stamp, b'P', out);
                    }
                }
            }
        }
    }

    /// The stream closed: flush the unterminated tail, if any.
    pub fn finish(&mut self, now: SystemTime, out: &mut Vec<u8>) {
        if !self.pending.is_empty() {
            self.record(&timestamp(now), b'F', out);
        }
    }

    fn record(&mut self, stamp: &str, tag: u8, out: &mut Vec<u8>) {
        // Writing into a Vec cannot fail.
        let _ = write!(out, "{stamp} {} {} ", self.stream.name(), tag as char);
        out.extend_from_slice(&self.pending);
        out.push(b'\n');
        self.pending.clear();
    }
}

/// RFC 3339 UTC with nanoseconds, always nine digits so records sort as text.
pub fn timestamp(t: SystemTime) -> String {
    let dt = time::OffsetDateTime::from(t);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:09}Z",
        dt.year(),
        u8::from(dt.month()),
        dt.day(),
        dt.hour(),
        dt.minute(),
        dt.second(),
        dt.nanosecond()
    )
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    fn at() -> SystemTime {
        UNIX_EPOCH + Duration::new(1_475_713_029, 669_794_202)
    }

    fn frame(stream: Stream, chunks: &[&[u8]]) -> String {
        let mut f = LineFramer::new(stream);
        let mut out = Vec::new();
        for c in chunks {
            f.push(c, at(), &mut out);
        }
        f.finish(at(), &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn timestamp_is_rfc3339_nano_utc() {
        assert_eq!(timestamp(at()), "2016-10-06T00:17:09.669794202Z");
        assert_eq!(timestamp(UNIX_EPOCH), "1970-01-01T00:00:00.000000000Z");
    }

    #[test]
    fn full_lines_across_reads() {
        let got = frame(Stream::Stdout, &[b"hel", b"lo\nwor", b"ld\n\n"]);
        let t = "2016-10-06T00:17:09.669794202Z";
        assert_eq!(
            got,
            format!("{t} stdout F hello\n{t} stdout F world\n{t} stdout F \n")
        );
    }

    #[test]
    fn unterminated_tail_is_flushed_at_close() {
        let got = frame(Stream::Stderr, &[b"oops"]);
        assert_eq!(got, "2016-10-06T00:17:09.669794202Z stderr F oops\n");
    }

    #[test]
    fn long_line_is_split_into_partials() {
        let long = vec![b'x'; MAX_LINE * 2 + 5];
        let mut data = long.clone();
        data.push(b'\n');
        let got = frame(Stream::Stdout, &[&data[..1000], &data[1000..]]);
        let lines: Vec<&str> = got.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].contains(" stdout P "));
        assert!(lines[1].contains(" stdout P "));
        assert!(lines[2].ends_with(" stdout F xxxxx"));
        let text: usize = lines.iter().map(|l| l.len() - 40).sum();
        assert_eq!(text, long.len());
    }

    #[test]
    fn line_of_exactly_max_is_one_full_record() {
        let mut data = vec![b'y'; MAX_LINE];
        data.push(b'\n');
        let got = frame(Stream::Stdout, &[&data]);
        assert_eq!(got.lines().count(), 1);
        assert!(got.contains(" stdout F y"));
    }
}
