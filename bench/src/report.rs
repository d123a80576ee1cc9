//! The summary: throughput and HDR percentiles, as text and as JSON.

use hdrhistogram::Histogram;

pub struct Summary {
    pub requests: u64,
    pub errors: u64,
    pub seconds: f64,
    pub hist: Histogram<u64>,
    /// Server CPU time over the measured run, µs (with `--server-pid`).
    pub server_cpu_us: Option<u64>,
    /// `-MOVED` redirects followed (with `--cluster`).
    pub redirects: Option<u64>,
}

impl Summary {
    pub fn throughput(&self) -> f64 {
        self.requests as f64 / self.seconds.max(1e-9)
    }

    fn pct(&self, q: f64) -> u64 {
        self.hist.value_at_quantile(q)
    }

    pub fn text(&self) -> String {
        let ms = |us: u64| us as f64 / 1000.0;
        let mut s = format!(
            "requests: {}  errors: {}  seconds: {:.2}\nthroughput: {:.0} requests/s\nlatency ms: p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}\n",
            self.requests,
            self.errors,
            self.seconds,
            self.throughput(),
            ms(self.pct(0.5)),
            ms(self.pct(0.9)),
            ms(self.pct(0.99)),
            ms(self.pct(0.999)),
            ms(self.hist.max()),
        );
        if let Some(r) = self.redirects {
            s.push_str(&format!("redirects followed: {r}\n"));
        }
        if let Some(cpu) = self.server_cpu_us {
            s.push_str(&format!(
                "server cpu: {:.3} s  ({:.3} us per request)\n",
                cpu as f64 / 1e6,
                cpu as f64 / self.requests.max(1) as f64
            ));
        }
        s
    }

    pub fn json(&self) -> String {
        let cpu = match self.server_cpu_us {
            Some(c) => format!(
                ",\"server_cpu_us\":{c},\"server_cpu_us_per_request\":{:.4}",
                c as f64 / self.requests.max(1) as f64
            ),
            None => String::new(),
        };
        let cpu = match self.redirects {
            Some(r) => format!("{cpu},\"redirects\":{r}"),
            None => cpu,
        };
        format!(
            "{{\"requests\":{},\"errors\":{},\"seconds\":{:.4},\"throughput\":{:.1},\"p50_us\":{},\"p90_us\":{},\"p99_us\":{},\"p999_us\":{},\"max_us\":{}{cpu}}}\n",
            self.requests,
            self.errors,
            self.seconds,
            self.throughput(),
            self.pct(0.5),
            self.pct(0.9),
            self.pct(0.99),
            self.pct(0.999),
            self.hist.max(),
        )
    }
}

/// CPU time of every thread of process `pid`, in µs, from /proc/PID/task/*/schedstat (ns on CPU).
pub fn process_cpu_us(pid: u32) -> Option<u64> {
    let mut total_ns: u64 = 0;
    for entry in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let path = entry.ok()?.path().join("schedstat");
        if let Ok(s) = std::fs::read_to_string(path) {
            total_ns += s
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    Some(total_ns / 1000)
}
