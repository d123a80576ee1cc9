//! A base copy received as it arrives (issue 19, step 3, target side): each checked piece the
//! hub hands over (`Hub::store_copies`) is written at its place in a file beside the group's
//! snapshot (`<vshard>.<term>-<index>.snap.part`) and decoded into a vShard nobody sees yet
//! (`replica::stream::BlobDecoder`), so the copy is never held whole in memory. When the hub
//! has checked the whole copy, the decoder finishes, the file gets its header, and the group
//! takes the snapshot with no blob (`Group::install_snapshot_staged`); the step that reports
//! it has the flush thread sync the file and rename it into place before its batch, and swaps
//! the decoded vShard in (`step.rs`).

use super::snapfile::{SNAP_HEADER_BYTES, snap_header};
use super::*;
use shardline_shards::raft::SnapshotWanted;
use shardline_shards::replica::stream::{BlobDecoder, Decoded};
use std::os::unix::fs::FileExt;
use std::path::Path;

/// A copy being received.
pub(super) struct Staging {
    wanted: SnapshotWanted,
    path: PathBuf,
    file: std::fs::File,
    dec: BlobDecoder,
}

/// A copy received whole, decoded and in its file, waiting for its group's step.
pub(super) struct Staged {
    pub last: shardline_shards::raft::LogId,
    pub path: PathBuf,
    pub decoded: Decoded,
}

/// Where group `g`'s copy of `w` is written as it arrives: a name of its own per offer, so a
/// later copy never touches the file of one received whole and waiting to be put in place.
pub(super) fn part_path(dir: &Path, g: u32, w: &SnapshotWanted) -> PathBuf {
    dir.join(format!("{g:05}.{}-{}.snap.part", w.term, w.last.index))
}

/// Removes what copies under way and compactions not yet in place left behind (a restart
/// holds nothing of them; the log kept what a compaction's file would have covered).
pub(super) fn remove_parts(dir: &Path) -> Result<(), String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for e in entries.flatten() {
        let name = e.file_name();
        let name = name.to_string_lossy();
        if name.ends_with(".snap.part") || name.ends_with(".snap.new") {
            std::fs::remove_file(e.path()).map_err(|x| format!("{}: {x}", e.path().display()))?;
        }
    }
    Ok(())
}

/// The hub's `Store` (`Replicas::lane_bytes`): `data` of group `g`'s copy of `wanted` at
/// `offset` (in order; 0 begins it afresh), written to its file in `dir` and decoded under
/// `t`.
pub(super) fn store_copy(
    staging: &mut HashMap<u32, Staging>,
    dir: &Path,
    t: &shardline_shards::db::Tunables,
    (g, wanted): (u32, &SnapshotWanted),
    offset: u64,
    data: &[u8],
) -> Result<(), String> {
    let current = staging
        .get(&g)
        .is_some_and(|s| s.wanted == *wanted && s.dec.fed() == offset);
    if !current {
        if let Some(old) = staging.remove(&g) {
            let _ = std::fs::remove_file(&old.path);
        }
        if offset != 0 {
            return Err(format!("bytes at {offset} of a copy not begun here"));
        }
        let path = part_path(dir, g, wanted);
        let file = std::fs::File::create(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        staging.insert(
            g,
            Staging {
                wanted: *wanted,
                path,
                file,
                dec: BlobDecoder::new(wanted.total, t),
            },
        );
    }
    let s = staging.get_mut(&g).expect("made above");
    s.file
        .write_all_at(data, SNAP_HEADER_BYTES as u64 + offset)
        .map_err(|e| format!("{}: {e}", s.path.display()))?;
    s.dec.feed(data).map_err(not_ours)
}

fn not_ours(e: shardline_shards::snapshot::SnapshotError) -> String {
    format!(
        "not a snapshot of ours at offset {}: {}",
        e.offset, e.reason
    )
}

impl Replicas {
    /// Group `g`'s stored copy of `wanted` arrived whole and checked (its CRC32C `crc`, the
    /// hub's): finished and handed to the group; a copy that does not decode whole or is not
    /// this vShard's is dropped, and the group forgets the offer (the leader's next one
    /// begins a copy afresh).
    pub(super) fn install_staged(&mut self, g: u32, wanted: SnapshotWanted, crc: u32) {
        let Some(grp) = self.groups[g as usize].as_mut() else {
            return;
        };
        let (finished, path) = match self.staging.remove(&g) {
            Some(s) if s.wanted == wanted => {
                let path = s.path.clone();
                (finish(s, g, crc), Some(path))
            }
            other => (
                Err("its bytes are not here".to_string()),
                other.map(|s| s.path),
            ),
        };
        match finished {
            Ok(decoded) => {
                tracing::info!(
                    vshard = g,
                    bytes = wanted.total,
                    from = %wanted.from,
                    "a snapshot's bulk copy arrived whole, decoded as it came"
                );
                let m = decoded.membership.clone();
                if grp.install_snapshot_staged(wanted, m) {
                    self.streamed_in += 1;
                    self.staged.insert(
                        g,
                        Staged {
                            last: wanted.last,
                            path: path.expect("finished a staging"),
                            decoded,
                        },
                    );
                    self.touch(g);
                    return;
                }
                // Offered in a term past (a new leader offers its own) or overtaken.
                tracing::debug!(vshard = g, term = wanted.term, "a base copy not taken");
            }
            Err(why) => {
                tracing::error!(vshard = g, from = %wanted.from, "a base copy does not install: {why}");
                grp.snapshot_refused(wanted);
            }
        }
        if let Some(path) = path {
            let _ = std::fs::remove_file(path);
        }
    }

    /// Stagings whose copies the hub no longer receives (cancelled, failed, overtaken) are
    /// dropped with their files.
    pub(super) fn drop_stale_staging(&mut self) {
        let hub = &self.hub;
        self.staging.retain(|&g, s| {
            let keep = hub.receives(g, &s.wanted);
            if !keep {
                let _ = std::fs::remove_file(&s.path);
            }
            keep
        });
    }

    /// Bytes copies being received and staged hold (replication memory): what was fed to
    /// their decoders stands for the decoded keys.
    pub(super) fn staging_bytes(&self) -> usize {
        let staging: u64 = self
            .staging
            .values()
            .map(|s| s.dec.fed() + s.dec.held_bytes() as u64)
            .sum();
        let staged: u64 = self.staged.values().map(|s| s.decoded.bytes).sum();
        (staging + staged) as usize
    }
}

/// The decoder finished (the vShard is this group's) and the file's header written.
fn finish(s: Staging, g: u32, crc: u32) -> Result<Decoded, String> {
    let decoded = s.dec.finish().map_err(not_ours)?;
    if decoded.vshard.id.0 as u32 != g {
        return Err(format!("a snapshot of vShard {}", decoded.vshard.id.0));
    }
    let head = snap_header(s.wanted.last, s.wanted.total, crc);
    s.file
        .write_all_at(&head, 0)
        .map_err(|e| format!("{}: {e}", s.path.display()))?;
    Ok(decoded)
}
