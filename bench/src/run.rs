//! Driving the load: one monoio runtime per client thread, `connections` tasks on each. Closed
//! loop: each connection keeps `pipeline` requests in flight. Open loop: each connection sends on a
//! fixed schedule and latency counts from the intended send time, so a stalled server is charged
//! for the requests it delayed (no coordinated omission).

use crate::args::Options;
use crate::workload::{Generator, Keys};
use hdrhistogram::Histogram;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt, Splitable};
use monoio::net::TcpStream;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Counters shared by all client threads and the progress printer.
#[derive(Default)]
pub struct Shared {
    pub done: AtomicU64,
    pub errors: AtomicU64,
    pub issued: AtomicU64,
    pub stop: AtomicBool,
    /// `-MOVED` replies followed (cluster mode).
    pub redirects: AtomicU64,
}

pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

/// Claims up to `n` requests from the `--requests` budget; 0 when it is spent.
pub(crate) fn claim(o: &Options, shared: &Shared, n: u64) -> u64 {
    match o.requests {
        None => n,
        Some(total) => {
            let before = shared.issued.fetch_add(n, Ordering::Relaxed);
            total.saturating_sub(before).min(n)
        }
    }
}

/// Reads until `n` complete replies have arrived; returns how many were errors.
async fn read_replies(
    stream: &mut impl AsyncReadRent,
    buf: &mut Vec<u8>,
    n: usize,
) -> std::io::Result<u64> {
    let mut errors = 0;
    read_each(stream, buf, n, |r| {
        if r.first() == Some(&b'-') {
            errors += 1;
        }
    })
    .await?;
    Ok(errors)
}

/// Reads until `n` complete replies have arrived, handing each to `each`.
pub(crate) async fn read_each(
    stream: &mut impl AsyncReadRent,
    buf: &mut Vec<u8>,
    n: usize,
    mut each: impl FnMut(&[u8]),
) -> std::io::Result<()> {
    let mut got = 0;
    let mut pos = 0;
    loop {
        while got < n {
            match shardline_transport::resp::value_len(&buf[pos..]) {
                Ok(Some(len)) => {
                    each(&buf[pos..pos + len]);
                    pos += len;
                    got += 1;
                }
                Ok(None) => break,
                Err(e) => return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, e.0)),
            }
        }
        if got == n {
            buf.drain(..pos);
            return Ok(());
        }
        if buf.capacity() - buf.len() < 16 * 1024 {
            buf.reserve(64 * 1024);
        }
        let (len, cap) = (buf.len(), buf.capacity());
        let (res, slice) = stream
            .read(monoio::buf::IoBufMut::slice_mut(
                std::mem::take(buf),
                len..cap,
            ))
            .await;
        *buf = slice.into_inner();
        if res? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "server closed the connection",
            ));
        }
    }
}

async fn closed_loop(
    o: Rc<Options>,
    shared: Arc<Shared>,
    mut generator: Generator,
    hist: Rc<RefCell<Histogram<u64>>>,
) -> std::io::Result<()> {
    let mut stream = TcpStream::connect((o.host.as_str(), o.port)).await?;
    stream.set_nodelay(true)?;
    let mut wbuf = Vec::with_capacity(o.pipeline * (o.value_size + 64));
    let mut rbuf = Vec::with_capacity(64 * 1024);
    while !shared.stop.load(Ordering::Relaxed) {
        let n = claim(&o, &shared, o.pipeline as u64) as usize;
        if n == 0 {
            break;
        }
        wbuf.clear();
        for _ in 0..n {
            generator.next(&mut wbuf);
        }
        let sent = Instant::now();
        let (res, back) = stream.write_all(wbuf).await;
        wbuf = back;
        res?;
        let errors = read_replies(&mut stream, &mut rbuf, n).await?;
        let us = sent.elapsed().as_micros() as u64;
        hist.borrow_mut().record_n(us.max(1), n as u64).ok();
        shared.done.fetch_add(n as u64, Ordering::Relaxed);
        shared.errors.fetch_add(errors, Ordering::Relaxed);
    }
    Ok(())
}

