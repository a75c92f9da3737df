//! Per-minute rate limits as token buckets.
//!
//! Each limit is a bucket holding up to one minute's budget, refilled
//! continuously at budget/60 per second; a fresh bucket is full. So a
//! limit of N per minute allows a burst of N, then one more every 60/N
//! seconds: over any minute at most about 2N pass, and over longer spans
//! the average is N per minute.
//!
//! - Requests: a call is admitted when every request bucket that applies
//!   holds at least one unit, and then takes one from each. The check and
//!   the take happen under one lock, so concurrent calls never overshoot.
//! - Tokens: a call's tokens are known only when it ends, so admission
//!   only needs the token bucket to be positive; [`Limiter::charge`] takes
//!   the tokens used afterwards. The bucket may go negative (calls running
//!   at the same time all got in), down to one minute's budget of debt:
//!   then calls are refused until the refill brings it above zero again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Time source, injectable for tests.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Instant;
}

/// The monotonic system clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// What a limit counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Unit {
    Requests,
    Tokens,
}

/// Whose budget a bucket is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Scope {
    Endpoint(String),
    Key(String),
}

/// One limit that applies to a call.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    pub scope: Scope,
    pub unit: Unit,
    pub per_minute: u32,
}

/// A refused call: the limit that refused it and when to try again.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub check: Check,
    pub retry_after: Duration,
}

struct Bucket {
    per_minute: u32,
    level: f64,
    updated: Instant,
}

impl Bucket {
    fn new(per_minute: u32, now: Instant) -> Self {
        Bucket {
            per_minute,
            level: f64::from(per_minute),
            updated: now,
        }
    }

    /// Refills for the time since the last update, and follows a changed
    /// limit (keeping the level, capped at the new budget).
    fn refresh(&mut self, per_minute: u32, now: Instant) {
        self.per_minute = per_minute;
        self.level = self.level_at(now).min(f64::from(per_minute));
        self.updated = now;
    }

    /// The level refilled at the current rate up to `now`, not yet capped.
    fn level_at(&self, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.level + elapsed * f64::from(self.per_minute) / 60.0
    }

    /// Whether the bucket has refilled to its limit by `now`.
    fn is_full_at(&self, now: Instant) -> bool {
        self.level_at(now) >= f64::from(self.per_minute)
    }

    /// How long until the level reaches `needed` (zero if it has).
    fn wait_for(&self, needed: f64) -> Duration {
        let missing = needed - self.level;
        if missing <= 0.0 {
            return Duration::ZERO;
        }
        if self.per_minute == 0 {
            // A zero limit never refills: ask to come back in a minute.
            return Duration::from_secs(60);
        }
        // Round up to whole milliseconds so a retry at that time succeeds.
        let ms = (missing * 60_000.0 / f64::from(self.per_minute)).ceil();
        Duration::from_millis(ms as u64).max(Duration::from_millis(1))
    }
}

/// All buckets, behind one lock: admission is a few map lookups and float
/// operations, far cheaper than the upstream call it guards.
pub struct Limiter {
    clock: Arc<dyn Clock>,
    buckets: Mutex<HashMap<(Scope, Unit), Bucket>>,
}

impl Default for Limiter {
    fn default() -> Self {
        Self::new(Arc::new(SystemClock))
    }
}

