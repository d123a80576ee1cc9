//! The file driver of the write-ahead log (`shardline_shards::wal`): runs an engine's batches
//! against real segment files under `data-dir/wal/shard-<n>/` and opens a log from them, with
//! blocking `std::fs` calls. A shard thread hands its batches that fsync to its `Flusher`, a
//! helper thread, so it keeps serving while the disk works (docs/design/replication.md, replication on the
//! shard threads, "The log flush runs on a helper thread": io_uring's fsync measured 650-870 µs
//! per flush here, the helper's 300-400 µs, then about 120 µs with zero-extended segments).

use crate::node::Histogram;
use shardline_shards::wal::{Batch, Engine, Io, WalConfig};
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::task::Poll;

/// Zeros a segment file is extended with at a time, ahead of its records.
const ZERO_AHEAD_BYTES: u64 = 1 << 20;
/// The zero buffer written from.
const ZERO_CHUNK_BYTES: usize = 256 << 10;

pub struct FsLog {
    dir: PathBuf,
    open: HashMap<u64, Open>,
    /// `ZERO_CHUNK_BYTES` of zeros, allocated at the first extension.
    zeros: Vec<u8>,
    /// Where its batches' fsync times and sizes are counted (the flush thread sets it at
    /// the first batch; the fsyncs left behind before it are not counted).
    stats: Option<Arc<LogStats>>,
}

/// A shard thread's log as its flush thread measures it (the metrics endpoint reads it):
/// fsync times in µs, and the bytes each batch wrote (the first bucket everything below
/// 1 KiB).
#[derive(Default)]
pub struct LogStats {
    pub fsync_us: Histogram,
    pub batch_bytes: Histogram<9>,
}

/// An open segment file; it holds records or zeros up to `zeroed` (its length).
struct Open {
    file: File,
    zeroed: u64,
}

fn segment_name(seq: u64) -> String {
    format!("{seq:020}.seg")
}

