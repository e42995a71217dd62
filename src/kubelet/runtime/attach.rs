//! `pods/attach` input: the channel between the daemon and the shim of a container started
//! with `stdin: true` (or a tty). The shim keeps the container's stdin (the write end of a pipe,
//! or the terminal master) and listens on `<state_dir>/<id>/attach.sock`; each attach session
//! is one connection carrying frames `[kind u8][length u32 BE][payload]`: `DATA` bytes for the
//! container's stdin, `RESIZE` (width u16, height u16) for its terminal. The container's
//! output does not go through here: attach reads it from the CRI log, as it was written.
//!
//! Upstream semantics: input from every session reaches the one stdin; with `stdinOnce` the
//! stdin is closed (a terminal gets its end-of-file character) when the first session ends.
//! The shim's side never blocks: input waits in a bounded buffer until the container reads
//! it, and sessions are not read while the buffer is full.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use nix::poll::PollFlags;

/// The socket's name in the container's state directory.
pub const SOCKET: &str = "attach.sock";

const DATA: u8 = 0;
const RESIZE: u8 = 1;
/// Input buffered for a container that does not read its stdin, before sessions are paused.
const BUFFER: usize = 64 * 1024;
/// The terminal's end-of-file character (VEOF, ^D).
const EOF_CHAR: u8 = 0x04;

/// Appends a frame carrying `data` for the container's stdin.
pub fn encode_data(data: &[u8], out: &mut Vec<u8>) {
    for chunk in data.chunks(u16::MAX as usize) {
        out.push(DATA);
        out.extend_from_slice(&(chunk.len() as u32).to_be_bytes());
        out.extend_from_slice(chunk);
    }
}

/// Appends a frame resizing the container's terminal.
pub fn encode_resize(width: u16, height: u16, out: &mut Vec<u8>) {
    out.push(RESIZE);
    out.extend_from_slice(&4u32.to_be_bytes());
    out.extend_from_slice(&width.to_be_bytes());
    out.extend_from_slice(&height.to_be_bytes());
}

#[derive(Debug, PartialEq, Eq)]
enum Frame {
    Data(Vec<u8>),
    Resize(u16, u16),
}

/// Splits a session's byte stream into frames; `Err` on a frame no daemon sends.
#[derive(Default)]
struct Decoder {
    buf: Vec<u8>,
}

impl Decoder {
    fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    fn next(&mut self) -> Result<Option<Frame>, String> {
        if self.buf.len() < 5 {
            return Ok(None);
        }
        let len = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]) as usize;
        if len > u16::MAX as usize {
            return Err(format!("attach frame of {len} bytes"));
        }
        if self.buf.len() < 5 + len {
            return Ok(None);
        }
        let kind = self.buf[0];
        let payload: Vec<u8> = self.buf.drain(..5 + len).skip(5).collect();
        match (kind, payload.as_slice()) {
            (DATA, _) => Ok(Some(Frame::Data(payload))),
            (RESIZE, [w0, w1, h0, h1]) => Ok(Some(Frame::Resize(
                u16::from_be_bytes([*w0, *w1]),
                u16::from_be_bytes([*h0, *h1]),
            ))),
            _ => Err(format!("bad attach frame kind {kind} ({len} bytes)")),
        }
    }
}

struct Session {
    stream: UnixStream,
    decoder: Decoder,
}

/// The shim's end: the listening socket, the sessions and the container's stdin.
pub struct Attach {
    listener: UnixListener,
    path: PathBuf,
    sessions: Vec<Session>,
    /// The container's stdin; `None` once closed (stdinOnce, or the container stopped reading).
    input: Option<File>,
    pending: Vec<u8>,
    /// The terminal master, for resizes and the end-of-file character.
    terminal: Option<OwnedFd>,
    stdin_once: bool,
}

