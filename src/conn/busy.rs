//! A shard thread's own clients while a script holds the thread past `busy-reply-threshold`
//! (issue 18, step 2; `docs/design/scripting.md`, "Busy scripts"). The script runs on the
//! thread, so its executor cannot serve them; the script's count hook calls [`serve`] instead,
//! which reads the sockets of the thread's idle connections itself, without waiting, and
//! answers each complete command as Redis does then: `-BUSY`, SCRIPT KILL / FUNCTION KILL
//! (which stop a script that has not written), SHUTDOWN. An idle connection
//! (`ClientInfo::busy_idle`) has nothing half-read in its task and nothing left to write, is
//! not in MULTI, subscribed or blocked. Bytes of an incomplete command wait in
//! `ClientInfo::busy_in` for the connection's task, replies the socket did not take yet in
//! `busy_out`; the task takes both when its pending read completes (`take_busy`).
//!
//! Why only with some rings: the connection's task has a read pending on the socket. With
//! `DEFER_TASKRUN` that read runs only when the thread enters its ring again, and with the
//! epoll driver only when the task polls: never while the script runs, so no command's bytes
//! are split between that read and this one. Other ring setups may run it at any syscall's
//! return; there [`install`] is not called and the thread's own clients wait, as before.

use crate::shard::{ClientInfo, Shard};
use shardline_shards::command::Args;
use shardline_shards::reply::{Out, Proto};
use shardline_transport::net;
use shardline_transport::resp;
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Waker};

thread_local! {
    static SHARD: RefCell<Option<Rc<Shard>>> = const { RefCell::new(None) };
}

/// The most bytes read from one connection per call.
const READ_MAX: usize = 64 * 1024;
/// The most bytes kept for one connection (one sending more while the script runs waits).
const KEPT_MAX: usize = 1 << 20;
/// How long the end of a busy script waits for sockets to take the replies left.
const FLUSH_MS: i32 = 1_000;

/// Makes `shard`'s scripts serve its clients while busy (its thread's ring allows it).
pub fn install(shard: &Rc<Shard>) {
    SHARD.with(|s| *s.borrow_mut() = Some(shard.clone()));
    INSTALLED.with(|i| i.set(true));
    shard.db.borrow_mut().scripts.serve_busy = Some(serve);
}

/// The count hook's call while this thread's script is busy: answers what the thread's idle
/// clients sent; with `ended` (the script is over), sends what is left to send.
pub fn serve(ended: bool) {
    let Some(shard) = SHARD.with(|s| s.borrow().clone()) else {
        return;
    };
    let idle: Vec<Rc<RefCell<ClientInfo>>> = match shard.clients.try_borrow() {
        Ok(list) => list
            .iter()
            .filter(|c| {
                c.try_borrow()
                    .is_ok_and(|c| c.busy_idle.load(Ordering::Acquire))
            })
            .cloned()
            .collect(),
        Err(_) => return,
    };
    if ended {
        return flush_all(&idle);
    }
    let fds: Vec<i32> = idle.iter().map(|c| c.borrow().fd).collect();
    let ready = net::poll_ready(&fds, libc::POLLIN, 0);
    for (c, ready) in idle.iter().zip(ready) {
        let Ok(mut info) = c.try_borrow_mut() else {
            continue;
        };
        if !ready || !info.busy_out.is_empty() || info.busy_in.len() >= KEPT_MAX {
            continue;
        }
        let fd = info.fd;
        match net::recv_now(fd, &mut info.busy_in, READ_MAX) {
            // (End of stream or an error: the task's read says so once the script ends.)
            Ok(0) | Err(_) => continue,
            Ok(_) => {}
        }
        answer(&shard, &mut info);
        if !info.busy_out.is_empty()
            && let Ok(n) = net::send_now(fd, &info.busy_out)
        {
            info.busy_out.drain(..n);
        }
    }
}

/// Answers each complete command in `info.busy_in` (an incomplete or malformed one stays
/// there, with what follows it, for the connection's task).
fn answer(shard: &Shard, info: &mut ClientInfo) {
    let limits = resp::Limits {
        max_bulk_len: shard.node.live.get(|l| &l.proto_max_bulk_len) as usize,
        max_multibulk_len: shard.node.live.get(|l| &l.max_multibulk_len) as usize,
        max_inline_len: 64 * 1024,
    };
    let (mut spans, mut scratch) = (Vec::new(), Vec::new());
    let mut used = 0;
    while let Ok(Some(frame)) =
        resp::parse_command(&info.busy_in[used..], &limits, &mut spans, &mut scratch)
    {
        let buf = if frame.in_scratch {
            &scratch[..]
        } else {
            &info.busy_in[used..]
        };
        if !spans.is_empty() {
            let args = Args::new(buf, &spans);
            let refused = info.busy_user.as_ref().and_then(|u| {
                let spec = shardline_shards::command::lookup(args.get(0))?;
                let d = shardline_shards::acl::check_command(u, spec, args).err()?;
                Some(shardline_shards::acl::denial_message(&d, &u.name))
            });
            let reply = match refused {
                Some(msg) if info.busy_authed => format!("-{msg}\r\n").into_bytes(),
                _ => reply_to(shard, (info.busy_authed, info.proto), args),
            };
            info.busy_out.extend_from_slice(&reply);
        }
        used += frame.consumed;
    }
    info.busy_in.drain(..used);
}