impl FsLog {
    /// Opens (or creates) the log in `dir`: reads every segment, recovers, cuts a torn tail off
    /// with a warning. A damaged log is refused with the file, the offset and what to do.
    pub fn open(dir: &Path, cfg: WalConfig) -> Result<(FsLog, Engine), String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let mut files = Vec::new();
        let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        for entry in entries {
            let entry = entry.map_err(|e| format!("{}: {e}", dir.display()))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(seq) = name
                .strip_suffix(".seg")
                .and_then(|s| s.parse::<u64>().ok())
            else {
                continue;
            };
            let bytes = std::fs::read(entry.path())
                .map_err(|e| format!("{}: {e}", entry.path().display()))?;
            files.push((seq, bytes));
        }
        let rec = Engine::recover(cfg, files).map_err(|c| {
            format!(
                "{}: corrupt write-ahead log at offset {}: {}. The log cannot be trusted from there \
                 on; this node's data must be restored from its replicas: stop it, move the data \
                 directory away, and start it again to rejoin the cluster",
                dir.join(segment_name(c.seq)).display(),
                c.offset,
                c.reason
            )
        })?;
        if let Some(seq) = rec.drop_newest {
            let path = dir.join(segment_name(seq));
            tracing::warn!(
                file = %path.display(),
                "the newest write-ahead log segment was started but never fsynced (a crash right \
                 after it was made): it holds nothing acknowledged; removing it"
            );
            std::fs::remove_file(&path)
                .and_then(|()| File::open(dir)?.sync_all())
                .map_err(|e| format!("{}: {e}", path.display()))?;
        }
        if let Some((seq, len)) = rec.truncate_tail {
            let path = dir.join(segment_name(seq));
            tracing::warn!(
                file = %path.display(),
                offset = len,
                "write-ahead log ends in a partial record (a crash mid-write); truncating it there"
            );
            let f = OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            f.set_len(len)
                .and_then(|()| f.sync_all())
                .map_err(|e| format!("{}: {e}", path.display()))?;
        }
        Ok((
            FsLog {
                dir: dir.to_path_buf(),
                open: HashMap::new(),
                zeros: Vec::new(),
                stats: None,
            },
            rec.engine,
        ))
    }

    fn file(&mut self, seq: u64) -> io::Result<&mut Open> {
        if !self.open.contains_key(&seq) {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(self.dir.join(segment_name(seq)))?;
            let zeroed = file.metadata()?.len();
            self.open.insert(seq, Open { file, zeroed });
        }
        Ok(self.open.get_mut(&seq).expect("just opened"))
    }

    /// Writes `bytes` at `offset` of segment `seq`, first extending the file with zeros
    /// (`ZERO_AHEAD_BYTES` at a time) when they reach past its end. Records then overwrite
    /// blocks that already exist, so a fsync has no file size or block allocation to commit:
    /// measured here 88-95 µs against 144-148 µs for appends that grow the file.
    fn write_at(&mut self, seq: u64, offset: u64, bytes: &[u8]) -> io::Result<()> {
        let end = offset + bytes.len() as u64;
        self.file(seq)?;
        let f = self.open.get_mut(&seq).expect("opened");
        let zeros = &mut self.zeros;
        if end > f.zeroed {
            if zeros.is_empty() {
                zeros.resize(ZERO_CHUNK_BYTES, 0);
            }
            let target = end.max(f.zeroed + ZERO_AHEAD_BYTES);
            while f.zeroed < target {
                let n = (target - f.zeroed).min(ZERO_CHUNK_BYTES as u64) as usize;
                f.file.write_all_at(&zeros[..n], f.zeroed)?;
                f.zeroed += n as u64;
            }
        }
        f.file.write_all_at(bytes, offset)
    }

    /// Runs `batch`'s operations in order; returns the tokens to acknowledge. On an error the
    /// batch's appends are not durable: the caller must not acknowledge them (and stops the node:
    /// a log it cannot write is a log it cannot trust).
    #[cfg(test)]
    pub fn run(&mut self, mut batch: Batch) -> io::Result<Vec<u64>> {
        self.run_batch(&mut batch)?;
        Ok(batch.acks)
    }

    /// Runs `batch`'s operations in order, its write buffers kept in `spent` for reuse
    /// (`Engine::recycle`). On an error, as `run`.
    pub fn run_batch(&mut self, batch: &mut Batch) -> io::Result<()> {
        // Taken for the batch (the closure borrows the log), put back after it.
        let stats = self.stats.take();
        let mut wrote = 0u64;
        let res = batch.run(|op| match op {
            Io::Create { seq, header } => {
                let path = self.dir.join(segment_name(*seq));
                let f = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create_new(true)
                    .open(&path)?;
                f.write_all_at(header, 0)?;
                // The new file's directory entry must survive a crash too.
                File::open(&self.dir)?.sync_all()?;
                self.open.insert(
                    *seq,
                    Open {
                        file: f,
                        zeroed: header.len() as u64,
                    },
                );
                Ok(())
            }
            Io::Write { seq, offset, bytes } => {
                wrote += bytes.len() as u64;
                self.write_at(*seq, *offset, bytes)
            }
            Io::Sync { seq } => {
                let f = &self.file(*seq)?.file;
                let start = std::time::Instant::now();
                let res = f.sync_data();
                if let Some(s) = &stats {
                    s.fsync_us.record(start.elapsed().as_micros() as u64);
                }
                res
            }
            Io::Delete { seq } => {
                self.open.remove(seq);
                std::fs::remove_file(self.dir.join(segment_name(*seq)))
            }
        });
        if let Some(s) = &stats
            && wrote > 0
        {
            s.batch_bytes.record(wrote);
        }
        self.stats = stats;
        res
    }
}

