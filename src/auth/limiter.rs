//! Login throttling, in memory (a restart forgives, which is acceptable for
//! lockouts of minutes and keeps a flood of attempts off the disk):
//!
//! - **Per (name, address) pair**: `auth.max_failures_per_user` failures
//!   within `auth.failure_window_s` lock that name *from that address*; the
//!   same name from another address is not affected, so nobody can lock
//!   the admin out by guessing at `admin`. Each lockout of a pair that keeps
//!   failing lasts twice the one before (1 min, 2, 4, … up to
//!   `auth.lockout_s`); a pair quiet for a window starts over.
//! - **Per address**: `auth.max_failures_per_address` failures within the
//!   window lock the address for every name (a spray over many names),
//!   growing the same way.
//! - An attempt is **counted before its password is checked**, so a
//!   parallel burst cannot run more checks than the limits allow.
//! - **Concurrency**: at most `auth.login_concurrency` checks hash at once
//!   and `auth.login_queue` more wait; beyond that a login is refused at
//!   once (503 `login_busy`), so a burst costs neither memory nor time.
//! - Refused attempts against a locked pair are **counted, not written**:
//!   [`LoginLimiter::take_refusals`] hands out one total per pair and
//!   window for the audit log.
//! - `commune-ioc user unlock NAME` lifts every lockout of a name
//!   ([`LoginLimiter::unlock`]).

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config;

/// Most pairs or addresses tracked at once; beyond it, entries that are
/// neither locked nor recent are forgotten first.
const MAX_TRACKED: usize = 10_000;

/// Most pairs whose refused attempts are being counted for the audit log.
const MAX_REFUSALS: usize = 10_000;

/// The first lockout of a pair or address (capped by `auth.lockout_s`).
const FIRST_LOCKOUT: Duration = Duration::from_secs(60);

#[derive(Debug)]
struct Track {
    failures: VecDeque<Instant>,
    locked_until: Option<Instant>,
    /// Lockouts so far in this streak (each doubles the next one).
    lockouts: u32,
    last: Instant,
}

impl Track {
    fn new(now: Instant) -> Track {
        Track {
            failures: VecDeque::new(),
            locked_until: None,
            lockouts: 0,
            last: now,
        }
    }
}

#[derive(Debug)]
struct Table<K> {
    max_failures: usize,
    map: HashMap<K, Track>,
}

/// The limits of one table.
#[derive(Debug, Clone, Copy)]
struct Limits {
    window: Duration,
    first: Duration,
    max: Duration,
}

impl Limits {
    fn lockout(&self, nth: u32) -> Duration {
        let factor = 1u32 << nth.saturating_sub(1).min(16);
        self.first.saturating_mul(factor).min(self.max)
    }
}

impl<K: Hash + Eq + Clone> Table<K> {
    fn new(max_failures: u32) -> Table<K> {
        Table {
            max_failures: max_failures.max(1) as usize,
            map: HashMap::new(),
        }
    }

    fn locked(&self, k: &K, now: Instant) -> Option<Duration> {
        let until = self.map.get(k)?.locked_until?;
        (until > now).then(|| until - now)
    }

    fn make_room(&mut self, now: Instant, window: Duration) {
        self.map.retain(|_, t| {
            t.locked_until.is_some_and(|u| u > now) || now.duration_since(t.last) < window
        });
        if self.map.len() >= MAX_TRACKED {
            // Under a flood of new keys, keep only the locked ones.
            self.map
                .retain(|_, t| t.locked_until.is_some_and(|u| u > now));
        }
    }

    /// Count an attempt; true when it locked the key.
    fn count(&mut self, k: &K, now: Instant, l: Limits) -> bool {
        if self.map.len() >= MAX_TRACKED && !self.map.contains_key(k) {
            self.make_room(now, l.window);
        }
        let t = self.map.entry(k.clone()).or_insert_with(|| Track::new(now));
        let locked = t.locked_until.is_some_and(|u| u > now);
        if !locked && now.duration_since(t.last) >= l.window.max(l.max) {
            // Quiet for a while: a new streak.
            t.lockouts = 0;
        }
        t.last = now;
        while t
            .failures
            .front()
            .is_some_and(|f| now.duration_since(*f) >= l.window)
        {
            t.failures.pop_front();
        }
        t.failures.push_back(now);
        if t.failures.len() >= self.max_failures {
            t.failures.clear();
            t.lockouts = t.lockouts.saturating_add(1);
            t.locked_until = Some(now + l.lockout(t.lockouts));
            return true;
        }
        false
    }

