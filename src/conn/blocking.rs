//! Blocking commands on the connection side: the command goes to its owner as a job's last op,
//! and the connection waits for the reply, its timeout, or the client hanging up.

use super::*;

impl Conn {
    /// Sends blocking command `args` to thread `t`, which owns its keys (on a replicated node:
    /// whose group leads their vShard), and waits for its answer.
    pub(super) fn blocking_on(&mut self, t: usize, spec: &'static CommandSpec, args: Args) {
        let timeout = match command::blocking::parse(spec.name, &args) {
            Ok(w) => w.timeout_ms.map(Duration::from_millis),
            Err(e) => return self.out.error(e),
        };
        let first = self.copy_args(t, args.buf(), args.spans());
        let op = self.push_op(
            t,
            Op::Block {
                first,
                len: args.len() as u32,
            },
        );
        self.hole(vec![PartRef::Remote { thread: t, op }], Finish::Raw);
        self.blocked = Some((t, timeout));
    }

    /// A blocking command whose keys span shard threads or nodes: a Calvin transaction in
    /// this thread's job, tried until served; its wait ends as a parked one's does
    /// (`wait_blocked`: on its timeout or a hang-up, `Unblock` goes to this thread).
    pub(super) fn blocking_txn(&mut self, spec: &'static CommandSpec, args: Args) {
        let timeout = match command::blocking::parse(spec.name, &args) {
            Ok(w) => w.timeout_ms.map(Duration::from_millis),
            Err(e) => return self.out.error(e),
        };
        let here = self.shard.id;
        let first = self.copy_args(here, args.buf(), args.spans());
        let op = self.push_op(
            here,
            Op::Txn {
                cmds: vec![(first, args.len() as u32)],
                exec: false,
                watch: None,
                block: true,
            },
        );
        self.barrier = true;
        self.hole(vec![PartRef::Remote { thread: here, op }], Finish::Raw);
        self.blocked = Some((here, timeout));
    }

    /// Waits for the reply to a parked blocking command: until it is served, its timeout passes
    /// (then the owner is told to give up, and whichever reply it sent is taken: nothing popped is
    /// ever dropped), or the client hangs up.
    pub(super) async fn wait_blocked<S: ClientIo>(
        &mut self,
        stream: &S,
        t: usize,
        token: Token,
        timeout: Option<Duration>,
    ) -> Done {
        enum Event {
            Done(Done),
            Timeout,
            Readable,
        }
        let deadline = timeout.map(|d| Instant::now() + d);
        let mut watch_socket = true;
        loop {
            let remaining = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            let event = monoio::select! {
                d = wait(&self.shard, token) => Event::Done(d),
                _ = sleep_for(remaining) => Event::Timeout,
                _ = readable_if(stream, watch_socket) => Event::Readable,
            };
            match event {
                Event::Done(d) => return d,
                Event::Timeout => return self.cancel_block(t, token).await,
                Event::Readable => {
                    if shardline_transport::net::peer_closed(stream.io_fd()) {
                        self.closing = true;
                        return self.cancel_block(t, token).await;
                    }
                    // The client pipelined more commands: they wait their turn.
                    watch_socket = false;
                }
            }
        }
    }

    pub(super) async fn cancel_block(&mut self, t: usize, token: Token) -> Done {
        let origin = self.shard.id;
        let job = Job {
            origin,
            token: self.shard.pending.borrow_mut().alloc(),
            proto: self.proto,
            buf: Vec::new(),
            spans: Vec::new(),
            ops: vec![Op::Unblock { origin, token }],
            calvin_place: None,
            user: None,
        };
        let ack = job.token;
        send_job(&self.shard, t, job).await;
        wait(&self.shard, ack).await;
        // The owner has either finished the parked reply with the timeout answer or served it
        // before; either way it is (or is about to be) delivered on `token`.
        wait(&self.shard, token).await
    }
}

async fn sleep_for(d: Option<Duration>) {
    match d {
        Some(d) => monoio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}

async fn readable_if<S: ClientIo>(stream: &S, on: bool) {
    if on {
        let _ = stream.io_readable().await;
    } else {
        std::future::pending::<()>().await
    }
}
