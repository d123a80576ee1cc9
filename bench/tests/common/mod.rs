//! An in-test RESP server for the load generator's tests: parses pipelined commands and answers
//! each with what `reply` returns for its arguments.

use shardline_transport::resp::{Limits, parse_command};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;

/// Serves on a free loopback port; returns the port.
pub fn serve(reply: impl Fn(&[Vec<u8>], u16) -> Vec<u8> + Send + Sync + 'static) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let reply = Arc::new(reply);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let reply = reply.clone();
            std::thread::spawn(move || {
                let (mut buf, mut spans, mut scratch) = (Vec::new(), Vec::new(), Vec::new());
                let mut chunk = [0u8; 16 * 1024];
                loop {
                    let n = match stream.read(&mut chunk) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    buf.extend_from_slice(&chunk[..n]);
                    let mut out = Vec::new();
                    let mut pos = 0;
                    while let Ok(Some(f)) =
                        parse_command(&buf[pos..], &Limits::default(), &mut spans, &mut scratch)
                    {
                        let args: Vec<Vec<u8>> = spans
                            .iter()
                            .map(|&(s, e)| buf[pos + s as usize..pos + e as usize].to_vec())
                            .collect();
                        out.extend_from_slice(&reply(&args, port));
                        pos += f.consumed;
                    }
                    buf.drain(..pos);
                    if stream.write_all(&out).is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}
