//! The share of a shard thread's time its copies may take (`bulk-thread-share`, issue 19's
//! throttle): sans-IO. The lane tasks time each unit of copy work they run on the thread
//! (a source's chunks read and framed, a target's bytes checked, written and decoded) and,
//! before the next, wait until that work has been followed by the idle time the share asks
//! for: at 50%, a 4 ms unit is followed by at least 4 ms in which the thread serves other
//! work. So over any stretch of whole units, copies take at most the share of the thread;
//! a thread with nothing else to do still copies at that share of its speed.

/// At most this much waiting is owed at once (a unit that took very long does not stall
/// copies for longer).
pub const DEBT_MAX_US: u64 = 1_000_000;

#[derive(Clone, Debug)]
pub struct TimeShare {
    pct: u64,
    /// When the next unit may start (µs on the caller's clock).
    free_at_us: u64,
    /// What was owed below a microsecond: the remainder of `took × (100 − pct) / pct`
    /// (so many short units owe what one long one would).
    rem: u64,
}

impl TimeShare {
    /// A share of `pct` percent (clamped to 1..=100; 100 never waits).
    pub fn new(pct: u64) -> TimeShare {
        TimeShare {
            pct: pct.clamp(1, 100),
            free_at_us: 0,
            rem: 0,
        }
    }

    pub fn pct(&self) -> u64 {
        self.pct
    }

    pub fn set_pct(&mut self, pct: u64) {
        self.pct = pct.clamp(1, 100);
        if self.pct == 100 {
            self.free_at_us = 0;
        }
    }

    /// A unit of copy work ran from `start_us` for `took_us`.
    pub fn spent(&mut self, start_us: u64, took_us: u64) {
        if self.pct >= 100 || took_us == 0 {
            return;
        }
        let end = start_us + took_us;
        let owed = took_us * (100 - self.pct) + self.rem;
        let (idle, rem) = (owed / self.pct, owed % self.pct);
        self.rem = rem;
        self.free_at_us = (self.free_at_us.max(end) + idle).min(end + DEBT_MAX_US);
    }

    /// How long the next unit must wait at `now_us` (0: it may run).
    pub fn wait_us(&self, now_us: u64) -> u64 {
        self.free_at_us.saturating_sub(now_us)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs units of `unit` µs back to back, each when allowed, for `span` µs: the share of
    /// the time they took.
    fn busy_share(pct: u64, unit: u64, span: u64) -> f64 {
        let mut s = TimeShare::new(pct);
        let (mut now, mut busy) = (0, 0);
        while now < span {
            now += s.wait_us(now);
            s.spent(now, unit);
            now += unit;
            busy += unit;
        }
        // (Up to the end of the last unit's idle time: whole units.)
        busy as f64 / (now + s.wait_us(now)) as f64
    }

    #[test]
    fn copies_take_at_most_their_share_of_the_thread() {
        for pct in [1, 10, 25, 50, 75, 99] {
            for unit in [1, 7, 250, 4_000, 90_000] {
                let got = busy_share(pct, unit, 20_000_000);
                let idle = unit * (100 - pct) / pct;
                // (Past the debt bound, a unit is followed by DEBT_MAX_US of idle time.)
                let want = match idle > DEBT_MAX_US {
                    true => unit as f64 / (unit + DEBT_MAX_US) as f64,
                    false => pct as f64 / 100.0,
                };
                assert!(
                    got <= want + 0.001 && got >= want * 0.95,
                    "{pct}% with units of {unit} µs: {got}"
                );
            }
        }
        assert_eq!(busy_share(100, 4_000, 1_000_000), 1.0);
    }

    #[test]
    fn idle_time_counts_and_debt_is_bounded() {
        let mut s = TimeShare::new(50);
        s.spent(1_000, 4_000);
        // Done at 5,000: free again at 9,000.
        assert_eq!(s.wait_us(5_000), 4_000);
        assert_eq!(s.wait_us(9_000), 0);
        // A unit that starts long after owes only its own idle time.
        s.spent(100_000, 2_000);
        assert_eq!(s.wait_us(102_000), 2_000);
        // One very long unit owes at most DEBT_MAX_US.
        let mut s = TimeShare::new(1);
        s.spent(0, 10_000_000);
        assert_eq!(s.wait_us(10_000_000), DEBT_MAX_US);
        // 100% never waits; setting it forgives what was owed.
        let mut s = TimeShare::new(10);
        s.spent(0, 1_000);
        assert!(s.wait_us(1_000) > 0);
        s.set_pct(100);
        assert_eq!(s.wait_us(1_000), 0);
        s.spent(1_000, 1_000);
        assert_eq!(s.wait_us(2_000), 0);
        assert_eq!(TimeShare::new(0).pct(), 1);
        assert_eq!(TimeShare::new(500).pct(), 100);
    }
}
