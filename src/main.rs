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

/// llama.cpp's CPU threads are OpenMP threads, and libgomp lets an idle one spin about 300,000
/// times before it sleeps. Two processes sharing the cores (an eval beside a training run, the
/// test suite's parallel tests) then spin against each other: two 6-sentence evals side by side
/// took 71 s each on 2 cores against 2.9 s alone; with a spin count of 1000, 6.0 s each and 2.5 s
/// alone (`results/bench/shared-cores.md`, by `benchmarks/shared-cores.sh`). libgomp reads its
/// settings when it loads, before `main`, so the process runs itself again once with the count set. A user's own
/// `OMP_WAIT_POLICY` or `GOMP_SPINCOUNT` is left alone; if the exec fails, it goes on as it is.
fn spin_less_when_cores_are_shared() {
    #[cfg(all(unix, feature = "llama"))]
    {
        use std::os::unix::process::CommandExt;
        if ["OMP_WAIT_POLICY", "GOMP_SPINCOUNT"].iter().any(|v| std::env::var_os(v).is_some()) {
            return;
        }
        let Ok(exe) = std::env::current_exe() else { return };
        let mut args = std::env::args_os();
        let mut cmd = std::process::Command::new(exe);
        if let Some(arg0) = args.next() {
            cmd.arg0(arg0);
        }
        // exec returns only when it failed
        let _ = cmd.args(args).env("GOMP_SPINCOUNT", rner::engine::llama::GOMP_SPINCOUNT).exec();
    }
}

fn main() -> ExitCode {
    spin_less_when_cores_are_shared();
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
