//! Connections for the hot one-statement reads (the access check with the task list of `GET
//! /api/projects/:id/tasks`), kept **outside the sqlx pool**.
//!
//! Why: sqlx 0.9 tests every connection that comes back to its pool — `PoolConnection` drop → `return_to_pool()`
//! → `ping()`, a `Sync` + `ReadyForQuery` round trip (`sqlx-core-0.9.0/src/pool/connection.rs`) — and has no switch
//! for it. For a request that is one statement that doubles the round trips: a second wake-up of the PostgreSQL
//! backend and of a server task per request, on the two cores the bench shares, and the connection stays out of
//! the pool meanwhile. These connections skip the ping because this module knows when a connection is clean: a
//! connection goes back to the idle list only after its statement completed (all rows read, or a database error,
//! after which PostgreSQL sends `ReadyForQuery` and sqlx drains it before the next statement). A connection whose
//! future was dropped mid-statement (the request was cancelled) or whose statement failed below SQL (I/O,
//! protocol, TLS, decode) is dropped, never reused — the case the sqlx ping is a band-aid for.
//!
//! What stays as the pool has it: the same connect options (TLS, `application_name`, `TimeZone`,
//! `statement_timeout`), the version check of the pool's after-connect hook (and its "too old" message for a
//! timeout), the acquire timeout (connecting included) → `PoolTimedOut` → 503 `store_unavailable`, idle timeout and
//! maximum lifetime, lazy connecting (PostgreSQL down at start-up is fine; recovery needs no restart), and
//! `/metrics` (`flux_db_pool_connections{pool="hot"}`).
//!
//! Budget: at most `max` connections (idle + in use + connecting) — a semaphore bounds the users, and a user takes
//! an idle connection before it opens one, so the count never exceeds the permits. The store splits the configured
//! `max_connections` between this set and the sqlx pool ([`split_budget`]), so the total stays within it.
//!
//! Only idempotent reads run here: a reused connection that turns out to be dead (PostgreSQL restarted, a proxy
//! dropped it while idle) fails its statement with an I/O error, and the read is retried once on a new connection
//! instead of answering 503 once per stale idle connection.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgConnection};
use tokio::sync::{Semaphore, SemaphorePermit};

/// A statement run on a hot connection; boxed because it borrows the connection it is given.
pub(crate) type Statement<'c, T> = Pin<Box<dyn Future<Output = Result<T, sqlx::Error>> + Send + 'c>>;

/// How the configured `max_connections` is split: (sqlx pool, hot set). Half goes to the hot set (at least 2) once
/// the budget is 4 or more; below that everything stays in the pool and the hot statements use it (the set is
/// `None`). The hot set carries the requests' one-statement work — the GET tasks read, every project request's
/// access check, and the task insert, which holds its connection through its commit (a quarter, 5 of 20, left
/// the machine idle under a POST load) — and the pool the multi-statement transactions.
pub(crate) fn split_budget(max_connections: u32) -> (u32, u32) {
    if max_connections < 4 {
        return (max_connections, 0);
    }
    let hot = (max_connections / 2).max(2);
    (max_connections - hot, hot)
}

/// Whether a statement that failed on a reused connection runs again on a new one.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Retry {
    /// Idempotent reads: a stale idle connection (PostgreSQL restarted, a proxy dropped it) costs a retry, not a 503.
    OnStaleConnection,
    /// Writes: a broken connection cannot tell whether the statement committed, so the caller gets the error (503)
    /// as from the pool.
    Never,
}

struct Idle {
    conn: PgConnection,
    born: Instant,
    since: Instant,
}

pub(crate) struct HotConns {
    connect: PgConnectOptions,
    idle: Mutex<Vec<Idle>>,
    /// One permit per user of a connection; see the module comment for why this bounds the connection count.
    users: Semaphore,
    /// Open connections (idle, in use), for `/metrics`.
    open: AtomicU32,
    max: u32,
    acquire_timeout: Duration,
    idle_timeout: Duration,
    max_lifetime: Duration,
    /// Shared with the pool's after-connect hook: why new connections are refused (server too old), if they are.
    unsupported: Arc<Mutex<Option<String>>>,
}

