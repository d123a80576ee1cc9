//! The lane-open record: round trips, the carrier both ends choose, damaged records refused.

use super::*;

fn records() -> [LaneOpen; 5] {
    let tcp = LaneOpen {
        transports: TCP,
        ..LaneOpen::default()
    };
    let rdma = LaneOpen {
        transports: TCP | RDMA,
        rdma: Some(Endpoint {
            qpn: 0x00ab_cdef,
            lid: 7,
            gid: Some([3; 16]),
        }),
        quic: None,
    };
    let no_gid = LaneOpen {
        rdma: Some(Endpoint {
            gid: None,
            ..rdma.rdma.unwrap()
        }),
        ..rdma
    };
    let quic = LaneOpen {
        transports: TCP | QUIC,
        rdma: None,
        quic: Some(QuicAt {
            port: 4242,
            fingerprint: [0xa5; 32],
        }),
    };
    let all = LaneOpen {
        transports: TCP | RDMA | QUIC,
        quic: quic.quic,
        ..rdma
    };
    [tcp, rdma, no_gid, quic, all]
}

#[test]
fn lane_open_records_round_trip_and_damaged_ones_are_refused() {
    let [tcp, rdma, no_gid, quic, all] = records();
    for r in records() {
        let b = r.encode();
        assert_eq!(LaneOpen::decode(&b).unwrap(), r);
        for cut in 0..b.len() {
            assert!(LaneOpen::decode(&b[..cut]).is_err());
        }
        let mut long = b.to_vec();
        long.push(0);
        assert!(LaneOpen::decode(&long).is_err());
    }
    let mut b = rdma.encode();
    b[0] = b'X';
    assert!(LaneOpen::decode(&b).unwrap_err().contains("magic"));
    let mut b = rdma.encode();
    b[3] = 0x80;
    assert!(LaneOpen::decode(&b).is_err());
    let mut b = rdma.encode();
    b[2] = TCP; // RDMA not offered, but a queue pair named
    assert!(LaneOpen::decode(&b).is_err());
    let mut b = tcp.encode();
    b[5] = 1; // a queue pair number where none is named
    assert!(LaneOpen::decode(&b).unwrap_err().contains("does not use"));
    let mut b = no_gid.encode();
    b[20] = 1; // a GID where none is named
    assert!(LaneOpen::decode(&b).is_err());
    let mut b = tcp.encode();
    b[2] = RDMA; // no TCP
    assert!(LaneOpen::decode(&b).is_err());
    let mut b = tcp.encode();
    b[2] = TCP | 8; // a transport nobody knows
    assert!(LaneOpen::decode(&b).is_err());
    let mut b = quic.encode();
    b[2] = TCP; // QUIC not offered, but a certificate named
    assert!(LaneOpen::decode(&b).is_err());
    let mut b = tcp.encode();
    b[40] = 1; // a fingerprint where no QUIC is offered
    assert!(LaneOpen::decode(&b).unwrap_err().contains("does not use"));
    let mut b = tcp.encode();
    b[26] = 1; // a port where no QUIC is offered
    assert!(LaneOpen::decode(&b).is_err());
    let mut b = all.encode();
    b[3] &= !4; // QUIC offered without its certificate
    assert!(LaneOpen::decode(&b).is_err());
}

#[test]
fn the_carrier_is_the_best_both_ends_offered() {
    let [tcp, rdma, no_gid, quic, all] = records();
    assert_eq!(rdma.carrier(&no_gid), Carrier::Rdma(no_gid.rdma.unwrap()));
    assert_eq!(all.carrier(&rdma), Carrier::Rdma(rdma.rdma.unwrap()));
    assert_eq!(all.carrier(&quic), Carrier::Quic(quic.quic.unwrap()));
    assert_eq!(quic.carrier(&all), Carrier::Quic(all.quic.unwrap()));
    for (a, b) in [
        (tcp, all),
        (all, tcp),
        (rdma, quic),
        (quic, rdma),
        (tcp, tcp),
    ] {
        assert_eq!(a.carrier(&b), Carrier::Tcp);
    }
}
