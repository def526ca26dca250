//! Rate limiters (configuration.md §7, http-api.md §1.12): one keyed counter per limiter, in memory, per instance.
//!
//! Each limiter is a sliding window kept as per-key counts in sub-windows ("slots") of `window / SLOTS`. A request
//! is admitted while fewer than `limit` requests fall in the last window. A slot's requests are all forgotten when
//! its *latest* request leaves the window, so the limiter errs on the strict side (a request is forgotten at most
//! one slot — 1 % of the window — late) and never admits more than `limit` requests in any window-long span, which
//! a token bucket (GCRA) with a burst of `limit` would (up to `2 × limit − 1`). Memory per key is bounded by
//! `SLOTS`, and `RateLimit-Reset` (when the newest request leaves the window) is never more than the window.
//!
//! A request usually passes several limiters (global and login, say). [`RateLimits::acquire`] locks them in one
//! fixed order, checks all of them and only then counts the request in each, so a request refused by one limiter
//! costs nothing in the others (legacy-defects.md #1).

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use parking_lot::{Mutex, MutexGuard};

use crate::config::{Config, TrustProxy};

const SLOTS: u32 = 100;
/// Expired keys are swept every this many acquisitions of a limiter, so idle clients do not hold memory.
const SWEEP_EVERY: u64 = 4096;

/// The limiters of the REST API, in lock order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LimiterId {
    Global,
    Signup,
    Login,
    Google,
    ProjectCreate,
    ProjectUpdate,
    TaskCreate,
    LoginAccount,
}

impl LimiterId {
    pub const ALL: [LimiterId; 8] = [
        LimiterId::Global,
        LimiterId::Signup,
        LimiterId::Login,
        LimiterId::Google,
        LimiterId::ProjectCreate,
        LimiterId::ProjectUpdate,
        LimiterId::TaskCreate,
        LimiterId::LoginAccount,
    ];

    /// The `limiter` label of `flux_rate_limited_total`.
    pub fn name(self) -> &'static str {
        match self {
            LimiterId::Global => "global",
            LimiterId::Signup => "signup",
            LimiterId::Login => "login",
            LimiterId::Google => "google",
            LimiterId::ProjectCreate => "project_create",
            LimiterId::ProjectUpdate => "project_update",
            LimiterId::TaskCreate => "task_create",
            LimiterId::LoginAccount => "login_account",
        }
    }

    fn variable(self) -> &'static str {
        match self {
            LimiterId::Global => "FLUX_RATE_GLOBAL",
            LimiterId::Signup => "FLUX_RATE_SIGNUP",
            LimiterId::Login => "FLUX_RATE_LOGIN",
            LimiterId::Google => "FLUX_RATE_GOOGLE",
            LimiterId::ProjectCreate => "FLUX_RATE_PROJECT_CREATE",
            LimiterId::ProjectUpdate => "FLUX_RATE_PROJECT_UPDATE",
            LimiterId::TaskCreate => "FLUX_RATE_TASK_CREATE",
            LimiterId::LoginAccount => "FLUX_RATE_LOGIN_ACCOUNT",
        }
    }
}

/// What a limiter counts by: the client IP, an account id, or a normalised e-mail.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Key {
    Ip(IpAddr),
    Account(String),
    Email(String),
}

/// One limiter's view of an admitted request, for the `RateLimit-*` headers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quota {
    pub limit: u32,
    pub remaining: u32,
    /// Seconds until every request counted now has left the window.
    pub reset_secs: u64,
    pub window_secs: u64,
}

/// A refused request: the limiter that refused and when to retry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub limiter: LimiterId,
    pub retry_after_secs: u64,
    pub quota: Quota,
}

/// A counted request that may be given back ([`RateLimits::release`]): the failed-login limiter counts every
/// attempt while it runs and keeps only the failures.
#[derive(Clone, Debug)]
pub struct Reservation {
    limiter: LimiterId,
    key: Key,
    slot: u64,
}

#[derive(Debug)]
struct Slot {
    index: u64,
    count: u32,
    /// The slot's latest request: the whole slot counts until this one leaves the window.
    last: Duration,
}

#[derive(Debug, Default)]
struct Log {
    /// Oldest first, only non-empty slots.
    slots: VecDeque<Slot>,
    total: u32,
}

pub struct Limiter {
    id: LimiterId,
    limit: u32,
    window: Duration,
    slot_nanos: u64,
    keys: Mutex<HashMap<Key, Log>>,
    acquisitions: AtomicU64,
}