impl HotConns {
    /// Creates the set (no connection yet) and its idle reaper. Must run inside the Tokio runtime.
    pub(crate) fn new(
        connect: PgConnectOptions,
        max: u32,
        acquire_timeout: Duration,
        idle_timeout: Duration,
        max_lifetime: Duration,
        unsupported: Arc<Mutex<Option<String>>>,
    ) -> Arc<HotConns> {
        let set = Arc::new(HotConns {
            connect,
            idle: Mutex::new(Vec::with_capacity(max as usize)),
            users: Semaphore::new(max as usize),
            open: AtomicU32::new(0),
            max,
            acquire_timeout,
            idle_timeout,
            max_lifetime,
            unsupported,
        });
        let weak = Arc::downgrade(&set);
        let every = (idle_timeout / 2).clamp(Duration::from_secs(1), Duration::from_secs(30));
        tokio::spawn(reap(weak, every));
        set
    }

    /// (open, idle, maximum) for `/metrics`.
    pub(crate) fn usage(&self) -> (u32, usize, u32) {
        (self.open.load(Ordering::Relaxed), self.idle.lock().len(), self.max)
    }

    /// Runs `statement` on a hot connection: an idle one when there is one, else a new one, within the acquire
    /// timeout. With [`Retry::OnStaleConnection`] the statement runs a second time, on a new connection, when a
    /// reused connection turned out to be broken; it must then be an idempotent read.
    pub(crate) async fn run<T>(
        &self,
        retry: Retry,
        mut statement: impl for<'c> FnMut(&'c mut PgConnection) -> Statement<'c, T>,
    ) -> Result<T, sqlx::Error> {
        let deadline = tokio::time::Instant::now() + self.acquire_timeout;
        let mut guard = self.acquire(deadline).await?;
        let result = statement(guard.conn()).await;
        match result {
            Err(e) if retry == Retry::OnStaleConnection && guard.reused && broken(&e) => {
                drop(guard);
                tracing::debug!(target: "fluxstudio::store", "idle hot connection was broken ({e}); retrying once");
                let mut guard = self.acquire(deadline).await?;
                let result = statement(guard.conn()).await;
                guard.finish(&result);
                result
            }
            result => {
                guard.finish(&result);
                result
            }
        }
    }

    async fn acquire(&self, deadline: tokio::time::Instant) -> Result<HotConn<'_>, sqlx::Error> {
        let permit = match tokio::time::timeout_at(deadline, self.users.acquire()).await {
            Ok(Ok(p)) => p,
            Ok(Err(_)) => return Err(sqlx::Error::PoolClosed),
            Err(_) => return Err(sqlx::Error::PoolTimedOut),
        };
        if let Some(idle) = self.pop_idle() {
            return Ok(HotConn { set: self, conn: Some(idle.conn), born: idle.born, reused: true, _permit: permit });
        }
        let conn = match tokio::time::timeout_at(deadline, self.open_one()).await {
            Ok(Ok(c)) => c,
            // As the pool does: a connect error is what the caller sees only until the deadline; here the first
            // error already ends the attempt (the caller's 503 comes sooner, the next request tries again).
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(sqlx::Error::PoolTimedOut),
        };
        self.open.fetch_add(1, Ordering::Relaxed);
        Ok(HotConn { set: self, conn: Some(conn), born: Instant::now(), reused: false, _permit: permit })
    }

    /// The most recently returned idle connection that is neither idle too long nor too old (LIFO keeps the set
    /// small under light load; the reaper closes the rest).
    fn pop_idle(&self) -> Option<Idle> {
        let mut idle = self.idle.lock();
        while let Some(i) = idle.pop() {
            if i.since.elapsed() < self.idle_timeout && i.born.elapsed() < self.max_lifetime {
                return Some(i);
            }
            self.open.fetch_sub(1, Ordering::Relaxed);
            drop(i); // closes the socket; the backend exits on EOF
        }
        None
    }

    /// A new connection with the pool's after-connect check (server version).
    async fn open_one(&self) -> Result<PgConnection, sqlx::Error> {
        let mut conn = self.connect.connect().await?;
        match super::version_check(&mut conn).await? {
            None => {
                *self.unsupported.lock() = None;
                Ok(conn)
            }
            Some(message) => {
                // As the pool's hook: logged at every attempt, and the caller's `PoolTimedOut` is reported with this
                // message as the reason (errors.rs).
                tracing::error!(target: "fluxstudio::store", "{message}");
                *self.unsupported.lock() = Some(message);
                let _ = conn.close().await;
                Err(sqlx::Error::PoolTimedOut)
            }
        }
    }

    /// Closes the idle connections (graceful shutdown); connections in use are dropped when their statement ends.
    pub(crate) async fn close(&self) {
        self.users.close();
        let idle: Vec<Idle> = std::mem::take(&mut *self.idle.lock());
        for i in idle {
            self.open.fetch_sub(1, Ordering::Relaxed);
            let _ = i.conn.close().await;
        }
    }
}

