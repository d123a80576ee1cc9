//! [`Verbs`] on an RDMA device through the `ibverbs` crate (feature `rdma`).
//!
//! NOT RUN ON HARDWARE: the machines this was written on have no RDMA device and no RDMA in
//! their kernel (no soft-RoCE either). It is built and linted in CI with the feature; what
//! is above it (the rings, the lane-open exchange, the lane driver) runs in tests over the
//! fake fabric.
//!
//! Per shard thread, the first device's context, one protection domain and one completion
//! queue, made on the thread's first RDMA lane and kept for the process's life (the crate's
//! types borrow one another, so they live in leaked boxes: once per thread, not per lane).
//! Per lane, a reliable-connected queue pair on that completion queue and one registered
//! region cut into the lane's buffers. Completions of the thread's other lanes met while
//! polling are kept for them, by queue pair number.

use super::{Completion, Endpoint, Provider, Verbs};
use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::rc::Rc;

/// Completion queue entries per shard thread (every lane's sends and receives).
const CQ_ENTRIES: i32 = 8192;
/// `IBV_GID_TYPE_ROCE_V2` (the crate does not re-export the constant, only its type).
const IBV_GID_TYPE_ROCE_V2: ibverbs::ibv_gid_type = 2;
/// A work request's id: the buffer, with this bit for receives.
const RECV_BIT: u64 = 1 << 63;

struct Device {
    pd: &'static ibverbs::ProtectionDomain<'static>,
    cq: &'static ibverbs::CompletionQueue<'static>,
    /// The GID table entry queue pairs route by (RoCE v2 if the port has one).
    gid_index: Option<u32>,
    stash: RefCell<HashMap<u32, Vec<Completion>>>,
}

thread_local! {
    static DEVICE: RefCell<Option<Rc<Device>>> = const { RefCell::new(None) };
}

fn device() -> io::Result<Rc<Device>> {
    if let Some(d) = DEVICE.with(|d| d.borrow().clone()) {
        return Ok(d);
    }
    let list = ibverbs::devices()?;
    let dev = list
        .get(0)
        .ok_or_else(|| io::Error::other("no RDMA device"))?;
    let ctx: &'static ibverbs::Context = Box::leak(Box::new(dev.open()?));
    let pd: &'static ibverbs::ProtectionDomain<'static> = Box::leak(Box::new(ctx.alloc_pd()?));
    let cq: &'static ibverbs::CompletionQueue<'static> =
        Box::leak(Box::new(ctx.create_cq(CQ_ENTRIES, 0)?));
    let table = ctx.gid_table();
    let gid_index = table
        .iter()
        .find(|e| e.gid_type == IBV_GID_TYPE_ROCE_V2)
        .or(table.first())
        .map(|e| e.gid_index);
    let d = Rc::new(Device {
        pd,
        cq,
        gid_index,
        stash: RefCell::default(),
    });
    DEVICE.with(|slot| *slot.borrow_mut() = Some(d.clone()));
    Ok(d)
}

/// The node's RDMA: the first device `ibv_get_device_list` names.
pub struct IbProvider {
    name: String,
}

impl IbProvider {
    /// The device, or why there is none (on a kernel without RDMA the list itself fails:
    /// `Function not implemented`).
    pub fn detect() -> Result<IbProvider, String> {
        let list = ibverbs::devices().map_err(|e| format!("ibv_get_device_list failed: {e}"))?;
        let dev = list.get(0).ok_or("no RDMA device")?;
        let name = dev
            .name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "an unnamed device".into());
        Ok(IbProvider { name })
    }
}

impl Provider for IbProvider {
    fn open(&self, sends: usize, recvs: usize, bytes: usize) -> io::Result<Box<dyn Verbs>> {
        let dev = device()?;
        let mut b = dev
            .pd
            .create_qp(dev.cq, dev.cq, ibverbs::ibv_qp_type::IBV_QPT_RC);
        b.set_max_send_wr(sends as u32)
            .set_max_recv_wr(recvs as u32)
            // A send waits (the device retries) until the peer posts a receive: the rings'
            // flow control.
            .set_rnr_retry(7);
        if let Some(i) = dev.gid_index {
            b.set_gid_index(i);
        }
        let prepared = b.build()?;
        let endpoint = prepared.endpoint();
        let mr = dev.pd.allocate::<u8>((sends + recvs) * bytes)?;
        Ok(Box::new(IbVerbs {
            dev,
            prepared: Some(prepared),
            qp: None,
            endpoint,
            mr,
            sends,
            buffers: sends + recvs,
            bytes,
            polled: vec![ibverbs::ibv_wc::default(); 64],
        }))
    }

