//! The node's data directory. For now it holds `node.toml`, which fixes the vShard count and the
//! node's id (CLUSTER MYID) when the directory is created; later issues add the Raft logs and
//! snapshots.

use crate::config::Config;
use shardline_transport::net::FileLock;

const META: &str = "node.toml";

/// What `node.toml` fixes.
pub struct NodeMeta {
    /// 40 lowercase hex digits, as Redis Cluster node ids are.
    pub node_id: String,
}

/// Creates the directory (and its metadata) or checks an existing one against the config, and
/// locks it so that a second server cannot use it. The lock lasts as long as the returned value.
pub fn open(cfg: &Config) -> Result<(FileLock, NodeMeta), String> {
    let dir = &cfg.data_dir;
    std::fs::create_dir_all(dir)
        .map_err(|e| format!("cannot create data directory {}: {e}", dir.display()))?;
    let lock = FileLock::acquire(&dir.join("LOCK")).map_err(|e| {
        format!("data directory {} is in use by another shardline process ({e}); stop it or choose another --data-dir", dir.display())
    })?;
    let meta = check(cfg)?;
    Ok((lock, meta))
}

fn new_node_id() -> String {
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
        ^ ((std::process::id() as u64) << 32);
    let mut id = String::with_capacity(40);
    let mut rng = shardline_shards::rng::Rng::new(seed);
    while id.len() < 40 {
        seed = rng.next_u64();
        id.push_str(&format!("{seed:016x}"));
    }
    id.truncate(40);
    id
}

fn write_meta(cfg: &Config, node_id: &str) -> Result<(), String> {
    let dir = &cfg.data_dir;
    let meta = dir.join(META);
    let tmp = dir.join(format!("{META}.tmp"));
    let text = format!(
        "# Written when this data directory was created. Do not edit.\nformat = 1\nvshards = {}\nnode_id = \"{node_id}\"\n",
        cfg.vshards
    );
    std::fs::write(&tmp, text)
        .and_then(|_| std::fs::File::open(&tmp)?.sync_all())
        .and_then(|_| std::fs::rename(&tmp, &meta))
        .map_err(|e| format!("cannot write {}: {e}", meta.display()))
}

/// Checks (or writes) the metadata that fixes the vShard count and the node id.
fn check(cfg: &Config) -> Result<NodeMeta, String> {
    let dir = &cfg.data_dir;
    let meta = dir.join(META);
    match std::fs::read_to_string(&meta) {
        Ok(text) => {
            let table: toml::Table = text.parse().map_err(|e| {
                format!("{} is corrupt ({e}); restore it from a backup or move the data directory aside", meta.display())
            })?;
            let vshards = table
                .get("vshards")
                .and_then(|v| v.as_integer())
                .ok_or_else(|| {
                    format!(
                        "{} has no integer 'vshards'; restore it or move the data directory aside",
                        meta.display()
                    )
                })?;
            if vshards != cfg.vshards as i64 {
                return Err(format!(
                    "{} was created with vshards = {vshards}, but the config says {}: the vShard count is fixed when the data directory is created (use vshards = {vshards}, or a new data directory)",
                    dir.display(),
                    cfg.vshards
                ));
            }
            match table.get("node_id").and_then(|v| v.as_str()) {
                Some(id) if id.len() == 40 && id.bytes().all(|b| b.is_ascii_hexdigit()) => {
                    Ok(NodeMeta {
                        node_id: id.to_ascii_lowercase(),
                    })
                }
                Some(_) => Err(format!(
                    "{} has a malformed node_id (40 hex digits expected); restore it or move the data directory aside",
                    meta.display()
                )),
                None => {
                    // A directory from before node ids: give it one, once.
                    let node_id = new_node_id();
                    write_meta(cfg, &node_id)?;
                    Ok(NodeMeta { node_id })
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let node_id = new_node_id();
            write_meta(cfg, &node_id)?;
            Ok(NodeMeta { node_id })
        }
        Err(e) => Err(format!("cannot read {}: {e}", meta.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(name: &str) -> Config {
        let dir =
            std::env::temp_dir().join(format!("shardline-datadir-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Config {
            data_dir: dir,
            ..Config::default()
        }
    }

    #[test]
    fn the_node_id_is_made_once_and_kept() {
        let c = cfg("id");
        let first = check(&c).unwrap().node_id;
        assert_eq!(first.len(), 40);
        assert_eq!(check(&c).unwrap().node_id, first);
        // A directory written before node ids gets one, which then stays.
        std::fs::write(c.data_dir.join(META), "format = 1\nvshards = 256\n").unwrap();
        let added = check(&c).unwrap().node_id;
        assert_ne!(added, first);
        assert_eq!(check(&c).unwrap().node_id, added);
        std::fs::write(
            c.data_dir.join(META),
            "format = 1\nvshards = 256\nnode_id = \"xyz\"\n",
        )
        .unwrap();
        assert!(check(&c).err().unwrap().contains("malformed node_id"));
        std::fs::remove_dir_all(&c.data_dir).unwrap();
    }
}
