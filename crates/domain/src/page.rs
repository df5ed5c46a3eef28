//! Pagination shared by every list.

use crate::error::Invalid;

/// Largest page a caller may ask for.
pub const MAX_LIMIT: u32 = 100;
/// Page size when the caller does not say.
pub const DEFAULT_LIMIT: u32 = 20;

/// A validated page request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    limit: u32,
    offset: u64,
}

impl Page {
    /// Validates `limit` (1..=100, default 20) and `offset` (default 0).
    ///
    /// # Errors
    /// [`Invalid`] naming `limit` when it is 0 or above [`MAX_LIMIT`].
    pub fn new(limit: Option<u32>, offset: Option<u64>) -> Result<Self, Invalid> {
        let limit = limit.unwrap_or(DEFAULT_LIMIT);
        if limit == 0 || limit > MAX_LIMIT {
            return Err(Invalid::new(
                "limit",
                format!("must be between 1 and {MAX_LIMIT}"),
            ));
        }
        Ok(Self {
            limit,
            offset: offset.unwrap_or(0),
        })
    }

    /// How many items at most.
    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// How many items to skip.
    pub fn offset(&self) -> u64 {
        self.offset
    }
}

impl Default for Page {
    fn default() -> Self {
        Self {
            limit: DEFAULT_LIMIT,
            offset: 0,
        }
    }
}

/// One page of results and the total number of matches.
#[derive(Debug, Clone, PartialEq)]
pub struct Paged<T> {
    /// The items of this page.
    pub items: Vec<T>,
    /// How many items match in all pages.
    pub total: u64,
    /// The page that was asked for.
    pub page: Page,
}

#[cfg(test)]
mod tests {
    use super::Page;

    #[test]
    fn limit_bounds() {
        assert_eq!(Page::new(None, None).map(|p| p.limit()), Ok(20));
        assert_eq!(
            Page::new(Some(100), Some(5)).map(|p| (p.limit(), p.offset())),
            Ok((100, 5))
        );
        assert!(Page::new(Some(0), None).is_err());
        assert!(Page::new(Some(101), None).is_err());
    }
}
