//! Fuzzes the RESP command parser and the reply decoder: no input may panic, and every frame the
//! parser returns must stay inside the buffer it was given.
//!
//! Run (nightly toolchain needed by cargo-fuzz):
//!   cargo install cargo-fuzz && cd fuzz && cargo +nightly fuzz run resp_parser -- -max_total_time=300
#![no_main]

use libfuzzer_sys::fuzz_target;
use shardline_transport::resp::{Limits, decode, parse_command, value_len};

fuzz_target!(|data: &[u8]| {
    let limits = Limits { max_bulk_len: 1 << 16, max_multibulk_len: 1 << 10, max_inline_len: 1 << 12 };
    let (mut spans, mut scratch) = (Vec::new(), Vec::new());
    let mut pos = 0;
    while pos < data.len() {
        match parse_command(&data[pos..], &limits, &mut spans, &mut scratch) {
            Ok(Some(f)) => {
                assert!(f.consumed > 0 && pos + f.consumed <= data.len());
                let base = if f.in_scratch { scratch.len() } else { data.len() - pos };
                assert!(spans.iter().all(|&(s, e)| s <= e && e as usize <= base));
                pos += f.consumed;
            }
            Ok(None) | Err(_) => break,
        }
    }
    let _ = value_len(data);
    let _ = decode(data);
});
