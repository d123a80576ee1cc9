//! vShard snapshot decoding from arbitrary bytes (and from bytes with a valid checksum, so the
//! decoder proper is reached): never panics, never allocates beyond the input's size; and the
//! decoder that takes the bytes in pieces (a base copy as it arrives) agrees with the whole
//! decode, piece sizes chosen by the input's first byte; a replica's blob decoder never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shardline_shards::db::Tunables;
use shardline_shards::snapshot;

fuzz_target!(|data: &[u8]| {
    let t = Tunables::default();
    let _ = snapshot::decode(data, &t);
    let Some((&piece, body)) = data.split_first() else {
        return;
    };
    // A replica's blob (membership, clock, snapshot) as a base copy or a restart feeds it.
    let mut blob = shardline_shards::replica::stream::BlobDecoder::new(body.len() as u64, &t);
    if body
        .chunks(piece as usize + 1)
        .try_for_each(|c| blob.feed(c))
        .is_ok()
    {
        let _ = blob.finish();
    }
    let mut sealed = body.to_vec();
    let crc = crc32c::crc32c(&sealed);
    sealed.extend_from_slice(&crc.to_le_bytes());
    let whole = snapshot::decode(&sealed, &t);
    let streamed = snapshot::Decoder::new(sealed.len() as u64, &t).and_then(|mut d| {
        for c in sealed.chunks(piece as usize + 1) {
            d.feed(c)?;
        }
        d.finish()
    });
    match (whole, streamed) {
        (Ok(a), Ok(b)) => {
            assert_eq!(a.id, b.id);
            assert_eq!(a.len(), b.len());
            assert_eq!(a.calvin_next, b.calvin_next);
        }
        (Err(_), Err(_)) => {}
        (a, b) => panic!(
            "whole and streamed decodes disagree: {:?} / {:?}",
            a.err(),
            b.err()
        ),
    }
});
