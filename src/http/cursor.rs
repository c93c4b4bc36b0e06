//! Keyset cursors: the (created, id) of the last order on a page, as 48 hex
//! digits. Opaque to clients; they only copy it from the `Link` header.

use time::OffsetDateTime;
use uuid::Uuid;

use crate::repository::Cursor;

pub fn encode(cursor: &Cursor) -> String {
    let micros = (cursor.created.unix_timestamp_nanos() / 1_000) as i64;
    format!("{:016x}{}", micros as u64, cursor.id.simple())
}

pub fn decode(text: &str) -> Option<Cursor> {
    if text.len() != 48 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let micros = u64::from_str_radix(&text[..16], 16).ok()? as i64;
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
    fn refuses_wrong_lengths_and_digits() {
        assert_eq!(decode(""), None);
        assert_eq!(decode(&"g".repeat(48)), None);
        assert_eq!(decode(&"0".repeat(47)), None);
    }
}
