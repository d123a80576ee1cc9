//! A bulk session (issue 19, step 1; `docs/design/migration.md`): one base copy of `total`
//! bytes from a source to a target, beside the Raft bus. Sans-IO: the driver feeds messages
//! and ticks in and sends what comes out; the bytes themselves come from the source's
//! snapshot stream and go to the target's installer.
//!
//! Call order, source ([`Sender`]): [`Sender::next_chunk`] while it names a range (the window
//! has room), with the bytes of that range to [`Sender::chunk`], whose message goes out;
//! [`Sender::on_msg`] for every answer; [`Sender::tick`] now and then (a window that made no
//! progress for `resend_after` is sent again from the last acknowledged offset); after a
//! reconnect, or on another transport, [`Sender::rewind`]. It is done when the target said
//! it installed the whole.
//!
//! Target ([`Receiver`]): [`Receiver::on_msg`] for every message; a chunk that continues
//! what it holds and whose CRC32C checks is handed to the installer (`Accepted`), anything
//! else is acknowledged with what it holds, so the source resends from there; `Finish`
//! checks the running CRC32C of the whole stream, and a mismatch starts the copy again from
//! nothing (never installs). A receiver that reconnects keeps what it holds: the copy
//! resumes from it.

use shardline_transport::wire::{self, Reader, WireError};

/// A session's id (the source's, unique per source run).
pub type SessionId = u64;

/// What the two ends send each other.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BulkMsg {
    /// Source: `data` at `offset` of the copy, with its CRC32C.
    Chunk {
        session: SessionId,
        offset: u64,
        crc: u32,
        data: Vec<u8>,
    },
    /// Source: every byte was sent; `crc` is the running CRC32C of all `total` bytes.
    Finish {
        session: SessionId,
        total: u64,
        crc: u32,
    },
    /// Target: it holds the first `held` bytes (progress).
    Ack { session: SessionId, held: u64 },
    /// Target: what came does not follow the first `held` bytes it holds (a chunk before it
    /// was lost, or it failed its CRC), or it starts on a new link: send from `held`.
    Resend { session: SessionId, held: u64 },
    /// Target: the whole copy checked and is installed.
    Installed { session: SessionId },
    /// Target: the whole copy did not check: it dropped it; send it all again.
    Restart { session: SessionId },
    /// Either end: the copy is abandoned.
    Cancel { session: SessionId },
}

const CHUNK: u8 = 1;
const FINISH: u8 = 2;
const ACK: u8 = 3;
const INSTALLED: u8 = 4;
const RESTART: u8 = 5;
const CANCEL: u8 = 6;
const RESEND: u8 = 7;

impl BulkMsg {
    pub fn session(&self) -> SessionId {
        match self {
            BulkMsg::Chunk { session, .. }
            | BulkMsg::Finish { session, .. }
            | BulkMsg::Ack { session, .. }
            | BulkMsg::Resend { session, .. }
            | BulkMsg::Installed { session }
            | BulkMsg::Restart { session }
            | BulkMsg::Cancel { session } => *session,
        }
    }

