//! The node's data directory. For now it holds `node.toml`, which fixes the vShard count when the
//! directory is created; later issues add the Raft logs and snapshots.

use crate::config::Config;
use shardline_transport::net::FileLock;

const META: &str = "node.toml";

/// Creates the directory (and its metadata) or checks an existing one against the config, and
/// locks it so that a second server cannot use it. The lock lasts as long as the returned value.
pub fn open(cfg: &Config) -> Result<FileLock, String> {
    let dir = &cfg.data_dir;
    std::fs::create_dir_all(dir)
        .map_err(|e| format!("cannot create data directory {}: {e}", dir.display()))?;
    let lock = FileLock::acquire(&dir.join("LOCK")).map_err(|e| {
        format!("data directory {} is in use by another shardline process ({e}); stop it or choose another --data-dir", dir.display())
    })?;
    check(cfg)?;
    Ok(lock)
}

/// Checks (or writes) the metadata that fixes the vShard count.
fn check(cfg: &Config) -> Result<(), String> {
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
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let tmp = dir.join(format!("{META}.tmp"));
            let text = format!(
                "# Written when this data directory was created. Do not edit.\nformat = 1\nvshards = {}\n",
                cfg.vshards
            );
            std::fs::write(&tmp, text)
                .and_then(|_| std::fs::File::open(&tmp)?.sync_all())
                .and_then(|_| std::fs::rename(&tmp, &meta))
                .map_err(|e| format!("cannot write {}: {e}", meta.display()))
        }
        Err(e) => Err(format!("cannot read {}: {e}", meta.display())),
    }
}
