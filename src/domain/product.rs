use std::fmt;

/// The name of the product ordered: 1 to 200 characters, no NUL.
///
/// PostgreSQL cannot store NUL in text, and an empty or unbounded name is a
/// client bug we would rather report than store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Product(String);

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProductError {
    #[error("String should have at least 1 character")]
    Empty,
    #[error("String should have at most {} characters", Product::MAX_CHARS)]
    TooLong,
    #[error("String should not contain NUL characters")]
    ContainsNul,
}

impl Product {
    pub const MAX_CHARS: usize = 200;

    pub fn parse(name: String) -> Result<Self, ProductError> {
        if name.is_empty() {
            Err(ProductError::Empty)
        } else if name.chars().count() > Self::MAX_CHARS {
            Err(ProductError::TooLong)
        } else if name.contains('\0') {
            Err(ProductError::ContainsNul)
        } else {
            Ok(Self(name))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

impl fmt::Display for Product {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn refuses_empty_long_and_nul() {
        assert_eq!(Product::parse(String::new()), Err(ProductError::Empty));
        assert_eq!(Product::parse("a".repeat(201)), Err(ProductError::TooLong));
        assert_eq!(
            Product::parse("lat\0te".into()),
            Err(ProductError::ContainsNul)
        );
        assert_eq!(
            Product::parse("é".repeat(200))
                .unwrap()
                .as_str()
                .chars()
                .count(),
            200
        );
    }

    proptest! {
        #[test]
        fn keeps_valid_names_unchanged(name in "[^\u{0}]{1,200}") {
            prop_assert_eq!(Product::parse(name.clone()).unwrap().into_inner(), name);
        }
    }
}
