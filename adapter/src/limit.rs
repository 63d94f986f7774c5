//! `[rate]`: a partner's rate limits (DESIGN §9) — requests per second and calls in flight,
//! shared by every call of the process (the connector's commands and checks, or the mall's
//! pre-check reads) — and its `429 Retry-After`, which pauses them all.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rate {
    pub per_second: Option<f64>,
    pub in_flight: Option<usize>,
}

impl Rate {
    pub fn check(&self) -> Result<(), String> {
        if let Some(rate) = self.per_second
            && !(rate.is_finite() && rate > 0.0 && rate <= 100_000.0)
        {
            return Err(format!("per_second is {rate}; give a rate above 0"));
        }
        if self.in_flight == Some(0) {
            return Err("in_flight is 0: no call could ever be made".into());
        }
        Ok(())
    }
}

/// The longest `Retry-After` a call waits out itself; a longer one is the connector's back-off.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub struct Limiter {
    interval: Option<Duration>,
    in_flight: Option<Arc<Semaphore>>,
    /// The next free start and the end of a partner's pause.
    slots: Mutex<(Instant, Instant)>,
}

impl Limiter {
    pub fn new(rate: Option<Rate>) -> Self {
        let rate = rate.unwrap_or(Rate {
            per_second: None,
            in_flight: None,
        });
        let now = Instant::now();
        Self {
            interval: rate.per_second.map(|r| Duration::from_secs_f64(1.0 / r)),
            in_flight: rate.in_flight.map(|n| Arc::new(Semaphore::new(n))),
            slots: Mutex::new((now, now)),
        }
    }

    /// Waits for a slot: a place among the calls in flight, then a start the rate allows.
    pub async fn acquire(&self) -> Option<OwnedSemaphorePermit> {
        let permit = match &self.in_flight {
            Some(semaphore) => semaphore.clone().acquire_owned().await.ok(),
            None => None,
        };
        let start = {
            let mut slots = self
                .slots
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let start = Instant::now().max(slots.0).max(slots.1);
            if let Some(interval) = self.interval {
                slots.0 = start + interval;
            }
            start
        };
        tokio::time::sleep_until(start).await;
        permit
    }

    /// The partner asked for a pause (429): no call starts before `wait` has passed.
    pub fn pause(&self, wait: Duration) {
        let until = Instant::now() + wait;
        let mut slots = self
            .slots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        slots.1 = slots.1.max(until);
    }
}

/// `Retry-After` in seconds or as an HTTP date.
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(
        at.duration_since(std::time::SystemTime::now())
            .unwrap_or_default(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn calls_start_no_faster_than_the_rate_and_wait_out_a_pause() {
        let limiter = Limiter::new(Some(Rate {
            per_second: Some(10.0),
            in_flight: None,
        }));
        let begin = Instant::now();
        for _ in 0..5 {
            limiter.acquire().await;
        }
        assert!(
            begin.elapsed() >= Duration::from_millis(400),
            "{:?}",
            begin.elapsed()
        );
        limiter.pause(Duration::from_secs(3));
        let paused = Instant::now();
        limiter.acquire().await;
        assert!(paused.elapsed() >= Duration::from_secs(3));
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(reqwest::header::RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(7)));
        let later = httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(60));
        headers.insert(reqwest::header::RETRY_AFTER, later.parse().unwrap());
        let wait = retry_after(&headers).unwrap();
        assert!(
            wait > Duration::from_secs(50) && wait <= Duration::from_secs(60),
            "{wait:?}"
        );
    }
}
