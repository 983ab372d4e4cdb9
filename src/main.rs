//! `rner`: parse arguments, run one command, print errors once.
use std::process::ExitCode;

/// Training allocates and frees activation-sized buffers every step; glibc returns large blocks
/// to the kernel and faults them in again, which perf showed as a fifth of a step. Keep freed
/// memory in one heap for reuse instead (the same as GLIBC_TUNABLES mmap_max=0, trim_threshold
/// -1: never trim, arena_max=1).
fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    unsafe {
        libc::mallopt(libc::M_MMAP_MAX, 0);
        libc::mallopt(libc::M_TRIM_THRESHOLD, -1);
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

fn main() -> ExitCode {
    keep_freed_memory();
    match rner::cli::run() {
        Ok(code) => code,
        Err(e) => {
            if let Some(ioe) = e.downcast_ref::<std::io::Error>() {
                if ioe.kind() == std::io::ErrorKind::BrokenPipe {
                    return ExitCode::SUCCESS;
                }
            }
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
