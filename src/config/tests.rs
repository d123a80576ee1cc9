use super::*;

fn args(s: &str) -> Vec<String> {
    s.split_whitespace().map(String::from).collect()
}

#[test]
fn flags_override_environment_which_overrides_the_file() {
    let dir = std::env::temp_dir().join(format!("shardline-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("c.toml");
    std::fs::write(&file, "port = 7000\nhz = 20\nrequirepass = \"file\"\n").unwrap();
    let env = vec![
        ("SHARDLINE_PORT".to_string(), "7001".to_string()),
        ("SHARDLINE_HZ".to_string(), "30".to_string()),
    ];
    let (c, _) = load(
        &args(&format!("--config {} --port 7002", file.display())),
        &env,
    )
    .unwrap();
    assert_eq!(c.port, 7002);
    assert_eq!(c.hz, 30);
    assert_eq!(c.requirepass.as_deref(), Some("file"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_values_name_the_key_the_value_and_the_reason() {
    let e = load(&args("--port 70000"), &[]).unwrap_err();
    assert_eq!(
        e,
        "flag --port: invalid value '70000' for 'port': must be between 1 and 65535"
    );
    let e = load(&args("--vshards 300"), &[]).unwrap_err();
    assert!(e.contains("'300'") && e.contains("power of two"), "{e}");
    let e = load(&args("--cores 5-2"), &[]).unwrap_err();
    assert!(e.contains("cores"), "{e}");
    let e = load(&args("--nosuch 1"), &[]).unwrap_err();
    assert!(e.contains("unknown flag --nosuch"), "{e}");
    let e = load(&args("--bind 0.0.0.0"), &[]).unwrap_err();
    assert!(e.contains("protected mode"), "{e}");
    assert!(load(&args("--bind 0.0.0.0 --requirepass x"), &[]).is_ok());
    assert!(
        load(&args("--cores 100000"), &[])
            .unwrap_err()
            .contains("not available")
    );
}

#[test]
fn core_lists_and_sizes_parse() {
    assert_eq!(parse_cores("0").unwrap(), vec![0]);
    assert_eq!(parse_cores("0-2,5").unwrap(), vec![0, 1, 2, 5]);
    assert!(parse_cores("1,1").is_err());
    assert!(parse_cores("").is_err());
    assert_eq!(parse_size("512mb").unwrap(), 512 << 20);
    assert_eq!(parse_size("1k").unwrap(), 1000);
    assert!(parse_size("-1").is_err());
}

#[test]
fn print_config_round_trips_through_toml() {
    let (c, _) = load(&args("--port 7005 --hz 50"), &[]).unwrap();
    let mut d = Config::default();
    apply_toml(&mut d, &to_toml(&c)).unwrap();
    assert_eq!(d.port, 7005);
    assert_eq!(d.hz, 50);
    assert_eq!(d.cores, c.cores);
}
