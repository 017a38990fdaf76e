//! What a key may spend: its request rate (a GCRA token bucket, [`governor`]) and its monthly
//! budget in the price table's currency, read from the ledger and counted on from there.

use std::num::NonZeroU32;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use chrono::{Datelike as _, TimeZone as _, Utc};
use governor::clock::{Clock as _, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use serde::Serialize;

/// A key's limits, as `ember keys create` sets them; `None` is no limit.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Limits {
    /// Requests per second, sustained.
    pub rate: Option<f64>,
    /// Requests at once above the rate (the bucket's size); default: one second's worth.
    pub burst: Option<u32>,
    /// Spend per calendar month (UTC), in the price table's currency.
    pub budget: Option<f64>,
}

/// Reads a rate: `R`, `R/s`, `R/m` or `R/h` (requests per second, minute or hour) → per second.
pub fn parse_rate(text: &str) -> Result<f64, String> {
    let (count, per) = text.split_once('/').unwrap_or((text, "s"));
    let seconds = match per.trim() {
        "s" | "sec" | "second" => 1.0,
        "m" | "min" | "minute" => 60.0,
        "h" | "hour" => 3600.0,
        other => return Err(format!("'{other}' is not a period: use s, m or h")),
    };
    let count: f64 = count
        .trim()
        .parse()
        .map_err(|_| format!("'{count}' is not a number of requests"))?;
    if !(count.is_finite() && count > 0.0) {
        return Err("a rate is a positive number of requests".into());
    }
    Ok(count / seconds)
}

/// Reads a budget: `AMOUNT` or `AMOUNT/month`, in the price table's currency.
pub fn parse_budget(text: &str) -> Result<f64, String> {
    let amount = text.strip_suffix("/month").unwrap_or(text).trim();
    match amount.parse::<f64>() {
        Ok(amount) if amount.is_finite() && amount >= 0.0 => Ok(amount),
        _ => Err(format!("'{amount}' is not an amount (e.g. 25 or 25/month)")),
    }
}

/// A key's request rate: a bucket of `burst` requests refilled at `rate` per second.
pub struct RateLimit {
    limiter: RateLimiter<NotKeyed, InMemoryState, DefaultClock, StateInformationMiddleware>,
    rate: f64,
    burst: u32,
}

/// A request the rate allowed, with what is left of the bucket.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Allowance {
    /// The bucket's size.
    pub limit: u32,
    /// Requests that may still go at once.
    pub remaining: u32,
    /// Seconds until the bucket is full again.
    pub reset_s: u64,
}

/// A request over the rate: when the next one would be allowed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OverRate {
    /// The bucket's size.
    pub limit: u32,
    /// Whole seconds until a request is allowed again (at least 1).
    pub retry_after_s: u64,
}

impl RateLimit {
    /// A bucket for `rate` requests per second and `burst` at once (default: a second's worth,
    /// at least one).
    pub fn new(rate: f64, burst: Option<u32>) -> Self {
        let burst = burst.unwrap_or(rate.ceil() as u32).max(1);
        let period = Duration::from_secs_f64(1.0 / rate).max(Duration::from_nanos(1));
        let quota = Quota::with_period(period)
            .expect("a positive period")
            .allow_burst(NonZeroU32::new(burst).expect("at least one"));
        Self {
            limiter: RateLimiter::direct(quota).with_middleware(),
            rate,
            burst,
        }
    }

    /// Takes one request from the bucket, or says when there will be one.
    pub fn check(&self) -> Result<Allowance, OverRate> {
        match self.limiter.check() {
            Ok(snapshot) => {
                let remaining = snapshot.remaining_burst_capacity();
                Ok(Allowance {
                    limit: self.burst,
                    remaining,
                    reset_s: (f64::from(self.burst - remaining) / self.rate).ceil() as u64,
                })
            }
            Err(not_until) => {
                let wait = not_until.wait_time_from(self.limiter.clock().now());
                Err(OverRate {
                    limit: self.burst,
                    retry_after_s: wait.as_secs_f64().ceil().max(1.0) as u64,
                })
            }
        }
    }
}

