//! CRI container log framing: `<RFC3339Nano UTC> <stdout|stderr> <F|P> <text>\n`, one record per
//! line of output (the format the kubelet's `kubectl logs` reader parses).
//!
//! Same rules as containerd's CRI logger: a line longer than 16 KiB is split into `P` (partial)
//! records followed by a final `F` record; text left without a newline when the stream closes is
//! written as an `F` record (containerd reads it with `bufio.ReadLine`, which reports it as a full
//! line).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// containerd's default `max_container_log_line_size`.
pub const MAX_LINE: usize = 16 * 1024;

/// The kubelet's defaults `containerLogMaxSize` (10Mi) and `containerLogMaxFiles` (5).
pub const MAX_SIZE: u64 = 10 * 1024 * 1024;
pub const MAX_FILES: usize = 5;

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
                    // containerd reads lines with Go's `bufio.ReadLine`, which drops a "\r\n"
                    // ending whole: a terminal's output (ONLCR) logs without the `\r`.
                    if self.pending.last() == Some(&b'\r') {
                        self.pending.pop();
                    }
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

/// A CRI log file rotated by size, as the kubelet's container log manager does it: when the
/// next record would take the file past `max_size`, `N.log` is renamed `N.log.<YYYYMMDD-HHMMSS>`
/// (UTC) and a fresh `N.log` is started; only the newest `max_files - 1` rotated files are kept.
/// Readers (`kubectl logs`) read the current file, as upstream's do. Here the shim that writes
/// the log rotates it itself, so no reopen signal is needed and no record is lost or split.
/// Unlike upstream, rotated files are not gzip-compressed.
pub struct RotatingLog {
    path: PathBuf,
    file: File,
    size: u64,
    max_size: u64,
    max_files: usize,
}

impl RotatingLog {
    pub fn open(path: &Path, max_size: u64, max_files: usize) -> io::Result<RotatingLog> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let size = file.metadata()?.len();
        Ok(RotatingLog {
            path: path.to_path_buf(),
            file,
            size,
            max_size,
            max_files: max_files.max(1),
        })
    }

    /// Appends one or more whole records.
    pub fn write(&mut self, records: &[u8]) -> io::Result<()> {
        if self.size > 0 && self.size + records.len() as u64 > self.max_size {
            // A failed rotation (e.g. a full disk) keeps writing to the current file.
            if let Err(e) = self.rotate() {
                eprintln!("rotate log {}: {e}", self.path.display());
            }
        }
        self.file.write_all(records)?;
        self.size += records.len() as u64;
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        let dt = time::OffsetDateTime::from(SystemTime::now());
        let stamp = format!(
            "{:04}{:02}{:02}-{:02}{:02}{:02}",
            dt.year(),
            u8::from(dt.month()),
            dt.day(),
            dt.hour(),
            dt.minute(),
            dt.second()
        );
        let name = self.file_name();
        // Several rotations within one second get a counter above every one used in that
        // second (pruning may have removed lower ones), so names keep sorting by age.
        let plain = format!("{name}.{stamp}");
        let mut counter: Option<u32> = None;
        for p in RotatingLog::rotated(&self.path) {
            let file = p.file_name().map(|n| n.to_string_lossy().into_owned());
            let Some(rest) = file.as_deref().and_then(|f| f.strip_prefix(&plain)) else {
                continue;
            };
            let n = rest
                .strip_prefix('.')
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            counter = Some(counter.map_or(n, |c: u32| c.max(n)));
        }
        let target = match counter {
            None => self.path.with_file_name(plain),
            Some(c) => self.path.with_file_name(format!("{plain}.{}", c + 1)),
        };
        std::fs::rename(&self.path, &target)?;
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        self.size = 0;
        self.prune()
    }

    fn file_name(&self) -> String {
        self.path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// The rotated files of this log, oldest first.
    pub fn rotated(path: &Path) -> Vec<PathBuf> {
        let Some(dir) = path.parent() else {
            return Vec::new();
        };
        let prefix = format!(
            "{}.",
            path.file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default()
        );
        let mut found: Vec<(String, PathBuf)> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let stamp = name.strip_prefix(&prefix)?;
                // `<YYYYMMDD-HHMMSS>` or `<YYYYMMDD-HHMMSS>.<n>`, counters ordered numerically.
                let (stamp, n) = match stamp.split_once('.') {
                    Some((s, n)) => (s, n.parse::<u32>().ok()?),
                    None => (stamp, 0),
                };
                Some((format!("{stamp}.{n:010}"), e.path()))
            })
            .collect();
        found.sort();
        found.into_iter().map(|(_, p)| p).collect()
    }

    fn prune(&self) -> io::Result<()> {
        let rotated = RotatingLog::rotated(&self.path);
        let excess = rotated.len().saturating_sub(self.max_files - 1);
        for old in &rotated[..excess] {
            std::fs::remove_file(old)?;
        }
        Ok(())
    }
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
    fn crlf_line_ends_are_dropped_whole() {
        let got = frame(Stream::Stdout, &[b"a\r", b"\nb\r\r\n\rc\n"]);
        let t = "2016-10-06T00:17:09.669794202Z";
        assert_eq!(
            got,
            format!("{t} stdout F a\n{t} stdout F b\r\n{t} stdout F \rc\n")
        );
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

    #[test]
    fn logs_rotate_by_size_and_keep_max_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        std::fs::write(dir.path().join("10.log"), "another container's log\n").unwrap();
        let mut log = RotatingLog::open(&path, 100, 3).unwrap();
        let record = [b'x'; 39];
        for _ in 0..20 {
            let mut r = record.to_vec();
            r.push(b'\n');
            log.write(&r).unwrap();
        }
        // 40-byte records, two per file: 20 records made 10 files, of which the current one
        // and the newest two rotated ones remain.
        assert_eq!(std::fs::read(&path).unwrap().len(), 80);
        let rotated = RotatingLog::rotated(&path);
        assert_eq!(rotated.len(), 2, "{rotated:?}");
        for r in &rotated {
            assert_eq!(std::fs::read(r).unwrap().len(), 80, "{}", r.display());
            let name = r.file_name().unwrap().to_string_lossy().into_owned();
            assert!(name.starts_with("0.log.20"), "{name}");
        }
        assert!(dir.path().join("10.log").exists());
        // A record bigger than the limit still goes whole into a file of its own.
        log.write(&[b'y'; 250]).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), vec![b'y'; 250]);
        assert_eq!(RotatingLog::rotated(&path).len(), 2);
        // A reopened log knows its size: the next record rotates the full file away.
        drop(log);
        let mut log = RotatingLog::open(&path, 100, 3).unwrap();
        log.write(b"z\n").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"z\n");
        let newest = RotatingLog::rotated(&path).pop().unwrap();
        assert_eq!(std::fs::read(newest).unwrap(), vec![b'y'; 250]);
    }
}