    /// Its bytes: a kind byte, the session, then the kind's fields.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let kind = match self {
            BulkMsg::Chunk { .. } => CHUNK,
            BulkMsg::Finish { .. } => FINISH,
            BulkMsg::Ack { .. } => ACK,
            BulkMsg::Resend { .. } => RESEND,
            BulkMsg::Installed { .. } => INSTALLED,
            BulkMsg::Restart { .. } => RESTART,
            BulkMsg::Cancel { .. } => CANCEL,
        };
        out.push(kind);
        out.extend_from_slice(&self.session().to_le_bytes());
        match self {
            BulkMsg::Chunk {
                offset, crc, data, ..
            } => encode_chunk_tail(out, *offset, *crc, data),
            BulkMsg::Finish { total, crc, .. } => {
                out.extend_from_slice(&total.to_le_bytes());
                out.extend_from_slice(&crc.to_le_bytes());
            }
            BulkMsg::Ack { held, .. } | BulkMsg::Resend { held, .. } => {
                out.extend_from_slice(&held.to_le_bytes())
            }
            BulkMsg::Installed { .. } | BulkMsg::Restart { .. } | BulkMsg::Cancel { .. } => {}
        }
    }

    /// The message in `b` (exactly), or why not: a peer's bytes, never trusted.
    pub fn decode(b: &[u8]) -> Result<BulkMsg, WireError> {
        if let Some(c) = ChunkRef::decode(b) {
            let c = c?;
            return Ok(BulkMsg::Chunk {
                session: c.session,
                offset: c.offset,
                crc: c.crc,
                data: c.data.to_vec(),
            });
        }
        let mut r = Reader::new(b);
        let kind = r.u8()?;
        let session = r.u64()?;
        let msg = match kind {
            FINISH => BulkMsg::Finish {
                session,
                total: r.u64()?,
                crc: r.u32()?,
            },
            ACK => BulkMsg::Ack {
                session,
                held: r.u64()?,
            },
            RESEND => BulkMsg::Resend {
                session,
                held: r.u64()?,
            },
            INSTALLED => BulkMsg::Installed { session },
            RESTART => BulkMsg::Restart { session },
            CANCEL => BulkMsg::Cancel { session },
            _ => return Err(r.error(wire::WireErrorKind::Flag(kind))),
        };
        r.finish()?;
        Ok(msg)
    }
}

/// A chunk message's bytes, its data borrowed from them (what a target copies straight into
/// the copy it builds).
#[derive(Debug, PartialEq, Eq)]
pub struct ChunkRef<'a> {
    pub session: SessionId,
    pub offset: u64,
    pub crc: u32,
    pub data: &'a [u8],
}

impl<'a> ChunkRef<'a> {
    /// `None` if `b` is not a chunk message; else the chunk (exactly `b`), or why not.
    pub fn decode(b: &'a [u8]) -> Option<Result<ChunkRef<'a>, WireError>> {
        if b.first() != Some(&CHUNK) {
            return None;
        }
        let mut r = Reader::new(b);
        let chunk = (|| {
            r.u8()?;
            let c = ChunkRef {
                session: r.u64()?,
                offset: r.u64()?,
                crc: r.u32()?,
                data: r.bytes_u32()?,
            };
            r.finish()?;
            Ok(c)
        })();
        Some(chunk)
    }

    /// Appends the head of a chunk message of `len` bytes at `offset` of `session`, its CRC
    /// left zero: where the CRC is (the caller writes the data after the head, then the CRC).
    pub fn encode_head(out: &mut Vec<u8>, session: SessionId, offset: u64, len: u32) -> usize {
        out.push(CHUNK);
        out.extend_from_slice(&session.to_le_bytes());
        out.extend_from_slice(&offset.to_le_bytes());
        let crc_at = out.len();
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&len.to_le_bytes());
        crc_at
    }

    /// Appends the chunk message for `data` at `offset` (with its `crc`) of `session`: the
    /// bytes `BulkMsg::Chunk` encodes to, without the message.
    pub fn encode(out: &mut Vec<u8>, session: SessionId, offset: u64, crc: u32, data: &[u8]) {
        out.push(CHUNK);
        out.extend_from_slice(&session.to_le_bytes());
        encode_chunk_tail(out, offset, crc, data);
    }
}

fn encode_chunk_tail(out: &mut Vec<u8>, offset: u64, crc: u32, data: &[u8]) {
    out.extend_from_slice(&offset.to_le_bytes());
    out.extend_from_slice(&crc.to_le_bytes());
    wire::put_bytes_u32(out, data);
}

/// A session's limits.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Bytes per chunk.
    pub chunk_bytes: u64,
    /// Bytes sent and not acknowledged, at most.
    pub window_bytes: u64,
    /// A window with no acknowledged progress for this long is sent again (ms).
    pub resend_after_ms: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            chunk_bytes: 1 << 20,
            window_bytes: 8 << 20,
            resend_after_ms: 2_000,
        }
    }
}