    /// Take back one counted attempt (it turned out to be a success).
    fn uncount(&mut self, k: &K) {
        if let Some(t) = self.map.get_mut(k) {
            t.failures.pop_back();
        }
    }
}

/// What a refused login attempt is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Locked {
    /// Time until the lockout ends.
    pub retry_after: Duration,
    /// The address is locked (for every name), not only this name from it.
    pub address: bool,
}

/// Too many logins are being checked at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Busy;

/// A login admitted to be checked: holds its place in the queue. Await
/// [`Admission::hashing`] before hashing.
#[derive(Debug)]
pub struct Admission {
    _queued: OwnedSemaphorePermit,
    hashing: Arc<Semaphore>,
}

impl Admission {
    /// Wait for one of the `auth.login_concurrency` hashing slots.
    pub async fn hashing(&self) -> Option<OwnedSemaphorePermit> {
        Arc::clone(&self.hashing).acquire_owned().await.ok()
    }
}

/// A counted attempt, to be settled after the password check.
#[derive(Debug)]
#[must_use = "settle the attempt with LoginLimiter::succeeded, or drop it as a failure"]
pub struct Attempt {
    name: String,
    addr: IpAddr,
    /// This attempt reached a limit: the pair or address is now locked
    /// (for the next attempts; this one is still checked).
    pub locked_now: bool,
}

/// Refused attempts of one pair in one window, for the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusals {
    /// The name tried.
    pub name: String,
    /// From where.
    pub addr: IpAddr,
    /// How many were refused.
    pub count: u64,
}

/// Counts failed logins, locks pairs and addresses out, bounds the number
/// of password checks in flight.
#[derive(Debug)]
pub struct LoginLimiter {
    pair: Limits,
    addr: Limits,
    pairs: Mutex<Table<(String, IpAddr)>>,
    addrs: Mutex<Table<IpAddr>>,
    refusals: Mutex<HashMap<(String, IpAddr), u64>>,
    queue: Arc<Semaphore>,
    hashing: Arc<Semaphore>,
}

impl LoginLimiter {
    /// Limits from the config.
    pub fn new(c: &config::Auth) -> LoginLimiter {
        let max = Duration::from_secs(c.lockout_s.max(1));
        let limits = Limits {
            window: Duration::from_secs(c.failure_window_s.max(1)),
            first: FIRST_LOCKOUT.min(max),
            max,
        };
        let concurrency = c.login_concurrency.max(1);
        LoginLimiter {
            pair: limits,
            addr: limits,
            pairs: Mutex::new(Table::new(c.max_failures_per_user)),
            addrs: Mutex::new(Table::new(c.max_failures_per_address)),
            refusals: Mutex::new(HashMap::new()),
            queue: Arc::new(Semaphore::new(concurrency + c.login_queue)),
            hashing: Arc::new(Semaphore::new(concurrency)),
        }
    }

    /// A place among the logins being checked or waiting, or [`Busy`] at
    /// once when there is none.
    pub fn admit(&self) -> Result<Admission, Busy> {
        let queued = Arc::clone(&self.queue)
            .try_acquire_owned()
            .map_err(|_| Busy)?;
        Ok(Admission {
            _queued: queued,
            hashing: Arc::clone(&self.hashing),
        })
    }

    /// Whether `name` may be tried from `addr` now; if so, the attempt is
    /// counted as a failure until [`LoginLimiter::succeeded`] takes it
    /// back.
    pub fn begin(&self, name: &str, addr: IpAddr) -> Result<Attempt, Locked> {
        let now = Instant::now();
        let key = (name.to_owned(), addr);
        // Lock order: pairs, then addrs (everywhere).
        let mut pairs = self.pairs.lock();
        let mut addrs = self.addrs.lock();
        let pair = pairs.locked(&key, now);
        let address = addrs.locked(&addr, now);
        if let Some(retry_after) = pair.into_iter().chain(address).max() {
            return Err(Locked {
                retry_after,
                address: address.is_some(),
            });
        }
        let p = pairs.count(&key, now, self.pair);
        let a = addrs.count(&addr, now, self.addr);
        Ok(Attempt {
            name: key.0,
            addr,
            locked_now: p || a,
        })
    }

    /// The attempt succeeded: the pair's failures and lockout are cleared
    /// (not the address's: one good password must not reset a spray over
    /// many names, but the success itself is not counted against it).
    pub fn succeeded(&self, attempt: Attempt) {
        self.pairs.lock().map.remove(&(attempt.name, attempt.addr));
        self.addrs.lock().uncount(&attempt.addr);
    }

