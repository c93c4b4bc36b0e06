//! What a reader of an order is told about its money: whether it was
//! charged, refunded, or is waiting for an answer or an operator.

use serde::Serialize;
use time::OffsetDateTime;

/// Where an order's money stands, as every read of the order shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PaymentStatus {
    /// A charge was sent and its outcome is not known yet.
    Pending,
    /// The charge went through.
    Paid,
    /// Payments declined the last charge; paying again makes a new one.
    Declined,
    /// The order was cancelled after the charge: the refund is owed.
    RefundPending,
    /// The charge was refunded.
    Refunded,
    /// The charge or its refund waits for an operator.
    NeedsAttention,
}

impl PaymentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            PaymentStatus::Pending => "pending",
            PaymentStatus::Paid => "paid",
            PaymentStatus::Declined => "declined",
            PaymentStatus::RefundPending => "refund_pending",
            PaymentStatus::Refunded => "refunded",
            PaymentStatus::NeedsAttention => "needs_attention",
        }
    }

    /// The status told by the stored states of the order's latest charge
    /// (`attempt`: `unknown`, `pending`, `paid` or `declined`) and of the
    /// refund of it (`refund`: `owed`, `pending` or `refunded`), and
    /// whether an operator was called for the open one of them. A refund
    /// speaks over the charge it returns; `None` when nothing was ever
    /// charged, or the states are not ones this build knows.
    pub fn from_states(attempt: Option<&str>, refund: Option<&str>, raised: bool) -> Option<Self> {
        let status = match (refund, attempt) {
            (Some("refunded"), _) => PaymentStatus::Refunded,
            (Some(_), _) if raised => PaymentStatus::NeedsAttention,
            (Some("owed" | "pending"), _) => PaymentStatus::RefundPending,
            (None, Some("unknown" | "pending")) if raised => PaymentStatus::NeedsAttention,
            (None, Some("unknown" | "pending")) => PaymentStatus::Pending,
            (None, Some("paid")) => PaymentStatus::Paid,
            (None, Some("declined")) => PaymentStatus::Declined,
            _ => return None,
        };
        Some(status)
    }
}

/// An order's money: its status and when that last changed (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Payment {
    pub status: PaymentStatus,
    pub updated: OffsetDateTime,
}

#[cfg(test)]
mod tests {
    use super::PaymentStatus::{self, *};

    #[test]
    fn a_refund_speaks_over_its_charge_and_an_operator_over_both() {
        type Case = (
            Option<&'static str>,
            Option<&'static str>,
            bool,
            Option<PaymentStatus>,
        );
        let cases: [Case; 10] = [
            (None, None, false, None),
            (Some("unknown"), None, false, Some(Pending)),
            (Some("pending"), None, false, Some(Pending)),
            (Some("pending"), None, true, Some(NeedsAttention)),
            (Some("paid"), None, false, Some(Paid)),
            (Some("declined"), None, false, Some(Declined)),
            (Some("paid"), Some("owed"), false, Some(RefundPending)),
            (Some("paid"), Some("pending"), true, Some(NeedsAttention)),
            (Some("paid"), Some("refunded"), false, Some(Refunded)),
            (Some("paid"), Some("refunded"), true, Some(Refunded)),
        ];
        for (attempt, refund, raised, expected) in cases {
            assert_eq!(
                PaymentStatus::from_states(attempt, refund, raised),
                expected,
                "{attempt:?} {refund:?} {raised}"
            );
        }
        // The strings are the contract's.
        assert_eq!(
            serde_json::to_value(RefundPending).unwrap(),
            serde_json::json!(RefundPending.as_str())
        );
    }
}
