//! A replica's snapshot file (`snap/shard-<n>/<vshard>.snap`): written atomically before the log
//! purges what it covers, read at start-up; and the snapshot's bytes (apply clock + vShard).

use shardline_shards::ids::NodeId;
use shardline_shards::raft::LogId;
use shardline_shards::slot::VShardId;
use shardline_shards::snapshot;
use std::path::{Path, PathBuf};

pub(super) fn snap_path(dir: &Path, v: u32) -> PathBuf {
    dir.join(format!("{v:05}.snap"))
}

/// `02`: the bytes are the Raft core's snapshot blob (membership, then state). A file of the
/// earlier format is refused at start-up with the file named.
const SNAP_MAGIC: &[u8; 8] = b"SLSNAP02";

/// Bytes before the blob: magic, index, term, length, CRC32C.
pub(super) const SNAP_HEADER_BYTES: usize = 36;

/// Writes a snapshot file atomically: magic, index, term, length, CRC32C, bytes.
pub(super) fn write_snapshot(dir: &Path, v: u32, id: LogId, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let path = snap_path(dir, v);
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(&snap_header(id, data.len() as u64, crc32c::crc32c(data)))?;
    f.write_all(data)?;
    f.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    std::fs::File::open(dir)?.sync_all()
}

/// A snapshot file's header: magic, index, term, the blob's length and CRC32C.
pub(super) fn snap_header(id: LogId, len: u64, crc: u32) -> [u8; SNAP_HEADER_BYTES] {
    let mut h = [0u8; SNAP_HEADER_BYTES];
    h[..8].copy_from_slice(SNAP_MAGIC);
    h[8..16].copy_from_slice(&id.index.to_le_bytes());
    h[16..24].copy_from_slice(&id.term.to_le_bytes());
    h[24..32].copy_from_slice(&len.to_le_bytes());
    h[32..36].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Group `v`'s snapshot up to `last` being written to a file of its own beside its place
/// (`<v>.<index>.snap.new`; issue 19, step 3: never whole in memory, and the vShard walked a
/// piece at a time while it serves: `capture.rs`): the header, the membership `conf`, the
/// apply clock, then the vShard's entries as they come, in any order; the snapshot's header
/// (its key count known last) and both checksums are written at the end. Not synced: the
/// flush thread syncs it and puts it in place (`place_snapshot`) before the log purges what
/// it covers.
pub(super) struct CompactionFile {
    path: PathBuf,
    file: std::fs::File,
    last: LogId,
    /// The membership and clock in front of the vShard's snapshot, and their CRC32C.
    front_len: u64,
    front_crc: u32,
    /// The CRC32C and length of what follows the snapshot's header.
    rest_crc: u32,
    rest_len: u64,
}

impl CompactionFile {
    pub(super) fn create(
        dir: &Path,
        v: u32,
        last: LogId,
        conf: &shardline_shards::raft::Membership,
        clock_us: u64,
    ) -> std::io::Result<CompactionFile> {
        use std::io::Write;
        let path = dir.join(format!("{v:05}.{}.snap.new", last.index));
        let mut file = std::fs::File::create(&path)?;
        let front = shardline_shards::raft::conf::snapshot_blob(conf, &clock_us.to_le_bytes());
        let placeholders = file
            .write_all(&[0u8; SNAP_HEADER_BYTES])
            .and_then(|()| file.write_all(&front))
            .and_then(|()| file.write_all(&[0u8; snapshot::HEADER_BYTES]));
        if let Err(e) = placeholders {
            let _ = std::fs::remove_file(&path);
            return Err(e);
        }
        Ok(CompactionFile {
            path,
            file,
            last,
            front_len: front.len() as u64,
            front_crc: crc32c::crc32c(&front),
            rest_crc: 0,
            rest_len: 0,
        })
    }

    /// Entries (or the tail) of the snapshot, after what came before.
    pub(super) fn append(&mut self, b: &[u8]) -> std::io::Result<()> {
        use std::io::Write;
        self.rest_crc = crc32c::crc32c_append(self.rest_crc, b);
        self.rest_len += b.len() as u64;
        self.file.write_all(b)
    }

    /// Ends the file with the capture's tail and the checksums, and writes the headers in
    /// their places: the file and the blob's length. On an error the file is removed.
    pub(super) fn finish(mut self, whole: snapshot::Captured) -> std::io::Result<(PathBuf, u64)> {
        use std::os::unix::fs::FileExt;
        let res = (|| {
            self.append(&whole.tail)?;
            let head = &whole.header;
            let combine = crc32c::crc32c_combine;
            // The snapshot's own checksum: its header, then the rest.
            let inner = combine(crc32c::crc32c(head), self.rest_crc, self.rest_len as usize);
            let inner = inner.to_le_bytes();
            std::io::Write::write_all(&mut self.file, &inner)?;
            // The file's: the front, the snapshot's header, the rest, its checksum.
            let with_head = combine(self.front_crc, crc32c::crc32c(head), head.len());
            let outer = combine(
                combine(with_head, self.rest_crc, self.rest_len as usize),
                crc32c::crc32c(&inner),
                4,
            );
            let total = self.front_len + head.len() as u64 + self.rest_len + 4;
            let at = SNAP_HEADER_BYTES as u64 + self.front_len;
            self.file.write_all_at(head, at)?;
            self.file
                .write_all_at(&snap_header(self.last, total, outer), 0)?;
            Ok(total)
        })();
        match res {
            Ok(total) => Ok((self.path, total)),
            Err(e) => {
                let _ = std::fs::remove_file(&self.path);
                Err(e)
            }
        }
    }

    /// Not finished: the file goes.
    pub(super) fn discard(self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Group `v`'s vShard written to a compaction file in one go (as a capture nothing changes
/// meanwhile): the file and the blob's length.
#[cfg(test)]
pub(super) fn write_compaction(
    dir: &Path,
    v: u32,
    last: LogId,
    conf: &shardline_shards::raft::Membership,
    clock_us: u64,
    vs: &shardline_shards::db::VShard,
) -> std::io::Result<(PathBuf, u64)> {
    let mut f = CompactionFile::create(dir, v, last, conf, clock_us)?;
    let mut c = snapshot::Capture::new(vs, clock_us / 1000, 0);
    c.write_unchanging(vs, 1 << 16, &mut |b| f.append(b))?;
    f.finish(c.finish())
}

/// Puts a snapshot file written elsewhere whole (`part`: a base copy received as it came,
/// header included) in group `v`'s place atomically: synced, renamed, the directory synced.
pub(super) fn place_snapshot(dir: &Path, v: u32, part: &Path) -> std::io::Result<()> {
    std::fs::File::open(part)?.sync_all()?;
    std::fs::rename(part, snap_path(dir, v))?;
    std::fs::File::open(dir)?.sync_all()
}

/// What start-up says of a damaged snapshot file: the file, the offset, what to do.
pub(super) fn corrupt(path: &Path, offset: u64, why: &str) -> String {
    format!(
        "{}: corrupt snapshot at offset {offset}: {why}. This replica cannot be trusted: stop the node, move its data directory away and start it again to rejoin the cluster",
        path.display()
    )
}

/// Reads a snapshot file; a damaged one stops start-up with the file and what to do.
pub(super) fn read_snapshot(dir: &Path, v: u32) -> Result<Option<(LogId, Vec<u8>)>, String> {
    let path = snap_path(dir, v);
    let b = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let bad = |offset: usize, why: &str| corrupt(&path, offset as u64, why);
    if b.len() >= 8 && &b[..8] == b"SLSNAP01" {
        return Err(bad(
            0,
            "a snapshot of an earlier format (SLSNAP01, before membership changes)",
        ));
    }
    if b.len() < 36 || &b[..8] != SNAP_MAGIC {
        return Err(bad(0, "not a snapshot header"));
    }
    let u64_at = |at: usize| u64::from_le_bytes(b[at..at + 8].try_into().expect("8"));
    let id = LogId {
        index: u64_at(8),
        term: u64_at(16),
    };
    let len = u64_at(24) as usize;
    if b.len() - 36 != len {
        return Err(bad(24, "length does not match the file"));
    }
    let data = b[36..].to_vec();
    if crc32c::crc32c(&data) != u32::from_le_bytes(b[32..36].try_into().expect("4")) {
        return Err(bad(36, "checksum mismatch"));
    }
    Ok(Some((id, data)))
}

/// A vShard's snapshot file as start-up reads it: whole (a tombstone: a membership and no
/// state), or read in pieces and decoded as read (`read_vshard_snapshot`).
pub(super) enum OnDisk {
    Whole(Vec<u8>),
    Decoded {
        decoded: Box<shardline_shards::replica::stream::Decoded>,
        total: u64,
    },
}

/// Reads group `v`'s snapshot file at start-up, a vShard's (issue 19, step 3): a piece at a
/// time into the decoder, so a large vShard is never in memory twice; a damaged one stops
/// start-up with the file, the offset and what to do, as `read_snapshot` does.
pub(super) fn read_vshard_snapshot(
    dir: &Path,
    v: u32,
    t: &shardline_shards::db::Tunables,
) -> Result<Option<(LogId, OnDisk)>, String> {
    let path = snap_path(dir, v);
    let small = match std::fs::metadata(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", path.display())),
        Ok(m) => m.len() <= (SNAP_HEADER_BYTES + TOMBSTONE_BYTES_MAX) as u64,
    };
    if small {
        return Ok(read_snapshot(dir, v)?.map(|(id, b)| (id, OnDisk::Whole(b))));
    }
    let bad = |offset: u64, why: &str| corrupt(&path, offset, why);
    let Some((id, f)) = open_for_copy(dir, v).map_err(|e| bad(0, &e))? else {
        return Ok(None);
    };
    let mut dec = shardline_shards::replica::stream::BlobDecoder::new(f.total, t);
    let mut buf = vec![0u8; (4 << 20).min(f.total as usize)];
    let (mut at, mut crc) = (0u64, 0u32);
    while at < f.total {
        let n = (f.total - at).min(buf.len() as u64) as usize;
        read_for_copy(&f, at, &mut buf[..n]).map_err(|e| format!("{}: {e}", path.display()))?;
        crc = crc32c::crc32c_append(crc, &buf[..n]);
        dec.feed(&buf[..n])
            .map_err(|e| bad(SNAP_HEADER_BYTES as u64 + e.offset as u64, e.reason))?;
        at += n as u64;
    }
    if crc != f.crc {
        return Err(bad(SNAP_HEADER_BYTES as u64, "checksum mismatch"));
    }
    let decoded = dec
        .finish()
        .map_err(|e| bad(SNAP_HEADER_BYTES as u64 + e.offset as u64, e.reason))?;
    if decoded.vshard.id.0 as u32 != v {
        return Err(bad(SNAP_HEADER_BYTES as u64, "another vShard's snapshot"));
    }
    let total = f.total;
    Ok(Some((
        id,
        OnDisk::Decoded {
            decoded: Box::new(decoded),
            total,
        },
    )))
}

/// The largest blob a tombstone can be (a membership, no state).
const TOMBSTONE_BYTES_MAX: usize = shardline_shards::raft::conf::MEMBERSHIP_BYTES_MAX;

/// A snapshot file opened for a base copy that streams from it (issue 19, step 3): its id,
/// the blob's length and CRC32C from its header (checked against the copy's running CRC as
/// the copy ends: a file damaged since it was written never installs anywhere). The open
/// file keeps reading the snapshot it was even if a newer one replaces its name.
pub(super) struct CopyFile {
    pub file: std::fs::File,
    pub total: u64,
    pub crc: u32,
}

/// Opens group `v`'s snapshot file for a copy: `None` without one.
pub(super) fn open_for_copy(dir: &Path, v: u32) -> Result<Option<(LogId, CopyFile)>, String> {
    use std::io::Read;
    let path = snap_path(dir, v);
    let mut file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let mut h = [0u8; SNAP_HEADER_BYTES];
    file.read_exact(&mut h)
        .map_err(|e| format!("{}: its header: {e}", path.display()))?;
    if &h[..8] != SNAP_MAGIC {
        return Err(format!("{}: not a snapshot header", path.display()));
    }
    let u64_at = |at: usize| u64::from_le_bytes(h[at..at + 8].try_into().expect("8"));
    let id = LogId {
        index: u64_at(8),
        term: u64_at(16),
    };
    let total = u64_at(24);
    let len = file
        .metadata()
        .map_err(|e| format!("{}: {e}", path.display()))?
        .len();
    // (A damaged header may name any length: no overflow on the way.)
    if Some(len) != total.checked_add(SNAP_HEADER_BYTES as u64) {
        return Err(format!(
            "{}: length does not match the file",
            path.display()
        ));
    }
    let crc = u32::from_le_bytes(h[32..36].try_into().expect("4"));
    Ok(Some((id, CopyFile { file, total, crc })))
}

/// Reads `buf.len()` bytes of an open snapshot's blob at `offset`.
pub(super) fn read_for_copy(f: &CopyFile, offset: u64, buf: &mut [u8]) -> Result<(), String> {
    use std::os::unix::fs::FileExt;
    f.file
        .read_exact_at(buf, SNAP_HEADER_BYTES as u64 + offset)
        .map_err(|e| e.to_string())
}

/// A replica's snapshot bytes: its apply clock, then the vShard's keys (what
/// `write_compaction` writes after the membership).
#[cfg(test)]
pub(super) fn snapshot_bytes(clock_us: u64, vs: &shardline_shards::db::VShard) -> Vec<u8> {
    let mut b = clock_us.to_le_bytes().to_vec();
    b.extend_from_slice(&shardline_shards::snapshot::encode(vs, clock_us / 1000));
    b
}

/// Installs snapshot bytes into `db`; returns the apply clock they carry.
pub(super) fn install(
    db: &mut shardline_shards::db::Db,
    data: &[u8],
) -> Result<u64, shardline_shards::snapshot::SnapshotError> {
    let short = shardline_shards::snapshot::SnapshotError {
        offset: 0,
        reason: "shorter than a replica snapshot",
    };
    let clock = u64::from_le_bytes(data.get(..8).ok_or(short)?.try_into().expect("8"));
    let vs = shardline_shards::snapshot::decode(&data[8..], &db.tunables)?;
    install_decoded(db, vs)
        .map_err(|e| shardline_shards::snapshot::SnapshotError { offset: 8, ..e })?;
    Ok(clock)
}

/// Installs a decoded vShard into `db` (in place of what it held of it).
pub(super) fn install_decoded(
    db: &mut shardline_shards::db::Db,
    vs: shardline_shards::db::VShard,
) -> Result<(), shardline_shards::snapshot::SnapshotError> {
    if !db.install(vs) {
        return Err(shardline_shards::snapshot::SnapshotError {
            offset: 0,
            reason: "a vShard this shard thread does not own",
        });
    }
    Ok(())
}

/// Whether the state of a snapshot of vShard `v` received from a peer decodes and holds that
/// vShard (`install` would take it into the right place).
pub(super) fn vshard_snapshot_fits(state: &[u8], v: VShardId) -> bool {
    state.len() >= 8
        && shardline_shards::snapshot::decode(
            &state[8..],
            &shardline_shards::db::Tunables::default(),
        )
        .is_ok_and(|vs| vs.id == v)
}

/// Whether the state of a metadata snapshot received from a peer decodes and is this
/// cluster's (`install_meta` would take it).
pub(super) fn meta_snapshot_fits(state: &[u8], cluster: [u8; 16]) -> bool {
    let Ok(parts) = shardline_shards::calvin::seq::split_state(state) else {
        return false;
    };
    let seq_ok = parts.seq.is_none_or(|b| {
        shardline_shards::calvin::seq::Sequencer::decode(b, Default::default()).is_ok()
    });
    let libs_ok = parts
        .libs
        .is_none_or(|b| shardline_shards::script::functions::Libraries::decode(b).is_ok());
    let users_ok = parts
        .users
        .is_none_or(|b| shardline_shards::acl::wire::decode_users(b).is_ok());
    seq_ok
        && libs_ok
        && users_ok
        && shardline_shards::meta::Meta::decode(parts.meta).is_ok_and(|m| m.cluster_id == cluster)
}

/// Whether a vShard snapshot is a tombstone (the replica was moved off this node): no state,
/// and a membership that leaves `me` out. A replica's own snapshot always has state (its apply
/// clock at least), and its membership may leave `me` out too: a snapshot a new learner
/// received from a leader that took it before adding the learner. A malformed one is not a
/// tombstone (reading it reports the damage).
pub(super) fn is_tombstone(blob: &[u8], me: NodeId) -> bool {
    shardline_shards::raft::conf::split_snapshot(&bytes::Bytes::copy_from_slice(blob))
        .is_some_and(|(m, state)| state.is_empty() && !m.contains(me))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tempdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("shardline-snap-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn a_snapshot_file_round_trips_and_damage_names_the_file_and_offset() {
        let dir = tempdir("rt");
        let id = LogId { term: 3, index: 42 };
        write_snapshot(&dir, 7, id, b"blob bytes").unwrap();
        assert_eq!(
            read_snapshot(&dir, 7).unwrap(),
            Some((id, b"blob bytes".to_vec()))
        );
        assert_eq!(
            read_snapshot(&dir, 8).unwrap(),
            None,
            "no file: no snapshot"
        );
        // A flipped byte in the blob: the checksum names the file and where the bytes start.
        let path = snap_path(&dir, 7);
        let mut b = std::fs::read(&path).unwrap();
        b[SNAP_HEADER_BYTES + 2] ^= 1;
        std::fs::write(&path, &b).unwrap();
        let e = read_snapshot(&dir, 7).unwrap_err();
        assert!(e.contains("00007.snap") && e.contains("offset 36"), "{e}");
        assert!(
            e.contains("checksum") && e.contains("data directory"),
            "{e}"
        );
        // A file of the format before membership changes is refused by name, not misread.
        b[..8].copy_from_slice(b"SLSNAP01");
        std::fs::write(&path, &b).unwrap();
        let e = read_snapshot(&dir, 7).unwrap_err();
        assert!(
            e.contains("offset 0") && e.contains("earlier format"),
            "{e}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A file opened for a copy: its header's id, length and CRC; a header whose length
    /// disagrees with the file (any length, the largest included) is refused, not trusted.
    #[test]
    fn a_snapshot_opened_for_a_copy_reads_its_blob_and_a_bad_length_is_refused() {
        let dir = tempdir("copy");
        let id = LogId { term: 3, index: 42 };
        write_snapshot(&dir, 7, id, b"blob bytes").unwrap();
        let (at, f) = open_for_copy(&dir, 7).unwrap().unwrap();
        assert_eq!(
            (at, f.total, f.crc),
            (id, 10, crc32c::crc32c(b"blob bytes"))
        );
        let mut buf = [0u8; 5];
        read_for_copy(&f, 5, &mut buf).unwrap();
        assert_eq!(&buf, b"bytes");
        assert!(read_for_copy(&f, 8, &mut buf).is_err(), "past the end");
        assert!(open_for_copy(&dir, 8).unwrap().is_none());
        let path = snap_path(&dir, 7);
        let mut b = std::fs::read(&path).unwrap();
        for len in [11u64, u64::MAX] {
            b[24..32].copy_from_slice(&len.to_le_bytes());
            std::fs::write(&path, &b).unwrap();
            let e = open_for_copy(&dir, 7).err().unwrap();
            assert!(e.contains("length does not match"), "{e}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Regression (issue 15): a node that joined received a snapshot its leader took before
    /// adding it, so the membership in it leaves the node out; it was taken for a tombstone and
    /// the node refused to restart. Only a snapshot without state is one.
    #[test]
    fn only_a_snapshot_without_state_that_leaves_this_node_out_is_a_tombstone() {
        use shardline_shards::raft::{Membership, conf::snapshot_blob};
        let before_join = Membership::of_voters(&[NodeId(1), NodeId(2), NodeId(3)]);
        let with_me = Membership::of_voters(&[NodeId(1), NodeId(2), NodeId(4)]);
        assert!(is_tombstone(&snapshot_blob(&before_join, &[]), NodeId(4)));
        assert!(!is_tombstone(
            &snapshot_blob(&before_join, &0u64.to_le_bytes()),
            NodeId(4)
        ));
        assert!(!is_tombstone(&snapshot_blob(&with_me, &[]), NodeId(4)));
        assert!(
            !is_tombstone(b"\xff", NodeId(4)),
            "malformed: not a tombstone"
        );
    }

    /// Issue 19, step 3: a compaction written straight to its file is the blob the
    /// in-memory path makes (membership, clock, vShard), with a header that checks; it is
    /// not in place until `place_snapshot` puts it there.
    #[test]
    fn a_compaction_written_to_its_file_is_the_blob_and_checks() {
        use shardline_shards::raft::{Membership, conf::snapshot_blob};
        let dir = std::env::temp_dir().join(format!("sl-compact-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut vs = shardline_shards::db::VShard::new(VShardId(5));
        for i in 0..3000 {
            let v = shardline_shards::db::Value::Str(shardline_shards::bytes::SmallBytes::new(
                &vec![b'x'; i % 900],
            ));
            vs.keys.insert(format!("k{i}").as_bytes(), v);
        }
        let conf = Membership::of_voters(&[NodeId(1), NodeId(2)]);
        let id = LogId { index: 9, term: 2 };
        let (path, total) = write_compaction(&dir, 5, id, &conf, 7_000, &vs).unwrap();
        let want = snapshot_blob(&conf, &snapshot_bytes(7_000, &vs));
        assert_eq!(total, want.len() as u64);
        assert!(
            read_snapshot(&dir, 5).unwrap().is_none(),
            "not in place yet"
        );
        place_snapshot(&dir, 5, &path).unwrap();
        assert_eq!(read_snapshot(&dir, 5).unwrap(), Some((id, want.to_vec())));
        assert!(!path.exists());
        // Start-up reads it in pieces and decodes it as read.
        let t = shardline_shards::db::Tunables::default();
        match read_vshard_snapshot(&dir, 5, &t).unwrap() {
            Some((got, OnDisk::Decoded { decoded, total })) => {
                assert_eq!((got, total), (id, want.len() as u64));
                assert_eq!(decoded.membership, conf);
                assert_eq!(decoded.clock_us, 7_000);
                assert_eq!(decoded.vshard.len(), 3000);
            }
            _ => panic!("not decoded"),
        }
        // A damaged byte anywhere stops start-up with the file, the offset and what to do.
        let file = snap_path(&dir, 5);
        let good = std::fs::read(&file).unwrap();
        for at in [SNAP_HEADER_BYTES + 3, good.len() / 2, good.len() - 2] {
            let mut b = good.clone();
            b[at] ^= 0x40;
            std::fs::write(&file, &b).unwrap();
            let e = read_vshard_snapshot(&dir, 5, &t).err().expect("refused");
            assert!(
                e.contains("00005.snap: corrupt snapshot at offset") && e.contains("move"),
                "{e}"
            );
        }
        std::fs::write(&file, &good[..good.len() - 100]).unwrap();
        assert!(read_vshard_snapshot(&dir, 5, &t).is_err(), "cut short");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_peer_snapshot_is_taken_only_for_its_own_vshard_and_cluster() {
        let state = snapshot_bytes(7, &shardline_shards::db::VShard::new(VShardId(3)));
        assert!(vshard_snapshot_fits(&state, VShardId(3)));
        assert!(
            !vshard_snapshot_fits(&state, VShardId(4)),
            "another vShard's"
        );
        assert!(!vshard_snapshot_fits(&state[..5], VShardId(3)), "cut short");
        let a: std::net::SocketAddr = "127.0.0.1:7001".parse().unwrap();
        let b: std::net::SocketAddr = "127.0.0.1:17001".parse().unwrap();
        let m = shardline_shards::meta::Meta::from_list([1; 16], 4, 1, &[(a, b)], 1).unwrap();
        let mut state = Vec::new();
        m.encode(&mut state);
        assert!(meta_snapshot_fits(&state, [1; 16]));
        assert!(!meta_snapshot_fits(&state, [2; 16]), "another cluster's");
    }
}