/// Where a source's session is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SenderState {
    /// Sending (or waiting for acknowledgements).
    Copying,
    /// Every byte acknowledged and `Finish` sent: waiting for the target's verdict.
    Finishing,
    /// The target installed the whole copy.
    Done,
    /// Cancelled by either end.
    Cancelled,
}

/// The source's end of a session.
#[derive(Debug)]
pub struct Sender {
    pub id: SessionId,
    total: u64,
    limits: Limits,
    /// Bytes the target holds (acknowledged).
    acked: u64,
    /// The next byte to send.
    next: u64,
    /// The running CRC32C of bytes `..hashed`, in order (a resent range is not hashed again).
    crc: u32,
    hashed: u64,
    /// When the acknowledged offset last moved (or the window was last sent again).
    progress_ms: u64,
    /// The offset it last went back to on a `Resend` (those that follow, for chunks of the
    /// same lost window, are not acted on again).
    rewound_at: Option<u64>,
    state: SenderState,
    /// Times the window was sent again, and times the whole copy restarted (statistics).
    pub resends: u64,
    pub restarts: u64,
}

impl Sender {
    pub fn new(id: SessionId, total: u64, limits: Limits, now_ms: u64) -> Sender {
        Sender {
            id,
            total,
            limits,
            acked: 0,
            next: 0,
            crc: 0,
            hashed: 0,
            progress_ms: now_ms,
            rewound_at: None,
            state: SenderState::Copying,
            resends: 0,
            restarts: 0,
        }
    }

    pub fn state(&self) -> SenderState {
        self.state
    }

    /// Bytes the target holds.
    pub fn acked(&self) -> u64 {
        self.acked
    }

    /// The next range to send, `(offset, len)`, if the window has room: the driver reads
    /// those bytes and passes them to `chunk`.
    pub fn next_chunk(&self) -> Option<(u64, u64)> {
        if self.state != SenderState::Copying
            || self.next >= self.total
            || self.next - self.acked >= self.limits.window_bytes
        {
            return None;
        }
        Some((
            self.next,
            self.limits.chunk_bytes.min(self.total - self.next),
        ))
    }

    /// The message carrying `data`, the bytes of the range `next_chunk` named.
    pub fn chunk(&mut self, data: Vec<u8>) -> BulkMsg {
        let (offset, crc) = self.chunk_ref(&data);
        BulkMsg::Chunk {
            session: self.id,
            offset,
            crc,
            data,
        }
    }

    /// `chunk` without the message: the offset and CRC32C of `data` (the bytes of the range
    /// `next_chunk` named), for a driver that writes the chunk's frame itself (no copy).
    pub fn chunk_ref(&mut self, data: &[u8]) -> (u64, u32) {
        debug_assert_eq!(
            self.next_chunk().map(|(_, len)| len),
            Some(data.len() as u64),
            "the range next_chunk named"
        );
        let offset = self.next;
        let crc = crc32c::crc32c(data);
        if offset == self.hashed {
            // The whole copy's CRC from the chunk's, without a second pass over its bytes.
            self.crc = crc32c::crc32c_combine(self.crc, crc, data.len());
            self.hashed += data.len() as u64;
        }
        self.next += data.len() as u64;
        (offset, crc)
    }

    /// `Finish`, once every byte is acknowledged (sent again by `tick` until answered).
    fn finish(&mut self) -> Option<BulkMsg> {
        if self.state == SenderState::Copying && self.acked == self.total {
            debug_assert_eq!(self.hashed, self.total, "every byte hashed once, in order");
            self.state = SenderState::Finishing;
            return Some(self.finish_msg());
        }
        None
    }

    fn finish_msg(&self) -> BulkMsg {
        BulkMsg::Finish {
            session: self.id,
            total: self.total,
            crc: self.crc,
        }
    }

