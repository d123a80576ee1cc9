//! Opening a shard thread's replicas: its log, its snapshots, and every replica restored from
//! them (or created from the placement on a listed cluster's first start).

use super::*;
use shardline_shards::script::functions::Libraries;

impl Replicas {
    /// Opens this thread's log and snapshots and restores every replica from them into `db`.
    pub fn open(
        c: Arc<Cluster>,
        shard: usize,
        cfg: &crate::config::Config,
        db: &mut shardline_shards::db::Db,
        seed: u64,
        now: Instant,
    ) -> Result<Replicas, String> {
        let wal_dir = cfg.data_dir.join("wal").join(format!("shard-{shard}"));
        let snap_dir = cfg.data_dir.join("snap").join(format!("shard-{shard}"));
        std::fs::create_dir_all(&snap_dir).map_err(|e| format!("{}: {e}", snap_dir.display()))?;
        staging::remove_parts(&snap_dir)?;
        let (log, mut wal) = FsLog::open(
            &wal_dir,
            WalConfig {
                shard: shard as u32,
                segment_bytes: cfg.wal_segment_bytes,
                fsync: cfg.fsync,
            },
        )?;
        // The vShards, then the metadata group.
        let count = c.layout.count() as usize + 1;
        let meta_g = c.meta_group();
        let mut meta = None;
        let mut seq_state: Option<(usize, Vec<u8>)> = None;
        let mut libs = Libraries::default();
        let mut acl_users = None;
        let mut groups: Vec<Option<Group>> = (0..count).map(|_| None).collect();
        let mut clocks = vec![0u64; count];
        let mut applied = vec![LogId::default(); count];
        // The first start of a listed cluster creates the replicas its placement gives this
        // node; later starts restore the replicas the log or a snapshot holds (replicas move).
        let fresh = wal.groups().next().is_none()
            && (0..count as u32).all(|g| !snap_path(&snap_dir, g).exists());
        for (v, slot) in groups.iter_mut().enumerate() {
            let g = v as u32;
            if c.thread_of(g) != shard {
                continue;
            }
            let has_state = wal.group(g).is_some() || snap_path(&snap_dir, g).exists();
            let members = if g == meta_g {
                meta_members(&c)
            } else {
                // The membership the group started with (its log or snapshot says if it
                // changed since); a replica created on demand always has one of those.
                let initial = c.initial(VShardId(v as u16));
                if !(has_state || (fresh && initial.contains(&c.me))) {
                    continue;
                }
                if initial.is_empty() {
                    meta_members(&c)
                } else {
                    initial
                }
            };
            let rcfg = raft_config(&c, g, members, cfg.snapshot_chunk_bytes as usize, seed);
            let corrupt = |offset: usize, reason: &str| {
                snapfile::corrupt(&snap_path(&snap_dir, g), offset as u64, reason)
            };
            let snapshot = if g == meta_g {
                read_snapshot(&snap_dir, g)?.map(|(id, b)| (id, OnDisk::Whole(b)))
            } else {
                read_vshard_snapshot(&snap_dir, g, &db.tunables)?
            };
            // A tombstone (a snapshot without this node: the replica was moved off it) counts
            // only if no replica was created here since (its log starts after the reset).
            let snapshot = match snapshot {
                Some((_, OnDisk::Whole(blob))) if g != meta_g && is_tombstone(&blob, c.me) => {
                    if wal.group(g).is_none() {
                        continue;
                    }
                    None
                }
                other => other,
            };
            let grp = match snapshot {
                None => {
                    if let Some(p) = wal.group(g).map(|l| l.purged()).filter(|p| p.index > 0) {
                        // The log was compacted into a snapshot that is not there: starting
                        // from the log alone would lose what the snapshot held.
                        return Err(format!(
                            "{}: missing, but the log of group {g} was compacted up to entry {}; move the data directory away and restart the node to rejoin",
                            snap_path(&snap_dir, g).display(),
                            p.index
                        ));
                    }
                    if g == meta_g {
                        meta = static_meta(&c)?;
                    }
                    storage::restore(&wal, g, rcfg, bytes::Bytes::new())
                }
                Some((id, OnDisk::Decoded { decoded, total })) => {
                    // Read in pieces and decoded as read: never whole in memory.
                    clocks[v] = decoded.clock_us;
                    install_decoded(db, decoded.vshard)
                        .map_err(|e| corrupt(SNAP_HEADER_BYTES, e.reason))?;
                    applied[v] = id;
                    storage::align_to_snapshot(&mut wal, g, id);
                    let front = raft::conf::snapshot_blob(&decoded.membership, &[]);
                    storage::restore_at(&wal, g, rcfg, Some(id), front).map(|mut grp| {
                        grp.snapshot_in_file(total);
                        grp
                    })
                }
                Some((id, OnDisk::Whole(blob))) => {
                    let blob = bytes::Bytes::from(blob);
                    let (_, state) = raft::conf::split_snapshot(&blob)
                        .ok_or_else(|| corrupt(SNAP_HEADER_BYTES, "bad membership"))?;
                    let at = SNAP_HEADER_BYTES + (blob.len() - state.len());
                    if g == meta_g {
                        let parts = shardline_shards::calvin::seq::split_state(&state)
                            .map_err(|e| corrupt(at, e.what()))?;
                        meta = Some(
                            shardline_shards::meta::Meta::decode(parts.meta)
                                .map_err(|e| corrupt(at, e.0))?,
                        );
                        seq_state = parts
                            .seq
                            .map(|b| (at + (state.len() - b.len()), b.to_vec()));
                        if let Some(b) = parts.libs {
                            let libs_at = at + (state.len() - b.len());
                            libs = Libraries::decode(b).map_err(|e| {
                                corrupt(libs_at + e.offset, "the function libraries do not decode")
                            })?;
                        }
                        if let Some(b) = parts.users {
                            let users_at = at + (state.len() - b.len());
                            acl_users = shardline_shards::acl::wire::decode_users(b)
                                .map_err(|_| corrupt(users_at, "the ACL users do not decode"))?;
                        }
                    } else {
                        clocks[v] = install(db, &state)
                            .map_err(|e| corrupt(at + 8 + e.offset, e.reason))?;
                    }
                    applied[v] = id;
                    storage::align_to_snapshot(&mut wal, g, id);
                    storage::restore_at(&wal, g, rcfg, Some(id), blob)
                }
            };
            let mut grp = grp.map_err(|_| corrupt(SNAP_HEADER_BYTES, "bad membership"))?;
            if g != meta_g {
                // No copy of its snapshot in memory: its file holds it (`snapshot_for_copy`).
                grp.release_snapshot_blob();
            }
            *slot = Some(grp);
        }
        // The replicas hold their entries now: the log engine keeps no second reference.
        wal.release_entries();
        if let Some(m) = &meta {
            publish_meta(&c, m);
            if let Some(g) = groups[meta_g as usize].as_ref() {
                meta::dial_hints(&c, m, g.log());
            }
        }
        let n = crate::cluster::NODES_MAX;
        // What the restored logs hold in memory (`log_bytes_max`).
        let log_bytes: Vec<usize> = groups
            .iter()
            .map(|g| {
                g.as_ref().map_or(0, |g| {
                    g.log()
                        .iter()
                        .map(|e| e.data.len() + super::ENTRY_OVERHEAD_BYTES)
                        .sum()
                })
            })
            .collect();
        let log_bytes_total = log_bytes.iter().sum();
        let mut r = Replicas {
            shard,
            groups,
            clocks,
            applied,
            log: Some(log),
            wal,
            snap_dir,
            incoming: Vec::new(),
            to_compact: Vec::new(),
            damaged_files: Vec::new(),
            snapshots_rewritten: 0,
            before_flush: Vec::new(),
            behind: Vec::new(),
            in_flight_snapshots: Vec::new(),
            next_snapshot_token: 0,
            log_bytes,
            log_bytes_total,
            pending: Pending::new(count),
            direct: direct::Direct::new(count),
            calvin: calvin::Calvin::default(),
            captures: Default::default(),
            free_readies: Vec::new(),
            readies_buf: Vec::new(),
            dirty: Vec::new(),
            is_dirty: vec![false; count],
            peers: (0..n).map(|_| Peer::default()).collect(),
            out_ready: Vec::new(),
            last_tick: now,
            liveness_seen: 0,
            waker: None,
            woken: false,
            payloads: Vec::new(),
            per_peer: (0..n).map(|_| Vec::new()).collect(),
            scratch: replicate::Scratch::default(),
            hint_due: now,
            full_hint_due: now,
            hinted: vec![None; count],
            hint_full_to: Vec::new(),
            meta,
            functions: Libraries::default(),
            acl_users: None,
            script_waits: Default::default(),
            thread_direct: Default::default(),
            script_deferred: Default::default(),
            meta_g,
            to_drop: Vec::new(),
            chunk_bytes: cfg.snapshot_chunk_bytes as usize,
            hub: shardline_shards::migrate::hub::Hub::new(
                // The hub keeps the window at least one chunk.
                shardline_shards::migrate::session::Limits {
                    chunk_bytes: cfg.bulk_chunk_bytes,
                    window_bytes: cfg.bulk_window_bytes,
                    ..Default::default()
                },
            ),
            lane_io: super::super::lanes::LaneIo::new(now),
            log_bytes_max: cfg.raft_log_memory_bytes as usize,
            arena: bytes::BytesMut::new(),
            memory_published: 0,
            keys_published: 0,
            seed,
            moves_due: now,
            handover_at: vec![None; count],
            leaving_lead: vec![None; count],
            drained_at: None,
            moves_closed_at: None,
            drained_seen: None,
            repair_at: None,
            repair_logged: None,
            copy_files: HashMap::new(),
            staging: HashMap::new(),
            staged: HashMap::new(),
            streamed_in: 0,
            tunables: db.tunables,
            meter: load::Meter::new(count, now, load::os_clock),
            rebalance_cfg: Default::default(),
            rebalancer: None,
            rebalance_at: None,
            lead_seen: Vec::new(),
            meta_removed: None,
            blocked: std::collections::BTreeMap::new(),
            blocked_ids: HashMap::new(),
            members_seen: 0,
            next_blocked: 1,
            c,
        };
        r.install_functions(libs);
        r.install_acl(acl_users);
        // Every vShard's base copies are written and decoded as they arrive; the metadata
        // group's (small) stay in memory.
        r.hub.store_copies(move |g| g != meta_g);
        if let Some((at, b)) = seq_state {
            r.install_seq(Some(&b)).map_err(|reason| {
                snapfile::corrupt(
                    &snap_path(&r.snap_dir, meta_g),
                    at as u64,
                    &format!("the sequencer's state: {reason}"),
                )
            })?;
        }
        Ok(r)
    }
}