impl Limiter {
    pub fn new(id: LimiterId, limit: u32, window: Duration) -> Limiter {
        let slot_nanos = (window / SLOTS).max(Duration::from_millis(1)).as_nanos() as u64;
        Limiter { id, limit, window, slot_nanos, keys: Mutex::new(HashMap::new()), acquisitions: AtomicU64::new(0) }
    }

    pub fn policy(&self) -> (u32, u64) {
        (self.limit, self.window.as_secs())
    }

    fn slot_of(&self, now: Duration) -> u64 {
        (now.as_nanos() / u128::from(self.slot_nanos)) as u64
    }

    /// When a slot stops counting.
    fn expiry(&self, slot: &Slot) -> Duration {
        slot.last + self.window
    }

    fn prune(&self, log: &mut Log, now: Duration) {
        while let Some(front) = log.slots.front() {
            if self.expiry(front) > now {
                break;
            }
            log.total -= front.count;
            log.slots.pop_front();
        }
    }

    fn reset_after(&self, log: &Log, now: Duration) -> u64 {
        log.slots.back().map_or(0, |slot| ceil_secs(self.expiry(slot).saturating_sub(now)))
    }

    fn quota(&self, log: &Log, now: Duration) -> Quota {
        Quota {
            limit: self.limit,
            remaining: self.limit.saturating_sub(log.total),
            reset_secs: self.reset_after(log, now),
            window_secs: self.window.as_secs(),
        }
    }

    /// Seconds until enough of the window has passed for one more request (≥ 1).
    fn retry_after(&self, log: &Log, now: Duration) -> u64 {
        let mut total = log.total;
        for slot in &log.slots {
            total -= slot.count;
            if total < self.limit {
                return ceil_secs(self.expiry(slot).saturating_sub(now)).max(1);
            }
        }
        1
    }

    fn sweep(&self, keys: &mut HashMap<Key, Log>, now: Duration) {
        keys.retain(|_, log| {
            self.prune(log, now);
            log.total > 0
        });
    }
}

fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// Every configured limiter, or none of them with `FLUX_RATE_LIMIT=off`.
pub struct RateLimits {
    limiters: Vec<Option<Limiter>>,
    started: Instant,
    pub trust_proxy: TrustProxy,
}

/// The outcome of [`RateLimits::acquire`] for an admitted request.
#[derive(Debug, Default)]
pub struct Admission {
    pub quotas: Vec<(LimiterId, Quota)>,
    pub reservations: Vec<Reservation>,
}

impl Admission {
    /// The tightest quota (fewest requests left, then the smallest limit) for the `RateLimit-*` headers.
    pub fn tightest(&self) -> Option<Quota> {
        self.quotas.iter().map(|(_, q)| *q).min_by_key(|q| (q.remaining, q.limit))
    }
}

impl RateLimits {
    pub fn from_config(cfg: &Config) -> RateLimits {
        let limiters = LimiterId::ALL
            .iter()
            .map(|&id| {
                let rate = if cfg.rate_limit_enabled { cfg.rates.get(id.variable()).copied().flatten() } else { None };
                rate.map(|(n, window)| Limiter::new(id, n, window))
            })
            .collect();
        RateLimits { limiters, started: Instant::now(), trust_proxy: cfg.trust_proxy.clone() }
    }

    pub fn get(&self, id: LimiterId) -> Option<&Limiter> {
        self.limiters[id as usize].as_ref()
    }

    pub fn is_enabled(&self, id: LimiterId) -> bool {
        self.get(id).is_some()
    }

    /// False with `FLUX_RATE_LIMIT=off` (or every limiter `off`): the middleware then does nothing at all.
    pub fn any_enabled(&self) -> bool {
        self.limiters.iter().any(Option::is_some)
    }

    fn now(&self) -> Duration {
        self.started.elapsed()
    }

    /// Counts one request in every listed limiter (disabled ones are skipped), or in none of them if any refuses.
    /// `reserve` lists the limiters whose count may be given back later.
    pub fn acquire(&self, wanted: &[(LimiterId, Key)], reserve: &[LimiterId]) -> Result<Admission, Refusal> {
        self.acquire_at(wanted, reserve, self.now())
    }

