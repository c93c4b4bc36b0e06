//! The two values the backends store differently, as types that bind and
//! decode on both, so one query text with one set of binds serves either.
//! PostgreSQL has native `uuid` and `timestamptz`; SQLite keeps ids as
//! hyphenated text and times as integer microseconds since the epoch (UTC),
//! which sort and compare exactly as PostgreSQL's do.

use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::{Database, Decode, Encode, Postgres, Sqlite, Type};
use time::OffsetDateTime;
use uuid::{Uuid, fmt::Hyphenated};

/// An order, payment or schedule id as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Id(pub Uuid);

/// A point in time as stored (microsecond precision on both backends).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Time(pub OffsetDateTime);

impl Time {
    fn micros(self) -> i64 {
        (self.0.unix_timestamp_nanos() / 1_000) as i64
    }

    fn from_micros(micros: i64) -> Result<Self, BoxDynError> {
        Ok(Self(OffsetDateTime::from_unix_timestamp_nanos(
            i128::from(micros) * 1_000,
        )?))
    }
}

/// `Type`, `Encode` and `Decode` of `$codec` on `$db` through `$stored`:
/// `$to` turns the codec into it, `$from` a decoded one back.
macro_rules! stored_as {
    ($codec:ty, $db:ty, $stored:ty, $to:expr, $from:expr) => {
        impl Type<$db> for $codec {
            fn type_info() -> <$db as Database>::TypeInfo {
                <$stored as Type<$db>>::type_info()
            }

            fn compatible(ty: &<$db as Database>::TypeInfo) -> bool {
                <$stored as Type<$db>>::compatible(ty)
            }
        }

        impl Encode<'_, $db> for $codec {
            fn encode_by_ref(
                &self,
                buf: &mut <$db as Database>::ArgumentBuffer,
            ) -> Result<IsNull, BoxDynError> {
                let to: fn(&$codec) -> $stored = $to;
                <$stored as Encode<'_, $db>>::encode(to(self), buf)
            }
        }

        impl<'r> Decode<'r, $db> for $codec {
            fn decode(value: <$db as Database>::ValueRef<'r>) -> Result<Self, BoxDynError> {
                let from: fn($stored) -> Result<$codec, BoxDynError> = $from;
                from(<$stored as Decode<$db>>::decode(value)?)
            }
        }
    };
}

stored_as!(Id, Postgres, Uuid, |id| id.0, |id| Ok(Id(id)));
stored_as!(Id, Sqlite, Hyphenated, |id| id.0.hyphenated(), |id| Ok(Id(
    id.into_uuid()
)));
stored_as!(Time, Postgres, OffsetDateTime, |at| at.0, |at| Ok(Time(at)));
stored_as!(Time, Sqlite, i64, |at| at.micros(), Time::from_micros);
