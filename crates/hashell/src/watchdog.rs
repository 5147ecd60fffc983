//! The hardware watchdog (`/dev/watchdog`), held by the fencing guard: the last line of
//! defence when the guard itself cannot kill a writable PostgreSQL in time (the guard
//! frozen, the machine stalled, a kill that does not take).
//!
//! While PostgreSQL may accept writes under a deadline, the guard pings the device with a
//! timeout that ends no later than `deadline + ALLOWANCE`: whatever stalls the guard, the
//! machine resets before another node can take the lease (the lease margin covers the
//! allowance). Once the deadline is that close the guard stops pinging: either it kills
//! the instance in time (then the device is disarmed), or the machine resets. While
//! nothing is writable the device is closed with the magic character, so a replica never
//! resets.

use hacore::Millis;
use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::Path;

/// How long after the deadline the machine may reset at the latest. Within the lease
/// margin's fence time; longer than the guard's own kill takes.
pub const ALLOWANCE: Millis = 500;

// Linux <linux/watchdog.h>: _IOR('W', 5, int), _IOWR('W', 6, int), _IOR('W', 7, int).
const WDIOC_KEEPALIVE: libc::c_ulong = 0x8004_5705;
const WDIOC_SETTIMEOUT: libc::c_ulong = 0xC004_5706;
const WDIOC_GETTIMEOUT: libc::c_ulong = 0x8004_5707;

/// The timeout (whole seconds) to set at `now` for a deadline, or None when the deadline
/// is too close (or past) for any ping: the last one already bounds the reset.
pub fn ping_timeout(now: Millis, deadline: Millis) -> Option<u32> {
    let secs = deadline.saturating_add(ALLOWANCE).saturating_sub(now) / 1_000;
    (secs >= 1).then(|| secs.min(u32::MAX as u64) as u32)
}

/// An open watchdog device. Dropping it disarms it (magic close).
pub struct Watchdog {
    file: Option<File>,
    /// Timeout the driver reported for the last ping.
    pub timeout: u32,
}

fn ioctl_int(file: &File, request: libc::c_ulong, value: &mut libc::c_int) -> std::io::Result<()> {
    // SAFETY: the watchdog ioctls used here read or write one int through the pointer,
    // which is valid for the call; the file descriptor is open.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), request as _, value as *mut libc::c_int) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

impl Watchdog {
    /// Opens (and so starts) the device and sets its first timeout.
    pub fn open(device: &Path, timeout: u32) -> Result<Watchdog, String> {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(device)
            .map_err(|e| format!("cannot open the watchdog {}: {e}", device.display()))?;
        let mut w = Watchdog { file: Some(file), timeout: 0 };
        if let Err(e) = w.ping(timeout) {
            w.disarm();
            return Err(format!("{} does not behave as a watchdog: {e}", device.display()));
        }
        Ok(w)
    }

    /// Sets the timeout (a ping on every driver) and pings; records the timeout in effect.
    pub fn ping(&mut self, timeout: u32) -> Result<(), String> {
        let Some(f) = &self.file else { return Err("the watchdog is closed".into()) };
        let mut t = timeout as libc::c_int;
        ioctl_int(f, WDIOC_SETTIMEOUT, &mut t).map_err(|e| format!("cannot set the timeout to {timeout} s: {e}"))?;
        let mut dummy = 0;
        ioctl_int(f, WDIOC_KEEPALIVE, &mut dummy).map_err(|e| format!("keepalive failed: {e}"))?;
        let mut actual = 0;
        ioctl_int(f, WDIOC_GETTIMEOUT, &mut actual).map_err(|e| format!("cannot read the timeout back: {e}"))?;
        self.timeout = actual.max(0) as u32;
        Ok(())
    }

    /// Stops the device (magic close) and closes it. Drivers built with `nowayout` keep
    /// counting: the machine then resets unless the device is opened and pinged again.
    pub fn disarm(&mut self) {
        if let Some(mut f) = self.file.take() {
            let _ = f.write_all(b"V");
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.disarm();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reset_never_comes_later_than_the_deadline_plus_the_allowance() {
        for now in [0u64, 1, 499, 500, 999, 1_000, 1_499, 1_501, 9_999, 20_000] {
            for deadline in [0u64, 500, 1_000, 1_500, 10_000, 30_000] {
                if let Some(t) = ping_timeout(now, deadline) {
                    assert!(t >= 1);
                    assert!(now + t as u64 * 1_000 <= deadline + ALLOWANCE, "now {now} deadline {deadline} t {t}");
                    // And not needlessly early: within a second of the bound.
                    assert!(now + (t as u64 + 1) * 1_000 > deadline + ALLOWANCE);
                }
            }
        }
        assert_eq!(ping_timeout(10_000, 20_000), Some(10));
        assert_eq!(ping_timeout(20_000, 20_000), None);
        assert_eq!(ping_timeout(19_600, 20_000), None);
        assert_eq!(ping_timeout(30_000, 20_000), None);
    }

    #[test]
    fn a_file_that_is_not_a_watchdog_is_refused() {
        let dir = std::env::temp_dir().join(format!("hashell-wd-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fake = dir.join("watchdog");
        std::fs::write(&fake, b"").unwrap();
        let e = Watchdog::open(&fake, 5).err().expect("a regular file is not a watchdog");
        assert!(e.contains("does not behave as a watchdog"), "{e}");
        let e = Watchdog::open(&dir.join("absent"), 5).err().expect("no device");
        assert!(e.contains("cannot open the watchdog"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