/// A helper thread that runs one shard thread's log batches: the shard thread sends the log and a
/// batch, serves connections and peers while the thread writes and fsyncs, and is woken with the
/// log back. One batch at a time (the log travels with it), so one lock and one wake-up per
/// driver step, none per request.
///
/// Why a thread and not io_uring's fsync: io_uring runs a fsync on an io-wq worker that inherits
/// the shard thread's pinning, so the worker waited behind the busy shard thread it served
/// (measured: 650-870 µs per flush against about 200 µs here).
pub struct Flusher {
    tx: mpsc::Sender<Job>,
    back: Arc<Back>,
}

/// File work to finish before a batch's records are written (a snapshot file that the batch's
/// purge records rely on).
pub type Before = Box<dyn FnOnce() -> io::Result<()> + Send>;

enum Job {
    /// A batch to run and hand back.
    Batch(FsLog, Batch, Vec<Before>),
    /// File work nobody waits for, in order with the rest: a periodic batch's fsyncs and the
    /// segment deletions after them (`Batch::syncs_behind`), or a compaction's snapshot file.
    /// Done, its token (if any) is handed back (`Flusher::behind_done`); an error stops the
    /// node at its next step.
    Behind(Before, Option<u64>),
}
/// The log back, the batch run (to recycle), and whether it was all written.
type Flushed = (FsLog, Batch, io::Result<()>);

/// Runs `before`, then `batch`.
fn run_job(log: &mut FsLog, batch: &mut Batch, before: Vec<Before>) -> io::Result<()> {
    for f in before {
        f()?;
    }
    log.run_batch(batch)
}

struct Back {
    done: Mutex<Option<Flushed>>,
    waker: atomic_waker::AtomicWaker,
    /// Work left behind that finished: its tokens, and the first error of any.
    behind: Mutex<(Vec<u64>, Option<io::Error>)>,
    /// Set when `behind` has news, so the driver's step takes the lock only then.
    behind_news: std::sync::atomic::AtomicBool,
}

impl Back {
    fn finished_behind(&self, res: io::Result<()>, token: Option<u64>) {
        {
            let mut behind = self.behind.lock().expect("flusher lock");
            match res {
                Ok(()) => behind.0.extend(token),
                Err(e) => {
                    behind.1.get_or_insert(e);
                }
            }
        }
        self.behind_news
            .store(true, std::sync::atomic::Ordering::Release);
        // The driver's next wait ends (it takes the tokens at its step).
        self.waker.wake();
    }
}

/// Runs a periodic batch's fsyncs (timed into `stats`), then the deletions they make safe.
fn sync_then_delete(
    files: Vec<File>,
    paths: Vec<PathBuf>,
    stats: Option<&LogStats>,
) -> io::Result<()> {
    for f in files {
        let start = std::time::Instant::now();
        f.sync_data()?;
        if let Some(s) = stats {
            s.fsync_us.record(start.elapsed().as_micros() as u64);
        }
    }
    for p in paths {
        std::fs::remove_file(p)?;
    }
    Ok(())
}

impl Flusher {
    /// Starts the helper of shard thread `shard`, allowed on every core the process may use (a
    /// thread spawned by a pinned shard thread would otherwise share its core). It stops when
    /// the `Flusher` is dropped.
    pub fn spawn(shard: usize, stats: Arc<LogStats>) -> io::Result<Flusher> {
        let (tx, rx) = mpsc::channel::<Job>();
        let back = Arc::new(Back {
            done: Mutex::new(None),
            waker: atomic_waker::AtomicWaker::new(),
            behind: Mutex::new((Vec::new(), None)),
            behind_news: std::sync::atomic::AtomicBool::new(false),
        });
        let theirs = back.clone();
        std::thread::Builder::new()
            .name(format!("wal-{shard}"))
            .spawn(move || {
                if let Ok(cpus) = shardline_transport::cpu::process_cpus() {
                    let _ = shardline_transport::cpu::pin_current_thread_to(&cpus);
                }
                while let Ok(job) = rx.recv() {
                    match job {
                        Job::Batch(mut log, mut batch, before) => {
                            log.stats.get_or_insert_with(|| stats.clone());
                            let res = run_job(&mut log, &mut batch, before);
                            *theirs.done.lock().expect("flusher lock") = Some((log, batch, res));
                            theirs.waker.wake();
                        }
                        Job::Behind(work, token) => theirs.finished_behind(work(), token),
                    }
                }
            })?;
        Ok(Flusher { tx, back })
    }

