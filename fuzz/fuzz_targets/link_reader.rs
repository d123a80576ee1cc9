//! The node-to-node link's readers from arbitrary bytes cut at arbitrary points: the handshake
//! reader (either end) and the frame reader never panic, never hand out a frame they were not
//! given whole, and give the same batches however the bytes are cut.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shardline_transport::link::{Frames, HandshakeReader};

/// The batches `frames` holds now (payload lengths), or where it stopped with an error.
fn drain(frames: &mut Frames, out: &mut Vec<Vec<usize>>) -> bool {
    loop {
        match frames.next_batch() {
            Ok(Some(msgs)) => out.push(msgs.iter().map(|m| m.payload.len()).collect()),
            Ok(None) => return true,
            Err(_) => return false,
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&cut, data)) = data.split_first() else { return };
    let cut = (cut as usize).min(data.len());
    let _ = HandshakeReader::default().hello(data);
    let mut h = HandshakeReader::default();
    if let Ok(None) = h.answer(&data[..cut]) {
        let _ = h.answer(&data[cut..]);
    }
    // Whole, then in two pieces: the same batches until the first error.
    let mut whole = Vec::new();
    let ok_whole = drain(&mut Frames::new(1 << 20, data.to_vec()), &mut whole);
    let mut split = Vec::new();
    let mut f = Frames::new(1 << 20, data[..cut].to_vec());
    let ok_split = drain(&mut f, &mut split) && {
        f.push(&data[cut..]);
        drain(&mut f, &mut split)
    };
    assert_eq!(ok_whole, ok_split);
    assert_eq!(whole, split);
});
