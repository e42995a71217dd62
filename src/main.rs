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

/// Sets a mimalloc option unless the environment gives it (`MIMALLOC_…` wins).
fn set_allocator_option(env: &std::ffi::CStr, option: c_int, value: c_long) {
    // SAFETY: `getenv` with a NUL-terminated name, and a plain setter of an integer option.
    unsafe {
        if getenv(env.as_ptr()).is_null() {
            mi_option_set(option, value);
        }
    }
}

/// Arena memory is committed on demand, not eagerly (mimalloc's default on overcommitting
/// Linux): eagerly committed arena memory is never purged, so memory once used stayed resident.
/// Measured with the release binary (`tests/bench/run.sh node`): the idle server went from 64 to
/// 46 MB RSS and a shim from 6.6 to 1.6 MB, while the live heap of an idle server is ~7 MB
/// (heaptrack); pod start latencies did not change. The arena keeps the commit mode it was
/// created with, so this is set before the first allocation, hence a constructor:
/// `.init_array` runs before the Rust runtime allocates anything (and before any thread exists).
extern "C" fn allocator_options() {
    set_allocator_option(
        c"MIMALLOC_ARENA_EAGER_COMMIT",
        MI_OPTION_ARENA_EAGER_COMMIT,
        0,
    );
}

#[used]
#[unsafe(link_section = ".init_array")]
static ALLOCATOR_OPTIONS: extern "C" fn() = allocator_options;

fn main() -> std::process::ExitCode {
    // `rk3s shim …` drives one container with libcontainer: it must start before any thread
    // exists (libcontainer clones this process and keeps running Rust code in the child).
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("shim") {
        // A shim gives freed memory back at once: a delayed purge only runs when the thread
        // allocates again, and a shim sleeps once its container runs, so its setup garbage
        // would stay. The purge delay is read at each free, so setting it here is enough.
        // Every other command keeps mimalloc's 10 ms: with no delay, each page a request burst
        // empties goes back with `madvise`, a TLB shootdown across all cores on a busy server
        // (15% of `rk3s datastore`'s CPU under 64 concurrent puts; server CPU per put with 16
        // clients was 63-90 µs against 57-66 µs with the delay, `tests/bench/run.sh store`).
        set_allocator_option(c"MIMALLOC_PURGE_DELAY", MI_OPTION_PURGE_DELAY, 0);
        rk3s::kubelet::runtime::shim_main(&args);
    }
    rk3s::cli::main()
}
