use serde::{Deserialize, Serialize};
use std::str::FromStr;

/// Cup size. Stored and sent as the lowercase name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Size {
    Small,
    Medium,
    Big,
}

impl Size {
    pub const ALL: [Size; 3] = [Size::Small, Size::Medium, Size::Big];

    pub fn as_str(self) -> &'static str {
        match self {
            Size::Small => "small",
            Size::Medium => "medium",
            Size::Big => "big",
        }
    }
}

/// The text was not one of the sizes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Input should be 'small', 'medium' or 'big'")]
pub struct UnknownSize;

impl FromStr for Size {
    type Err = UnknownSize;

    /// Exact match only: `"Small"` is refused rather than silently folded,
    /// so what is stored is always what a client can compare against.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Size::ALL
            .into_iter()
            .find(|size| size.as_str() == s)
            .ok_or(UnknownSize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn names_round_trip() {
        for size in Size::ALL {
            assert_eq!(size.as_str().parse::<Size>(), Ok(size));
        }
    }

    #[test]
    fn other_spellings_are_refused() {
        for text in ["Small", "BIG", " medium", "large", ""] {
            assert_eq!(text.parse::<Size>(), Err(UnknownSize), "{text:?}");
        }
    }

    proptest! {
        #[test]
        fn only_the_three_names_parse(text in ".*") {
            let known = ["small", "medium", "big"].contains(&text.as_str());
            prop_assert_eq!(text.parse::<Size>().is_ok(), known);
        }
    }
}