    /// A message from the target; what to send back, if anything.
    pub fn on_msg(&mut self, msg: &BulkMsg, now_ms: u64) -> Option<BulkMsg> {
        if msg.session() != self.id
            || matches!(self.state, SenderState::Done | SenderState::Cancelled)
        {
            return None;
        }
        match *msg {
            BulkMsg::Ack { held, .. } | BulkMsg::Resend { held, .. } => {
                if held > self.total || held > self.next.max(self.acked) {
                    return None; // no target of ours says so
                }
                if held > self.acked {
                    self.acked = held;
                    self.progress_ms = now_ms;
                }
                if let BulkMsg::Resend { .. } = msg
                    && self.state == SenderState::Copying
                    && self.rewound_at != Some(held)
                    && self.next > held
                {
                    // What followed `held` was lost or damaged: from there again (once per
                    // point: the chunks of the same window say the same). A `Resend` of
                    // where the sender stands (a target's first answer) rewinds nothing and
                    // does not use up the point: found by a copy whose first chunk was
                    // damaged right after that answer, sent again only at the window's
                    // timeout.
                    self.rewound_at = Some(held);
                    self.resends += 1;
                    self.next = held.max(self.acked);
                }
                self.finish()
            }
            BulkMsg::Installed { .. } if self.state == SenderState::Finishing => {
                self.state = SenderState::Done;
                None
            }
            BulkMsg::Restart { .. } => {
                self.restarts += 1;
                self.acked = 0;
                self.next = 0;
                self.crc = 0;
                self.hashed = 0;
                self.progress_ms = now_ms;
                self.rewound_at = None;
                self.state = SenderState::Copying;
                None
            }
            BulkMsg::Cancel { .. } => {
                self.state = SenderState::Cancelled;
                None
            }
            _ => None,
        }
    }

    /// Time passed: a window that made no progress for `resend_after_ms` goes again from the
    /// acknowledged offset (lost chunks or acknowledgements); an unanswered `Finish` again.
    pub fn tick(&mut self, now_ms: u64) -> Option<BulkMsg> {
        if now_ms.saturating_sub(self.progress_ms) < self.limits.resend_after_ms {
            return None;
        }
        self.progress_ms = now_ms;
        match self.state {
            SenderState::Copying if self.next > self.acked => {
                self.resends += 1;
                self.next = self.acked;
                None
            }
            SenderState::Finishing => Some(self.finish_msg()),
            _ => None,
        }
    }

    /// The link broke (or the copy moves to another transport): what was not acknowledged
    /// goes again; the target's first `Ack` on the new link says where it stands.
    pub fn rewind(&mut self) {
        if self.state == SenderState::Copying {
            self.next = self.acked;
        }
    }

    /// Continues from what the target says it holds on a new connection, `held` bytes whose
    /// CRC32C is `crc_of_held`: more than this sender knew (an earlier sender of the same
    /// session, gone with a restart of the source's side) or less (the target restarted and
    /// lost what it had acknowledged). A copy that was finishing goes back to copying.
    pub fn resume(&mut self, held: u64, crc_of_held: u32) {
        if matches!(self.state, SenderState::Copying | SenderState::Finishing) && held <= self.total
        {
            self.state = SenderState::Copying;
            self.acked = held;
            self.next = held;
            self.hashed = held;
            self.crc = crc_of_held;
            self.rewound_at = None;
        }
    }

    /// Abandons the copy: the message to tell the target.
    pub fn cancel(&mut self) -> BulkMsg {
        self.state = SenderState::Cancelled;
        BulkMsg::Cancel { session: self.id }
    }
}

/// What the target's installer is to do.
#[derive(Debug, PartialEq, Eq)]
pub enum Received {
    /// Append these bytes (at the offset the receiver held before) to the copy being built.
    Accepted(Vec<u8>),
    /// The whole copy checked: install it.
    Install,
    /// Drop what was built: the copy starts again (a whole-copy mismatch) or was cancelled.
    Drop,
    Nothing,
}

