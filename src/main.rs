//! The `rk3s` binary: everything is in the library; this only hands over to the CLI.

use std::ffi::{c_int, c_long};

/// mimalloc instead of the C library's allocator: musl's (the static binaries) is slow under
/// concurrent load, and glibc's keeps freed memory in per-thread arenas.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

unsafe extern "C" {
    /// mimalloc's option setter (part of the library the allocator links in).
    fn mi_option_set(option: c_int, value: c_long);
}

/// `mi_option_purge_delay` in mimalloc.h's `mi_option_t`.
const MI_OPTION_PURGE_DELAY: c_int = 15;

fn main() -> std::process::ExitCode {
    // Give freed memory back to the OS at once instead of 10 ms later: a server's threads go
    // idle right after a burst (a large list), and a delayed purge only runs when the thread
    // allocates again, so the memory would stay resident until the next request. A shim's
    // setup garbage likewise goes back once its container runs.
    // SAFETY: a plain setter of an integer option, called before any other thread exists.
    unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, 0) };
    // `rk3s shim …` drives one container with libcontainer: it must start before any thread
    // exists (libcontainer clones this process and keeps running Rust code in the child).
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("shim") {
        rk3s::kubelet::runtime::shim_main(&args);
    }
    rk3s::cli::main()
}
