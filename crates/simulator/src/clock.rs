//! Per-node monotonic clocks that run at slightly different rates and can jump forward
//! (a VM paused and resumed), all derived from the global virtual time.

use hacore::Millis;

/// A node's clock: `local = offset + t + t * drift_ppm / 1e6`, piecewise (a drift change or
/// a jump starts a new piece).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Clock {
    /// Global time where the current piece starts.
    since: Millis,
    /// Local reading at `since`.
    base: Millis,
    /// Rate error in parts per million (positive: runs fast).
    drift_ppm: i64,
}

impl Clock {
    /// A clock reading `base` at global time 0.
    pub fn new(base: Millis, drift_ppm: i64) -> Clock {
        Clock { since: 0, base, drift_ppm }
    }

    /// The local reading at global time `t` (t >= the piece start).
    pub fn local(&self, t: Millis) -> Millis {
        let dt = t.saturating_sub(self.since);
        // In 64 bits while the product fits (always, for runs shorter than ~290 years at
        // 1,000 ppm): 128-bit division was 3% of a run. Both truncate towards zero.
        let skew = match (dt as i64).checked_mul(self.drift_ppm) {
            Some(p) if dt <= i64::MAX as u64 => (p / 1_000_000) as i128,
            _ => dt as i128 * self.drift_ppm as i128 / 1_000_000,
        };
        (self.base as i128 + dt as i128 + skew).max(self.base as i128) as Millis
    }

    /// The earliest global time at which the local reading reaches `local`.
    pub fn global(&self, local: Millis) -> Millis {
        if local <= self.base {
            return self.since;
        }
        let want = local - self.base;
        // dt * (1 + d) >= want  =>  dt >= want / (1 + d); in 64 bits while it fits.
        let rate = 1_000_000 + self.drift_ppm;
        let mut dt = match (want as i64).checked_mul(1_000_000) {
            Some(p) if want <= i64::MAX as u64 => (p / rate) as i128,
            _ => want as i128 * 1_000_000 / rate as i128,
        };
        while self.local(self.since + dt as Millis) < local {
            dt += 1;
        }
        while dt > 0 && self.local(self.since + dt as Millis - 1) >= local {
            dt -= 1;
        }
        self.since + dt as Millis
    }

    /// Changes the rate from global time `t` on.
    pub fn set_drift(&mut self, t: Millis, drift_ppm: i64) {
        self.base = self.local(t);
        self.since = t;
        self.drift_ppm = drift_ppm;
    }

    /// Jumps forward by `ms` at global time `t` (monotonic clocks never go back).
    pub fn jump(&mut self, t: Millis, ms: Millis) {
        self.base = self.local(t) + ms;
        self.since = t;
    }

    /// Current rate error.
    pub fn drift_ppm(&self) -> i64 {
        self.drift_ppm
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drift_and_inverse() {
        let c = Clock::new(1_000, 500);
        assert_eq!(c.local(0), 1_000);
        assert_eq!(c.local(1_000_000), 1_000 + 1_000_000 + 500);
        for local in [1_000, 1_001, 5_000, 1_000_000, 1_234_567] {
            let g = c.global(local);
            assert!(c.local(g) >= local && (g == 0 || c.local(g - 1) < local), "{local} -> {g}");
        }
        let slow = Clock::new(0, -800);
        let g = slow.global(10_000);
        assert!(g > 10_000 && slow.local(g) >= 10_000);
    }

    #[test]
    fn jumps_are_forward_and_pieces_continue() {
        let mut c = Clock::new(0, 0);
        c.jump(100, 50);
        assert_eq!(c.local(100), 150);
        assert_eq!(c.local(200), 250);
        c.set_drift(200, 1_000);
        assert_eq!(c.local(200), 250);
        assert_eq!(c.local(1_200), 250 + 1_000 + 1);
    }
}