    /// Runs `before`, then `batch`, on the helper thread; hands back the log, the batch (to
    /// recycle) and the first error (then nothing in the batch may be acknowledged). Errors of
    /// work left behind come from `behind_done`, which the driver asks at every step.
    pub async fn run(&self, log: FsLog, batch: Batch, before: Vec<Before>) -> Flushed {
        let behind_ok =
            |op: &Io| batch.syncs_behind && matches!(op, Io::Sync { .. } | Io::Delete { .. });
        if before.is_empty()
            && batch
                .ops
                .iter()
                .all(|op| matches!(op, Io::Write { .. }) || behind_ok(op))
        {
            // Nothing to wait for on the disk (fsync never, or batch's periodic fsync left
            // behind): page-cache writes are cheaper than the hand-off.
            let (mut log, mut batch) = (log, batch);
            let first_sync = batch
                .ops
                .iter()
                .position(|op| !matches!(op, Io::Write { .. }));
            let behind = first_sync
                .map(|at| batch.ops.split_off(at))
                .unwrap_or_default();
            let res = log
                .run_batch(&mut batch)
                .and_then(|()| self.leave_behind(&mut log, behind));
            return (log, batch, res);
        }
        if let Err(mpsc::SendError(Job::Batch(mut log, mut batch, before))) =
            self.tx.send(Job::Batch(log, batch, before))
        {
            // The helper is gone (it cannot panic short of a bug): do it here.
            let res = run_job(&mut log, &mut batch, before);
            return (log, batch, res);
        }
        std::future::poll_fn(|cx| {
            self.back.waker.register(cx.waker());
            match self.back.done.lock().expect("flusher lock").take() {
                Some(f) => Poll::Ready(f),
                None => Poll::Pending,
            }
        })
        .await
    }

    /// Hands a periodic batch's `Sync`s and the `Delete`s after them to the helper, to run in
    /// order behind the acknowledgements (`Batch::syncs_behind`): the files to fsync are
    /// duplicated descriptors, the deleted segments leave the log's open files now.
    fn leave_behind(&self, log: &mut FsLog, ops: Vec<Io>) -> io::Result<()> {
        if ops.is_empty() {
            return Ok(());
        }
        let (mut files, mut paths) = (Vec::new(), Vec::new());
        for op in &ops {
            match op {
                Io::Sync { seq } => files.push(log.file(*seq)?.file.try_clone()?),
                Io::Delete { seq } => {
                    log.open.remove(seq);
                    paths.push(log.dir.join(segment_name(*seq)));
                }
                Io::Create { .. } | Io::Write { .. } => {
                    unreachable!("only syncs and deletes are left behind")
                }
            }
        }
        let stats = log.stats.clone();
        self.behind(
            Box::new(move || sync_then_delete(files, paths, stats.as_deref())),
            None,
        );
        Ok(())
    }

    /// Runs `work` on the helper thread in order with the batches, nobody waiting for it;
    /// `token` comes back from `behind_done` once it is done.
    pub fn behind(&self, work: Before, token: Option<u64>) {
        if let Err(mpsc::SendError(Job::Behind(work, token))) =
            self.tx.send(Job::Behind(work, token))
        {
            // The helper is gone (it cannot panic short of a bug): do it here.
            self.back.finished_behind(work(), token);
        }
    }

