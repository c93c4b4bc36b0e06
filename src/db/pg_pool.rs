//! The PostgreSQL connection pool.
//!
//! sqlx's own pool sends a query (a "ping") on every connection it takes
//! back, so each request cost two round trips to the database instead of
//! one, and spawned a task for the second; that alone held the service well
//! below what PostgreSQL serves. The ping is there because a statement cut
//! off half-way (its request timed out, or its client hung up) can leave the
//! connection mid-protocol, and a transaction dropped without commit leaves
//! it inside that transaction, holding its locks. Here a connection says so
//! itself: it goes back to the pool only when the code using it saw its work
//! through ([`PgConnectionGuard::settle`]); any other one (an error, a
//! cancelled future) is closed on the spot, which makes PostgreSQL roll back
//! at once, and the pool connects anew when it needs to.

use std::ops::{Deref, DerefMut};
use std::time::Duration;

use deadpool::managed::{self, Metrics, Object, PoolError, QueueMode, RecycleError, RecycleResult};
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{ConnectOptions, Connection};

/// Connections older than this are replaced, so that the service follows
/// PostgreSQL fail-overs and picks up server-side settings in time.
const MAX_LIFETIME: Duration = Duration::from_secs(30 * 60);

/// Idle connections unused this long are closed, so a quiet replica gives
/// back its share of `max_connections` to busier ones.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(10 * 60);

#[derive(Debug)]
pub struct Manager {
    options: PgConnectOptions,
}

impl managed::Manager for Manager {
    type Type = PgConnection;
    type Error = sqlx::Error;

    async fn create(&self) -> Result<PgConnection, sqlx::Error> {
        self.options.connect().await
    }

    async fn recycle(&self, _: &mut PgConnection, metrics: &Metrics) -> RecycleResult<sqlx::Error> {
        if metrics.age() > MAX_LIFETIME {
            return Err(RecycleError::message(
                "connection reached its maximum lifetime",
            ));
        }
        Ok(())
    }
}

/// A pool of PostgreSQL connections that connects lazily: the service
/// starts, and reports not-ready, while the database is down.
#[derive(Clone, Debug)]
pub struct PgPool {
    inner: managed::Pool<Manager>,
    acquire_timeout: Duration,
}

impl PgPool {
    pub fn new(options: PgConnectOptions, max_connections: u32, acquire_timeout: Duration) -> Self {
        let inner = managed::Pool::builder(Manager { options })
            .max_size(max_connections as usize)
            // The most recently used connection first: under light traffic
            // the others stay idle long enough to be closed.
            .queue_mode(QueueMode::Lifo)
            .runtime(deadpool::Runtime::Tokio1)
            .build()
            .expect("a runtime is configured");
        Self {
            inner,
            acquire_timeout,
        }
    }

    /// A connection for one unit of work: call
    /// [`settle`](PgConnectionGuard::settle) when it succeeded.
    pub async fn acquire(&self) -> Result<PgConnectionGuard, sqlx::Error> {
        // One budget for waiting for a free connection and for connecting
        // (deadpool would time each step on its own), so that an outage
        // fails fast; `get` may be cancelled at any point.
        let object = tokio::time::timeout(self.acquire_timeout, self.inner.get())
            .await
            .map_err(|_| sqlx::Error::PoolTimedOut)?
            .map_err(|err| match err {
                PoolError::Backend(err) => err,
                PoolError::Closed => sqlx::Error::PoolClosed,
                PoolError::Timeout(_)
                | PoolError::NoRuntimeSpecified
                | PoolError::PostCreateHook(_) => sqlx::Error::PoolTimedOut,
            })?;
        Ok(PgConnectionGuard {
            object: Some(object),
            settled: false,
        })
    }

    /// Connections open, and of those idle.
    pub fn usage(&self) -> (u32, u32) {
        let status = self.inner.status();
        (status.size as u32, status.available as u32)
    }

    /// Closes connections idle for longer than [`IDLE_TIMEOUT`].
    pub async fn close_idle(&self) {
        let idle = self
            .inner
            .retain(|_, metrics| metrics.last_used() < IDLE_TIMEOUT)
            .removed;
        for conn in idle {
            let _ = conn.close().await;
        }
    }

    /// Stops handing out connections and closes the idle ones politely;
    /// those in use close when their holders drop them.
    pub async fn close(&self) {
        let idle = self.inner.retain(|_, _| false).removed;
        self.inner.close();
        for conn in idle {
            let _ = conn.close().await;
        }
    }
}

/// A connection on loan from the pool.
pub struct PgConnectionGuard {
    /// `None` only once dropped.
    object: Option<Object<Manager>>,
    settled: bool,
}

impl PgConnectionGuard {
    /// Declares the work done and the connection clean: it goes back to the
    /// pool. Without it (an error, a cancelled future) the connection is
    /// closed when the guard drops.
    pub fn settle(mut self) {
        self.settled = true;
    }
}

impl Drop for PgConnectionGuard {
    fn drop(&mut self) {
        if !self.settled
            && let Some(object) = self.object.take()
        {
            // Out of the pool and dropped: the socket closes, and PostgreSQL
            // ends the session, rolling back whatever it held.
            drop(Object::take(object));
        }
    }
}

impl Deref for PgConnectionGuard {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        self.object.as_ref().expect("present until dropped")
    }
}

impl DerefMut for PgConnectionGuard {
    fn deref_mut(&mut self) -> &mut PgConnection {
        self.object.as_mut().expect("present until dropped")
    }
}
