//! Failed-login counting per user name and per address, with lockouts that
//! expire. In memory: a restart forgives, which is acceptable for a lockout
//! of minutes and keeps a flood of attempts off the disk.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::config;

/// Most names or addresses tracked at once; beyond it, entries that are
/// neither locked nor recent are forgotten first.
const MAX_TRACKED: usize = 10_000;

#[derive(Debug, Default)]
struct Track {
    failures: VecDeque<Instant>,
    locked_until: Option<Instant>,
}

#[derive(Debug)]
struct Table<K> {
    max_failures: usize,
    map: HashMap<K, Track>,
}

impl<K: Hash + Eq + Clone> Table<K> {
    fn locked(&self, k: &K, now: Instant) -> Option<Duration> {
        let until = self.map.get(k)?.locked_until?;
        (until > now).then(|| until - now)
    }

    fn fail(&mut self, k: &K, now: Instant, window: Duration, lockout: Duration) -> bool {
        if self.map.len() >= MAX_TRACKED && !self.map.contains_key(k) {
            self.map.retain(|_, t| {
                t.locked_until.is_some_and(|u| u > now)
                    || t.failures.back().is_some_and(|f| now - *f < window)
            });
            if self.map.len() >= MAX_TRACKED {
                // Under a flood of new names, keep only the locked ones.
                self.map
                    .retain(|_, t| t.locked_until.is_some_and(|u| u > now));
            }
        }
        let t = self.map.entry(k.clone()).or_default();
        while t.failures.front().is_some_and(|f| now - *f >= window) {
            t.failures.pop_front();
        }
        t.failures.push_back(now);
        if t.failures.len() >= self.max_failures {
            t.failures.clear();
            t.locked_until = Some(now + lockout);
            return true;
        }
        false
    }
}

/// What a refused login attempt is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Locked {
    /// Time until the lockout ends.
    pub retry_after: Duration,
}

/// Counts failed logins and locks names and addresses out.
#[derive(Debug)]
pub struct LoginLimiter {
    window: Duration,
    lockout: Duration,
    users: Mutex<Table<String>>,
    addrs: Mutex<Table<IpAddr>>,
}

impl LoginLimiter {
    /// Limits from the config.
    pub fn new(c: &config::Auth) -> LoginLimiter {
        LoginLimiter {
            window: Duration::from_secs(c.failure_window_s),
            lockout: Duration::from_secs(c.lockout_s),
            users: Mutex::new(Table {
                max_failures: c.max_failures_per_user.max(1) as usize,
                map: HashMap::new(),
            }),
            addrs: Mutex::new(Table {
                max_failures: c.max_failures_per_address.max(1) as usize,
                map: HashMap::new(),
            }),
        }
    }

    /// Whether an attempt for `user` from `addr` may be tried now.
    pub fn check(&self, user: &str, addr: IpAddr) -> Result<(), Locked> {
        let now = Instant::now();
        let a = self.addrs.lock().locked(&addr, now);
        let u = self.users.lock().locked(&user.to_owned(), now);
        match a.into_iter().chain(u).max() {
            Some(retry_after) => Err(Locked { retry_after }),
            None => Ok(()),
        }
    }

    /// Count a failure; true when it locked the name or the address.
    pub fn failed(&self, user: &str, addr: IpAddr) -> bool {
        let now = Instant::now();
        let u = self
            .users
            .lock()
            .fail(&user.to_owned(), now, self.window, self.lockout);
        let a = self
            .addrs
            .lock()
            .fail(&addr, now, self.window, self.lockout);
        u || a
    }

    /// A success clears the name's failures (not the address's: one good
    /// password must not reset a spray over many names).
    pub fn succeeded(&self, user: &str) {
        self.users.lock().map.remove(user);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(per_user: u32, per_addr: u32, lockout_s: u64) -> LoginLimiter {
        LoginLimiter::new(&config::Auth {
            max_failures_per_user: per_user,
            max_failures_per_address: per_addr,
            lockout_s,
            ..config::Auth::default()
        })
    }

    #[test]
    fn a_name_locks_after_its_failures_and_unlocks_later() {
        let l = limiter(3, 100, 1);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        assert!(!l.failed("admin", ip));
        assert!(!l.failed("admin", ip));
        assert!(l.check("admin", ip).is_ok());
        assert!(l.failed("admin", ip), "third failure locks");
        let locked = l.check("admin", ip).unwrap_err();
        assert!(locked.retry_after <= Duration::from_secs(1));
        assert!(l.check("other", ip).is_ok(), "other names are not locked");
        std::thread::sleep(Duration::from_millis(1050));
        assert!(l.check("admin", ip).is_ok(), "the lockout expires");
    }

    #[test]
    fn an_address_spraying_names_locks() {
        let l = limiter(100, 5, 60);
        let ip: IpAddr = "10.0.0.2".parse().unwrap();
        for i in 0..5 {
            l.failed(&format!("user{i}"), ip);
        }
        assert!(l.check("anyone", ip).is_err());
        assert!(l.check("anyone", "10.0.0.3".parse().unwrap()).is_ok());
    }

    #[test]
    fn a_flood_of_names_stays_bounded() {
        let l = limiter(3, u32::MAX, 60);
        let ip: IpAddr = "10.0.0.4".parse().unwrap();
        for i in 0..(MAX_TRACKED + 500) {
            l.failed(&format!("n{i}"), ip);
        }
        assert!(l.users.lock().map.len() <= MAX_TRACKED);
    }
}