    fn acquire_at(
        &self,
        wanted: &[(LimiterId, Key)],
        reserve: &[LimiterId],
        now: Duration,
    ) -> Result<Admission, Refusal> {
        let mut wanted: Vec<(&Limiter, &Key)> =
            wanted.iter().filter_map(|(id, key)| self.get(*id).map(|l| (l, key))).collect();
        // One lock order for every request, so two requests never wait on each other's locks.
        wanted.sort_by_key(|(l, _)| l.id as usize);
        let mut guards: Vec<MutexGuard<'_, HashMap<Key, Log>>> = Vec::with_capacity(wanted.len());
        let mut refusal: Option<Refusal> = None;
        for (limiter, key) in &wanted {
            let mut keys = limiter.keys.lock();
            if limiter.acquisitions.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
                limiter.sweep(&mut keys, now);
            }
            if let Some(log) = keys.get_mut(*key) {
                limiter.prune(log, now);
                if log.total >= limiter.limit {
                    let r = Refusal {
                        limiter: limiter.id,
                        retry_after_secs: limiter.retry_after(log, now),
                        quota: limiter.quota(log, now),
                    };
                    // Report the limiter that keeps the client out longest.
                    if refusal.is_none_or(|prev| r.retry_after_secs > prev.retry_after_secs) {
                        refusal = Some(r);
                    }
                }
            }
            guards.push(keys);
        }
        if let Some(r) = refusal {
            return Err(r);
        }
        let mut admission = Admission::default();
        for ((limiter, key), keys) in wanted.iter().zip(guards.iter_mut()) {
            let mut slot = limiter.slot_of(now);
            let log = keys.entry((*key).clone()).or_default();
            match log.slots.back_mut() {
                // `now` was read before the locks, so a request may arrive here after a later one: it joins the
                // newest slot rather than breaking the order.
                Some(back) if back.index >= slot => {
                    back.count += 1;
                    back.last = back.last.max(now);
                    slot = back.index;
                }
                _ => log.slots.push_back(Slot { index: slot, count: 1, last: now }),
            }
            log.total += 1;
            admission.quotas.push((limiter.id, limiter.quota(log, now)));
            if reserve.contains(&limiter.id) {
                admission.reservations.push(Reservation { limiter: limiter.id, key: (*key).clone(), slot });
            }
        }
        Ok(admission)
    }

    /// Gives a reserved count back (a login that succeeded is not a failed login).
    pub fn release(&self, r: &Reservation) {
        let Some(limiter) = self.get(r.limiter) else { return };
        let mut keys = limiter.keys.lock();
        let Some(log) = keys.get_mut(&r.key) else { return };
        if let Some(pos) = log.slots.iter().position(|s| s.index == r.slot) {
            log.slots[pos].count -= 1;
            log.total -= 1;
            if log.slots[pos].count == 0 {
                log.slots.remove(pos);
            }
        }
        if log.total == 0 {
            keys.remove(&r.key);
        }
    }

    /// The client's address: the TCP peer, or — when the peer is a trusted proxy — the right-most address of
    /// `X-Forwarded-For` that is not itself a trusted proxy (configuration.md §3.4).
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        client_ip(&self.trust_proxy, peer, headers)
    }
}

pub fn client_ip(trust: &TrustProxy, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
    let peer = canonical(peer);
    if !trust.trusts(peer) {
        return peer;
    }
    let mut client = peer;
    let hops = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect::<Vec<_>>();
    for hop in hops.iter().rev() {
        // An entry we cannot read ends the walk: the last hop we trust is the best answer we have.
        let Some(ip) = parse_hop(hop) else { break };
        client = ip;
        if !trust.trusts(ip) {
            break;
        }
    }
    client
}

