//! `shardline-bench`: a load generator for any RESP server, so one run can measure Shardline and
//! redis-server with the same client. See `--help`.

mod args;
mod cluster;
mod etcd;
mod report;
mod run;
mod workload;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let o = match args::parse(&argv) {
        Ok(o) => Arc::new(o),
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(if argv.iter().any(|a| a == "--help" || a == "-h") {
                0
            } else {
                2
            });
        }
    };
    if o.prefill {
        let shared = Arc::new(run::Shared::default());
        if let Err(e) = spawn_threads(&o, &shared, true) {
            eprintln!("prefill failed: {e}");
            std::process::exit(1);
        }
        let refused = shared.errors.load(std::sync::atomic::Ordering::Relaxed);
        if refused > 0 {
            // An error reply means that SET was not applied: say so rather than claim the keys.
            eprintln!(
                "prefill: {refused} of {} SETs were refused (not applied)",
                o.keys
            );
        } else if !o.quiet {
            eprintln!("prefilled {} keys", o.keys);
        }
    }
    let shared = Arc::new(run::Shared::default());
    let cpu_before = o.server_pid.and_then(report::process_cpu_us);
    let start = Instant::now();
    let progress = {
        let (o, shared) = (o.clone(), shared.clone());
        std::thread::spawn(move || progress(&o, &shared, start))
    };
    let result = spawn_threads(&o, &shared, false);
    let seconds = start.elapsed().as_secs_f64();
    let cpu_after = o.server_pid.and_then(report::process_cpu_us);
    shared.stop.store(true, Ordering::Relaxed);
    let _ = progress.join();
    let hist = match result {
        Ok(h) => h,
        Err(e) => {
            eprintln!("run failed: {e}");
            std::process::exit(1);
        }
    };
    let summary = report::Summary {
        requests: shared.done.load(Ordering::Relaxed),
        errors: shared.errors.load(Ordering::Relaxed),
        seconds,
        hist,
        server_cpu_us: cpu_before.zip(cpu_after).map(|(b, a)| a.saturating_sub(b)),
        redirects: o.cluster.then(|| shared.redirects.load(Ordering::Relaxed)),
    };
    print!("{}", summary.text());
    if let Some(path) = &o.json
        && let Err(e) = std::fs::write(path, summary.json())
    {
        eprintln!("cannot write {path}: {e}");
        std::process::exit(1);
    }
}

/// Runs all client threads to completion; merges their histograms.
fn spawn_threads(
    o: &Arc<args::Options>,
    shared: &Arc<run::Shared>,
    prefill: bool,
) -> Result<hdrhistogram::Histogram<u64>, String> {
    let slots = if o.cluster {
        Some(cluster::SlotMap::load(&o.host, o.port)?)
    } else {
        None
    };
    let handles: Vec<_> = (0..o.threads)
        .map(|t| {
            let (o, shared, slots) = (o.clone(), shared.clone(), slots.clone());
            std::thread::spawn(move || run::thread_main(t, o, shared, prefill, slots))
        })
        .collect();
    let mut total = run::new_histogram();
    let mut err = None;
    for h in handles {
        match h
            .join()
            .map_err(|_| "client thread panicked".to_string())
            .and_then(|r| r)
        {
            Ok(hist) => total.add(hist).map_err(|e| e.to_string())?,
            Err(e) => {
                err.get_or_insert(e);
            }
        }
    }
    err.map_or(Ok(total), Err)
}

/// Prints a line per second; stops the run when the duration is over.
fn progress(o: &args::Options, shared: &run::Shared, start: Instant) {
    let mut last = 0;
    let mut next = start + Duration::from_secs(1);
    while !shared.stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        if let Some(d) = o.duration
            && now.duration_since(start) >= d
        {
            shared.stop.store(true, Ordering::Relaxed);
            return;
        }
        if now >= next {
            let done = shared.done.load(Ordering::Relaxed);
            if !o.quiet {
                eprintln!(
                    "[{:>4.0}s] {:>10} req/s  total {}  errors {}",
                    now.duration_since(start).as_secs_f64(),
                    done - last,
                    done,
                    shared.errors.load(Ordering::Relaxed)
                );
            }
            last = done;
            next += Duration::from_secs(1);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
