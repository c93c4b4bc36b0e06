//! The PostgreSQL connection pool.
//!
//! sqlx's own pool sends a query (a "ping") on every connection it takes
//! back, so each request cost two round trips to the database instead of
//! one, and spawned a task for the second; that alone held the service well
//! below what PostgreSQL serves. The ping is there because a statement cut
//! off half-way (its request timed out, or its client hung up) can leave the
//! connection mid-protocol, and a transaction dropped without commit leaves
//! it inside that transaction, holding its locks. Here connections are only
//! lent to a unit of work ([`PgPool::run`], [`PgPool::transaction`]): one
//! goes back to the pool only when that work saw it through; any other one
//! (an error from the database, a cancelled future) is closed on the spot,
//! which makes PostgreSQL roll back at once, and the pool connects anew
//! when it needs to.

use std::ops::{Deref, DerefMut};
use std::time::Duration;

use deadpool::managed::{self, Metrics, Object, PoolError, QueueMode, RecycleError, RecycleResult};
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{ConnectOptions, Connection, Database, Transaction};

/// The error of a unit of work, which tells whether the connection came
/// through it clean (a refusal decided on a complete answer) or must be
/// closed (the database failed or the conversation broke off).
pub trait WorkError: From<sqlx::Error> {
    fn leaves_connection_clean(&self) -> bool;
}

impl WorkError for sqlx::Error {
    fn leaves_connection_clean(&self) -> bool {
        false
    }
}

/// Commits `tx` when its work succeeded and rolls it back, awaited, after a
/// clean error. After any other error it is only dropped: [`PgPool::run`]
/// then closes the connection, and SQLite's worker thread runs at once the
/// ROLLBACK that sqlx queues.
pub async fn end_transaction<T, E: WorkError, DB: Database>(
    tx: Transaction<'_, DB>,
    outcome: Result<T, E>,
) -> Result<T, E> {
    match outcome {
        Ok(done) => {
            tx.commit().await?;
            Ok(done)
        }
        Err(err) if err.leaves_connection_clean() => {
            tx.rollback().await?;
            Err(err)
        }
        Err(err) => Err(err),
    }
}

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
        // sqlx's connect future is some 10 KB. Boxed here, where it is made,
        // the pool's `get` future stays small, and so does every future that
        // awaits it (the acquire timeout, the unit of work, the handler),
        // which are moved at each step of every request, connecting or not.
        Box::pin(self.options.connect()).await
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

    /// Runs `work` on a connection of the pool. The connection goes back to
    /// the pool when the work ends in `Ok` or in a clean error; otherwise,
    /// or when the future is dropped before the end, it is closed.
    pub async fn run<T, E: WorkError>(
        &self,
        work: impl AsyncFnOnce(&mut PgConnection) -> Result<T, E>,
    ) -> Result<T, E> {
        let mut conn = self.acquire().await?;
        let outcome = work(&mut *conn).await;
        if outcome
            .as_ref()
            .err()
            .is_none_or(E::leaves_connection_clean)
        {
            conn.settle();
        }
        outcome
    }

    /// Runs `work` in a transaction committed when it returns `Ok`. A clean
    /// error rolls it back, and the connection is reused only once the
    /// rollback is done: sqlx on its own would merely queue the ROLLBACK for
    /// the next use, keeping the locks meanwhile. Any other ending closes
    /// the connection, which rolls back at once.
    pub async fn transaction<T, E: WorkError>(
        &self,
        work: impl AsyncFnOnce(&mut PgConnection) -> Result<T, E>,
    ) -> Result<T, E> {
        self.run(async |conn| {
            let mut tx = conn.begin().await?;
            let outcome = work(&mut *tx).await;
            end_transaction(tx, outcome).await
        })
        .await
    }

    async fn acquire(&self) -> Result<PgConnectionGuard, sqlx::Error> {
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

    /// The most connections the pool opens.
    pub fn max_size(&self) -> usize {
        self.inner.status().max_size
    }

    /// The longest a unit of work waits for a connection.
    pub fn acquire_timeout(&self) -> Duration {
        self.acquire_timeout
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
struct PgConnectionGuard {
    /// `None` only once dropped.
    object: Option<Object<Manager>>,
    settled: bool,
}

impl PgConnectionGuard {
    /// Declares the work done and the connection clean: it goes back to the
    /// pool. Without it (an error, a cancelled future) the connection is
    /// closed when the guard drops.
    fn settle(mut self) {
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
