//! Reads of one order on PostgreSQL, coalesced under load.
//!
//! A get is one short statement, and what PostgreSQL spends on it is mostly
//! the round trip: waking its backend, reading the message, writing the
//! answer. A statement that finds several orders at once costs little more
//! than one that finds one (pgbench, eight orders a statement: a third of
//! the time per order). So a few statements of one order each may run at
//! once ([`SLOTS`]); a read that finds them all taken waits, and when one
//! ends, the reads waiting by then go out in one statement (up to
//! [`MOST`]; more wait for the next slot to end). A lone read never waits
//! and runs the plain statement, so coalescing costs a request nothing
//! when the service is quiet. A waiting read gets its answer (its order,
//! not found, or the statement's error) within the pool's acquire timeout,
//! or is told "unavailable", as a read waiting that long for a connection
//! would be.
//!
//! Each number of orders has its statement (`sql::get_many`), with the ids
//! and owners as parameters of a `VALUES` list: its generic plan knows how
//! many orders it looks up, so PostgreSQL plans it once per connection. An
//! array parameter (`unnest($1::uuid[])`) would be planned again at every
//! execution, as the generic plan guesses a hundred elements.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};

use sqlx::postgres::PgRow;
use sqlx::{FromRow, Row};
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::codec::Id;
use super::rows::{self, ItemRow};
use super::{RepositoryError, Result, sql};
use crate::db::PgPool;
use crate::domain::{Order, OrderId};

/// Statements that run at once before reads wait to go out together. Two,
/// measured against four on two cores (GET at 16 connections against
/// pgbench's prepared SELECT of the same rows): four left too few reads
/// waiting to share a statement once the machine was busy (a median of
/// 61-62% of pgbench against 72-83% with two); at 8 connections two served
/// some 8% fewer requests a second, at 32 as many or more.
pub const SLOTS: usize = 2;

/// The most orders one statement reads.
pub const MOST: usize = 16;

/// The statement for `n` orders at index `n - 1`.
static STATEMENTS: LazyLock<Vec<String>> =
    LazyLock::new(|| (1..=MOST).map(sql::get_many).collect());

/// A read waiting for a statement, and where its answer goes.
struct Waiter {
    /// When the read stops listening and tells its caller "unavailable".
    deadline: Instant,
    owner: String,
    id: OrderId,
    answer: oneshot::Sender<Result<Order>>,
    /// The read's span, told how many reads its statement served.
    span: tracing::Span,
}

struct State {
    /// Slots not running a statement.
    free: usize,
    /// Reads that found no free slot, oldest first.
    waiting: VecDeque<Waiter>,
}

/// The coalescing reads of one pool.
#[derive(Debug)]
pub struct Reads {
    pool: PgPool,
    /// The longest a waiting read waits for its answer, and a shared
    /// statement may take: the pool's acquire timeout.
    patience: std::time::Duration,
    state: Mutex<State>,
    /// Reads answered by a statement shared with others.
    coalesced: AtomicU64,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("free", &self.free)
            .field("waiting", &self.waiting.len())
            .finish()
    }
}

impl Reads {
    pub fn new(pool: PgPool) -> Arc<Self> {
        Arc::new(Self {
            patience: pool.acquire_timeout(),
            state: Mutex::new(State {
                free: SLOTS.min(pool.max_size().max(1)),
                waiting: VecDeque::new(),
            }),
            coalesced: AtomicU64::new(0),
            pool,
        })
    }

    /// Reads answered together with others so far.
    pub fn coalesced(&self) -> u64 {
        self.coalesced.load(Ordering::Relaxed)
    }

