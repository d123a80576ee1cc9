//! Cores: which ones this process may run on, pinning the calling thread to one, and the CPU time
//! the process has used.

use std::io;

/// The CPUs the calling thread may run on, ascending.
pub fn allowed_cpus() -> io::Result<Vec<usize>> {
    affinity_of(0)
}

/// The CPUs the process's main thread may run on (threads pinned since keep this): what a
/// helper thread spawned by a pinned thread should be allowed.
pub fn process_cpus() -> io::Result<Vec<usize>> {
    // SAFETY: getpid has no preconditions.
    affinity_of(unsafe { libc::getpid() })
}

/// The affinity mask of thread `tid` (0: the calling thread), ascending.
fn affinity_of(tid: libc::pid_t) -> io::Result<Vec<usize>> {
    // SAFETY: cpu_set_t is plain data; zeroed is a valid empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid, writable cpu_set_t of the size passed.
    let rc =
        unsafe { libc::sched_getaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let max = libc::CPU_SETSIZE as usize;
    // SAFETY: CPU_ISSET reads within the set for indexes below CPU_SETSIZE.
    Ok((0..max)
        .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
        .collect())
}

/// Pins the calling thread to `cpu`.
pub fn pin_current_thread(cpu: usize) -> io::Result<()> {
    pin_current_thread_to(&[cpu])
}

/// Lets the calling thread run on `cpus` only.
pub fn pin_current_thread_to(cpus: &[usize]) -> io::Result<()> {
    // SAFETY: zeroed cpu_set_t is a valid empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &cpu in cpus {
        if cpu >= libc::CPU_SETSIZE as usize {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("cpu {cpu} out of range"),
            ));
        }
        // SAFETY: index checked against CPU_SETSIZE above.
        unsafe { libc::CPU_SET(cpu, &mut set) };
    }
    // SAFETY: `set` is a valid cpu_set_t of the size passed; 0 means the calling thread.
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// User plus system CPU time of the whole process, in microseconds.
pub fn process_cpu_time_us() -> u64 {
    // SAFETY: rusage is plain data; getrusage fills it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid, writable rusage.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// (user, system) CPU time of the calling thread, in microseconds.
pub fn thread_cpu_time_us() -> (u64, u64) {
    // SAFETY: rusage is plain data; getrusage fills it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid, writable rusage.
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    (tv(ru.ru_utime), tv(ru.ru_stime))
}

/// CPU time of the calling thread, in nanoseconds (`CLOCK_THREAD_CPUTIME_ID`: time the thread
/// ran, not time it waited or was preempted; a system call, not the vDSO: about 0.2 µs).
pub fn thread_cpu_ns() -> u64 {
    // SAFETY: timespec is plain data; clock_gettime fills it.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is a constant Linux has.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Peak resident set size of the process, in bytes.
pub fn max_rss_bytes() -> u64 {
    // SAFETY: as above.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid, writable rusage.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    ru.ru_maxrss as u64 * 1024
}

/// Current resident set size of the process, in bytes (from /proc/self/statm).
pub fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    // SAFETY: sysconf has no memory-safety preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    pages * page.max(4096) as u64
}

/// A cheap monotonic clock for timing commands (SLOWLOG, LATENCY): the CPU's time-stamp
/// counter where the kernel says it is invariant (`constant_tsc` and `nonstop_tsc`: it ticks
/// at one rate in every power state and on every core), else nanoseconds of `Instant`. Read
/// twice per command: the TSC costs about 11 ns a read here, `Instant` about 30.
pub struct Ticks {
    tsc: bool,
    per_us: u64,
}

static TICKS: std::sync::OnceLock<Ticks> = std::sync::OnceLock::new();
static EPOCH: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();

fn invariant_tsc() -> bool {
    if !cfg!(target_arch = "x86_64") {
        return false;
    }
    let Ok(info) = std::fs::read_to_string("/proc/cpuinfo") else {
        return false;
    };
    let flags = info
        .lines()
        .find(|l| l.starts_with("flags"))
        .unwrap_or_default();
    let has = |f: &str| flags.split_whitespace().any(|x| x == f);
    has("constant_tsc") && has("nonstop_tsc")
}

#[cfg(target_arch = "x86_64")]
fn tsc() -> u64 {
    // SAFETY: RDTSC has no preconditions on x86_64 (it may be trapped by a hypervisor,
    // which makes it slower, not wrong).
    unsafe { core::arch::x86_64::_rdtsc() }
}

#[cfg(not(target_arch = "x86_64"))]
fn tsc() -> u64 {
    0
}

fn instant_ns() -> u64 {
    EPOCH
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_nanos() as u64
}

impl Ticks {
    /// The process's clock, calibrated on first use (about 20 ms against `Instant`).
    pub fn get() -> &'static Ticks {
        TICKS.get_or_init(|| {
            if !invariant_tsc() {
                return Ticks {
                    tsc: false,
                    per_us: 1000,
                };
            }
            let (t0, c0) = (std::time::Instant::now(), tsc());
            std::thread::sleep(std::time::Duration::from_millis(20));
            let (us, c) = (t0.elapsed().as_micros() as u64, tsc() - c0);
            Ticks {
                tsc: true,
                per_us: (c / us.max(1)).max(1),
            }
        })
    }

    /// The function that reads it (for a keyspace's `Timer`), and ticks per microsecond.
    pub fn reader(&self) -> (fn() -> u64, u64) {
        (if self.tsc { tsc } else { instant_ns }, self.per_us)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_may_run_somewhere_and_can_pin_there() {
        let cpus = allowed_cpus().unwrap();
        assert!(!cpus.is_empty());
        let t = std::thread::spawn(move || pin_current_thread(cpus[0]));
        t.join().unwrap().unwrap();
        assert!(pin_current_thread(100_000).is_err());
    }

    #[test]
    fn ticks_advance_at_their_rate() {
        let t = Ticks::get();
        let (now, per_us) = t.reader();
        assert!(per_us >= 1);
        let start = now();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let us = (now() - start) / per_us;
        assert!((15_000..2_000_000).contains(&us), "20 ms read as {us} µs");
    }
}