/// The target's end of a session.
#[derive(Debug)]
pub struct Receiver {
    pub id: SessionId,
    total: u64,
    held: u64,
    crc: u32,
    installed: bool,
    cancelled: bool,
    /// Chunks refused for a bad CRC, and whole copies refused (statistics).
    pub bad_chunks: u64,
    pub bad_copies: u64,
}

impl Receiver {
    pub fn new(id: SessionId, total: u64) -> Receiver {
        Receiver {
            id,
            total,
            held: 0,
            crc: 0,
            installed: false,
            cancelled: false,
            bad_chunks: 0,
            bad_copies: 0,
        }
    }

    /// Bytes held.
    pub fn held(&self) -> u64 {
        self.held
    }

    /// The CRC32C of the bytes held (of the whole copy once installed).
    pub fn crc(&self) -> u32 {
        self.crc
    }

    pub fn is_installed(&self) -> bool {
        self.installed
    }

    /// What to send first on a new link (the source resumes from it).
    pub fn hello(&self) -> BulkMsg {
        BulkMsg::Resend {
            session: self.id,
            held: self.held,
        }
    }

    /// A message from the source: what the installer does, and what to answer.
    pub fn on_msg(&mut self, msg: BulkMsg) -> (Received, Option<BulkMsg>) {
        match msg {
            BulkMsg::Chunk {
                session,
                offset,
                crc,
                data,
            } => {
                let (taken, answer) = self.on_chunk(session, offset, crc, &data);
                let r = if taken {
                    Received::Accepted(data)
                } else {
                    Received::Nothing
                };
                (r, answer)
            }
            msg => self.on_control(msg),
        }
    }

    /// A chunk, borrowed: whether the installer is to append `data` (at the offset held
    /// before), and what to answer.
    pub fn on_chunk(
        &mut self,
        session: SessionId,
        offset: u64,
        crc: u32,
        data: &[u8],
    ) -> (bool, Option<BulkMsg>) {
        let id = self.id;
        if session != id || self.cancelled {
            return (false, None);
        }
        let ack = |held| Some(BulkMsg::Ack { session: id, held });
        let resend = |held| Some(BulkMsg::Resend { session: id, held });
        let fits = offset
            .checked_add(data.len() as u64)
            .is_some_and(|end| end <= self.total);
        if self.installed || offset < self.held {
            // A duplicate: say what is held.
            return (false, ack(self.held));
        }
        if offset > self.held || !fits || data.is_empty() {
            // A gap (what came before it was lost) or a range outside the copy.
            return (false, resend(self.held));
        }
        let got = crc32c::crc32c(data);
        if got != crc {
            self.bad_chunks += 1;
            return (false, resend(self.held));
        }
        self.crc = crc32c::crc32c_combine(self.crc, got, data.len());
        self.held += data.len() as u64;
        (true, ack(self.held))
    }

    /// Any message but a chunk (a chunk here is ignored).
    pub fn on_control(&mut self, msg: BulkMsg) -> (Received, Option<BulkMsg>) {
        let id = self.id;
        if msg.session() != id || self.cancelled {
            return (Received::Nothing, None);
        }
        match msg {
            BulkMsg::Finish { total, crc, .. } => {
                if self.installed {
                    return (Received::Nothing, Some(BulkMsg::Installed { session: id }));
                }
                if self.held != self.total {
                    return (
                        Received::Nothing,
                        Some(BulkMsg::Ack {
                            session: id,
                            held: self.held,
                        }),
                    );
                }
                if total != self.total || crc != self.crc {
                    self.bad_copies += 1;
                    self.held = 0;
                    self.crc = 0;
                    return (Received::Drop, Some(BulkMsg::Restart { session: id }));
                }
                self.installed = true;
                (Received::Install, Some(BulkMsg::Installed { session: id }))
            }
            BulkMsg::Cancel { .. } => {
                self.cancelled = true;
                let r = if self.installed {
                    Received::Nothing
                } else {
                    Received::Drop
                };
                (r, None)
            }
            _ => (Received::Nothing, None),
        }
    }
}

#[cfg(test)]
mod tests;
