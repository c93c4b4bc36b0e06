//! Keyset cursors: the (created, id) of the last order on a page, as 48 hex
//! digits. Opaque to clients; they only copy it from the `Link` header.

use time::OffsetDateTime;
use uuid::Uuid;

use crate::repository::Cursor;

pub fn encode(cursor: &Cursor) -> String {
    let micros = (cursor.created.unix_timestamp_nanos() / 1_000) as i64;
    format!("{:016x}{}", micros as u64, cursor.id.simple())
}

/// Last microsecond of 9999-12-31: every well-formed cursor is clamped into
/// the range both databases store, so none of them can fail a query.
const MAX_MICROS: u64 = 253_402_300_799_999_999;

/// Any 48 hex digits are a position (a client may craft one); anything
/// else is not a cursor.
pub fn decode(text: &str) -> Option<Cursor> {
    if text.len() != 48 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let micros = u64::from_str_radix(&text[..16], 16).ok()?.min(MAX_MICROS);
    let created = OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1_000).ok()?;
    let id = Uuid::try_parse(&text[16..]).ok()?;
    Some(Cursor { created, id })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn round_trips(micros in 0i64..4_102_444_800_000_000, id in any::<u128>()) {
            let cursor = Cursor {
                created: OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1_000).unwrap(),
                id: Uuid::from_u128(id),
            };
            prop_assert_eq!(decode(&encode(&cursor)), Some(cursor));
        }

        #[test]
        fn garbage_is_refused_not_panicking(text in ".{0,60}") {
            let _ = decode(&text);
        }
    }

    #[test]
    fn clamps_far_future_positions() {
        let cursor = decode(&"f".repeat(48)).unwrap();
        assert_eq!(cursor.created.year(), 9999);
    }

    #[test]
    fn refuses_wrong_lengths_and_digits() {
        assert_eq!(decode(""), None);
        assert_eq!(decode(&"g".repeat(48)), None);
        assert_eq!(decode(&"0".repeat(47)), None);
    }
}
