//! The usage log's recent figures, kept in memory as rows are committed: the dashboard
//! asks for the last five minutes every two seconds, and that answer must cost the same
//! whether the window holds ten requests or millions (a query over the rows read and
//! sorted every row of the window: 0.2 s and 13 MB of RSS for 300,000 rows).
//!
//! Two rings of time slots: one second wide for the last hour, one minute wide for the
//! last day. A slot holds its counts and a latency histogram with eight bins per octave,
//! so a percentile is exact to its bin (±4.4 %). A window longer than an hour is summed
//! from whole minutes, so it may include up to a minute more than asked.
//!
//! Memory is bounded by the rings: 5,040 slots whose histograms hold only the bins seen,
//! at most [`BINS`] each (~0.4 MB empty, 1–2 MB with a wide spread of latencies in every
//! slot, 10 MB at the theoretical worst). A row stamped more than a minute ahead of the
//! clock is left out: it would hold a slot against the rows of now.

use super::usage::{UsageRow, UsageSummary};

/// Latency bins: 8 per octave from 1 µs, 32 octaves (up to ~71 minutes; slower lands
/// in the last bin).
const BINS_PER_OCTAVE: f64 = 8.0;
const BINS: usize = 256;
/// The per-second ring covers this many seconds.
const SECONDS: usize = 3600;
/// The per-minute ring covers this many minutes (a day: the longest window asked).
const MINUTES: usize = 1440;
/// How far ahead of the clock a row's time may be (clocks of one machine, milliseconds
/// apart) before it is left out.
const AHEAD_S: i64 = 60;

/// The last hour by the second and the last day by the minute.
pub struct UsageWindow {
    seconds: Ring,
    minutes: Ring,
}

impl Default for UsageWindow {
    fn default() -> Self {
        Self {
            seconds: Ring::new(1, SECONDS),
            minutes: Ring::new(60, MINUTES),
        }
    }
}

impl UsageWindow {
    /// Count one committed row (at its own `ts`; a row too old for a ring is left out of
    /// that ring).
    pub fn add(&mut self, row: &UsageRow) {
        let at = unix_seconds(&row.ts);
        if at > chrono::Utc::now().timestamp() + AHEAD_S {
            return;
        }
        let tokens = row.total_tokens.unwrap_or(0);
        let cost = row.estimated_cost_usd.unwrap_or(0.0);
        for ring in [&mut self.seconds, &mut self.minutes] {
            ring.add(at, row.status, tokens, cost, row.latency_ms);
        }
    }

    /// The figures of the last `window_s` seconds up to `now` (unix seconds), `now`'s own
    /// second included; `window_s` is taken between 1 s and a day.
    pub fn summary(&self, now: i64, window_s: u64) -> UsageSummary {
        let window_s = window_s.clamp(1, (MINUTES * 60) as u64);
        let ring = if window_s as usize <= SECONDS {
            &self.seconds
        } else {
            &self.minutes
        };
        let first = now - window_s as i64 + 1;
        let mut total = Slot::empty();
        let mut latency = [0u64; BINS];
        for slot in ring
            .slots
            .iter()
            .filter(|s| s.overlaps(first, now, ring.width_s))
        {
            total.requests += slot.requests;
            total.errors += slot.errors;
            total.tokens += slot.tokens;
            total.cost += slot.cost;
            for &(bin, n) in &slot.latency {
                latency[bin as usize] += u64::from(n);
            }
        }
        let n = total.requests;
        UsageSummary {
            window_s,
            requests: n,
            errors: total.errors,
            error_rate: if n == 0 {
                0.0
            } else {
                total.errors as f64 / n as f64
            },
            requests_per_minute: n as f64 * 60.0 / window_s as f64,
            p50_ms: percentile(&latency, n, 0.50),
            p95_ms: percentile(&latency, n, 0.95),
            total_tokens: total.tokens,
            estimated_cost_usd: total.cost,
        }
    }
}

/// Slots of `width_s` seconds in a ring: slot `t / width_s % len` holds that period
/// until a later one takes its place.
struct Ring {
    width_s: i64,
    slots: Vec<Slot>,
}

impl Ring {
    fn new(width_s: i64, len: usize) -> Self {
        Self {
            width_s,
            slots: (0..len).map(|_| Slot::empty()).collect(),
        }
    }

    fn add(&mut self, at: i64, status: u16, tokens: i64, cost: f64, latency_ms: f64) {
        let start = at.div_euclid(self.width_s) * self.width_s;
        let index = at
            .div_euclid(self.width_s)
            .rem_euclid(self.slots.len() as i64) as usize;
        let slot = &mut self.slots[index];
        if slot.start != start {
            if slot.start > start {
                // A later period already holds this slot: this row is older than the ring.
                return;
            }
            *slot = Slot::empty();
            slot.start = start;
        }
        slot.requests += 1;
        if status >= 400 {
            slot.errors += 1;
        }
        slot.tokens += tokens;
        slot.cost += cost;
        let bin = latency_bin(latency_ms);
        match slot.latency.binary_search_by_key(&bin, |&(b, _)| b) {
            Ok(i) => slot.latency[i].1 += 1,
            Err(i) => slot.latency.insert(i, (bin, 1)),
        }
    }
}

