//! The pure parts of resilient routing: circuit breakers, backoff, target
//! selection and which failures are worth another try. Time and randomness
//! come in as arguments, so the rules are tested deterministically.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use portico_model::{ErrorKind, ProviderError};

use crate::policy::{CircuitBreaker, RetryPolicy};

/// Whether a failure may succeed on another try or another target: rate
/// limited (429), upstream or gateway-side trouble (5xx: errors, overload,
/// timeouts, unreachable). Other client errors are final.
pub fn is_retryable(error: &ProviderError) -> bool {
    error.status == 429
        || error.status >= 500
        || matches!(
            error.kind,
            ErrorKind::RateLimited | ErrorKind::Overloaded | ErrorKind::Upstream
        )
}

/// Exponential backoff with full jitter before retry number `retry` (1 for
/// the first retry): uniform in `[0, min(max, initial * 2^(retry-1))]`.
/// `unit` is a random number in `[0, 1)`.
pub fn backoff(policy: &RetryPolicy, retry: u32, unit: f64) -> Duration {
    let exponent = retry.saturating_sub(1).min(32);
    let ceiling = policy
        .initial_backoff_ms
        .saturating_mul(1u64 << exponent)
        .min(policy.max_backoff_ms);
    let unit = unit.clamp(0.0, 1.0);
    Duration::from_millis((ceiling as f64 * unit) as u64)
}

/// What to do after a retryable failure of a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextStep {
    /// Wait this long, then try the same target again.
    RetryAfter(Duration),
    /// Give up on this target and try the next one.
    MoveOn,
}

/// Decides between retrying and moving on, after `attempts` attempts on the
/// target. An upstream `Retry-After` replaces the backoff; one longer than
/// the policy's longest backoff is not worth waiting for.
pub fn next_step(
    policy: &RetryPolicy,
    attempts: u32,
    error: &ProviderError,
    unit: f64,
) -> NextStep {
    if attempts >= policy.max_attempts {
        return NextStep::MoveOn;
    }
    match error.retry_after_ms {
        Some(ms) if ms > policy.max_backoff_ms => NextStep::MoveOn,
        Some(ms) => NextStep::RetryAfter(Duration::from_millis(ms)),
        None => NextStep::RetryAfter(backoff(policy, attempts, unit)),
    }
}

/// Picks an index by weight; `unit` is a random number in `[0, 1)`.
/// `None` when no weight is positive.
pub fn pick_weighted(weights: &[u32], unit: f64) -> Option<usize> {
    let total: u64 = weights.iter().map(|&w| u64::from(w)).sum();
    if total == 0 {
        return None;
    }
    let point = ((total as f64) * unit.clamp(0.0, 1.0)) as u64;
    let point = point.min(total - 1);
    let mut acc = 0u64;
    for (i, &w) in weights.iter().enumerate() {
        acc += u64::from(w);
        if point < acc {
            return Some(i);
        }
    }
    None
}

/// A random number in `[0, 1)` for weighted picks and jitter: a fast
/// thread-local generator, since nothing here needs to be unpredictable
/// (and a system call per request would show in the benchmark).
pub fn random_unit() -> f64 {
    fastrand::f64()
}

/// May a call go to a target now?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Closed breaker: go.
    Go,
    /// Cool-down over: this call is the one probe.
    Probe,
    /// Open: skip the target; it may be tried again after this long.
    Open(Duration),
}

#[derive(Debug, Default)]
struct BreakerState {
    consecutive_failures: u32,
    open_until: Option<Instant>,
    /// When the current probe started; another probe is allowed if it has
    /// not reported within a cool-down (its caller went away).
    probe_started: Option<Instant>,
}

/// Circuit breakers, one per target endpoint name, shared by every call.
#[derive(Debug, Default)]
pub struct Breakers {
    states: Mutex<HashMap<String, BreakerState>>,
}

impl Breakers {
    fn with<R>(&self, target: &str, f: impl FnOnce(&mut BreakerState) -> R) -> R {
        // A poisoned lock only means a panic elsewhere mid-update; the
        // counters are still usable.
        let mut states = self.states.lock().unwrap_or_else(|e| e.into_inner());
        f(states.entry(target.to_string()).or_default())
    }

