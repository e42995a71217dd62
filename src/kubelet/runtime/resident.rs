//! Giving back the memory a shim needed only to start its container.
//!
//! A shim is the whole rk3s binary re-executed, and creating a container runs a lot of it
//! (libcontainer, the OCI spec, serde): those code pages stay mapped in the shim's resident set
//! for the container's whole life, although from then on the shim only runs a small loop (copy
//! output, serve attach, wait). One shim runs per container, so that is paid per container.
//! Once the container runs, the shim drops its page-table entries for every file-backed mapping
//! whose content is still exactly the file's (code and read-only data, never written): the
//! kernel faults back in, from the page cache, the few pages the loop touches. Mappings the
//! process wrote to (relocated data, `.data`, the heap) are left alone, so nothing is lost.
//! Free heap memory goes back to the kernel first (mimalloc, the binary's allocator, keeps freed
//! pages a while otherwise), and the code mappings are marked for random access so a fault
//! brings back one page instead of the 64 KiB around it.

/// An address range `[start, end)` of this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub start: usize,
    pub end: usize,
}

/// The ranges of `/proc/self/smaps` that are file-backed, not writable, private and hold no
/// page of their own (no anonymous copy of a page): dropping them loses nothing.
pub fn clean_file_ranges(smaps: &str) -> Vec<Range> {
    let mut out = Vec::new();
    // The current mapping's range while its "Key: value" lines are read, and whether it still
    // qualifies.
    let mut current: Option<(Range, bool)> = None;
    let flush = |current: &mut Option<(Range, bool)>, out: &mut Vec<Range>| {
        if let Some((range, true)) = current.take() {
            out.push(range);
        }
    };
    for line in smaps.lines() {
        let mut fields = line.split_whitespace();
        let Some(first) = fields.next() else {
            continue;
        };
        if let Some((start, end)) = first.split_once('-')
            && let (Ok(start), Ok(end)) = (
                usize::from_str_radix(start, 16),
                usize::from_str_radix(end, 16),
            )
        {
            flush(&mut current, &mut out);
            let perms = fields.next().unwrap_or_default().as_bytes();
            let _offset = fields.next();
            let _dev = fields.next();
            let inode = fields.next().unwrap_or("0");
            let path = fields.next().unwrap_or_default();
            let ok = perms.len() == 4
                && perms[0] == b'r'
                && perms[1] == b'-'
                && perms[3] == b'p'
                && inode != "0"
                && path.starts_with('/');
            current = Some((Range { start, end }, ok));
            continue;
        }
        let Some((_, ok)) = current.as_mut() else {
            continue;
        };
        match first {
            // Writing to a private file page replaces it with an anonymous copy, so
            // `Anonymous` counts exactly the pages this process changed. (`Private_Dirty` does
            // not tell: it also counts page-cache pages not yet written back, as a binary
            // copied a moment ago has.)
            "Anonymous:" | "Swap:" if fields.next().is_some_and(|kb| kb != "0") => *ok = false,
            // Locked pages stay put; leave such a mapping alone.
            "VmFlags:" if fields.any(|f| f == "lo") => *ok = false,
            _ => {}
        }
    }
    flush(&mut current, &mut out);
    out
}

// The binary's allocator (`main.rs`); named here so its library is linked into every binary
// of this crate, the unit tests included.
use mimalloc as _;

unsafe extern "C" {
    /// mimalloc: frees cached segments and returns free pages to the OS (`force`: now).
    fn mi_collect(force: bool);
}

/// Returns free heap memory to the kernel and drops the clean file-backed pages of this
/// process (see the module doc). Best effort: a failure leaves the memory as it was.
pub fn shrink() {
    // SAFETY: mi_collect only releases memory the allocator holds free; the shim is
    // single-threaded.
    unsafe { mi_collect(true) };
    let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") else {
        return;
    };
    for r in clean_file_ranges(&smaps) {
        // SAFETY: the range is a private, never-written file mapping of this process, so
        // MADV_DONTNEED only drops page-table entries; the next access reads the same bytes
        // back from the file. No Rust object lives in it.
        unsafe {
            let addr = r.start as *mut nix::libc::c_void;
            nix::libc::madvise(addr, r.end - r.start, nix::libc::MADV_RANDOM);
            nix::libc::madvise(addr, r.end - r.start, nix::libc::MADV_DONTNEED);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMAPS: &str = "\
55d0a0000000-55d0a0100000 r--p 00000000 fd:01 1234 /usr/local/bin/rk3s
Size:               1024 kB
Rss:                 600 kB
Anonymous:             0 kB
Private_Dirty:         0 kB
Swap:                  0 kB
VmFlags: rd mr mw me dw sd
55d0a0100000-55d0a0900000 r-xp 00100000 fd:01 1234 /usr/local/bin/rk3s
Size:               8192 kB
Anonymous:             0 kB
Private_Dirty:       300 kB
VmFlags: rd ex mr mw me dw sd
55d0a0900000-55d0a0980000 r--p 00900000 fd:01 1234 /usr/local/bin/rk3s
Size:                512 kB
Anonymous:           512 kB
Private_Dirty:       512 kB
VmFlags: rd mr mw me dw ac sd
55d0a0980000-55d0a0990000 rw-p 00980000 fd:01 1234 /usr/local/bin/rk3s
Anonymous:            64 kB
55d0a1000000-55d0a1100000 rw-p 00000000 00:00 0 [heap]
Anonymous:            12 kB
7f0000000000-7f0000010000 r-xp 00000000 fd:01 99 /lib/x86_64-linux-gnu/libc.so.6
Anonymous:             0 kB
VmFlags: rd ex mr mw me lo
7f0000020000-7f0000030000 r--s 00000000 fd:01 77 /some/shared
Anonymous:             0 kB
7ffd00000000-7ffd00002000 r-xp 00000000 00:00 0 [vdso]
Anonymous:             0 kB
";

    #[test]
    fn only_clean_private_read_only_file_mappings_are_dropped() {
        assert_eq!(
            clean_file_ranges(SMAPS),
            vec![
                // .rodata and the code; not the relocated read-only data (written by the
                // dynamic linker), .data, the heap, locked or shared mappings, or the vdso.
                Range {
                    start: 0x55d0a0000000,
                    end: 0x55d0a0100000
                },
                Range {
                    start: 0x55d0a0100000,
                    end: 0x55d0a0900000
                },
            ]
        );
    }

    /// Resident kB of the mappings starting at `starts`, from smaps.
    fn rss_of(smaps: &str, starts: &[usize]) -> u64 {
        let mut total = 0;
        let mut counting = false;
        for line in smaps.lines() {
            if let Some((start, _)) = line
                .split_whitespace()
                .next()
                .and_then(|f| f.split_once('-'))
                && let Ok(start) = usize::from_str_radix(start, 16)
            {
                counting = starts.contains(&start);
            } else if counting && let Some(kb) = line.strip_prefix("Rss:") {
                total += kb.trim().trim_end_matches(" kB").parse::<u64>().unwrap();
            }
        }
        total
    }

    #[test]
    fn shrinking_drops_code_pages_and_the_process_keeps_working() {
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let starts: Vec<usize> = clean_file_ranges(&smaps).iter().map(|r| r.start).collect();
        let before = rss_of(&smaps, &starts);
        shrink();
        // The code that runs from here on faults back in: reading and parsing still work.
        let after = rss_of(
            &std::fs::read_to_string("/proc/self/smaps").unwrap(),
            &starts,
        );
        assert!(!starts.is_empty());
        assert!(
            after < before,
            "resident kB of clean mappings: {before} -> {after}"
        );
    }
}