    /// The tokens of work left behind that is done, or the first error of any.
    pub fn behind_done(&self) -> io::Result<Vec<u64>> {
        if !self
            .back
            .behind_news
            .swap(false, std::sync::atomic::Ordering::Acquire)
        {
            return Ok(Vec::new());
        }
        let mut behind = self.back.behind.lock().expect("flusher lock");
        match behind.1.take() {
            Some(e) => Err(e),
            None => Ok(std::mem::take(&mut behind.0)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shardline_shards::wal::{FsyncPolicy, LogId, Vote};

    fn cfg() -> WalConfig {
        WalConfig {
            shard: 0,
            segment_bytes: 4096,
            fsync: FsyncPolicy::Always,
        }
    }

    fn tempdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("shardline-wal-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn write_some(dir: &Path) -> Engine {
        let (mut log, mut e) = FsLog::open(dir, cfg()).unwrap();
        e.save_vote(
            1,
            Vote {
                term: 2,
                node: 3,
                committed: true,
            },
        );
        for i in 1..=300u64 {
            e.append(
                ((i - 1) % 3) as u32,
                (i - 1) / 3 + 1,
                2,
                format!("value {i}").as_bytes(),
            )
            .unwrap();
            if i % 10 == 0 {
                e.flush(i);
                assert_eq!(log.run(e.take_batch(i).unwrap()).unwrap(), vec![i]);
            }
        }
        e.purge(0, LogId { index: 50, term: 2 });
        log.run(e.take_batch(1000).unwrap()).unwrap();
        e
    }

    fn state(e: &Engine) -> Vec<(u32, LogId, LogId, Option<Vote>)> {
        let mut v: Vec<_> = e
            .groups()
            .map(|(g, l)| (g, l.purged(), l.last(), l.vote()))
            .collect();
        v.sort_by_key(|x| x.0);
        v
    }

    #[test]
    fn a_log_written_to_real_files_reopens_with_the_same_state() {
        let dir = tempdir("reopen");
        let e = write_some(&dir);
        let segments = std::fs::read_dir(&dir).unwrap().count();
        assert!(segments > 1, "rotated");
        let (_, again) = FsLog::open(&dir, cfg()).unwrap();
        assert_eq!(state(&again), state(&e));
        assert_eq!(
            again.group(1).unwrap().entry(7),
            e.group(1).unwrap().entry(7)
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_torn_tail_is_truncated_on_open_and_the_log_keeps_going() {
        let dir = tempdir("torn");
        let e = write_some(&dir);
        let last = e.segment_seqs().into_iter().max().unwrap();
        let path = dir.join(segment_name(last));
        // The records end where the zeros written ahead of them begin.
        let bytes = std::fs::read(&path).unwrap();
        let len = bytes.iter().rposition(|&b| b != 0).unwrap() as u64 + 1;
        assert!(
            len < bytes.len() as u64,
            "the file was extended with zeros ahead"
        );
        OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(len - 3)
            .unwrap();
        let (mut log, mut again) = FsLog::open(&dir, cfg()).unwrap();
        assert!(
            std::fs::metadata(&path).unwrap().len() < len - 3,
            "cut to a record boundary"
        );
        // The log accepts appends after the cut and reopens cleanly.
        let g = 0;
        let next = again.group(g).unwrap().last().index + 1;
        again.append(g, next, 3, b"after the crash").unwrap();
        log.run(again.take_batch(0).unwrap()).unwrap();
        let (_, third) = FsLog::open(&dir, cfg()).unwrap();
        assert_eq!(
            third.group(g).unwrap().entry(next),
            Some((3, &b"after the crash"[..]))
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_record_torn_before_the_zeros_ahead_of_it_is_cut_and_a_clean_zero_tail_is_kept() {
        let dir = tempdir("torn-zeros");
        let e = write_some(&dir);
        let last = e.segment_seqs().into_iter().max().unwrap();
        let path = dir.join(segment_name(last));
        let full = std::fs::metadata(&path).unwrap().len();
        // A clean shutdown: the zero tail is not a torn record and stays.
        let (mut log, mut again) = FsLog::open(&dir, cfg()).unwrap();
        assert_eq!(state(&again), state(&e));
        assert_eq!(std::fs::metadata(&path).unwrap().len(), full);
        let next = again.group(2).unwrap().last().index + 1;
        again.append(2, next, 2, b"torn").unwrap();
        again.flush(0);
        log.run(again.take_batch(0).unwrap()).unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        // A crash mid-record: its last bytes never reached the disk (zeros there).
        let end = bytes.iter().rposition(|&b| b != 0).unwrap() + 1;
        bytes[end - 3..end].fill(0);
        std::fs::write(&path, &bytes).unwrap();
        let (_, cut) = FsLog::open(&dir, cfg()).unwrap();
        assert!(std::fs::metadata(&path).unwrap().len() < end as u64 - 3);
        assert_eq!(state(&cut), state(&e), "only the torn entry is gone");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn corruption_in_the_middle_refuses_to_start_naming_the_file_and_offset() {
        let dir = tempdir("corrupt");
        let e = write_some(&dir);
        let first = e.segment_seqs()[0];
        let path = dir.join(segment_name(first));
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[100] ^= 0x40;
        std::fs::write(&path, &bytes).unwrap();
        let err = FsLog::open(&dir, cfg()).err().expect("refused");
        assert!(err.contains(&path.display().to_string()), "{err}");
        assert!(err.contains("offset"), "{err}");
        assert!(err.contains("move the data directory away"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Waits (bounded) until the helper has news of work left behind.
    fn news(f: &Flusher) -> io::Result<Vec<u64>> {
        for _ in 0..500 {
            match f.behind_done() {
                Ok(v) if v.is_empty() => std::thread::sleep(std::time::Duration::from_millis(2)),
                other => return other,
            }
        }
        panic!("no news from the flush thread");
    }

    #[test]
    fn work_left_behind_hands_back_its_token_and_its_first_error_once() {
        let f = Flusher::spawn(0, Default::default()).unwrap();
        assert!(f.behind_done().unwrap().is_empty(), "nothing yet");
        f.behind(Box::new(|| Ok(())), Some(7));
        assert_eq!(news(&f).unwrap(), vec![7]);
        f.behind(Box::new(|| Err(io::Error::other("disk gone"))), Some(8));
        let e = news(&f).unwrap_err();
        assert!(e.to_string().contains("disk gone"), "{e}");
        assert!(
            f.behind_done().unwrap().is_empty(),
            "the error is told once"
        );
    }

    #[test]
    fn a_periodic_fsync_runs_behind_and_the_segment_it_frees_goes_after_it() {
        let dir = tempdir("behind");
        let mut wal_cfg = cfg();
        wal_cfg.fsync = FsyncPolicy::Batch { interval_ms: 0 };
        let (mut log, mut e) = FsLog::open(&dir, wal_cfg).unwrap();
        e.append(1, 1, 2, b"record").unwrap();
        let batch = e.take_batch(1).unwrap();
        assert!(batch.syncs_behind);
        let seg = dir.join(segment_name(1));
        let f = Flusher::spawn(0, Default::default()).unwrap();
        let gone = seg.clone();
        log.run_batch(&mut Batch {
            ops: batch.ops,
            ..Batch::default()
        })
        .unwrap();
        // A deletion left behind after the (periodic) fsync: the file goes once the helper ran.
        f.leave_behind(&mut log, vec![Io::Sync { seq: 1 }, Io::Delete { seq: 1 }])
            .unwrap();
        f.behind(Box::new(|| Ok(())), Some(1));
        assert_eq!(news(&f).unwrap(), vec![1]);
        assert!(!gone.exists(), "deleted behind, after its fsync");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