impl Limiter {
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Limiter {
            clock,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Admits a call against every check, or refuses it with the check
    /// that would make it wait longest. A refused call takes nothing.
    pub fn admit(&self, checks: &[Check]) -> Result<(), Refusal> {
        if checks.is_empty() {
            return Ok(());
        }
        let now = self.clock.now();
        // A panic elsewhere cannot leave a bucket half-updated in a way
        // that matters (levels are plain numbers), so poison is ignored.
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        let mut refusal: Option<Refusal> = None;
        for check in checks {
            let bucket = buckets
                .entry((check.scope.clone(), check.unit))
                .or_insert_with(|| Bucket::new(check.per_minute, now));
            bucket.refresh(check.per_minute, now);
            let wait = match check.unit {
                Unit::Requests => bucket.wait_for(1.0),
                // Any positive balance admits; the call's tokens are
                // charged when it ends.
                Unit::Tokens if bucket.level > 0.0 => Duration::ZERO,
                Unit::Tokens => bucket.wait_for(f64::MIN_POSITIVE),
            };
            if !wait.is_zero() && refusal.as_ref().is_none_or(|r| r.retry_after < wait) {
                refusal = Some(Refusal {
                    check: check.clone(),
                    retry_after: wait,
                });
            }
        }
        if let Some(refusal) = refusal {
            return Err(refusal);
        }
        for check in checks.iter().filter(|c| c.unit == Unit::Requests) {
            if let Some(bucket) = buckets.get_mut(&(check.scope.clone(), Unit::Requests)) {
                bucket.level -= 1.0;
            }
        }
        Ok(())
    }

    /// Takes `tokens` from the token bucket of `scope`, if that scope has
    /// a token limit (a bucket exists once a call was admitted under it).
    pub fn charge(&self, scope: &Scope, tokens: u64) {
        if tokens == 0 {
            return;
        }
        let now = self.clock.now();
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(bucket) = buckets.get_mut(&(scope.clone(), Unit::Tokens)) {
            bucket.refresh(bucket.per_minute, now);
            let floor = -f64::from(bucket.per_minute);
            bucket.level = (bucket.level - tokens as f64).max(floor);
        }
    }

    /// Forgets the buckets of a scope (a revoked key).
    pub fn forget(&self, scope: &Scope) {
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        buckets.retain(|(s, _), _| s != scope);
    }

    /// Drops the buckets that have refilled to their limit: one would start
    /// full if needed again, so nothing changes for callers, while buckets
    /// of deleted endpoints and keys, or of limits since removed, go away
    /// instead of staying until a restart. Returns how many were dropped.
    pub fn forget_full(&self) -> usize {
        let now = self.clock.now();
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        let before = buckets.len();
        buckets.retain(|_, bucket| !bucket.is_full_at(now));
        before - buckets.len()
    }

    /// Buckets kept (tests).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.buckets
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A clock that moves only when told to.
    struct ManualClock(Mutex<Instant>);

    impl ManualClock {
        fn advance(&self, by: Duration) {
            *self.0.lock().unwrap() += by;
        }
    }

    impl Clock for ManualClock {
        fn now(&self) -> Instant {
            *self.0.lock().unwrap()
        }
    }

    fn limiter() -> (Arc<ManualClock>, Limiter) {
        let clock = Arc::new(ManualClock(Mutex::new(Instant::now())));
        (clock.clone(), Limiter::new(clock))
    }

    fn requests(scope: Scope, per_minute: u32) -> Check {
        Check {
            scope,
            unit: Unit::Requests,
            per_minute,
        }
    }

    fn tokens(scope: Scope, per_minute: u32) -> Check {
        Check {
            scope,
            unit: Unit::Tokens,
            per_minute,
        }
    }

    fn endpoint(name: &str) -> Scope {
        Scope::Endpoint(name.into())
    }

    #[test]
    fn requests_burst_then_refill_at_the_rate() {
        let (clock, limiter) = limiter();
        let check = [requests(endpoint("a"), 10)];
        for _ in 0..10 {
            limiter.admit(&check).unwrap();
        }
        let refused = limiter.admit(&check).unwrap_err();
        assert_eq!(refused.check, check[0]);
        // 10 per minute: one more every 6 s.
        assert_eq!(refused.retry_after, Duration::from_secs(6));
        clock.advance(Duration::from_secs(3));
        assert_eq!(
            limiter.admit(&check).unwrap_err().retry_after,
            Duration::from_secs(3)
        );
        clock.advance(Duration::from_secs(3));
        limiter.admit(&check).unwrap();
        assert!(limiter.admit(&check).is_err());
        // A full minute later the whole budget is back, never more.
        clock.advance(Duration::from_secs(600));
        for _ in 0..10 {
            limiter.admit(&check).unwrap();
        }
        assert!(limiter.admit(&check).is_err());
    }

    #[test]
    fn scopes_are_independent_and_a_refused_call_takes_nothing() {
        let (_clock, limiter) = limiter();
        let key = requests(Scope::Key("k".into()), 2);
        let a = requests(endpoint("a"), 5);
        let b = requests(endpoint("b"), 5);
        limiter.admit(&[a.clone(), key.clone()]).unwrap();
        limiter.admit(&[b.clone(), key.clone()]).unwrap();
        // The key's budget is spent; the endpoints' are not.
        let refused = limiter.admit(&[a.clone(), key.clone()]).unwrap_err();
        assert_eq!(refused.check, key);
        // The refusal did not take from endpoint a: 4 remain.
        for _ in 0..4 {
            limiter.admit(std::slice::from_ref(&a)).unwrap();
        }
        assert!(limiter.admit(std::slice::from_ref(&a)).is_err());
        limiter.admit(std::slice::from_ref(&b)).unwrap();
    }

    #[test]
    fn tokens_are_charged_after_the_call_and_block_until_refilled() {
        let (clock, limiter) = limiter();
        let scope = endpoint("a");
        let check = [tokens(scope.clone(), 600)];
        limiter.admit(&check).unwrap();
        limiter.charge(&scope, 500);
        // 100 left: still admitted.
        limiter.admit(&check).unwrap();
        limiter.charge(&scope, 400);
        // 300 in debt at 10 per second: 30 s to get above zero.
        let refused = limiter.admit(&check).unwrap_err();
        assert_eq!(refused.retry_after, Duration::from_secs(30));
        clock.advance(Duration::from_secs(29));
        assert!(limiter.admit(&check).is_err());
        clock.advance(Duration::from_secs(2));
        limiter.admit(&check).unwrap();
        // Debt is capped at one minute's budget: a huge call blocks for at
        // most a minute more.
        limiter.charge(&scope, 1_000_000);
        assert_eq!(
            limiter.admit(&check).unwrap_err().retry_after,
            Duration::from_secs(60)
        );
    }

    #[test]
    fn charging_without_a_token_limit_does_nothing_and_changed_limits_apply() {
        let (_clock, limiter) = limiter();
        limiter.charge(&endpoint("none"), 10);
        assert!(limiter.buckets.lock().unwrap().is_empty());
        let scope = endpoint("a");
        limiter.admit(&[requests(scope.clone(), 100)]).unwrap();
        // Lowered to 1: the level is capped at the new budget.
        limiter.admit(&[requests(scope.clone(), 1)]).unwrap();
        assert!(limiter.admit(&[requests(scope.clone(), 1)]).is_err());
        limiter.forget(&scope);
        limiter.admit(&[requests(scope, 1)]).unwrap();
    }

    #[test]
    fn refilled_buckets_are_forgotten_without_changing_any_answer() {
        let (clock, limiter) = limiter();
        let gone = endpoint("deleted");
        let busy = endpoint("busy");
        let charged = Scope::Key("k".into());
        limiter.admit(&[requests(gone.clone(), 60)]).unwrap();
        for _ in 0..60 {
            limiter.admit(&[requests(busy.clone(), 60)]).unwrap();
        }
        limiter.admit(&[tokens(charged.clone(), 600)]).unwrap();
        limiter.charge(&charged, 1_000);
        assert_eq!(limiter.len(), 3);
        assert_eq!(limiter.forget_full(), 0, "nothing has refilled yet");

        // After 1 s: one request back in each request bucket, so only the
        // bucket that lost a single request is full again.
        clock.advance(Duration::from_secs(1));
        assert_eq!(limiter.forget_full(), 1);
        assert_eq!(limiter.len(), 2);
        assert!(limiter.admit(&[requests(busy.clone(), 60)]).is_ok());
        assert!(limiter.admit(&[requests(busy.clone(), 60)]).is_err());
        assert!(
            limiter.admit(&[tokens(charged.clone(), 600)]).is_err(),
            "still overdrawn"
        );

        // A minute on, every bucket is back at its limit: all are
        // forgotten, and fresh ones answer as the old ones would have.
        clock.advance(Duration::from_secs(120));
        assert_eq!(limiter.forget_full(), 2);
        assert_eq!(limiter.len(), 0);
        for _ in 0..60 {
            limiter.admit(&[requests(busy.clone(), 60)]).unwrap();
        }
        assert!(limiter.admit(&[requests(busy, 60)]).is_err());
        limiter.admit(&[tokens(charged, 600)]).unwrap();
    }

    #[test]
    fn concurrent_admissions_never_exceed_the_budget() {
        let limiter = Arc::new(Limiter::default());
        let admitted = std::sync::atomic::AtomicU32::new(0);
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    for _ in 0..100 {
                        if limiter.admit(&[requests(endpoint("a"), 50)]).is_ok() {
                            admitted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        // 800 attempts in well under a second: the burst of 50 plus at
        // most what refills meanwhile (under one per 1.2 s).
        let admitted = admitted.into_inner();
        assert!((50..=51).contains(&admitted), "{admitted}");
    }
}