    /// Whether the target is open (without taking the probe), and for how
    /// much longer.
    pub fn open_for(
        &self,
        target: &str,
        config: &CircuitBreaker,
        now: Instant,
    ) -> Option<Duration> {
        match self.peek(target, config, now) {
            Admission::Open(left) => Some(left),
            _ => None,
        }
    }

    fn peek(&self, target: &str, config: &CircuitBreaker, now: Instant) -> Admission {
        let states = self.states.lock().unwrap_or_else(|e| e.into_inner());
        match states.get(target) {
            Some(state) => classify(state, config, now),
            None => Admission::Go,
        }
    }

    /// Admits a call to the target, taking the probe when the cool-down is
    /// over.
    pub fn admit(&self, target: &str, config: &CircuitBreaker, now: Instant) -> Admission {
        self.with(target, |state| {
            let admission = classify(state, config, now);
            if admission == Admission::Probe {
                state.probe_started = Some(now);
            }
            admission
        })
    }

    /// The target answered: the breaker closes.
    pub fn success(&self, target: &str) {
        self.with(target, |state| *state = BreakerState::default());
    }

    /// The target failed; returns true when this opened the breaker.
    pub fn failure(&self, target: &str, config: &CircuitBreaker, now: Instant) -> bool {
        self.with(target, |state| {
            state.consecutive_failures = state.consecutive_failures.saturating_add(1);
            let probing = state.probe_started.take().is_some();
            let cooldown = Duration::from_millis(config.cooldown_ms);
            if probing
                || (state.open_until.is_none()
                    && state.consecutive_failures >= config.failure_threshold)
            {
                state.open_until = Some(now + cooldown);
                true
            } else {
                false
            }
        })
    }
}

