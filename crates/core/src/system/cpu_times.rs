//! Whole-machine CPU use on Windows from `GetSystemTimes` (idle, kernel, user times).
//!
//! sysinfo reads it through PDH performance counters, and re-initialising those calls
//! `PdhEnumObjectsW`, which Wine leaves unimplemented (the process aborts); PDH is also slow
//! to open and breaks when the counter registry is damaged, a known Windows failure. The
//! kernel's own counters need none of that and behave the same on Windows and under Wine,
//! so the Wine smoke test exercises the real code. Per-process CPU and memory still come
//! from sysinfo (process times, no PDH).
#![cfg_attr(not(windows), allow(dead_code))]

/// (idle, kernel, user) in 100 ns units; kernel time includes idle time.
pub type Times = (u64, u64, u64);

/// CPU use in percent between two readings, rounded to one decimal.
pub fn usage_between(prev: Times, now: Times) -> f32 {
    let idle = now.0.saturating_sub(prev.0);
    let total = now.1.saturating_sub(prev.1) + now.2.saturating_sub(prev.2);
    if total == 0 {
        return 0.0;
    }
    let busy = total.saturating_sub(idle) as f64 / total as f64 * 100.0;
    ((busy * 10.0).round() / 10.0) as f32
}

/// Successive readings of the system times.
#[derive(Default)]
pub struct CpuTimes {
    last: Option<Times>,
}

impl CpuTimes {
    /// CPU use since the previous call (0 on the first).
    pub fn usage(&mut self) -> f32 {
        let Some(now) = read() else { return 0.0 };
        match self.last.replace(now) {
            Some(prev) => usage_between(prev, now),
            None => 0.0,
        }
    }
}

#[cfg(windows)]
#[allow(unsafe_code)] // one Win32 call with three out-pointers
fn read() -> Option<Times> {
    use windows::Win32::Foundation::FILETIME;
    use windows::Win32::System::Threading::GetSystemTimes;
    let (mut idle, mut kernel, mut user) = (
        FILETIME::default(),
        FILETIME::default(),
        FILETIME::default(),
    );
    // SAFETY: three valid out-pointers.
    unsafe { GetSystemTimes(Some(&mut idle), Some(&mut kernel), Some(&mut user)) }.ok()?;
    let v = |f: FILETIME| (u64::from(f.dwHighDateTime) << 32) | u64::from(f.dwLowDateTime);
    Some((v(idle), v(kernel), v(user)))
}

#[cfg(not(windows))]
fn read() -> Option<Times> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_share_of_kernel_plus_user() {
        // Kernel +900 (of which idle +750) and user +100: 250 of 1000 busy.
        let prev = (1_000, 2_000, 3_000);
        let now = (1_750, 2_900, 3_100);
        assert_eq!(usage_between(prev, now), 25.0);
    }

    #[test]
    fn no_time_passed_or_counters_went_back() {
        assert_eq!(usage_between((5, 5, 5), (5, 5, 5)), 0.0);
        assert_eq!(usage_between((9, 9, 9), (1, 1, 1)), 0.0);
        // Idle larger than the total (clock skew between readings) reads as 0, not negative.
        assert_eq!(usage_between((0, 0, 0), (50, 40, 0)), 0.0);
    }
}