    /// Count a refused attempt (for the audit log): per name and address
    /// when the pair is locked, per address alone (any name) when the
    /// address is, so a spray of new names from a locked address adds no
    /// entry per name. True for the first one of its key in the current
    /// window.
    pub fn refused(&self, name: &str, addr: IpAddr, locked: &Locked) -> bool {
        let mut r = self.refusals.lock();
        let name = if locked.address { "" } else { name };
        let key = (name.to_owned(), addr);
        if let Some(n) = r.get_mut(&key) {
            *n = n.saturating_add(1);
            return false;
        }
        if r.len() >= MAX_REFUSALS {
            // Counted under one catch-all entry rather than dropped.
            let any = (String::new(), IpAddr::from([0, 0, 0, 0]));
            let n = r.entry(any).or_insert(0);
            *n = n.saturating_add(1);
            return false;
        }
        r.insert(key, 0);
        true
    }

    /// The refused attempts counted since the last call, beyond the first
    /// of each pair (which was written at once); ends the window.
    pub fn take_refusals(&self) -> Vec<Refusals> {
        let mut out: Vec<Refusals> = std::mem::take(&mut *self.refusals.lock())
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .map(|((name, addr), count)| Refusals { name, addr, count })
            .collect();
        out.sort_by(|a, b| (&a.name, a.addr).cmp(&(&b.name, b.addr)));
        out
    }

