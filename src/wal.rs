//! The file driver of the write-ahead log (`shardline_shards::wal`): runs an engine's batches
//! against real segment files under `data-dir/wal/shard-<n>/` and opens a log from them. This one
//! uses blocking `std::fs` calls; the shard threads will run the same operations through monoio's
//! io_uring file ops when Raft lands (issue 3).

use shardline_shards::wal::{Batch, Engine, Io, WalConfig};
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

pub struct FsLog {
    dir: PathBuf,
    open: HashMap<u64, File>,
    /// The same segments as the runtime's files (`run_async`).
    aopen: HashMap<u64, monoio::fs::File>,
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
                aopen: HashMap::new(),
            },
            rec.engine,
        ))
    }

    fn file(&mut self, seq: u64) -> io::Result<&File> {
        if !self.open.contains_key(&seq) {
            let f = OpenOptions::new()
                .read(true)
                .write(true)
                .open(self.dir.join(segment_name(seq)))?;
            self.open.insert(seq, f);
        }
        Ok(&self.open[&seq])
    }

    /// `run` for the shard threads: writes and fsyncs go through the runtime's io_uring file ops,
    /// so the thread serves connections and peers while the disk works. Segment creation and
    /// deletion (rare: once per segment) stay blocking calls.
    pub async fn run_async(&mut self, batch: Batch) -> io::Result<Vec<u64>> {
        for op in batch.ops {
            match op {
                Io::Write { seq, offset, bytes } => {
                    let f = self.async_file(seq)?;
                    let (r, _) = f.write_all_at(bytes, offset).await;
                    r?;
                }
                Io::Sync { seq } => self.async_file(seq)?.sync_data().await?,
                op => {
                    if let Io::Delete { seq } = &op {
                        self.aopen.remove(seq);
                    }
                    self.run(Batch {
                        ops: vec![op],
                        acks: Vec::new(),
                    })?;
                }
            }
        }
        Ok(batch.acks)
    }

    fn async_file(&mut self, seq: u64) -> io::Result<&monoio::fs::File> {
        if !self.aopen.contains_key(&seq) {
            let f = monoio::fs::File::from_std(self.file(seq)?.try_clone()?)?;
            self.aopen.insert(seq, f);
        }
        Ok(&self.aopen[&seq])
    }

    /// Runs `batch`'s operations in order; returns the tokens to acknowledge. On an error the
    /// batch's appends are not durable: the caller must not acknowledge them (and stops the node:
    /// a log it cannot write is a log it cannot trust).
    pub fn run(&mut self, batch: Batch) -> io::Result<Vec<u64>> {
        for op in batch.ops {
            match op {
                Io::Create { seq, header } => {
                    let path = self.dir.join(segment_name(seq));
                    let f = OpenOptions::new()
                        .read(true)
                        .write(true)
                        .create_new(true)
                        .open(&path)?;
                    f.write_all_at(&header, 0)?;
                    // The new file's directory entry must survive a crash too.
                    File::open(&self.dir)?.sync_all()?;
                    self.open.insert(seq, f);
                }
                Io::Write { seq, offset, bytes } => self.file(seq)?.write_all_at(&bytes, offset)?,
                Io::Sync { seq } => self.file(seq)?.sync_data()?,
                Io::Delete { seq } => {
                    self.open.remove(&seq);
                    std::fs::remove_file(self.dir.join(segment_name(seq)))?;
                }
            }
        }
        Ok(batch.acks)
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
        let len = std::fs::metadata(&path).unwrap().len();
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
}