    /// Order `id` of `owner`, read by a statement of its own when a slot is
    /// free, else with the reads waiting when the next slot frees.
    pub async fn get(self: &Arc<Self>, owner: &str, id: OrderId) -> Result<Order> {
        let waiting = {
            let mut state = self.lock();
            if state.free > 0 {
                state.free -= 1;
                None
            } else {
                let (answer, waiting) = oneshot::channel();
                // Only a read that waits reads the clock.
                let deadline = Instant::now() + self.patience;
                state.waiting.push_back(Waiter {
                    deadline,
                    owner: owner.to_owned(),
                    id,
                    answer,
                    span: tracing::Span::current(),
                });
                Some((waiting, deadline))
            }
        };
        match waiting {
            None => {
                // Handed on when the statement ends or is dropped half-way.
                let slot = Slot(Arc::clone(self));
                let rows: Result<Vec<ItemRow>> = self
                    .pool
                    .run(async |conn| {
                        Ok(sqlx::query_as(sql::GET)
                            .bind(Id(id))
                            .bind(owner)
                            .fetch_all(conn)
                            .await?)
                    })
                    .await;
                drop(slot);
                rows::assemble(rows?)?
                    .pop()
                    .ok_or(RepositoryError::NotFound)
            }
            // A waiter is dropped unanswered when its time ran out before
            // a statement took it, when no runtime is left to run one on,
            // or when the statement's task panics.
            Some((answer, deadline)) => match tokio::time::timeout_at(deadline, answer).await {
                Ok(Ok(answer)) => answer,
                Ok(Err(_)) => Err(RepositoryError::Unavailable(sqlx::Error::PoolClosed)),
                Err(_) => Err(RepositoryError::Unavailable(sqlx::Error::PoolTimedOut)),
            },
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding the lock; a poisoned one is whole.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A slot's statement ended: the reads waiting by now go out together
    /// on it, or it is free again. Reads whose requests were dropped, or
    /// that were told "unavailable" meanwhile, are left out.
    fn hand_on(self: &Arc<Self>) {
        let runtime = tokio::runtime::Handle::try_current();
        let now = Instant::now();
        let (batch, gone) = {
            let mut state = self.lock();
            let mut gone = Vec::new();
            let mut batch = Vec::new();
            while batch.len() < MOST
                && let Some(waiter) = state.waiting.pop_front()
            {
                if waiter.answer.is_closed() || waiter.deadline <= now || runtime.is_err() {
                    gone.push(waiter);
                } else {
                    batch.push(waiter);
                }
            }
            if batch.is_empty() {
                state.free += 1;
            }
            (batch, gone)
        };
        // Outside the lock: their answers drop, telling any still listening
        // "unavailable".
        drop(gone);
        if let (Ok(runtime), false) = (runtime, batch.is_empty()) {
            // Its own task, so that the requests waiting on it, any of which
            // may be dropped, cannot cut it off; it holds the slot.
            runtime.spawn(read_together(Slot(Arc::clone(self)), batch));
        }
    }
}

/// A slot taken; dropping it hands the slot on.
struct Slot(Arc<Reads>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.hand_on();
    }
}

/// Reads the orders of `batch` in one statement and answers each waiter.
async fn read_together(slot: Slot, batch: Vec<Waiter>) {
    if batch.len() > 1 {
        slot.0
            .coalesced
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        for waiter in &batch {
            waiter.span.record("db.operation.batch.size", batch.len());
        }
    }
    let statement: &'static str = &STATEMENTS[batch.len() - 1];
    // Bounded, as no request's timeout reaches this task: past the last
    // deadline no waiter listens, and the slot must not stay taken by a
    // connection that stopped answering (it is closed as the work drops).
    let last = batch.iter().map(|waiter| waiter.deadline).max();
    let outcome: Result<Vec<PgRow>> = tokio::time::timeout_at(
        last.unwrap_or_else(Instant::now),
        slot.0.pool.run(async |conn| {
            let mut query = sqlx::query(statement);
            for waiter in &batch {
                query = query.bind(Id(waiter.id)).bind(waiter.owner.as_str());
            }
            Ok(query.fetch_all(conn).await?)
        }),
    )
    .await
    .unwrap_or(Err(RepositoryError::Unavailable(sqlx::Error::PoolTimedOut)));
    // The next reads need not wait for these answers to be sorted out.
    drop(slot);
    let rows = match outcome {
        Ok(rows) => rows,
        Err(err) => {
            let mut waiters = batch.into_iter();
            let first = waiters.next();
            for waiter in waiters {
                let _ = waiter.answer.send(Err(err.again()));
            }
            // The first keeps the database's own error, for its log line.
            if let Some(first) = first {
                let _ = first.answer.send(Err(err));
            }
            return;
        }
    };
    // Rows come sorted by order, then item. A row that does not decode
    // fails its own reader's answer only.
    let mut found: Vec<Result<Vec<ItemRow>>> = batch.iter().map(|_| Ok(Vec::new())).collect();
    for row in &rows {
        let n: std::result::Result<i32, _> = row.try_get_unchecked(sql::GET_MANY_INDEX);
        let Some(order) = n
            .ok()
            .and_then(|n| usize::try_from(n).ok())
            .and_then(|n| found.get_mut(n))
        else {
            // The place is the statement's own literal, 0 to n - 1.
            debug_assert!(false, "a row of no order of the statement");
            continue;
        };
        if let Ok(items) = order {
            match ItemRow::from_row(row) {
                Ok(row) => items.push(row),
                Err(err) => *order = Err(err.into()),
            }
        }
    }
    for (waiter, rows) in batch.into_iter().zip(found) {
        let order = rows
            .and_then(rows::assemble)
            .and_then(|mut orders| orders.pop().ok_or(RepositoryError::NotFound));
        // A waiter whose request was dropped no longer listens.
        let _ = waiter.answer.send(order);
    }
}