    /// Lift every lockout of `name` (from every address); addresses locked
    /// for spraying stay locked. Returns how many pairs were locked.
    pub fn unlock(&self, name: &str) -> usize {
        let now = Instant::now();
        let mut pairs = self.pairs.lock();
        let before = pairs
            .map
            .iter()
            .filter(|((n, _), t)| n == name && t.locked_until.is_some_and(|u| u > now))
            .count();
        pairs.map.retain(|(n, _), _| n != name);
        before
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(per_pair: u32, per_addr: u32, lockout_s: u64) -> LoginLimiter {
        LoginLimiter::new(&config::Auth {
            max_failures_per_user: per_pair,
            max_failures_per_address: per_addr,
            lockout_s,
            ..config::Auth::default()
        })
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn fail(l: &LoginLimiter, name: &str, addr: IpAddr) -> Result<bool, Locked> {
        l.begin(name, addr).map(|a| a.locked_now)
    }

    #[test]
    fn a_pair_locks_after_its_failures_and_unlocks_later() {
        let l = limiter(3, 100, 1);
        let a = ip("10.0.0.1");
        assert_eq!(fail(&l, "admin", a), Ok(false));
        assert_eq!(fail(&l, "admin", a), Ok(false));
        assert_eq!(fail(&l, "admin", a), Ok(true), "third attempt locks");
        let locked = l.begin("admin", a).unwrap_err();
        assert!(locked.retry_after <= Duration::from_secs(1));
        assert!(l.begin("other", a).is_ok(), "other names are not locked");
        assert!(
            l.begin("admin", ip("10.0.0.9")).is_ok(),
            "the same name from another address is not locked"
        );
        std::thread::sleep(Duration::from_millis(1050));
        assert!(l.begin("admin", a).is_ok(), "the lockout expires");
    }

    #[test]
    fn attempts_count_before_the_check_so_a_burst_stops_at_the_limit() {
        let l = limiter(5, 100, 60);
        let a = ip("10.0.0.5");
        // Twelve parallel attempts: none settled yet.
        let tried: Vec<_> = (0..12).filter_map(|_| l.begin("admin", a).ok()).collect();
        assert_eq!(tried.len(), 5, "only five are checked");
        assert!(tried[4].locked_now);
    }

    #[test]
    fn a_success_clears_the_pair_and_is_not_counted_against_the_address() {
        let l = limiter(3, 4, 60);
        let a = ip("10.0.0.6");
        let _ = fail(&l, "admin", a);
        let _ = fail(&l, "admin", a);
        let ok = l.begin("admin", a).unwrap();
        assert!(ok.locked_now, "the third attempt reached the limit");
        l.succeeded(ok);
        assert!(
            l.begin("admin", a).is_ok(),
            "the success lifted the lockout"
        );
        // Address: 2 failures and the attempt just above (the success
        // was taken back): the next one is the fourth.
        assert_eq!(
            fail(&l, "x", a),
            Ok(true),
            "fourth failure locks the address"
        );
        assert!(l.begin("anyone", a).is_err());
    }

    #[test]
    fn lockouts_grow_and_are_capped() {
        let lim = Limits {
            window: Duration::from_secs(900),
            first: Duration::from_secs(60),
            max: Duration::from_secs(900),
        };
        let got: Vec<u64> = (1..=7).map(|n| lim.lockout(n).as_secs()).collect();
        assert_eq!(got, [60, 120, 240, 480, 900, 900, 900]);
        assert_eq!(lim.lockout(u32::MAX).as_secs(), 900);
    }

    #[test]
    fn a_pair_that_keeps_failing_is_locked_longer() {
        let l = limiter(1, 100, 900);
        let a = ip("10.0.0.7");
        assert_eq!(fail(&l, "admin", a), Ok(true));
        let first = l.begin("admin", a).unwrap_err().retry_after;
        // Expire the lockout by hand, fail again.
        l.pairs
            .lock()
            .map
            .get_mut(&("admin".to_owned(), a))
            .unwrap()
            .locked_until = Some(Instant::now());
        assert_eq!(fail(&l, "admin", a), Ok(true));
        let second = l.begin("admin", a).unwrap_err().retry_after;
        assert!(
            second > first + Duration::from_secs(30),
            "{first:?} {second:?}"
        );
    }

    #[test]
    fn an_address_spraying_names_locks() {
        let l = limiter(100, 5, 60);
        let a = ip("10.0.0.2");
        for i in 0..5 {
            let _ = fail(&l, &format!("user{i}"), a);
        }
        assert!(l.begin("anyone", a).is_err());
        assert!(l.begin("anyone", ip("10.0.0.3")).is_ok());
    }

    #[test]
    fn unlock_lifts_a_names_lockouts() {
        let l = limiter(1, 100, 900);
        let (a, b) = (ip("10.0.0.10"), ip("10.0.0.11"));
        let _ = fail(&l, "admin", a);
        let _ = fail(&l, "admin", b);
        let _ = fail(&l, "other", a);
        assert_eq!(l.unlock("admin"), 2);
        assert!(l.begin("admin", a).is_ok());
        assert!(l.begin("other", a).is_err(), "other names stay locked");
    }

    const PAIR: Locked = Locked {
        retry_after: Duration::from_secs(1),
        address: false,
    };

    #[test]
    fn refusals_are_counted_per_pair_and_window() {
        let l = limiter(1, 100, 900);
        let a = ip("10.0.0.12");
        assert!(l.refused("admin", a, &PAIR), "the first is written at once");
        for _ in 0..99 {
            assert!(!l.refused("admin", a, &PAIR));
        }
        assert!(l.refused("admin", ip("10.0.0.13"), &PAIR));
        let r = l.take_refusals();
        assert_eq!(
            r,
            vec![Refusals {
                name: "admin".into(),
                addr: a,
                count: 99
            }]
        );
        assert!(l.take_refusals().is_empty());
        assert!(l.refused("admin", a, &PAIR), "a new window");
    }

    #[test]
    fn a_spray_from_a_locked_address_is_counted_per_address() {
        let l = limiter(100, 1, 900);
        let a = ip("10.0.0.14");
        let _ = fail(&l, "x", a);
        let locked = l.begin("y", a).unwrap_err();
        assert!(locked.address);
        assert!(l.refused("n0", a, &locked));
        for i in 1..500 {
            assert!(!l.refused(&format!("n{i}"), a, &locked), "n{i}");
        }
        let r = l.take_refusals();
        assert_eq!(r.len(), 1);
        assert_eq!((r[0].name.as_str(), r[0].count), ("", 499));
    }

    #[test]
    fn a_flood_of_names_stays_bounded() {
        let l = limiter(3, u32::MAX, 60);
        let a = ip("10.0.0.4");
        for i in 0..(MAX_TRACKED + 500) {
            let _ = fail(&l, &format!("n{i}"), a);
        }
        assert!(l.pairs.lock().map.len() <= MAX_TRACKED);
        for i in 0..(MAX_REFUSALS + 500) {
            l.refused(&format!("n{i}"), a, &PAIR);
        }
        assert!(l.refusals.lock().len() <= MAX_REFUSALS + 1);
    }

    #[tokio::test]
    async fn admission_is_bounded() {
        let l = LoginLimiter::new(&config::Auth {
            login_concurrency: 2,
            login_queue: 3,
            ..config::Auth::default()
        });
        let held: Vec<_> = (0..5).map(|_| l.admit().unwrap()).collect();
        assert_eq!(l.admit().unwrap_err(), Busy);
        let p1 = held[0].hashing().await.unwrap();
        let _p2 = held[1].hashing().await.unwrap();
        assert_eq!(l.hashing.available_permits(), 0);
        drop(p1);
        assert_eq!(l.hashing.available_permits(), 1);
        drop(held);
        assert!(l.admit().is_ok());
    }
}
