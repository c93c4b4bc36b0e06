//! The `Idempotency-Key` of `POST /orders/{id}/pay` and `/cancel`. Paying
//! and cancelling are already safe to repeat (attempts, leases); the key
//! adds what a repeat alone cannot give: the same answer. A pay that was
//! declined and is sent again under its key is told "declined" again
//! instead of making a new charge; a cancel sent again is told "cancelled"
//! instead of "cannot cancel an order that is cancelled".
//!
//! A key records the answer only once it is final. While it holds none
//! (the work is under way, or its outcome was not known: 202, 5xx, a busy
//! order), a repeat does the work again, which is what a client retrying an
//! unknown outcome needs.

use time::OffsetDateTime;

use super::codec::{Id, Time};
use super::rows::row;
use super::{OrdersRepository, Result, sqlite};
use crate::db::Database;
use crate::domain::OrderId;
use crate::domain::order::now_micros;

/// The action a key was first used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyedAction {
    Pay,
    Cancel,
}

impl KeyedAction {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyedAction::Pay => "pay",
            KeyedAction::Cancel => "cancel",
        }
    }
}

/// What a key stands for when a request comes with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActionKey {
    /// New, expired, or without a final answer yet: do the work.
    Open,
    /// This answer was given to the same action on the same order.
    Answered { status: u16, body: String },
    /// The key was used for another action or another order.
    Reused,
}

/// Takes key `$2` of owner `$1` for action `$3` on order `$4` until `$5`,
/// unless a live one of that name exists (an expired one starts anew).
/// Returns a row only when this request took it.
const CLAIM: &str = "INSERT INTO action_keys (owner, key, action, order_id, expires_at) \
     VALUES ($1, $2, $3, $4, $5) \
     ON CONFLICT (owner, key) DO UPDATE SET action = excluded.action, \
         order_id = excluded.order_id, status = NULL, body = NULL, \
         expires_at = excluded.expires_at \
     WHERE action_keys.expires_at < $6 \
     RETURNING owner";

const LOOKUP: &str =
    "SELECT action, order_id, status, body FROM action_keys WHERE owner = $1 AND key = $2";

/// The first final answer is the one kept.
const ANSWER: &str = "UPDATE action_keys SET status = $3, body = $4 \
     WHERE owner = $1 AND key = $2 AND status IS NULL";

const PURGE: &str = "DELETE FROM action_keys WHERE expires_at < $1";

row!(KeyRow {
    action: String,
    order_id: Id,
    status: Option<i16>,
    body: Option<String>,
});

impl OrdersRepository {
    /// What key `key` of `owner` stands for, taking it for `action` on
    /// order `id` (until `expires_at`) when it is free.
    pub async fn action_key(
        &self,
        owner: &str,
        key: &str,
        action: KeyedAction,
        id: OrderId,
        expires_at: OffsetDateTime,
    ) -> Result<ActionKey> {
        let taken: Option<(String,)> = fetch!(&self.db, fetch_optional, CLAIM;
            owner, key, action.as_str(), Id(id), Time(expires_at), Time(now_micros()))?;
        if taken.is_some() {
            return Ok(ActionKey::Open);
        }
        let row: Option<KeyRow> = fetch!(&self.db, fetch_optional, LOOKUP; owner, key)?;
        Ok(match row {
            // Purged between the two statements: free again, and the work
            // is safe to do without it.
            None => ActionKey::Open,
            Some(row) if row.action != action.as_str() || row.order_id.0 != id => ActionKey::Reused,
            Some(KeyRow {
                status: Some(status),
                body: Some(body),
                ..
            }) => ActionKey::Answered {
                status: u16::try_from(status).unwrap_or(500),
                body,
            },
            Some(_) => ActionKey::Open,
        })
    }

    /// Keeps the final answer given under key `key` of `owner`.
    pub async fn answer_action_key(
        &self,
        owner: &str,
        key: &str,
        status: u16,
        body: &str,
    ) -> Result<()> {
        let status = i16::try_from(status).unwrap_or(i16::MAX);
        execute!(&self.db, ANSWER; owner, key, status, body)?;
        Ok(())
    }

    /// Deletes the pay and cancel keys that expired before `now`.
    pub(super) async fn purge_expired_action_keys(&self, now: OffsetDateTime) -> Result<u64> {
        execute!(&self.db, PURGE; Time(now))
    }
}
