//! The rings over the fake fabric.

use super::fake::Fabric;
use super::*;

fn pair(fabric: &Fabric, sends: usize, recvs: usize, bytes: usize) -> (Stream, Stream) {
    let mut a = Stream::new(fabric.open(sends, recvs, bytes).unwrap());
    let mut b = Stream::new(fabric.open(sends, recvs, bytes).unwrap());
    let (ea, eb) = (a.endpoint(), b.endpoint());
    a.connect(&eb).unwrap();
    b.connect(&ea).unwrap();
    (a, b)
}

/// A small deterministic generator (the tests' own: no dependency).
fn next(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

#[test]
fn bytes_arrive_whole_and_in_order_whatever_the_rings_and_the_pieces() {
    for (seed, sends, recvs, bytes) in [
        (1u64, 1, 1, 7),
        (2, 4, 2, 64),
        (3, 2, 8, 1000),
        (4, 8, 8, 4096),
    ] {
        let fabric = Fabric::new();
        let (mut a, mut b) = pair(&fabric, sends, recvs, bytes);
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let data: Vec<u8> = (0..200_000).map(|_| next(&mut x) as u8).collect();
        let (mut sent, mut got) = (0, Vec::new());
        let mut rounds = 0;
        while got.len() < data.len() {
            rounds += 1;
            assert!(
                rounds < 1_000_000,
                "stuck at {} of {}",
                got.len(),
                data.len()
            );
            // Pieces of any size, as a lane's writer hands them over.
            let piece = 1 + (next(&mut x) % 20_000) as usize;
            let end = data.len().min(sent + piece);
            sent += a.send(&data[sent..end]).unwrap();
            assert!(a.in_flight() <= sends);
            // The receiver takes its bytes only now and then: the sender waits for buffers.
            if next(&mut x).is_multiple_of(3) {
                b.poll().unwrap();
                b.recv(&mut got).unwrap();
            }
            a.poll().unwrap();
        }
        assert_eq!(got, data, "seed {seed}");
        assert_eq!(
            (a.bytes_sent, b.bytes_received),
            (data.len() as u64, data.len() as u64)
        );
        a.poll().unwrap();
        assert_eq!(a.in_flight(), 0);
    }
}

#[test]
fn a_queue_pair_in_error_fails_both_ends_for_good() {
    let fabric = Fabric::new();
    let (mut a, mut b) = pair(&fabric, 4, 4, 100);
    assert_eq!(a.send(&[1; 250]).unwrap(), 250);
    b.poll().unwrap();
    let mut got = Vec::new();
    b.recv(&mut got).unwrap();
    assert_eq!(got, [1; 250]);
    a.poll().unwrap();
    fabric.fail_in(1);
    a.send(&[2; 400]).unwrap();
    let e = a.poll().unwrap_err();
    assert!(e.contains("failed"), "{e}");
    assert!(b.poll().is_err());
    // For good: nothing more goes or comes (a send posted on a queue pair in error is
    // flushed, as on hardware).
    assert!(a.send(&[3; 10]).is_err());
    assert!(a.poll().is_err());
    assert!(!a.can_send());
    // The one message before the failure arrived; nothing after it.
    b.recv(&mut got).unwrap();
    assert_eq!(got.len(), 350);
    // A queue pair dropped (its lane ended) fails its peer too.
    let (a, mut b) = pair(&fabric, 2, 2, 10);
    drop(a);
    assert!(b.poll().is_err());
}

#[test]
fn connecting_to_nothing_fails_and_a_damaged_message_shows_in_its_bytes() {
    let fabric = Fabric::new();
    let mut a = Stream::new(fabric.open(1, 1, 10).unwrap());
    let e = a
        .connect(&Endpoint {
            qpn: 999,
            lid: 1,
            gid: None,
        })
        .unwrap_err();
    assert!(e.contains("connecting"), "{e}");
    // The fake damages what a test asks it to (RC's own check would drop it on hardware;
    // the hub's CRCs are what catch it here).
    let (mut a, mut b) = pair(&fabric, 2, 2, 10);
    fabric.damage_in(0);
    a.send(&[0; 10]).unwrap();
    b.poll().unwrap();
    let mut got = Vec::new();
    b.recv(&mut got).unwrap();
    assert_ne!(got, [0; 10]);
}

#[cfg(not(feature = "rdma"))]
#[test]
fn without_the_feature_no_rdma_is_detected() {
    let e = detect().err().unwrap();
    assert!(e.contains("rdma cargo feature"), "{e}");
}

#[cfg(feature = "rdma")]
#[test]
fn with_the_feature_detection_names_the_device_or_says_why_there_is_none() {
    // On these machines (no RDMA in the kernel) the device list itself fails; on one with a
    // device, its name.
    match detect() {
        Ok(p) => assert!(p.name().starts_with("ibverbs ("), "{}", p.name()),
        Err(e) => assert!(
            e.contains("ibv_get_device_list failed") || e.contains("no RDMA device"),
            "{e}"
        ),
    }
}
