//! What the node's other shard threads see of a thread's running script (issue 18, step 2):
//! whether it is busy (past `busy-reply-threshold`), and the kill requests SCRIPT KILL,
//! FUNCTION KILL and SHUTDOWN leave for its count hook.

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// A thread's running script as the node's other threads see it (issue 18, step 2): set once
/// it has run past `busy-reply-threshold`, when they answer `-BUSY` for jobs bound to its
/// thread and SCRIPT KILL, FUNCTION KILL and SHUTDOWN may stop it (`kill`, which the count
/// hook reads). Written by its thread (but `kill`), read by any.
#[derive(Default)]
pub struct Busy {
    /// When the script started (the node's monotonic ms, at least 1) while it is past the
    /// threshold; 0 otherwise.
    pub since_ms: AtomicU64,
    /// `KILL_SCRIPT` (SCRIPT KILL / FUNCTION KILL: stop it unless it wrote) or
    /// `KILL_SHUTDOWN` (stop it whatever it did: the node is going down); 0 otherwise.
    pub kill: AtomicU8,
    /// It wrote (SCRIPT KILL answers `-UNKILLABLE`).
    pub wrote: AtomicBool,
    /// It is a function (FUNCTION KILL's, not SCRIPT KILL's).
    pub function: AtomicBool,
    /// The function's name and command while a busy function runs (FUNCTION STATS'
    /// `running_script`; written once, when it turns busy).
    pub running: Mutex<Option<Running>>,
}

/// A busy function as FUNCTION STATS shows it.
#[derive(Clone, Debug)]
pub struct Running {
    pub name: Vec<u8>,
    pub command: Vec<Vec<u8>>,
}

pub const KILL_SCRIPT: u8 = 1;
pub const KILL_SHUTDOWN: u8 = 2;

impl Busy {
    /// Whether a script runs past the threshold.
    pub fn is_busy(&self) -> bool {
        self.since_ms.load(Ordering::Acquire) != 0
    }

    pub(super) fn clear(&self) {
        self.since_ms.store(0, Ordering::Release);
        self.kill.store(0, Ordering::Release);
        self.wrote.store(false, Ordering::Release);
        if let Ok(mut r) = self.running.lock() {
            *r = None;
        }
    }
}

/// What SCRIPT KILL (`function`: FUNCTION KILL) answers, having asked the busy script among
/// `threads` to stop if it may.
pub fn kill(threads: &[Arc<Busy>], function: bool) -> Result<(), &'static str> {
    let Some(b) = threads.iter().find(|b| b.is_busy()) else {
        return Err("NOTBUSY No scripts in execution right now.");
    };
    if b.function.load(Ordering::Acquire) != function {
        return Err(if function {
            "NOTBUSY No scripts in execution right now."
        } else {
            "NOTBUSY No scripts in execution right now. (A function runs: use FUNCTION KILL.)"
        });
    }
    if b.wrote.load(Ordering::Acquire) {
        return Err(
            "UNKILLABLE Sorry the script already executed write commands against the dataset. You can either wait the script termination or kill the server in a hard way using the SHUTDOWN NOSAVE command.",
        );
    }
    b.kill.store(KILL_SCRIPT, Ordering::Release);
    Ok(())
}

/// FUNCTION STATS' `running_script` among `threads`: the busy function's name, command and
/// how long it has run at `now_ms` (the node's monotonic clock).
pub fn running_function(threads: &[Arc<Busy>], now_ms: u64) -> Option<(Running, u64)> {
    threads.iter().find_map(|b| {
        let since = b.since_ms.load(Ordering::Acquire);
        if since == 0 || !b.function.load(Ordering::Acquire) {
            return None;
        }
        let running = b.running.lock().ok()?.clone()?;
        Some((running, now_ms.saturating_sub(since)))
    })
}

/// The `-BUSY` answer for a job bound to a thread whose script is busy.
pub fn busy_error(b: &Busy) -> &'static str {
    if b.function.load(Ordering::Acquire) {
        "BUSY Redis is busy running a script. You can only call FUNCTION KILL or SHUTDOWN NOSAVE."
    } else {
        "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE."
    }
}
