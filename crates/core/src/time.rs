//! Timestamps between `google.protobuf.Timestamp` and `chrono`, at the
//! microsecond precision both storage backends keep.

use chrono::{DateTime, Utc};
use prost_types::Timestamp;

pub fn timestamp(t: DateTime<Utc>) -> Timestamp {
    Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    }
}

pub fn opt_timestamp(t: Option<DateTime<Utc>>) -> Option<Timestamp> {
    t.map(timestamp)
}

/// The latest timestamp accepted from a request: 9999-12-31T23:59:59Z.
const MAX_SECONDS: i64 = 253_402_300_799;

/// A timestamp from a request, at the microsecond precision both backends
/// store; `None` before 1970 or after year 9999, or with invalid nanos.
pub fn from_timestamp(t: &Timestamp) -> Option<DateTime<Utc>> {
    if !(0..1_000_000_000).contains(&t.nanos) || !(0..=MAX_SECONDS).contains(&t.seconds) {
        return None;
    }
    DateTime::from_timestamp(t.seconds, (t.nanos / 1000 * 1000) as u32)
}

/// The current time at microsecond precision, which both backends store
/// exactly.
pub fn now() -> DateTime<Utc> {
    let t = Utc::now();
    DateTime::from_timestamp_micros(t.timestamp_micros()).unwrap_or(t)
}

/// Where a service reads the time, so that tests can move it (lockouts,
/// expiries) instead of sleeping.
pub trait Clock: Send + Sync + 'static {
    /// Now, at microsecond precision.
    fn now(&self) -> DateTime<Utc>;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        now()
    }
}

/// A clock that stands still until moved (tests).
#[derive(Debug, Clone)]
pub struct ManualClock(std::sync::Arc<std::sync::Mutex<DateTime<Utc>>>);

impl ManualClock {
    /// A clock showing the current time, standing still.
    pub fn new() -> Self {
        Self(std::sync::Arc::new(std::sync::Mutex::new(now())))
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: chrono::Duration) {
        let mut at = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *at += by;
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_timestamps_outside_the_stored_range_are_refused() {
        assert!(
            from_timestamp(&Timestamp {
                seconds: -1,
                nanos: 0
            })
            .is_none()
        );
        assert!(
            from_timestamp(&Timestamp {
                seconds: 0,
                nanos: -1
            })
            .is_none()
        );
        assert!(
            from_timestamp(&Timestamp {
                seconds: MAX_SECONDS + 1,
                nanos: 0
            })
            .is_none()
        );
        let t = from_timestamp(&Timestamp {
            seconds: 10,
            nanos: 1_234_567,
        })
        .unwrap();
        assert_eq!(t.timestamp_subsec_nanos(), 1_234_000);
        assert_eq!(timestamp(now()).nanos % 1000, 0);
    }

    #[test]
    fn a_manual_clock_moves_only_when_told() {
        let clock = ManualClock::new();
        let start = clock.now();
        assert_eq!(clock.now(), start);
        clock.advance(chrono::Duration::minutes(15));
        assert_eq!(clock.now() - start, chrono::Duration::minutes(15));
    }
}
