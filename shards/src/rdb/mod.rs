//! Redis's serialization of one value (DUMP and RESTORE): an RDB value, the RDB version and a
//! CRC64 of both. `save` writes what Redis 7.0 loads; `load` reads every encoding Redis 7.0 and
//! 7.2 write, trusting nothing (see docs/design/commands.md, "DUMP and RESTORE").

pub mod listpack;
mod load;
mod save;

pub use load::{load, load_functions};
pub use save::{dump, dump_functions};

/// The RDB version DUMP writes (Redis 7.0's).
pub const RDB_VERSION: u16 = 10;
/// The newest RDB version RESTORE reads (Redis 7.2's).
pub const RDB_VERSION_MAX: u16 = 11;

/// The largest string a payload may decompress to (Redis's default `proto-max-bulk-len`).
const MAX_STRING: u64 = 512 << 20;

// Value types (rdb.h).
const T_STRING: u8 = 0;
const T_LIST: u8 = 1;
const T_SET: u8 = 2;
const T_ZSET: u8 = 3;
const T_HASH: u8 = 4;
const T_ZSET_2: u8 = 5;
const T_HASH_ZIPMAP: u8 = 9;
const T_LIST_ZIPLIST: u8 = 10;
const T_SET_INTSET: u8 = 11;
const T_ZSET_ZIPLIST: u8 = 12;
const T_HASH_ZIPLIST: u8 = 13;
const T_LIST_QUICKLIST: u8 = 14;
const T_STREAM_LISTPACKS: u8 = 15;
const T_HASH_LISTPACK: u8 = 16;
const T_ZSET_LISTPACK: u8 = 17;
const T_LIST_QUICKLIST_2: u8 = 18;
const T_STREAM_LISTPACKS_2: u8 = 19;
const T_SET_LISTPACK: u8 = 20;
const T_STREAM_LISTPACKS_3: u8 = 21;

/// A function library's record (Redis 7.0's `RDB_OPCODE_FUNCTION2`).
const OPCODE_FUNCTION2: u8 = 245;

// Length encodings: the top two bits of the first byte.
const LEN_6BIT: u8 = 0;
const LEN_14BIT: u8 = 1;
const LEN_32BIT: u8 = 0x80;
const LEN_64BIT: u8 = 0x81;
const LEN_ENCODED: u8 = 3;
// Special string encodings (after `LEN_ENCODED`).
const ENC_INT8: u64 = 0;
const ENC_INT16: u64 = 1;
const ENC_INT32: u64 = 2;
const ENC_LZF: u64 = 3;

/// Why a payload was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum PayloadError {
    /// Too short, a newer RDB version, or a checksum that does not match.
    VersionOrChecksum,
    /// The value does not decode (`reason` says where; clients see "Bad data format").
    BadFormat(&'static str),
}

/// The CRC64 Redis's DUMP uses: Jones polynomial, reflected, initial value 0, no final XOR.
pub fn crc64(data: &[u8]) -> u64 {
    const TABLE: [u64; 256] = {
        let mut t = [0u64; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u64;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 == 1 {
                    (c >> 1) ^ 0x95ac_9329_ac4b_c9b5
                } else {
                    c >> 1
                };
                k += 1;
            }
            t[i] = c;
            i += 1;
        }
        t
    };
    data.iter().fold(0u64, |crc, &b| {
        TABLE[((crc ^ b as u64) & 0xff) as usize] ^ (crc >> 8)
    })
}

/// The value bytes of a payload whose version and checksum are good (Redis's
/// `verifyDumpPayload`).
pub fn verify(payload: &[u8]) -> Result<&[u8], PayloadError> {
    if payload.len() < 10 {
        return Err(PayloadError::VersionOrChecksum);
    }
    let (body, crc) = payload.split_at(payload.len() - 8);
    let version = u16::from_le_bytes([body[body.len() - 2], body[body.len() - 1]]);
    if version > RDB_VERSION_MAX {
        return Err(PayloadError::VersionOrChecksum);
    }
    if crc64(body).to_le_bytes() != crc {
        return Err(PayloadError::VersionOrChecksum);
    }
    Ok(&body[..body.len() - 2])
}

/// Appends an RDB length.
fn put_len(w: &mut Vec<u8>, n: u64) {
    if n < 1 << 6 {
        w.push(n as u8);
    } else if n < 1 << 14 {
        w.push((LEN_14BIT << 6) | (n >> 8) as u8);
        w.push(n as u8);
    } else if n <= u32::MAX as u64 {
        w.push(LEN_32BIT);
        w.extend_from_slice(&(n as u32).to_be_bytes());
    } else {
        w.push(LEN_64BIT);
        w.extend_from_slice(&n.to_be_bytes());
    }
}

#[cfg(test)]
mod tests;