struct Slot {
    /// The period's first second (unix); `i64::MIN` for a slot never used.
    start: i64,
    requests: u64,
    errors: u64,
    tokens: i64,
    cost: f64,
    /// (bin, requests), sorted by bin; only the bins seen.
    latency: Vec<(u16, u32)>,
}

impl Slot {
    fn empty() -> Self {
        Self {
            start: i64::MIN,
            requests: 0,
            errors: 0,
            tokens: 0,
            cost: 0.0,
            latency: Vec::new(),
        }
    }

    /// Whether any second of this slot's period lies in `first..=last`.
    fn overlaps(&self, first: i64, last: i64, width_s: i64) -> bool {
        self.start != i64::MIN && self.start + width_s > first && self.start <= last
    }
}

fn latency_bin(ms: f64) -> u16 {
    let us = ms * 1000.0;
    if us.is_nan() || us <= 1.0 {
        return 0;
    }
    ((us.log2() * BINS_PER_OCTAVE) as usize).min(BINS - 1) as u16
}

/// A bin's value: the geometric middle of its range, in ms.
fn bin_ms(bin: usize) -> f64 {
    ((bin as f64 + 0.5) / BINS_PER_OCTAVE).exp2() / 1000.0
}

/// The nearest-rank percentile `p` of `n` requests, to its bin.
fn percentile(latency: &[u64; BINS], n: u64, p: f64) -> Option<f64> {
    if n == 0 {
        return None;
    }
    let rank = ((p * n as f64).ceil() as u64).clamp(1, n);
    let mut seen = 0;
    for (bin, &count) in latency.iter().enumerate() {
        seen += count;
        if seen >= rank {
            return Some(bin_ms(bin));
        }
    }
    None
}

