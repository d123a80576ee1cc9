use super::geohash;
use crate::command::testing::*;

#[test]
fn positions_hash_and_decode_as_redis_does() {
    // Redis's documentation and redis-server 7.0 give these for Palermo and Catania.
    let palermo = geohash::score(13.361389, 38.115556).unwrap();
    assert_eq!(palermo, 3479099956230698);
    let p = geohash::position(palermo as f64).unwrap();
    assert_eq!(format!("{:.17}", p[0]), "13.36138933897018433");
    assert_eq!(format!("{:.17}", p[1]), "38.11555639549629859");
    assert_eq!(&geohash::text(p), b"sqc8b49rny0");
    let catania = geohash::position(geohash::score(15.087269, 37.502669).unwrap() as f64);
    let c = catania.unwrap();
    assert_eq!(
        format!("{:.4}", geohash::distance(p[0], p[1], c[0], c[1])),
        "166274.1516"
    );
    assert_eq!(geohash::score(180.1, 0.0), None);
    assert_eq!(geohash::score(0.0, 85.06), None);
    // Scores that are not geohashes decode as x86-64 casts them in Redis.
    assert_eq!(geohash::c_u64(-5.0), u64::MAX - 4);
    assert_eq!(geohash::c_u64(f64::INFINITY), 0);
    assert_eq!(
        geohash::c_u64(1e20),
        0,
        "past 2^64, as redis-server decodes 1e20"
    );
    for v in [0u32, 1, 0x3ff_ffff, u32::MAX, 0x1234_5678] {
        let (lat, lon) = geohash::deinterleave(geohash::interleave(v, v.rotate_left(7)));
        assert_eq!((lat, lon), (v, v.rotate_left(7)));
    }
}

#[test]
fn commands_answer_as_redis_does() {
    let mut h = Harness::new();
    assert_eq!(
        h.run("GEOADD g 13.361389 38.115556 Palermo 15.087269 37.502669 Catania"),
        int(2)
    );
    assert_eq!(
        h.run("GEOADD g 200 10 x"),
        error("ERR invalid longitude,latitude pair 200.000000,10.000000")
    );
    assert_eq!(h.run("GEOADD g NX XX 1 1 x"), error("ERR syntax error"));
    assert_eq!(h.run("GEODIST g Palermo Catania km"), bulk("166.2742"));
    assert_eq!(h.run("GEODIST g Palermo nobody"), NIL);
    assert_eq!(
        h.run("GEODIST g Palermo Catania yd"),
        error("ERR unsupported unit provided. please use M, KM, FT, MI")
    );
    assert_eq!(
        h.run("GEOPOS g Palermo nobody"),
        format!(
            "*2\r\n*2\r\n{}{}*-1\r\n",
            bulk("13.36138933897018433"),
            bulk("38.11555639549629859")
        )
    );
    assert_eq!(
        h.run("GEOHASH g Palermo Catania"),
        format!("*2\r\n{}{}", bulk("sqc8b49rny0"), bulk("sqdtr74hyu0"))
    );
    assert_eq!(
        h.run("GEOSEARCH g FROMLONLAT 15 37 BYRADIUS 200 km ASC WITHDIST"),
        format!(
            "*2\r\n*2\r\n{}{}*2\r\n{}{}",
            bulk("Catania"),
            bulk("56.4413"),
            bulk("Palermo"),
            bulk("190.4424")
        )
    );
    assert_eq!(
        h.run("GEOSEARCH g FROMLONLAT 15 37 BYBOX 400 400 km DESC COUNT 1"),
        format!("*1\r\n{}", bulk("Palermo"))
    );
    assert_eq!(
        h.run("GEOSEARCH g FROMLONLAT 15 37 BYRADIUS 1 km ANY"),
        error("ERR the ANY argument requires COUNT argument")
    );
    assert_eq!(
        h.run("GEOSEARCH g BYRADIUS 1 km FROMMEMBER Palermo FROMLONLAT 1 1"),
        error("ERR syntax error")
    );
    assert_eq!(
        h.run("GEORADIUSBYMEMBER g nobody 1 km"),
        error("ERR could not decode requested zset member")
    );
    assert_eq!(
        h.run("GEOSEARCHSTORE d g FROMMEMBER Palermo BYRADIUS 200 km"),
        int(2)
    );
    assert_eq!(h.run("ZSCORE d Catania"), bulk("3479447370796909"));
    assert_eq!(h.run("GEORADIUS g 15 37 200 km STOREDIST d"), int(2));
    assert_eq!(h.run("ZSCORE d Catania"), bulk("56.441257870158204"));
    assert_eq!(
        h.run("GEORADIUS_RO g 15 37 200 km STORE d"),
        error("ERR syntax error")
    );
    // A missing source empties the destination.
    assert_eq!(
        h.run("GEOSEARCHSTORE d none FROMMEMBER x BYRADIUS 1 km"),
        int(0)
    );
    assert_eq!(h.run("EXISTS d"), int(0));
}

#[test]
fn the_store_key_of_georadius_is_a_key_for_routing() {
    let spec = crate::command::lookup(b"georadius").unwrap();
    let words: Vec<&[u8]> = "GEORADIUS src 1 2 3 km COUNT store STORE dst"
        .split(' ')
        .map(str::as_bytes)
        .collect();
    let (buf, spans) = buf_and_spans(&words);
    let keys: Vec<usize> = spec
        .keys_of(crate::command::Args::new(&buf, &spans))
        .collect();
    assert_eq!(keys, vec![9, 1], "COUNT's value is not an option");
}