/// What a command gets while this thread's script is busy (Redis's rules): SCRIPT KILL and
/// FUNCTION KILL stop it if they may, SHUTDOWN stops it and the node, FUNCTION STATS
/// answers, any other `-BUSY`.
fn reply_to(shard: &Shard, (authed, proto): (bool, Proto), args: Args) -> Vec<u8> {
    if !authed {
        return b"-NOAUTH Authentication required.\r\n".to_vec();
    }
    if args.len() == 2
        && args.get(0).eq_ignore_ascii_case(b"function")
        && args.get(1).eq_ignore_ascii_case(b"stats")
    {
        // (Redis answers it while a function is busy: which one, for how long.)
        let mut out = Out::new(proto);
        let libs = shard.node.cluster.functions.get();
        let now_ms = crate::shard::mono_ms();
        shardline_shards::command::scripting::function_stats(
            &libs,
            &shard.node.script_busy,
            now_ms,
            &mut out,
        );
        return out.buf;
    }
    let node = &shard.node;
    let name = args.get(0).to_ascii_lowercase();
    let kill = args.len() == 2 && args.get(1).eq_ignore_ascii_case(b"kill");
    let error = |e: &str| format!("-{e}\r\n").into_bytes();
    match name.as_slice() {
        b"script" | b"function" if kill => {
            match shardline_shards::script::kill(&node.script_busy, name == b"function") {
                Ok(()) => b"+OK\r\n".to_vec(),
                Err(e) => error(e),
            }
        }
        b"shutdown" => {
            tracing::info!("SHUTDOWN requested by a client while a script was busy");
            node.stop_scripts();
            node.request_shutdown();
            Vec::new()
        }
        _ => error(shardline_shards::script::busy_error(
            &node.script_busy[shard.id],
        )),
    }
}

/// Sends the replies left (the script ended), waiting up to `FLUSH_MS` for sockets to take
/// them; a client that does not read them by then loses its connection.
fn flush_all(idle: &[Rc<RefCell<ClientInfo>>]) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(FLUSH_MS as u64);
    loop {
        let pending: Vec<&Rc<RefCell<ClientInfo>>> = idle
            .iter()
            .filter(|c| c.try_borrow().is_ok_and(|c| !c.busy_out.is_empty()))
            .collect();
        if pending.is_empty() {
            return;
        }
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            for c in pending {
                let mut info = c.borrow_mut();
                info.busy_out.clear();
                net::shutdown(info.fd);
            }
            return;
        }
        let fds: Vec<i32> = pending.iter().map(|c| c.borrow().fd).collect();
        let ready = net::poll_ready(&fds, libc::POLLOUT, left.as_millis() as i32);
        for (c, ready) in pending.into_iter().zip(ready) {
            let mut info = c.borrow_mut();
            if !ready {
                continue;
            }
            match net::send_now(info.fd, &info.busy_out) {
                Ok(n) => {
                    info.busy_out.drain(..n);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => info.busy_out.clear(),
            }
        }
    }
}

/// The connection's task, its read done with `got` new bytes at the end of `rbuf` (which was
/// empty): what `serve` read before them goes first, and the replies it left are returned to
/// be written first.
pub fn take_busy(info: &RefCell<ClientInfo>, rbuf: &mut Vec<u8>) -> Vec<u8> {
    let mut info = info.borrow_mut();
    if !info.busy_in.is_empty() {
        let before = std::mem::take(&mut info.busy_in);
        rbuf.splice(0..0, before);
    }
    std::mem::take(&mut info.busy_out)
}

thread_local! {
    static INSTALLED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether this thread's busy scripts serve its clients (`install`).
pub fn installed() -> bool {
    INSTALLED.with(|i| i.get())
}

/// The task's waker behind one that clears the connection's idle flag first: the flag is
/// down from the moment its read completes (reaped by the runtime), before the task runs.
struct ClearsIdle {
    idle: Arc<AtomicBool>,
    task: Waker,
}

impl std::task::Wake for ClearsIdle {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.idle.store(false, Ordering::Release);
        self.task.wake_by_ref();
    }
}

/// Awaits `read` with the connection marked idle (`ClientInfo::busy_idle`) while it waits:
/// `serve` then answers what the client sends. A read whose bytes arrived before a busy script
/// started has been reaped and its waker called, which cleared the flag: `serve` never reads
/// after bytes the task holds (its answers would come first). `cache` keeps the wrapping waker
/// for the task's (made once per connection).
pub async fn idle_read<F: Future>(
    read: F,
    idle: &Arc<AtomicBool>,
    cache: &mut Option<(Waker, Waker)>,
) -> F::Output {
    let mut read = std::pin::pin!(read);
    std::future::poll_fn(|cx| {
        let fresh = cache
            .as_ref()
            .is_none_or(|(task, _)| !task.will_wake(cx.waker()));
        if fresh {
            let ours = Waker::from(Arc::new(ClearsIdle {
                idle: idle.clone(),
                task: cx.waker().clone(),
            }));
            *cache = Some((cx.waker().clone(), ours));
        }
        let ours = &cache.as_ref().expect("set above").1;
        match read.as_mut().poll(&mut Context::from_waker(ours)) {
            Poll::Pending => {
                idle.store(true, Ordering::Release);
                Poll::Pending
            }
            Poll::Ready(r) => {
                idle.store(false, Ordering::Release);
                Poll::Ready(r)
            }
        }
    })
    .await
}