    fn name(&self) -> String {
        format!("ibverbs ({})", self.name)
    }
}

struct IbVerbs {
    dev: Rc<Device>,
    prepared: Option<ibverbs::PreparedQueuePair<'static>>,
    qp: Option<ibverbs::QueuePair<'static>>,
    endpoint: ibverbs::QueuePairEndpoint,
    mr: ibverbs::MemoryRegion<u8>,
    sends: usize,
    buffers: usize,
    bytes: usize,
    polled: Vec<ibverbs::ibv_wc>,
}

impl IbVerbs {
    fn range(&self, i: usize, len: usize) -> std::ops::Range<usize> {
        i * self.bytes..i * self.bytes + len
    }

    fn qp(&mut self) -> io::Result<&mut ibverbs::QueuePair<'static>> {
        self.qp
            .as_mut()
            .ok_or_else(|| io::Error::other("the queue pair is not connected"))
    }
}

fn gid_bytes(g: &ibverbs::Gid) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&g.subnet_prefix().to_be_bytes());
    b[8..].copy_from_slice(&g.interface_id().to_be_bytes());
    b
}

impl Verbs for IbVerbs {
    fn endpoint(&self) -> Endpoint {
        Endpoint {
            qpn: self.endpoint.num,
            lid: self.endpoint.lid,
            gid: self.endpoint.gid.as_ref().map(gid_bytes),
        }
    }

    fn connect(&mut self, peer: &Endpoint) -> io::Result<()> {
        let prepared = self
            .prepared
            .take()
            .ok_or_else(|| io::Error::other("the queue pair is connected already"))?;
        let gid = peer.gid.map(|raw| {
            let mut g = ibverbs::Gid::default();
            // Writing a union's field is safe; the GID is its 16 raw bytes.
            g.as_mut().raw = raw;
            g
        });
        let remote = ibverbs::QueuePairEndpoint {
            num: peer.qpn,
            lid: peer.lid,
            gid,
        };
        self.qp = Some(prepared.handshake(remote)?);
        Ok(())
    }

    fn buffers(&self) -> usize {
        self.buffers
    }

    fn sends(&self) -> usize {
        self.sends
    }

    fn buffer_bytes(&self) -> usize {
        self.bytes
    }

    fn fill(&mut self, i: usize, data: &[u8]) {
        let r = self.range(i, data.len());
        self.mr[r].copy_from_slice(data);
    }

    fn drain(&self, i: usize, len: usize, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.mr[self.range(i, len)]);
    }

    fn post_send(&mut self, i: usize, len: usize) -> io::Result<()> {
        let r = self.range(i, len);
        let mr = &mut self.mr as *mut ibverbs::MemoryRegion<u8>;
        let qp = self.qp()?;
        // SAFETY: buffer `i` is not written again until this send's completion is polled
        // (`Stream` keeps it off its free list until then), and the region outlives the queue
        // pair's requests (dropping the lane drops the queue pair first: field order).
        unsafe { qp.post_send(&mut *mr, r, i as u64) }
    }

    fn post_recv(&mut self, i: usize) -> io::Result<()> {
        let r = self.range(i, self.bytes);
        let mr = &mut self.mr as *mut ibverbs::MemoryRegion<u8>;
        let qp = self.qp()?;
        // SAFETY: as for sends: buffer `i` is read only after this receive completed.
        unsafe { qp.post_receive(&mut *mr, r, i as u64 | RECV_BIT) }
    }

    fn poll(&mut self, out: &mut Vec<Completion>) -> io::Result<()> {
        let me = self.endpoint.num;
        if let Some(kept) = self.dev.stash.borrow_mut().remove(&me) {
            out.extend(kept);
        }
        loop {
            let done = self.dev.cq.poll(&mut self.polled)?;
            let n = done.len();
            for wc in done.iter() {
                let id = wc.wr_id();
                let c = Completion {
                    buffer: (id & !RECV_BIT) as usize,
                    recv: id & RECV_BIT != 0,
                    ok: wc.is_valid(),
                    len: if wc.is_valid() { wc.len() } else { 0 },
                };
                if wc.qp_num == me {
                    out.push(c);
                } else {
                    self.dev
                        .stash
                        .borrow_mut()
                        .entry(wc.qp_num)
                        .or_default()
                        .push(c);
                }
            }
            if n < self.polled.len() {
                return Ok(());
            }
        }
    }
}

impl Drop for IbVerbs {
    fn drop(&mut self) {
        // Completions still kept for this queue pair are of no one now.
        self.dev.stash.borrow_mut().remove(&self.endpoint.num);
        // The queue pair goes before the region its requests point into.
        self.qp = None;
        self.prepared = None;
    }
}
