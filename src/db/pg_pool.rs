//! The PostgreSQL connection pool.
//!
//! sqlx's own pool sends a query (a "ping") on every connection it takes
//! back, so each request cost two round trips to the database instead of
//! one, and spawned a task for the second; that alone held the service well
//! below what PostgreSQL serves. The ping is there because a statement cut
//! off half-way (its request timed out, or its client hung up) can leave the
//! connection mid-protocol. Here a connection says so itself: it goes back
//! [`settled`](PgConnectionGuard::settle) only when the code using it saw its
//! statements through, and only an unsettled one is checked (pinged, and
//! discarded if that fails) before its next use.

use std::ops::{Deref, DerefMut};
use std::time::Duration;

use deadpool::managed::{self, Metrics, Object, PoolError, RecycleError, RecycleResult};
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{ConnectOptions, Connection};

/// Connections older than this are replaced, so that the service follows
/// PostgreSQL fail-overs and picks up server-side settings in time.
const MAX_LIFETIME: Duration = Duration::from_secs(30 * 60);

/// Idle connections unused this long are closed, so a quiet replica gives
/// back its share of `max_connections` to busier ones.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(10 * 60);

/// A connection and whether its last user saw its statements through.
#[derive(Debug)]
pub struct TrackedConnection {
    connection: PgConnection,
    settled: bool,
}

#[derive(Debug)]
pub struct Manager {
    options: PgConnectOptions,
}

impl managed::Manager for Manager {
    type Type = TrackedConnection;
    type Error = sqlx::Error;

    async fn create(&self) -> Result<TrackedConnection, sqlx::Error> {
        Ok(TrackedConnection {
            connection: self.options.connect().await?,
            settled: true,
        })
    }

    async fn recycle(
        &self,
        conn: &mut TrackedConnection,
        metrics: &Metrics,
    ) -> RecycleResult<sqlx::Error> {
        if metrics.age() > MAX_LIFETIME {
            return Err(RecycleError::message(
                "connection reached its maximum lifetime",
            ));
        }
        if !conn.settled {
            // Finishes whatever was cut off (a pending rollback included)
            // and proves the connection still answers.
            conn.connection.ping().await?;
            conn.settled = true;
        }
        Ok(())
    }
}

/// A pool of PostgreSQL connections that connects lazily: the service
/// starts, and reports not-ready, while the database is down.
#[derive(Clone, Debug)]
pub struct PgPool {
    inner: managed::Pool<Manager>,
}

impl PgPool {
    pub fn new(options: PgConnectOptions, max_connections: u32, acquire_timeout: Duration) -> Self {
        let inner = managed::Pool::builder(Manager { options })
            .max_size(max_connections as usize)
            // Waiting for a free connection and connecting share the budget
            // a request has for reaching the database.
            .wait_timeout(Some(acquire_timeout))
            .create_timeout(Some(acquire_timeout))
            .recycle_timeout(Some(acquire_timeout))
            .runtime(deadpool::Runtime::Tokio1)
            .build()
            .expect("a runtime and timeouts are configured");
        Self { inner }
    }

    /// A connection for one unit of work: call
    /// [`settle`](PgConnectionGuard::settle) when it succeeded.
    pub async fn acquire(&self) -> Result<PgConnectionGuard, sqlx::Error> {
        let mut object = self.inner.get().await.map_err(|err| match err {
            PoolError::Backend(err) => err,
            PoolError::Closed => sqlx::Error::PoolClosed,
            PoolError::Timeout(_)
            | PoolError::NoRuntimeSpecified
            | PoolError::PostCreateHook(_) => sqlx::Error::PoolTimedOut,
        })?;
        object.settled = false;
        Ok(PgConnectionGuard { object })
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
            let _ = conn.connection.close().await;
        }
    }

    /// Stops handing out connections and closes the idle ones politely;
    /// those in use close when their holders drop them.
    pub async fn close(&self) {
        let idle = self.inner.retain(|_, _| false).removed;
        self.inner.close();
        for conn in idle {
            let _ = conn.connection.close().await;
        }
    }
}

/// A connection on loan from the pool.
pub struct PgConnectionGuard {
    object: Object<Manager>,
}

impl PgConnectionGuard {
    /// Declares the work done and the connection clean: it goes back to the
    /// pool without a check. Not calling it (an error, a cancelled future)
    /// makes the pool check the connection before its next use.
    pub fn settle(mut self) {
        self.object.settled = true;
    }
}

impl Deref for PgConnectionGuard {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        &self.object.connection
    }
}

impl DerefMut for PgConnectionGuard {
    fn deref_mut(&mut self) -> &mut PgConnection {
        &mut self.object.connection
    }
}
