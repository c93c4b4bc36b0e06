use std::fmt;

/// How many of one item an order asks for: an integer from 1 to 1,000,000.
///
/// A zero or negative quantity would be an order for nothing, and an
/// unbounded one would let a single request reserve the kitchen for a year.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Quantity(u32);

/// Why a number is not a [`Quantity`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    #[error("Input should be greater than or equal to {}", Quantity::MIN)]
    TooSmall,
    #[error("Input should be less than or equal to {}", Quantity::MAX)]
    TooLarge,
}

impl Quantity {
    pub const MIN: u32 = 1;
    pub const MAX: u32 = 1_000_000;

    /// Accepts any integer width so that callers cannot truncate before checking.
    pub fn parse(value: i128) -> Result<Self, QuantityError> {
        if value < i128::from(Self::MIN) {
            Err(QuantityError::TooSmall)
        } else if value > i128::from(Self::MAX) {
            Err(QuantityError::TooLarge)
        } else {
            Ok(Self(value as u32))
        }
    }

    pub fn get(self) -> u32 {
        self.0
    }
}

impl Default for Quantity {
    /// An item sent without a quantity is one of it.
    fn default() -> Self {
        Self(1)
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn bounds_are_inclusive() {
        assert_eq!(Quantity::parse(1).unwrap().get(), 1);
        assert_eq!(Quantity::parse(1_000_000).unwrap().get(), 1_000_000);
        assert_eq!(Quantity::parse(0), Err(QuantityError::TooSmall));
        assert_eq!(Quantity::parse(1_000_001), Err(QuantityError::TooLarge));
    }

    #[test]
    fn default_is_one() {
        assert_eq!(Quantity::default().get(), 1);
    }

    proptest! {
        #[test]
        fn accepts_exactly_the_range(value in any::<i64>()) {
            let parsed = Quantity::parse(i128::from(value));
            prop_assert_eq!(parsed.is_ok(), (1..=1_000_000).contains(&value));
            if let Ok(q) = parsed {
                prop_assert_eq!(i64::from(q.get()), value);
            }
        }
    }
}
