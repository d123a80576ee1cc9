//! `cluster-routing proxy`: a command whose slot another node leads is forwarded to that node's
//! client port and its reply relayed, for clients that know one endpoint (redis-benchmark
//! without `--cluster`, plain redis-cli). Per connection, one link per peer, opened on first use;
//! the batch's commands for a peer are pipelined on its link in request order, so per key the
//! order of a client's commands is kept.

use super::io::Dialed;
use super::*;
use crate::cluster::NodeId;

/// This connection's link to one peer.
#[derive(Default)]
pub(super) struct Link {
    stream: Option<Dialed>,
    /// The batch's commands for the peer, encoded, and whether each is a write.
    out: Vec<u8>,
    writes: Vec<bool>,
    /// The ACL user the peer's connection runs as (`CLUSTER ACLUSER`; `None`: the cluster's
    /// own identity, allowed everything).
    as_user: Option<String>,
    /// The replies, in order, once the batch was exchanged.
    pub(super) replies: Vec<Vec<u8>>,
    rbuf: Vec<u8>,
    /// The batch's bytes were (at least partly) written: unanswered writes may have happened.
    sent: bool,
}

/// The answer when a forwarded command's reply never came: a write may have been applied.
const LOST_WRITE: &str = "UNKNOWN the connection to the leader broke before it answered: the write may or may not have been applied; read the key before retrying";
const LOST_READ: &str =
    "TRYAGAIN the slot's leader could not be reached (nothing was applied); retry";

impl Conn {
    /// Queues a command for the leader `peer` and leaves a hole for its reply.
    pub(super) fn proxy(&mut self, peer: NodeId, spec: &'static CommandSpec, args: Args) {
        // Under the cluster's TLS the leader is told whose commands these are (and checks them,
        // scripts' calls too). In clear it cannot trust being told: a restricted user's script
        // is refused (its other commands were checked here).
        let tls = self.shard.node.cluster.security.tls.is_some();
        if !tls && !self.acl_open && crate::cluster::replica::propose::is_script(spec) {
            return self.out.error("NOPERM a script forwarded to another node cannot run for an ACL user with restricted permissions without the cluster's TLS; send it to its keys' leader (cluster-aware clients follow -MOVED there)");
        }
        let i = peer.slot();
        if self.links.len() <= i {
            self.links.resize_with(i + 1, Link::default);
        }
        let link = &mut self.links[i];
        if tls
            && (!self.acl_open || link.as_user.is_some())
            && link.as_user.as_deref() != Some(self.user.name.as_str())
        {
            // (Its reply is not relayed: a refusal leaves the peer refusing this user's
            // commands, which is what is relayed.)
            let name = &self.user.name;
            link.out.extend_from_slice(
                format!(
                    "*3\r\n$7\r\nCLUSTER\r\n$7\r\nACLUSER\r\n${}\r\n{name}\r\n",
                    name.len()
                )
                .as_bytes(),
            );
            link.writes.push(false);
            link.as_user = Some(name.clone());
        }
        link.out
            .extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
        for a in args.iter() {
            link.out
                .extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            link.out.extend_from_slice(a);
            link.out.extend_from_slice(b"\r\n");
        }
        link.writes.push(spec.flags & flags::WRITE != 0);
        let n = link.writes.len() - 1;
        self.hole(vec![PartRef::Proxied { peer: i, n }], Finish::Raw);
    }

    /// Exchanges the batch's forwarded commands with every peer that has some.
    pub(super) async fn exchange_proxied(&mut self) {
        let c = self.shard.node.cluster.clone();
        for i in 0..self.links.len() {
            if self.links[i].writes.is_empty() {
                continue;
            }
            let addr = c.client_addr(NodeId::of_slot(i));
            let link = &mut self.links[i];
            link.replies.clear();
            link.sent = false;
            let tls = c.security.tls.clone();
            let got = exchange(link, addr, tls.as_deref()).await;
            if got.is_err() {
                link.stream = None;
                link.as_user = None;
            }
            // Whatever did not come back: unknown for writes that went out, retryable otherwise.
            for k in link.replies.len()..link.writes.len() {
                let mut o = Out::new(self.proto);
                o.error(if link.writes[k] && link.sent {
                    LOST_WRITE
                } else {
                    LOST_READ
                });
                link.replies.push(o.buf);
            }
            link.out.clear();
            link.writes.clear();
        }
    }
}

/// Opens a link to `addr`'s client port: under the cluster's TLS when the node has it (the
/// peer's certificate must name the member at `addr`).
async fn dial(
    addr: SocketAddr,
    tls: Option<&shardline_transport::tls::ClusterTls>,
) -> std::io::Result<Dialed> {
    use shardline_transport::tls;
    let s = TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    let Some(t) = tls else {
        return Ok(Dialed::Plain(s));
    };
    let conn = t
        .client(&tls::member_name(addr))
        .map_err(std::io::Error::other)?;
    Ok(Dialed::Tls(Box::new(
        tls::TlsStream::connect(s, conn).await?,
    )))
}

async fn exchange(
    link: &mut Link,
    addr: SocketAddr,
    tls: Option<&shardline_transport::tls::ClusterTls>,
) -> std::io::Result<()> {
    if link.stream.is_none() {
        let s = monoio::time::timeout(Duration::from_secs(2), dial(addr, tls))
            .await
            .map_err(|_| std::io::Error::other("connect timed out"))??;
        link.stream = Some(s);
    }
    let s = link.stream.as_mut().expect("connected");
    link.sent = true;
    let (r, back) = s.io_write(std::mem::take(&mut link.out)).await;
    link.out = back;
    r?;
    let want = link.writes.len();
    let mut pos = 0;
    while link.replies.len() < want {
        match resp::value_len(&link.rbuf[pos..]) {
            Ok(Some(len)) => {
                let reply = &link.rbuf[pos..pos + len];
                // The leader moved again since our routing table said otherwise: a one-endpoint
                // client cannot follow MOVED, so it is told to retry.
                link.replies.push(if reply.starts_with(b"-MOVED") {
                    b"-TRYAGAIN the slot's leader changed; retry\r\n".to_vec()
                } else {
                    reply.to_vec()
                });
                pos += len;
                continue;
            }
            Ok(None) => {}
            Err(e) => return Err(std::io::Error::other(e.0)),
        }
        link.rbuf.drain(..pos);
        pos = 0;
        let chunk = Vec::with_capacity(16 * 1024);
        let (r, chunk) = s.io_read(chunk).await;
        if r? == 0 {
            return Err(std::io::Error::other("leader closed the connection"));
        }
        link.rbuf.extend_from_slice(&chunk);
    }
    link.rbuf.drain(..pos);
    Ok(())
}