impl Attach {
    /// Listens on `<dir>/attach.sock`. `input` is the container's stdin, non-blocking (a dup of
    /// `terminal` with a tty). Binds by a relative name from inside `dir`, as the absolute path
    /// may be longer than a socket address allows (the shim is single-threaded, so changing
    /// directory is safe).
    pub fn bind(
        dir: &Path,
        input: Option<File>,
        terminal: Option<OwnedFd>,
        stdin_once: bool,
    ) -> Result<Attach, String> {
        let path = dir.join(SOCKET);
        let _ = std::fs::remove_file(&path);
        std::env::set_current_dir(dir).map_err(|e| format!("chdir {}: {e}", dir.display()))?;
        let listener = UnixListener::bind(SOCKET);
        let _ = std::env::set_current_dir("/");
        let listener = listener.map_err(|e| format!("bind {}: {e}", path.display()))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| format!("attach socket: {e}"))?;
        Ok(Attach {
            listener,
            path,
            sessions: Vec::new(),
            input,
            pending: Vec::new(),
            terminal,
            stdin_once,
        })
    }

    /// The descriptors to poll and for what, in the order [`Attach::handle`] expects.
    pub fn poll_fds(&self) -> Vec<(BorrowedFd<'_>, PollFlags)> {
        let mut fds = vec![(self.listener.as_fd(), PollFlags::POLLIN)];
        let room = self.pending.len() < BUFFER;
        for s in &self.sessions {
            let events = if room {
                PollFlags::POLLIN
            } else {
                PollFlags::empty()
            };
            fds.push((s.stream.as_fd(), events));
        }
        if let Some(input) = &self.input
            && !self.pending.is_empty()
        {
            fds.push((input.as_fd(), PollFlags::POLLOUT));
        }
        fds
    }

    /// Acts on what `poll` reported for the descriptors of [`Attach::poll_fds`].
    pub fn handle(&mut self, revents: &[PollFlags]) {
        let ready = |i: usize| revents.get(i).is_some_and(|r| !r.is_empty());
        let sessions = self.sessions.len();
        let mut ended = Vec::new();
        for i in 0..sessions {
            if ready(1 + i) && !self.read_session(i) {
                ended.push(i);
            }
        }
        for i in ended.into_iter().rev() {
            self.sessions.remove(i);
            if self.stdin_once {
                self.close_input();
            }
        }
        if ready(0) {
            while let Ok((stream, _)) = self.listener.accept() {
                if stream.set_nonblocking(true).is_ok() {
                    self.sessions.push(Session {
                        stream,
                        decoder: Decoder::default(),
                    });
                }
            }
        }
        self.flush();
    }

    /// Reads what session `i` sent; false when it ended (or broke the protocol).
    fn read_session(&mut self, i: usize) -> bool {
        let mut buf = [0u8; 16 * 1024];
        let n = match self.sessions[i].stream.read(&mut buf) {
            Ok(0) => return false,
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) =>
            {
                return true;
            }
            Err(_) => return false,
        };
        self.sessions[i].decoder.push(&buf[..n]);
        loop {
            match self.sessions[i].decoder.next() {
                Ok(None) => return true,
                Ok(Some(Frame::Data(data))) => {
                    if self.input.is_some() {
                        self.pending.extend_from_slice(&data);
                    }
                }
                Ok(Some(Frame::Resize(w, h))) => {
                    if let Some(t) = &self.terminal {
                        resize(t.as_raw_fd(), w, h);
                    }
                }
                Err(e) => {
                    eprintln!("attach: {e}");
                    return false;
                }
            }
        }
    }

    /// Writes as much pending input as the container takes without blocking.
    fn flush(&mut self) {
        let Some(input) = &mut self.input else {
            self.pending.clear();
            return;
        };
        while !self.pending.is_empty() {
            match input.write(&self.pending) {
                Ok(0) => break,
                Ok(n) => {
                    self.pending.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // The container closed its stdin (EPIPE) or exited.
                Err(_) => {
                    self.input = None;
                    self.pending.clear();
                    break;
                }
            }
        }
    }

    /// Closes the container's stdin: a pipe's reader sees end-of-file; a terminal gets its
    /// end-of-file character (the master stays open, it carries the output).
    fn close_input(&mut self) {
        if self.terminal.is_some() {
            self.flush();
            if let Some(input) = &mut self.input {
                let _ = input.write(&[EOF_CHAR]);
            }
        }
        self.input = None;
        self.pending.clear();
    }
}

impl Drop for Attach {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Sets a terminal's size (TIOCSWINSZ on its master).
pub fn resize(fd: i32, width: u16, height: u16) {
    let size = nix::libc::winsize {
        ws_row: height,
        ws_col: width,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize from the pointer, which outlives the call.
    unsafe { nix::libc::ioctl(fd, nix::libc::TIOCSWINSZ, &size) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_across_arbitrary_splits() {
        let mut wire = Vec::new();
        encode_data(b"echo hi\n", &mut wire);
        encode_resize(120, 40, &mut wire);
        // Nothing to send makes no frame.
        encode_data(b"", &mut wire);
        encode_data(b"x", &mut wire);
        let mut d = Decoder::default();
        let mut got = Vec::new();
        for b in &wire {
            d.push(std::slice::from_ref(b));
            while let Some(f) = d.next().unwrap() {
                got.push(f);
            }
        }
        assert_eq!(
            got,
            [
                Frame::Data(b"echo hi\n".to_vec()),
                Frame::Resize(120, 40),
                Frame::Data(b"x".to_vec())
            ]
        );
        let mut d = Decoder::default();
        d.push(&[9, 0, 0, 0, 1, 0]);
        assert!(d.next().is_err());
    }

    /// A session's input reaches the stdin pipe; with stdinOnce the pipe closes when the
    /// session ends, and later sessions are accepted without reaching it.
    #[test]
    fn input_reaches_stdin_and_stdin_once_closes_it() {
        let dir = tempfile::tempdir().unwrap();
        let (r, w) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK)
                .unwrap();
        let mut attach = Attach::bind(dir.path(), Some(File::from(w)), None, true).unwrap();
        let mut client = UnixStream::connect(dir.path().join(SOCKET)).unwrap();
        let mut frame = Vec::new();
        encode_data(b"hello\n", &mut frame);
        client.write_all(&frame).unwrap();
        let step = |attach: &mut Attach| {
            let mut fds: Vec<nix::poll::PollFd> = attach
                .poll_fds()
                .into_iter()
                .map(|(fd, ev)| nix::poll::PollFd::new(fd, ev))
                .collect();
            nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(200u16)).unwrap();
            let revents: Vec<PollFlags> = fds
                .iter()
                .map(|f| f.revents().unwrap_or(PollFlags::empty()))
                .collect();
            drop(fds);
            attach.handle(&revents);
        };
        let mut reader = File::from(r);
        let mut got = Vec::new();
        for _ in 0..20 {
            step(&mut attach);
            let mut buf = [0u8; 64];
            if let Ok(n) = reader.read(&mut buf) {
                got.extend_from_slice(&buf[..n]);
            }
            if got == b"hello\n" {
                break;
            }
        }
        assert_eq!(got, b"hello\n");
        drop(client);
        for _ in 0..5 {
            step(&mut attach);
        }
        let mut buf = [0u8; 8];
        assert_eq!(reader.read(&mut buf).unwrap(), 0, "stdin closed");
        drop(attach);
        assert!(!dir.path().join(SOCKET).exists());
    }
}
