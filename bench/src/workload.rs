//! What to send: keys drawn from a distribution, operations from a mix. Deterministic per seed.

use crate::args::{Distribution, Options, Workload};

/// xorshift64*.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in [0, 1).
    pub fn f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Zipfian keys over `0..n` with skew `theta`, by Gray et al.'s method (as YCSB draws them).
pub struct Zipf {
    n: u64,
    theta: f64,
    alpha: f64,
    zetan: f64,
    eta: f64,
}

impl Zipf {
    pub fn new(n: u64, theta: f64) -> Self {
        let zeta = |n: u64| (1..=n).map(|i| 1.0 / (i as f64).powf(theta)).sum::<f64>();
        let zetan = zeta(n);
        let zeta2 = zeta(2.min(n));
        let alpha = 1.0 / (1.0 - theta);
        let eta = (1.0 - (2.0 / n as f64).powf(1.0 - theta)) / (1.0 - zeta2 / zetan);
        Zipf {
            n,
            theta,
            alpha,
            zetan,
            eta,
        }
    }

    pub fn sample(&self, rng: &mut Rng) -> u64 {
        let u = rng.f64();
        let uz = u * self.zetan;
        if uz < 1.0 {
            return 0;
        }
        if uz < 1.0 + 0.5f64.powf(self.theta) {
            return 1.min(self.n - 1);
        }
        ((self.n as f64 * (self.eta * u - self.eta + 1.0).powf(self.alpha)) as u64).min(self.n - 1)
    }
}

pub enum Keys {
    Uniform(u64),
    Zipf(Zipf),
}

impl Keys {
    pub fn new(o: &Options) -> Self {
        match o.distribution {
            Distribution::Uniform => Keys::Uniform(o.keys),
            Distribution::Zipf { theta } => Keys::Zipf(Zipf::new(o.keys, theta)),
        }
    }

    pub fn sample(&self, rng: &mut Rng) -> u64 {
        match self {
            Keys::Uniform(n) => rng.next_u64() % n,
            // Scatter ranks over the key space so hot keys land on different slots.
            Keys::Zipf(z) => z.sample(rng).wrapping_mul(0x9E37_79B9_7F4A_7C15) % z.n,
        }
    }
}

/// Builds requests into a buffer without allocating per request.
pub struct Generator {
    keys: Keys,
    workload: Workload,
    prefix: Vec<u8>,
    value: Vec<u8>,
    pub rng: Rng,
}

impl Generator {
    pub fn new(o: &Options, keys: Keys, seed: u64) -> Self {
        Generator {
            keys,
            workload: o.workload,
            prefix: o.key_prefix.as_bytes().to_vec(),
            value: vec![b'x'; o.value_size],
            rng: Rng::new(seed),
        }
    }

    fn key_into(&self, k: u64, out: &mut Vec<u8>) {
        let mut digits = [0u8; 12];
        let mut v = k;
        for d in digits.iter_mut().rev() {
            *d = b'0' + (v % 10) as u8;
            v /= 10;
        }
        let len = self.prefix.len() + digits.len();
        out.extend_from_slice(b"$");
        out.extend_from_slice(len.to_string().as_bytes());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&self.prefix);
        out.extend_from_slice(&digits);
        out.extend_from_slice(b"\r\n");
    }

    /// SET of key `k`.
    pub fn set(&self, k: u64, out: &mut Vec<u8>) {
        out.extend_from_slice(b"*3\r\n$3\r\nSET\r\n");
        self.key_into(k, out);
        out.extend_from_slice(b"$");
        out.extend_from_slice(self.value.len().to_string().as_bytes());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&self.value);
        out.extend_from_slice(b"\r\n");
    }

    /// The hash slot of key number `k` (cluster mode routes by it).
    pub fn slot_of(&self, k: u64) -> u16 {
        let mut key = self.prefix.clone();
        let mut digits = [0u8; 12];
        let mut v = k;
        for d in digits.iter_mut().rev() {
            *d = b'0' + (v % 10) as u8;
            v /= 10;
        }
        key.extend_from_slice(&digits);
        shardline_shards::slot::key_slot(&key)
    }

    /// SET of key `k`; returns its slot.
    pub fn set_with_slot(&self, k: u64, out: &mut Vec<u8>) -> u16 {
        self.set(k, out);
        self.slot_of(k)
    }

    /// The next request of the workload; returns its key's slot.
    pub fn next_with_slot(&mut self, out: &mut Vec<u8>) -> u16 {
        let k = self.next_key(out);
        self.slot_of(k)
    }

    /// Appends the next request of the workload.
    pub fn next(&mut self, out: &mut Vec<u8>) {
        self.next_key(out);
    }

    fn next_key(&mut self, out: &mut Vec<u8>) -> u64 {
        let k = self.keys.sample(&mut self.rng);
        let read = match self.workload {
            Workload::Set => false,
            Workload::Get => true,
            Workload::Mixed { read_ratio } => self.rng.f64() < read_ratio,
        };
        if read {
            out.extend_from_slice(b"*2\r\n$3\r\nGET\r\n");
            self.key_into(k, out);
        } else {
            self.set(k, out);
        }
        k
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zipf_is_skewed_and_in_range() {
        let z = Zipf::new(1000, 0.99);
        let mut rng = Rng::new(1);
        let mut counts = vec![0u32; 1000];
        for _ in 0..100_000 {
            counts[z.sample(&mut rng) as usize] += 1;
        }
        assert!(
            counts[0] > counts[10] && counts[10] > counts[500],
            "{:?}",
            &counts[..12]
        );
        assert!(counts[0] > 5_000);
    }

    #[test]
    fn requests_are_valid_resp() {
        let o = Options {
            workload: Workload::Mixed { read_ratio: 0.5 },
            ..Options::default()
        };
        let mut g = Generator::new(&o, Keys::new(&o), 1);
        let mut buf = Vec::new();
        for _ in 0..100 {
            g.next(&mut buf);
        }
        let limits = shardline_transport::resp::Limits::default();
        let (mut spans, mut scratch, mut pos, mut n) = (Vec::new(), Vec::new(), 0, 0);
        while let Some(f) =
            shardline_transport::resp::parse_command(&buf[pos..], &limits, &mut spans, &mut scratch)
                .unwrap()
        {
            pos += f.consumed;
            n += 1;
        }
        assert_eq!((n, pos), (100, buf.len()));
    }
}