async fn open_loop(
    o: Rc<Options>,
    shared: Arc<Shared>,
    mut generator: Generator,
    hist: Rc<RefCell<Histogram<u64>>>,
    per_conn_rate: f64,
) -> std::io::Result<()> {
    let stream = TcpStream::connect((o.host.as_str(), o.port)).await?;
    stream.set_nodelay(true)?;
    let (mut rd, mut wr) = stream.into_split();
    let intended: Rc<RefCell<VecDeque<Instant>>> = Rc::new(RefCell::new(VecDeque::new()));
    let writer_done = Rc::new(std::cell::Cell::new(false));
    let (q, wd, sh) = (intended.clone(), writer_done.clone(), shared.clone());
    let max_in_flight = o.pipeline.max(1) * 64;
    let writer = monoio::spawn(async move {
        let start = Instant::now();
        let gap = Duration::from_secs_f64(1.0 / per_conn_rate);
        let mut i: u64 = 0;
        let mut wbuf = Vec::new();
        while !sh.stop.load(Ordering::Relaxed) {
            let due = start + gap.mul_f64(i as f64);
            let now = Instant::now();
            if due > now {
                monoio::time::sleep(due - now).await;
                continue;
            }
            if q.borrow().len() >= max_in_flight {
                // The server is far behind: stop issuing, keep the schedule (latency grows).
                monoio::time::sleep(Duration::from_micros(200)).await;
                continue;
            }
            wbuf.clear();
            let mut batch = 0;
            while start + gap.mul_f64(i as f64) <= now && batch < 64 {
                if claim(&o, &sh, 1) == 0 {
                    wd.set(true);
                    break;
                }
                generator.next(&mut wbuf);
                q.borrow_mut().push_back(start + gap.mul_f64(i as f64));
                i += 1;
                batch += 1;
            }
            if batch > 0 {
                let (res, back) = wr.write_all(wbuf).await;
                wbuf = back;
                res?;
            }
            if wd.get() {
                break;
            }
        }
        wd.set(true);
        Ok::<(), std::io::Error>(())
    });
    let mut rbuf = Vec::with_capacity(64 * 1024);
    loop {
        let outstanding = intended.borrow().len();
        if outstanding == 0 {
            if writer_done.get() {
                break;
            }
            monoio::time::sleep(Duration::from_micros(100)).await;
            continue;
        }
        let errors = read_replies(&mut rd, &mut rbuf, 1).await?;
        let t = intended
            .borrow_mut()
            .pop_front()
            .expect("outstanding request");
        hist.borrow_mut()
            .record(t.elapsed().as_micros().max(1) as u64)
            .ok();
        shared.done.fetch_add(1, Ordering::Relaxed);
        shared.errors.fetch_add(errors, Ordering::Relaxed);
    }
    writer.await
}

/// Fills every key once with pipelined SETs (not measured).
async fn prefill(
    o: Rc<Options>,
    shared: Arc<Shared>,
    generator: Generator,
    from: u64,
    to: u64,
) -> std::io::Result<()> {
    let mut stream = TcpStream::connect((o.host.as_str(), o.port)).await?;
    let mut rbuf = Vec::with_capacity(64 * 1024);
    let mut k = from;
    while k < to {
        let mut wbuf = Vec::new();
        let end = (k + 256).min(to);
        for key in k..end {
            generator.set(key, &mut wbuf);
        }
        let (res, _) = stream.write_all(wbuf).await;
        res?;
        let errors = read_replies(&mut stream, &mut rbuf, (end - k) as usize).await?;
        shared.errors.fetch_add(errors, Ordering::Relaxed);
        k = end;
    }
    Ok(())
}

/// Runs client thread `t`; returns its latency histogram (µs).
pub fn thread_main(
    t: usize,
    o: Arc<Options>,
    shared: Arc<Shared>,
    phase_prefill: bool,
    slots: Option<crate::cluster::SlotMap>,
) -> Result<Histogram<u64>, String> {
    if let Some(cores) = &o.cores {
        let core = cores[t % cores.len()];
        shardline_transport::cpu::pin_current_thread(core)
            .map_err(|e| format!("cannot pin to core {core}: {e}"))?;
    }
    let mut rt = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
        .enable_timer()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    let o: Rc<Options> = Rc::new((*o).clone());
    rt.block_on(async move {
        let hist = Rc::new(RefCell::new(new_histogram()));
        // Cluster mode: one slot map per client thread, shared by its connections.
        let map = slots.map(|m| Rc::new(RefCell::new(m)));
        let conns = o.connections;
        let mut tasks = Vec::new();
        let total_conns = (o.threads * conns) as u64;
        for c in 0..conns {
            let idx = (t * conns + c) as u64;
            let generator = Generator::new(
                &o,
                Keys::new(&o),
                o.seed ^ (idx + 1).wrapping_mul(0x1000_0000_01b3),
            );
            let (o2, sh, h) = (o.clone(), shared.clone(), hist.clone());
            if phase_prefill {
                let per = o.keys.div_ceil(total_conns);
                let (from, to) = ((idx * per).min(o.keys), ((idx + 1) * per).min(o.keys));
                match &map {
                    Some(m) => tasks.push(monoio::spawn(crate::cluster::prefill(
                        generator,
                        sh,
                        m.clone(),
                        from,
                        to,
                    ))),
                    None => tasks.push(monoio::spawn(prefill(o2, sh, generator, from, to))),
                }
            } else if o.etcd {
                let seed = o.seed ^ (idx + 1).wrapping_mul(0x1000_0000_01b3);
                tasks.push(monoio::spawn(crate::etcd::closed_loop(o2, sh, seed, h)));
            } else if let Some(m) = &map {
                tasks.push(monoio::spawn(crate::cluster::closed_loop(
                    o2,
                    sh,
                    generator,
                    h,
                    m.clone(),
                )));
            } else if let Some(rate) = o.rate {
                tasks.push(monoio::spawn(open_loop(
                    o2,
                    sh,
                    generator,
                    h,
                    rate / total_conns as f64,
                )));
            } else {
                tasks.push(monoio::spawn(closed_loop(o2, sh, generator, h)));
            }
        }
        let mut first_error = None;
        for task in tasks {
            if let Err(e) = task.await {
                shared.stop.store(true, Ordering::Relaxed);
                first_error.get_or_insert(e.to_string());
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(hist.borrow().clone()),
        }
    })
}
