//! The node's credentials on its cluster channels (issue 20, step 5): the cluster's TLS (its
//! CA, this node's certificate and key) for the bus and the bulk lanes, and the cluster's
//! shared secret for SWIM's datagrams (`transport::seal`) and for the proof a joining node
//! sends with CLUSTER JOIN. What each channel checks, and why SWIM is sealed rather than
//! carried over DTLS, is in docs/design/control.md.

use super::{Cluster, NodeId};
use shardline_transport::seal;
use shardline_transport::tls::{self, ClusterTls};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

/// The join proof's key label (`seal::proof`).
const JOIN_LABEL: &str = "shardline join v1";
/// How far a joining node's clock may be from the member's that checks its proof.
pub const JOIN_SKEW_S: u64 = 300;
/// The shortest secret taken (bytes).
const SECRET_MIN: usize = 32;

/// This node's credentials; none by default (links in clear, SWIM unsealed, joins unproven).
#[derive(Default)]
pub struct Security {
    pub tls: Option<Arc<ClusterTls>>,
    pub secret: Option<Vec<u8>>,
}

impl Security {
    /// Reads the files the configuration names; an error names the file and what is wrong.
    pub fn load(cfg: &crate::config::Config) -> Result<Security, String> {
        let tls = match (
            &cfg.cluster_tls_ca_file,
            &cfg.cluster_tls_cert_file,
            &cfg.cluster_tls_key_file,
        ) {
            (Some(ca), Some(cert), Some(key)) => Some(Arc::new(ClusterTls::load(ca, cert, key)?)),
            _ => None,
        };
        let secret = cfg
            .cluster_secret_file
            .as_deref()
            .map(read_secret)
            .transpose()?;
        Ok(Security { tls, secret })
    }

    /// What INFO and the start-up line say of the links.
    pub fn describe(&self) -> &'static str {
        match (&self.tls, &self.secret) {
            (Some(_), _) => "mutual-tls",
            (None, Some(_)) => "clear-sealed-swim",
            (None, None) => "clear",
        }
    }

    /// CLUSTER JOIN's proof for a node joining as `client`/`bus` at wall-clock second
    /// `now_s`: the two arguments it appends (the second, then the proof), when this node
    /// holds the secret.
    pub fn join_proof(
        &self,
        client: SocketAddr,
        bus: SocketAddr,
        now_s: u64,
    ) -> Option<[String; 2]> {
        let secret = self.secret.as_deref()?;
        let msg = join_msg(client, bus, now_s);
        Some([
            now_s.to_string(),
            seal::proof(secret, JOIN_LABEL, msg.as_bytes()),
        ])
    }

    /// Checks a joining node's proof (`at` and `proof`, the arguments after the wire versions)
    /// when this node holds the secret: the error says why the join is refused.
    pub fn check_join(
        &self,
        client: SocketAddr,
        bus: SocketAddr,
        proof: Option<(&str, &str)>,
        now_s: u64,
    ) -> Result<(), String> {
        let Some(secret) = self.secret.as_deref() else {
            return Ok(());
        };
        let Some((at, proof)) = proof else {
            return Err("this cluster needs a join proof: start the joining node with the cluster's cluster-secret-file".into());
        };
        let at: u64 = at
            .parse()
            .map_err(|_| "the join proof's time is not a number".to_string())?;
        if at.abs_diff(now_s) > JOIN_SKEW_S {
            return Err(format!(
                "the join proof was made at {at}, {} s from this member's clock (at most {JOIN_SKEW_S}): a replayed join, or clocks apart",
                at.abs_diff(now_s)
            ));
        }
        if !seal::proof_matches(
            secret,
            JOIN_LABEL,
            join_msg(client, bus, at).as_bytes(),
            proof,
        ) {
            return Err(
                "the join proof does not match: the joining node holds another cluster's secret"
                    .into(),
            );
        }
        Ok(())
    }
}

impl Security {
    /// With the cluster's TLS, a join comes over TLS from a node whose certificate (which
    /// the handshake checked against the CA) names the client address it joins as.
    pub fn check_joiner_cert(
        &self,
        client: SocketAddr,
        cert: Option<&tls::CertificateDer<'_>>,
    ) -> Result<(), String> {
        if self.tls.is_none() {
            return Ok(());
        }
        let Some(cert) = cert else {
            return Err("this cluster's links are TLS: a join must come over TLS with a certificate of the cluster's CA (start the joining node with cluster-tls-ca-file, cluster-tls-cert-file and cluster-tls-key-file)".into());
        };
        let name = tls::member_name(client);
        if !tls::names(cert, &name) {
            return Err(format!(
                "the joining node's certificate does not name the address it joins as ({client}: {name})"
            ));
        }
        Ok(())
    }
}

