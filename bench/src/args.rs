//! Command-line options of `shardline-bench`.

use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Workload {
    Set,
    Get,
    /// Reads with probability `read_ratio`, writes otherwise.
    Mixed {
        read_ratio: f64,
    },
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Distribution {
    Uniform,
    Zipf { theta: f64 },
}

#[derive(Clone, Debug)]
pub struct Options {
    pub host: String,
    pub port: u16,
    pub threads: usize,
    pub cores: Option<Vec<usize>>,
    pub connections: usize,
    pub pipeline: usize,
    pub workload: Workload,
    pub keys: u64,
    pub distribution: Distribution,
    pub value_size: usize,
    pub duration: Option<Duration>,
    pub requests: Option<u64>,
    /// Open loop: requests per second across all connections.
    pub rate: Option<f64>,
    pub json: Option<String>,
    pub key_prefix: String,
    /// Fill every key once (SET) before measuring.
    pub prefill: bool,
    /// A server process whose CPU time (utime+stime) is measured over the run.
    pub server_pid: Option<u32>,
    pub quiet: bool,
    pub seed: u64,
    /// Route by hash slot from CLUSTER SLOTS and follow -MOVED.
    pub cluster: bool,
    /// Puts through etcd's v3 JSON gateway instead of RESP.
    pub etcd: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            host: "127.0.0.1".into(),
            port: 6379,
            threads: 1,
            cores: None,
            connections: 50,
            pipeline: 1,
            workload: Workload::Set,
            keys: 100_000,
            distribution: Distribution::Uniform,
            value_size: 64,
            duration: None,
            requests: None,
            rate: None,
            json: None,
            key_prefix: "key:".into(),
            prefill: false,
            server_pid: None,
            quiet: false,
            seed: 42,
            cluster: false,
            etcd: false,
        }
    }
}

pub const USAGE: &str = "shardline-bench: a RESP load generator

  --host H              server address (127.0.0.1)
  --port P              server port (6379)
  --threads N           client threads (1)
  --cores LIST          pin client threads to these cores, e.g. 1 or 2-3
  --connections N       connections per thread (50)
  --pipeline N          requests in flight per connection (1)
  --workload W          set | get | mixed (set)
  --read-ratio R        reads share for mixed, 0..1 (0.9)
  --keys N              key space size (100000)
  --distribution D      uniform | zipf (uniform)
  --theta T             zipf skew (0.99)
  --value-size N        value bytes (64)
  --duration S          seconds to run (10, unless --requests)
  --requests N          total requests to send
  --rate R              open loop at R requests/s in total; latency from intended send time
  --prefill             SET every key once before measuring
  --server-pid PID      also report the server's CPU time per request
  --json FILE           write a machine-readable summary
  --key-prefix S        key prefix (key:)
  --seed N              RNG seed (42)
  --quiet               no progress lines
  --cluster             Redis Cluster mode: route keys by CLUSTER SLOTS, follow -MOVED
  --etcd                etcd mode: puts via etcd's v3 JSON gateway (HTTP/1.1), pipeline 1
";

pub fn parse(args: &[String]) -> Result<Options, String> {
    let mut o = Options::default();
    let mut read_ratio = 0.9;
    let mut theta = 0.99;
    let mut workload = "set".to_string();
    let mut dist = "uniform".to_string();
    let mut i = 0;
    while i < args.len() {
        let flag = args[i].as_str();
        let mut val = || -> Result<String, String> {
            i += 1;
            args.get(i)
                .cloned()
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        fn num<T: std::str::FromStr>(flag: &str, v: String) -> Result<T, String> {
            v.parse()
                .map_err(|_| format!("{flag}: '{v}' is not a valid number"))
        }
        match flag {
            "--host" => o.host = val()?,
            "--port" => o.port = num(flag, val()?)?,
            "--threads" => o.threads = num(flag, val()?)?,
            "--cores" => o.cores = Some(parse_cores(&val()?)?),
            "--connections" => o.connections = num(flag, val()?)?,
            "--pipeline" => o.pipeline = num(flag, val()?)?,
            "--workload" => workload = val()?,
            "--read-ratio" => read_ratio = num(flag, val()?)?,
            "--keys" => o.keys = num(flag, val()?)?,
            "--distribution" => dist = val()?,
            "--theta" => theta = num(flag, val()?)?,
            "--value-size" => o.value_size = num(flag, val()?)?,
            "--duration" => o.duration = Some(Duration::from_secs_f64(num(flag, val()?)?)),
            "--requests" => o.requests = Some(num(flag, val()?)?),
            "--rate" => o.rate = Some(num(flag, val()?)?),
            "--json" => o.json = Some(val()?),
            "--key-prefix" => o.key_prefix = val()?,
            "--server-pid" => o.server_pid = Some(num(flag, val()?)?),
            "--seed" => o.seed = num(flag, val()?)?,
            "--prefill" => o.prefill = true,
            "--cluster" => o.cluster = true,
            "--etcd" => o.etcd = true,
            "--quiet" => o.quiet = true,
            "--help" | "-h" => return Err(USAGE.to_string()),
            other => return Err(format!("unknown option {other}\n\n{USAGE}")),
        }
        i += 1;
    }
    o.workload = match workload.as_str() {
        "set" => Workload::Set,
        "get" => Workload::Get,
        "mixed" if (0.0..=1.0).contains(&read_ratio) => Workload::Mixed { read_ratio },
        "mixed" => return Err("--read-ratio must be between 0 and 1".into()),
        w => return Err(format!("unknown workload '{w}' (set, get, mixed)")),
    };
    o.distribution = match dist.as_str() {
        "uniform" => Distribution::Uniform,
        "zipf" | "zipfian" if theta > 0.0 && theta != 1.0 => Distribution::Zipf { theta },
        "zipf" | "zipfian" => return Err("--theta must be positive and not 1".into()),
        d => return Err(format!("unknown distribution '{d}' (uniform, zipf)")),
    };
    if o.threads == 0 || o.connections == 0 || o.pipeline == 0 || o.keys == 0 {
        return Err("--threads, --connections, --pipeline and --keys must be positive".into());
    }
    if o.cluster && o.rate.is_some() {
        return Err("--rate (open loop) is not supported with --cluster yet".into());
    }
    if o.etcd
        && (o.cluster
            || o.rate.is_some()
            || o.pipeline != 1
            || o.prefill
            || !matches!(o.workload, Workload::Set))
    {
        return Err("--etcd runs the closed-loop set workload at pipeline 1 only".into());
    }
    if o.rate.is_some_and(|r| r <= 0.0) {
        return Err("--rate must be positive".into());
    }
    if o.duration.is_none() && o.requests.is_none() {
        o.duration = Some(Duration::from_secs(10));
    }
    Ok(o)
}

fn parse_cores(v: &str) -> Result<Vec<usize>, String> {
    let mut out = Vec::new();
    for part in v.split(',') {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (usize, usize) = (
                    a.parse().map_err(|_| format!("bad core list '{v}'"))?,
                    b.parse().map_err(|_| format!("bad core list '{v}'"))?,
                );
                out.extend(a..=b);
            }
            None => out.push(part.parse().map_err(|_| format!("bad core list '{v}'"))?),
        }
    }
    Ok(out)
}