/// A row's `ts` (RFC 3339) in unix seconds; now if unreadable. The writer counts every
/// row, so the gateway's own form (`2026-11-30T09:45:42.123Z`) is read by hand; any
/// other form goes through chrono.
fn unix_seconds(ts: &str) -> i64 {
    utc_seconds(ts)
        .or_else(|| {
            chrono::DateTime::parse_from_rfc3339(ts)
                .ok()
                .map(|t| t.timestamp())
        })
        .unwrap_or_else(|| chrono::Utc::now().timestamp())
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction]Z` in unix seconds (a leap second goes to chrono).
fn utc_seconds(ts: &str) -> Option<i64> {
    let b = ts.as_bytes();
    let shape = b.len() >= 20
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && b[b.len() - 1] == b'Z'
        && (b.len() == 20
            || (b.len() > 21
                && b[19] == b'.'
                && b[20..b.len() - 1].iter().all(u8::is_ascii_digit)));
    if !shape {
        return None;
    }
    let num = |from: usize, to: usize| {
        b[from..to].iter().try_fold(0u32, |n, &d| {
            d.is_ascii_digit().then(|| n * 10 + u32::from(d - b'0'))
        })
    };
    let date = chrono::NaiveDate::from_ymd_opt(num(0, 4)? as i32, num(5, 7)?, num(8, 10)?)?;
    let time = date.and_hms_opt(num(11, 13)?, num(14, 16)?, num(17, 19)?)?;
    Some(time.and_utc().timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(at: i64, latency_ms: f64, status: u16) -> UsageRow {
        UsageRow {
            ts: chrono::DateTime::from_timestamp(at, 0)
                .unwrap()
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            latency_ms,
            status,
            total_tokens: Some(10),
            estimated_cost_usd: Some(0.5),
            ..Default::default()
        }
    }

    /// A minute in the past (rows ahead of the clock are left out).
    const NOW: i64 = 1_700_000_040;

    #[test]
    fn counts_only_the_rows_inside_the_window() {
        let mut w = UsageWindow::default();
        w.add(&row(NOW - 300, 1.0, 200)); // just outside five minutes
        w.add(&row(NOW - 299, 2.0, 500)); // the window's first second
        w.add(&row(NOW - 10, 3.0, 200));
        w.add(&row(NOW, 4.0, 404));
        let s = w.summary(NOW, 300);
        assert_eq!((s.requests, s.errors), (3, 2));
        assert_eq!(s.total_tokens, 30);
        assert!((s.estimated_cost_usd - 1.5).abs() < 1e-9);
        assert!((s.error_rate - 2.0 / 3.0).abs() < 1e-9);
        assert!((s.requests_per_minute - 0.6).abs() < 1e-9);
        assert_eq!(w.summary(NOW, 5).requests, 1);
        assert_eq!(w.summary(NOW, 1).requests, 1, "now's own second");
        assert_eq!(w.summary(NOW - 1, 300).requests, 3, "nothing after now");
        assert_eq!(w.summary(NOW + 1000, 300).requests, 0);
        assert_eq!(w.summary(NOW, 3600).requests, 4);
        // Out-of-range windows are taken as 1 s and a day.
        assert_eq!(w.summary(NOW, 0).window_s, 1);
        assert_eq!(w.summary(NOW, u64::MAX).window_s, 86_400);
    }

    #[test]
    fn a_row_stamped_ahead_of_the_clock_is_left_out() {
        let mut w = UsageWindow::default();
        let now = chrono::Utc::now().timestamp();
        w.add(&row(now + 3600, 1.0, 200));
        w.add(&row(now, 1.0, 200));
        assert_eq!(w.summary(now + 3600, 7200).requests, 1);
        assert_eq!(w.summary(now, 60).requests, 1);
    }

    #[test]
    fn percentiles_are_exact_to_their_bin() {
        let mut w = UsageWindow::default();
        let mut exact = Vec::new();
        for i in 0..1000u32 {
            // 0.05 ms to ~5 s, spread over many octaves.
            let ms = 0.05 * 1.0116f64.powi(i as i32);
            exact.push(ms);
            w.add(&row(NOW - i64::from(i % 200), ms, 200));
        }
        exact.sort_by(f64::total_cmp);
        let s = w.summary(NOW, 300);
        for (got, p) in [(s.p50_ms.unwrap(), 0.50), (s.p95_ms.unwrap(), 0.95)] {
            let want = exact[(p * 1000.0) as usize - 1];
            let err = (got - want).abs() / want;
            assert!(err < 0.045, "p{p}: {got} against {want} ({err})");
        }
        assert_eq!(UsageWindow::default().summary(NOW, 300).p50_ms, None);
    }

    #[test]
    fn a_slot_is_taken_over_by_its_next_period_and_older_rows_are_left_out() {
        let mut w = UsageWindow::default();
        w.add(&row(NOW, 1.0, 200));
        // The same second-slot an hour later: the old count is gone from that ring.
        w.add(&row(NOW + 3600, 1.0, 200));
        assert_eq!(w.summary(NOW + 3600, 3600).requests, 1);
        // A row older than the slot's current period is not counted there.
        w.add(&row(NOW, 1.0, 200));
        assert_eq!(w.summary(NOW + 3600, 3600).requests, 1);
        // The day ring still has both hours (to the minute).
        assert_eq!(w.summary(NOW + 3600, 7200).requests, 3);
    }

    #[test]
    fn windows_longer_than_an_hour_are_summed_by_the_minute() {
        let mut w = UsageWindow::default();
        w.add(&row(NOW - 86_000, 1.0, 200));
        w.add(&row(NOW - 7000, 1.0, 500));
        w.add(&row(NOW - 30, 1.0, 200));
        let day = w.summary(NOW, 86_400);
        assert_eq!((day.requests, day.errors), (3, 1));
        assert_eq!(w.summary(NOW, 7200).requests, 2);
        assert_eq!(w.summary(NOW, 3601).requests, 1);
    }

    #[test]
    fn a_histogram_holds_at_most_one_entry_per_bin() {
        let mut w = UsageWindow::default();
        for i in 0..100_000u32 {
            w.add(&row(NOW, f64::from(i % 5000) * 0.37 + 0.001, 200));
        }
        w.add(&row(NOW, f64::NAN, 200));
        w.add(&row(NOW, 1e12, 200));
        let slot = w.seconds.slots.iter().find(|s| s.start == NOW).unwrap();
        assert!(slot.latency.len() <= BINS);
        assert!(slot.latency.windows(2).all(|p| p[0].0 < p[1].0));
        assert_eq!(w.summary(NOW, 1).requests, 100_002);
    }

    #[test]
    fn timestamps_are_read_as_chrono_reads_them() {
        for ts in [
            "1970-01-01T00:00:00Z",
            "2026-11-30T09:45:42.123Z",
            "2000-02-29T23:59:59.999999Z",
            "1900-03-01T00:00:00Z",
            "2100-03-01T00:00:00.5Z",
            "1969-12-31T23:59:59Z",
            "2026-11-30T18:45:42.123+09:00",
        ] {
            let want = chrono::DateTime::parse_from_rfc3339(ts)
                .unwrap()
                .timestamp();
            assert_eq!(unix_seconds(ts), want, "{ts}");
        }
        for odd in [
            "2026-13-01T00:00:00Z",
            "2026-11-30 09:45:42Z",
            "2026-11-30T09:45:42.1xZ",
        ] {
            assert_eq!(utc_seconds(odd), None, "{odd}");
        }
    }

    #[test]
    fn an_unreadable_timestamp_counts_as_now() {
        let mut w = UsageWindow::default();
        let mut r = row(NOW, 1.0, 200);
        r.ts = "yesterday".into();
        w.add(&r);
        assert_eq!(w.summary(chrono::Utc::now().timestamp(), 60).requests, 1);
    }
}