fn join_msg(client: SocketAddr, bus: SocketAddr, at: u64) -> String {
    format!("join {client} {bus} {at}")
}

/// The secret in `path`: hex digits (whitespace around them ignored), at least 32 bytes.
fn read_secret(path: &Path) -> Result<Vec<u8>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the cluster secret {}: {e}", path.display()))?;
    let bytes = seal::from_hex(text.trim()).ok_or_else(|| {
        format!(
            "the cluster secret {} is not hex digits (make one with `shardline ctl certs`)",
            path.display()
        )
    })?;
    if bytes.len() < SECRET_MIN {
        return Err(format!(
            "the cluster secret {} holds {} bytes; at least {SECRET_MIN} (64 hex digits)",
            path.display(),
            bytes.len()
        ));
    }
    Ok(bytes)
}

/// The name the certificate of member `id` must carry, when this node knows its address.
pub fn member_name(c: &Cluster, id: NodeId) -> Option<String> {
    c.member(id).map(|m| tls::member_name(m.client))
}

/// Checks a dialer's certificate names the member its hello claims to be (`None` when the
/// links are not TLS). A member whose address this node does not know yet (its metadata is
/// catching up on a join) is taken on the CA's signature alone.
pub fn check_cert(
    c: &Cluster,
    id: NodeId,
    cert: Option<&tls::CertificateDer<'_>>,
) -> Result<(), String> {
    if c.security.tls.is_none() {
        return Ok(());
    }
    let Some(cert) = cert else {
        return Err("it presented no certificate".into());
    };
    match member_name(c, id) {
        Some(name) if !tls::names(cert, &name) => Err(format!(
            "its certificate does not name member {id} ({name})"
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_secret() -> Security {
        Security {
            tls: None,
            secret: Some(vec![7; 32]),
        }
    }

    #[test]
    fn a_join_proof_is_checked_against_its_addresses_secret_and_time() {
        let s = with_secret();
        let (c, b): (SocketAddr, SocketAddr) = (
            "127.0.0.1:7004".parse().unwrap(),
            "127.0.0.1:17004".parse().unwrap(),
        );
        let [at, proof] = s.join_proof(c, b, 1_000_000).unwrap();
        assert_eq!(s.check_join(c, b, Some((&at, &proof)), 1_000_100), Ok(()));
        let other: SocketAddr = "127.0.0.1:7005".parse().unwrap();
        assert!(
            s.check_join(other, b, Some((&at, &proof)), 1_000_100)
                .unwrap_err()
                .contains("does not match")
        );
        assert!(
            s.check_join(c, b, Some((&at, &proof)), 1_000_400)
                .unwrap_err()
                .contains("replayed")
        );
        assert!(
            s.check_join(c, b, None, 1_000_000)
                .unwrap_err()
                .contains("needs a join proof")
        );
        let stranger = Security {
            tls: None,
            secret: Some(vec![8; 32]),
        };
        let [at, proof] = stranger.join_proof(c, b, 1_000_000).unwrap();
        assert!(
            s.check_join(c, b, Some((&at, &proof)), 1_000_000)
                .unwrap_err()
                .contains("another cluster")
        );
        // A node without the secret takes joins as before, and makes no proof.
        assert_eq!(Security::default().check_join(c, b, None, 0), Ok(()));
        assert!(Security::default().join_proof(c, b, 0).is_none());
    }

    #[test]
    fn a_secret_file_must_be_long_enough_hex() {
        let dir = std::env::temp_dir().join(format!("shardline-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("s");
        std::fs::write(&f, format!("{}\n", "ab".repeat(32))).unwrap();
        assert_eq!(read_secret(&f).unwrap(), vec![0xab; 32]);
        std::fs::write(&f, "ab".repeat(31)).unwrap();
        assert!(read_secret(&f).unwrap_err().contains("at least 32"));
        std::fs::write(&f, "not hex").unwrap();
        assert!(read_secret(&f).unwrap_err().contains("not hex"));
        assert!(
            read_secret(&dir.join("missing"))
                .unwrap_err()
                .contains("missing")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
