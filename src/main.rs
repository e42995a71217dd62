//! The `rk3s` binary: everything is in the library; this only hands over to the CLI.

use std::ffi::{c_char, c_int, c_long};

/// mimalloc instead of the C library's allocator: musl's (the static binaries) is slow under
/// concurrent load, and glibc's keeps freed memory in per-thread arenas.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

unsafe extern "C" {
    /// mimalloc's option setter (part of the library the allocator links in).
    fn mi_option_set(option: c_int, value: c_long);
    /// The C library's, which does not allocate (unlike `std::env`).
    fn getenv(name: *const c_char) -> *mut c_char;
}

/// `mi_option_arena_eager_commit` in mimalloc.h's `mi_option_t` (the same in v2 and v3).
const MI_OPTION_ARENA_EAGER_COMMIT: c_int = 4;
/// `mi_option_purge_delay` in mimalloc.h's `mi_option_t`.
const MI_OPTION_PURGE_DELAY: c_int = 15;
/// The servers' purge delay (mimalloc's default). With no delay, every page that a request
/// burst empties goes back with `madvise`, and on a busy server each of those is a TLB
/// shootdown across all cores: in a profile of 64 concurrent puts against `rk3s datastore`,
/// `madvise` and its inter-processor interrupts took 15% of the server's CPU, and server CPU
/// per put (`tests/bench/run.sh store`, 16 clients) went from 57-66 µs to 63-90 µs. The memory
/// kept is what was freed in the last milliseconds before a thread went idle.
const DAEMON_PURGE_DELAY_MS: c_long = 10;

/// The allocator's options, set before the first allocation (the arena it creates keeps the
/// commit mode it was created with), hence a constructor: `.init_array` runs before the Rust
/// runtime allocates anything. An option given in the environment (`MIMALLOC_…`) wins.
/// - Arena memory is committed on demand, not eagerly (mimalloc's default on overcommitting
///   Linux): eagerly committed arena memory is never purged, so memory once used stayed
///   resident. Measured with the release binary (`tests/bench/run.sh node`): the idle server
///   went from 64 to 46 MB RSS and a shim from 6.6 to 1.6 MB, while the live heap of an idle
///   server is ~7 MB (heaptrack); pod start latencies did not change.
/// - A shim gives freed memory back to the OS at once instead of 10 ms later: its setup
///   garbage goes back once its container runs (a delayed purge only runs when the thread
///   allocates again, and a shim then sleeps). Every other command switches to
///   [`DAEMON_PURGE_DELAY_MS`] in `main`.
extern "C" fn allocator_options() {
    let options = [
        (
            c"MIMALLOC_ARENA_EAGER_COMMIT",
            MI_OPTION_ARENA_EAGER_COMMIT,
            0,
        ),
        (c"MIMALLOC_PURGE_DELAY", MI_OPTION_PURGE_DELAY, 0),
    ];
    for (env, option, value) in options {
        // SAFETY: `getenv` with a NUL-terminated name, and a plain setter of an integer
        // option, both before any thread exists.
        unsafe {
            if getenv(env.as_ptr()).is_null() {
                mi_option_set(option, value);
            }
        }
    }
}

#[used]
#[unsafe(link_section = ".init_array")]
static ALLOCATOR_OPTIONS: extern "C" fn() = allocator_options;

fn main() -> std::process::ExitCode {
    // `rk3s shim …` drives one container with libcontainer: it must start before any thread
    // exists (libcontainer clones this process and keeps running Rust code in the child).
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("shim") {
        rk3s::kubelet::runtime::shim_main(&args);
    }
    // SAFETY: `getenv` with a NUL-terminated name and mimalloc's integer option setter; the
    // purge delay is read each time memory is freed, so changing it now is allowed.
    unsafe {
        if getenv(c"MIMALLOC_PURGE_DELAY".as_ptr()).is_null() {
            mi_option_set(MI_OPTION_PURGE_DELAY, DAEMON_PURGE_DELAY_MS);
        }
    }
    rk3s::cli::main()
}