fn classify(state: &BreakerState, config: &CircuitBreaker, now: Instant) -> Admission {
    let Some(open_until) = state.open_until else {
        return Admission::Go;
    };
    if now < open_until {
        return Admission::Open(open_until - now);
    }
    let cooldown = Duration::from_millis(config.cooldown_ms);
    match state.probe_started {
        Some(started) if now < started + cooldown => {
            // A probe is out: the others wait for its outcome.
            Admission::Open(started + cooldown - now)
        }
        _ => Admission::Probe,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn retry(max_attempts: u32) -> RetryPolicy {
        RetryPolicy {
            max_attempts,
            initial_backoff_ms: 100,
            max_backoff_ms: 1_000,
        }
    }

    #[test]
    fn backoff_grows_exponentially_capped_and_jittered() {
        let policy = retry(10);
        assert_eq!(backoff(&policy, 1, 0.999_999), Duration::from_millis(99));
        assert_eq!(backoff(&policy, 2, 0.5), Duration::from_millis(100));
        assert_eq!(backoff(&policy, 3, 1.0), Duration::from_millis(400));
        assert_eq!(backoff(&policy, 5, 1.0), Duration::from_millis(1_000));
        assert_eq!(backoff(&policy, 60, 1.0), Duration::from_millis(1_000));
        assert_eq!(backoff(&policy, 3, 0.0), Duration::ZERO);
    }

    #[test]
    fn next_step_honours_retry_after_and_attempt_limit() {
        let policy = retry(3);
        let plain = ProviderError::from_upstream(500, "boom", None);
        assert_eq!(
            next_step(&policy, 1, &plain, 0.5),
            NextStep::RetryAfter(Duration::from_millis(50))
        );
        assert_eq!(next_step(&policy, 3, &plain, 0.5), NextStep::MoveOn);
        let limited = ProviderError::from_upstream(429, "slow down", Some(700));
        assert_eq!(
            next_step(&policy, 1, &limited, 0.0),
            NextStep::RetryAfter(Duration::from_millis(700))
        );
        let too_long = ProviderError::from_upstream(429, "slow down", Some(1_001));
        assert_eq!(next_step(&policy, 1, &too_long, 0.0), NextStep::MoveOn);
        assert_eq!(next_step(&retry(1), 1, &plain, 0.0), NextStep::MoveOn);
    }

    #[test]
    fn retryable_statuses() {
        for status in [429, 500, 502, 503, 504, 529] {
            assert!(
                is_retryable(&ProviderError::from_upstream(status, "x", None)),
                "{status}"
            );
        }
        for status in [400, 401, 403, 404, 413, 422] {
            assert!(
                !is_retryable(&ProviderError::from_upstream(status, "x", None)),
                "{status}"
            );
        }
    }

    #[test]
    fn weighted_pick_is_proportional() {
        assert_eq!(pick_weighted(&[], 0.5), None);
        assert_eq!(pick_weighted(&[0, 0], 0.5), None);
        assert_eq!(pick_weighted(&[1, 3], 0.0), Some(0));
        assert_eq!(pick_weighted(&[1, 3], 0.2499), Some(0));
        assert_eq!(pick_weighted(&[1, 3], 0.25), Some(1));
        assert_eq!(pick_weighted(&[1, 3], 0.9999), Some(1));
        assert_eq!(pick_weighted(&[0, 5, 0], 0.1), Some(1));
        let mut counts = [0u32; 3];
        for i in 0..1000 {
            let unit = f64::from(i) / 1000.0;
            counts[pick_weighted(&[1, 2, 7], unit).unwrap()] += 1;
        }
        assert_eq!(counts, [100, 200, 700]);
        for _ in 0..100 {
            let u = random_unit();
            assert!((0.0..1.0).contains(&u));
        }
    }

    #[test]
    fn breaker_opens_cools_down_probes_and_closes() {
        let config = CircuitBreaker {
            failure_threshold: 3,
            cooldown_ms: 1_000,
        };
        let breakers = Breakers::default();
        let t0 = Instant::now();
        assert_eq!(breakers.admit("a", &config, t0), Admission::Go);
        assert!(!breakers.failure("a", &config, t0));
        assert!(!breakers.failure("a", &config, t0));
        breakers.success("a"); // consecutive failures only
        assert!(!breakers.failure("a", &config, t0));
        assert!(!breakers.failure("a", &config, t0));
        assert!(breakers.failure("a", &config, t0), "third in a row opens");
        let half = t0 + Duration::from_millis(500);
        assert_eq!(
            breakers.admit("a", &config, half),
            Admission::Open(Duration::from_millis(500))
        );
        assert_eq!(
            breakers.open_for("a", &config, half),
            Some(Duration::from_millis(500))
        );
        assert_eq!(
            breakers.admit("b", &config, half),
            Admission::Go,
            "per target"
        );
        // After the cool-down exactly one probe goes; the rest wait for it.
        let later = t0 + Duration::from_millis(1_000);
        assert_eq!(
            breakers.open_for("a", &config, later),
            None,
            "peeking takes no probe"
        );
        assert_eq!(breakers.admit("a", &config, later), Admission::Probe);
        assert!(matches!(
            breakers.admit("a", &config, later),
            Admission::Open(_)
        ));
        // A failed probe opens it again for a full cool-down.
        assert!(breakers.failure("a", &config, later));
        assert_eq!(
            breakers.admit("a", &config, later + Duration::from_millis(999)),
            Admission::Open(Duration::from_millis(1))
        );
        let again = later + Duration::from_millis(1_000);
        assert_eq!(breakers.admit("a", &config, again), Admission::Probe);
        breakers.success("a");
        assert_eq!(breakers.admit("a", &config, again), Admission::Go);
        assert!(
            !breakers.failure("a", &config, again),
            "closed: counts from zero"
        );
    }

    #[test]
    fn lost_probe_is_replaced_after_a_cooldown() {
        let config = CircuitBreaker {
            failure_threshold: 1,
            cooldown_ms: 100,
        };
        let breakers = Breakers::default();
        let t0 = Instant::now();
        assert!(breakers.failure("a", &config, t0));
        let t1 = t0 + Duration::from_millis(100);
        assert_eq!(breakers.admit("a", &config, t1), Admission::Probe);
        // The probe never reports (its client went away).
        let t2 = t1 + Duration::from_millis(100);
        assert_eq!(breakers.admit("a", &config, t2), Admission::Probe);
    }
}
