//! The node's monotonic clock: CLOCK_BOOTTIME, which keeps counting through suspend, so a
//! machine that slept past its deadline sees that it did.

use hacore::memdcs::Clock;
use hacore::types::Millis;

/// CLOCK_BOOTTIME in milliseconds.
#[derive(Clone, Copy, Debug, Default)]
pub struct BootClock;

impl Clock for BootClock {
    fn now(&self) -> Millis {
        let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: `ts` is a valid, writable timespec; CLOCK_BOOTTIME exists on every Linux
        // since 2.6.39, and clock_gettime cannot fail for a valid clock and pointer.
        let rc = unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
        debug_assert_eq!(rc, 0);
        (ts.tv_sec as u64).saturating_mul(1000).saturating_add(ts.tv_nsec as u64 / 1_000_000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_clock_moves_forward() {
        let a = BootClock.now();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let b = BootClock.now();
        assert!(b >= a + 20 && b < a + 2_000, "{a} -> {b}");
    }
}
