//! Reads of one order on PostgreSQL, coalesced under load.
//!
//! A get is one short statement, and what PostgreSQL spends on it is mostly
//! the round trip: waking its backend, reading the message, writing the
//! answer. A statement that finds several orders at once costs little more
//! than one that finds one (pgbench, eight orders a statement: a third of
//! the time per order). So a few statements of one order each may run at
//! once ([`SLOTS`]); a read that finds them all taken waits, and when one
//! ends, every read waiting by then goes out in one statement (up to
//! [`MOST`]). A lone read never waits and runs the plain statement, so
//! coalescing costs a request nothing when the service is quiet, and under
//! load a request waits at most for one statement to end.
//!
//! Each number of orders has its statement (`sql::get_many`), with the ids
//! and owners as parameters of a `VALUES` list: its generic plan knows how
//! many orders it looks up, so PostgreSQL plans it once per connection. An
//! array parameter (`unnest($1::uuid[])`) would be planned again at every
//! execution, as the generic plan guesses a hundred elements.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};

use sqlx::postgres::PgRow;
use sqlx::{FromRow, Row};
use tokio::sync::oneshot;

use super::codec::Id;
use super::rows::{self, ItemRow};
use super::{RepositoryError, Result, sql};
use crate::db::PgPool;
use crate::domain::{Order, OrderId};

/// Statements of one order each that run at once before reads wait to go
/// out together: enough to keep a few PostgreSQL backends busy.
pub const SLOTS: usize = 4;

/// The most orders one statement reads.
pub const MOST: usize = 16;

/// The statement for `n` orders at index `n - 1`.
static STATEMENTS: LazyLock<Vec<String>> =
    LazyLock::new(|| (1..=MOST).map(sql::get_many).collect());

/// A read waiting for a statement, and where its answer goes.
struct Waiter {
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
    waiting: Vec<Waiter>,
}

/// The coalescing reads of one pool.
#[derive(Debug)]
pub struct Reads {
    pool: PgPool,
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
    pub fn new(pool: PgPool, pool_max: usize) -> Arc<Self> {
        Arc::new(Self {
            pool,
            state: Mutex::new(State {
                free: SLOTS.min(pool_max.max(1)),
                waiting: Vec::new(),
            }),
            coalesced: AtomicU64::new(0),
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
                state.waiting.push(Waiter {
                    owner: owner.to_owned(),
                    id,
                    answer,
                    span: tracing::Span::current(),
                });
                Some(waiting)
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
            // The statement's task only drops a waiter unanswered when the
            // runtime shuts down.
            Some(answer) => answer
                .await
                .unwrap_or(Err(RepositoryError::Unavailable(sqlx::Error::PoolClosed))),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding the lock; a poisoned one is whole.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A slot's statement ended: the reads waiting by now go out together
    /// on it, or it is free again.
    fn hand_on(self: &Arc<Self>) {
        let batch = {
            let mut state = self.lock();
            if state.waiting.is_empty() {
                state.free += 1;
                return;
            }
            let take = state.waiting.len().min(MOST);
            state.waiting.drain(..take).collect::<Vec<_>>()
        };
        // Its own task, so that the requests waiting on it, any of which
        // may be dropped, cannot cut it off; it holds the slot.
        let slot = Slot(Arc::clone(self));
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(read_together(slot, batch));
            }
            // No runtime left to run it on: the waiters are answered
            // "unavailable" as their answers drop.
            Err(_) => drop(batch),
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

/// A row of `sql::get_many`: an order's row, and which of the statement's
/// orders it is.
struct ManyRow {
    row: ItemRow,
    n: i32,
}

impl FromRow<'_, PgRow> for ManyRow {
    fn from_row(row: &PgRow) -> std::result::Result<Self, sqlx::Error> {
        Ok(Self {
            row: ItemRow::from_row(row)?,
            n: row.try_get_unchecked(sql::GET_MANY_INDEX)?,
        })
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
    let outcome: Result<Vec<ManyRow>> = slot
        .0
        .pool
        .run(async |conn| {
            let mut query = sqlx::query_as(statement);
            for waiter in &batch {
                query = query.bind(Id(waiter.id)).bind(waiter.owner.as_str());
            }
            Ok(query.fetch_all(conn).await?)
        })
        .await;
    // The next reads need not wait for these answers to be sorted out.
    drop(slot);
    let rows = match outcome {
        Ok(rows) => rows,
        Err(err) => {
            for waiter in batch {
                let _ = waiter.answer.send(Err(err.again()));
            }
            return;
        }
    };
    // Rows come sorted by order, then item.
    let mut found: Vec<Vec<ItemRow>> = batch.iter().map(|_| Vec::new()).collect();
    for ManyRow { row, n } in rows {
        if let Some(order) = usize::try_from(n).ok().and_then(|n| found.get_mut(n)) {
            order.push(row);
        }
    }
    for (waiter, rows) in batch.into_iter().zip(found) {
        let order = rows::assemble(rows)
            .and_then(|mut orders| orders.pop().ok_or(RepositoryError::NotFound));
        // A waiter whose request was dropped no longer listens.
        let _ = waiter.answer.send(order);
    }
}