/// `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1` or `[2001:db8::1]:5678`.
fn parse_hop(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    if let Ok(sa) = s.parse::<std::net::SocketAddr>() {
        return Some(canonical(sa.ip()));
    }
    None
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The failed-login limiter's key: the e-mail trimmed and in lower case (an unknown address counts like a known one).
pub fn normalise_email(email: &str) -> String {
    email.trim().to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(rates: &[(LimiterId, u32, u64)]) -> RateLimits {
        let mut limiters: Vec<Option<Limiter>> = LimiterId::ALL.iter().map(|_| None).collect();
        for &(id, n, secs) in rates {
            limiters[id as usize] = Some(Limiter::new(id, n, Duration::from_secs(secs)));
        }
        RateLimits { limiters, started: Instant::now(), trust_proxy: TrustProxy::Loopback }
    }

    fn ip(s: &str) -> Key {
        Key::Ip(s.parse().unwrap())
    }

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn at_most_n_in_any_window() {
        let l = limits(&[(LimiterId::Login, 3, 60)]);
        let w = [(LimiterId::Login, ip("10.0.0.1"))];
        for t in [0, 10, 20] {
            let a = l.acquire_at(&w, &[], S(t)).unwrap();
            assert_eq!(a.tightest().unwrap().limit, 3);
        }
        let r = l.acquire_at(&w, &[], S(30)).unwrap_err();
        assert_eq!(r.limiter, LimiterId::Login);
        // The first request leaves the window 60 s after it.
        assert_eq!(r.retry_after_secs, 30);
        assert_eq!(r.quota.remaining, 0);
        assert!(l.acquire_at(&w, &[], S(59)).is_err());
        assert!(l.acquire_at(&w, &[], S(61)).is_ok());
        // Another key has its own budget.
        assert!(l.acquire_at(&[(LimiterId::Login, ip("10.0.0.2"))], &[], S(30)).is_ok());
    }

    #[test]
    fn a_refused_request_costs_nothing_elsewhere() {
        let l = limits(&[(LimiterId::Global, 100, 60), (LimiterId::Login, 1, 60)]);
        let w = [(LimiterId::Global, ip("10.0.0.1")), (LimiterId::Login, ip("10.0.0.1"))];
        let a = l.acquire_at(&w, &[], S(0)).unwrap();
        assert_eq!(a.tightest().unwrap(), Quota { limit: 1, remaining: 0, reset_secs: 60, window_secs: 60 });
        for _ in 0..10 {
            assert_eq!(l.acquire_at(&w, &[], S(1)).unwrap_err().limiter, LimiterId::Login);
        }
        let a = l.acquire_at(&[(LimiterId::Global, ip("10.0.0.1"))], &[], S(2)).unwrap();
        assert_eq!(a.tightest().unwrap().remaining, 98, "only the two admitted requests count");
    }

    #[test]
    fn released_reservations_do_not_count() {
        let l = limits(&[(LimiterId::LoginAccount, 2, 60)]);
        let w = [(LimiterId::LoginAccount, Key::Email("a@b.c".into()))];
        for _ in 0..5 {
            let a = l.acquire_at(&w, &[LimiterId::LoginAccount], S(1)).unwrap();
            l.release(&a.reservations[0]);
        }
        l.acquire_at(&w, &[LimiterId::LoginAccount], S(2)).unwrap();
        l.acquire_at(&w, &[LimiterId::LoginAccount], S(2)).unwrap();
        assert!(l.acquire_at(&w, &[LimiterId::LoginAccount], S(2)).is_err());
    }

    #[test]
    fn disabled_limiters_are_skipped_and_idle_keys_swept() {
        let l = limits(&[(LimiterId::Global, 1, 1)]);
        assert!(l.acquire_at(&[(LimiterId::Login, ip("10.0.0.1"))], &[], S(0)).unwrap().quotas.is_empty());
        let g = l.get(LimiterId::Global).unwrap();
        for i in 0..SWEEP_EVERY {
            let key = Key::Account(i.to_string());
            l.acquire_at(&[(LimiterId::Global, key)], &[], S(i / 1000)).unwrap();
        }
        assert!(g.keys.lock().len() < 1500, "keys idle for a window are dropped");
    }

    #[test]
    fn the_client_is_the_rightmost_untrusted_forwarded_address() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", "203.0.113.9, 198.51.100.7, 127.0.0.1".parse().unwrap());
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(client_ip(&TrustProxy::Loopback, lo, &h), "198.51.100.7".parse::<IpAddr>().unwrap());
        assert_eq!(client_ip(&TrustProxy::None, lo, &h), lo);
        let other: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(client_ip(&TrustProxy::Loopback, other, &h), other, "an untrusted peer's header is ignored");
        let cidrs = TrustProxy::Cidrs(vec![("198.51.100.0".parse().unwrap(), 24), (lo, 8)]);
        assert_eq!(client_ip(&cidrs, lo, &h), "203.0.113.9".parse::<IpAddr>().unwrap());
        h.insert("x-forwarded-for", "garbage, 198.51.100.7".parse().unwrap());
        assert_eq!(client_ip(&cidrs, lo, &h), "198.51.100.7".parse::<IpAddr>().unwrap());
        assert_eq!(client_ip(&TrustProxy::Loopback, "::ffff:127.0.0.1".parse().unwrap(), &HeaderMap::new()), lo);
    }
}