/// Whether the connection cannot be trusted after this error: anything but an error PostgreSQL reported for the
/// statement (after which the connection is at a clean `ReadyForQuery`).
fn broken(e: &sqlx::Error) -> bool {
    !matches!(e, sqlx::Error::Database(_) | sqlx::Error::RowNotFound)
}

/// A connection in use. Dropped without [`finish`](HotConn::finish) (the request's future was cancelled
/// mid-statement), it closes the connection rather than return one with a half-read response to the idle list.
struct HotConn<'a> {
    set: &'a HotConns,
    conn: Option<PgConnection>,
    born: Instant,
    reused: bool,
    _permit: SemaphorePermit<'a>,
}

impl HotConn<'_> {
    fn conn(&mut self) -> &mut PgConnection {
        self.conn.as_mut().expect("connection present until finish or drop")
    }

    /// The statement completed: back to the idle list unless it failed in a way that leaves the connection
    /// unusable.
    fn finish<T>(mut self, result: &Result<T, sqlx::Error>) {
        let clean = match result {
            Ok(_) => true,
            Err(e) => !broken(e),
        };
        if clean && !self.set.users.is_closed() {
            if let Some(conn) = self.conn.take() {
                self.set.idle.lock().push(Idle { conn, born: self.born, since: Instant::now() });
            }
        }
    }
}

impl Drop for HotConn<'_> {
    fn drop(&mut self) {
        if self.conn.take().is_some() {
            self.set.open.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// Closes idle connections past the idle timeout or the maximum lifetime, as the pool's reaper does, so an idle
/// server does not keep backends open.
async fn reap(set: Weak<HotConns>, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        let Some(set) = set.upgrade() else { return };
        if set.users.is_closed() {
            return;
        }
        let expired: Vec<Idle> = {
            let mut idle = set.idle.lock();
            let (keep, expired): (Vec<Idle>, Vec<Idle>) = std::mem::take(&mut *idle)
                .into_iter()
                .partition(|i| i.since.elapsed() < set.idle_timeout && i.born.elapsed() < set.max_lifetime);
            *idle = keep;
            expired
        };
        for i in expired {
            set.open.fetch_sub(1, Ordering::Relaxed);
            let _ = i.conn.close().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_is_split_within_max_connections() {
        assert_eq!(split_budget(1), (1, 0));
        assert_eq!(split_budget(3), (3, 0));
        assert_eq!(split_budget(4), (2, 2));
        assert_eq!(split_budget(5), (3, 2));
        assert_eq!(split_budget(20), (10, 10));
        assert_eq!(split_budget(100), (50, 50));
        for n in 1..200 {
            let (pool, hot) = split_budget(n);
            assert_eq!(pool + hot, n);
            assert!(pool >= 1);
        }
    }
}