/// What a key has spent this calendar month (UTC), counted on from the ledger's total.
#[derive(Debug)]
pub struct Spend {
    month: Mutex<MonthSpend>,
}

#[derive(Debug)]
struct MonthSpend {
    /// Where the month ends (the next one starts), µs since the epoch.
    end_us: i64,
    spent: f64,
}

/// The start of the month after the one starting at `start_us`: 32 days on is always in it.
fn next_month_us(start_us: i64) -> i64 {
    month_start_us(start_us + 32 * 86_400 * 1_000_000)
}

/// The start of the calendar month (UTC) that `now_us` falls in, µs since the epoch.
pub fn month_start_us(now_us: i64) -> i64 {
    let now = Utc.timestamp_micros(now_us).single().unwrap_or_default();
    Utc.with_ymd_and_hms(now.year(), now.month(), 1, 0, 0, 0)
        .single()
        .map_or(0, |start| start.timestamp_micros())
}

impl Spend {
    /// A month that starts at `start_us` with `spent` already billed.
    pub fn new(start_us: i64, spent: f64) -> Self {
        Self {
            month: Mutex::new(MonthSpend {
                end_us: next_month_us(start_us),
                spent,
            }),
        }
    }

    /// The month `now_us` falls in (a new month starts at zero), locked.
    fn month(&self, now_us: i64) -> MutexGuard<'_, MonthSpend> {
        let mut month = self.month.lock().unwrap_or_else(|p| p.into_inner());
        if now_us >= month.end_us {
            *month = MonthSpend {
                end_us: next_month_us(month_start_us(now_us)),
                spent: 0.0,
            };
        }
        month
    }

    /// What has been spent in the month of `now_us`.
    pub fn current(&self, now_us: i64) -> f64 {
        self.month(now_us).spent
    }

    /// Adds an invocation's cost, billed at `at_us`.
    pub fn charge(&self, at_us: i64, cost: f64) {
        self.month(at_us).spent += cost;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_and_budgets_read_as_operators_write_them() {
        assert_eq!(parse_rate("5"), Ok(5.0));
        assert_eq!(parse_rate("5/s"), Ok(5.0));
        assert_eq!(parse_rate("120/m"), Ok(2.0));
        assert!(parse_rate("0").is_err());
        assert!(parse_rate("5/week").unwrap_err().contains("not a period"));
        assert_eq!(parse_budget("25/month"), Ok(25.0));
        assert!(parse_budget("-1").is_err());
    }

    #[test]
    fn a_burst_gets_exactly_the_bucket_through_and_then_a_retry_time() {
        let limit = RateLimit::new(0.5, Some(3));
        let allowed: Vec<_> = (0..5).map(|_| limit.check()).collect();
        assert_eq!(
            allowed.iter().filter(|a| a.is_ok()).count(),
            3,
            "{allowed:?}"
        );
        assert_eq!(allowed[0].unwrap().remaining, 2);
        assert_eq!(allowed[2].unwrap().remaining, 0);
        assert_eq!(allowed[2].unwrap().reset_s, 6, "3 requests at 0.5/s");
        let over = allowed[4].unwrap_err();
        assert_eq!(over.limit, 3);
        assert!((1..=2).contains(&over.retry_after_s), "{over:?}");
    }

    #[test]
    fn spend_restarts_with_each_calendar_month() {
        // 2026-12-03T18:00:00Z and 2027-01-01T00:00:01Z.
        let december = 1_796_320_800_000_000;
        let january = 1_798_761_601_000_000;
        assert_eq!(month_start_us(december), 1_796_083_200_000_000);
        let spend = Spend::new(month_start_us(december), 1.5);
        spend.charge(december, 0.25);
        assert_eq!(spend.current(december), 1.75);
        assert_eq!(spend.current(january), 0.0);
    }
}
