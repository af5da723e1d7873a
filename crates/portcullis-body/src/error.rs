use std::fmt;

/// A boxed error, the request body error type of [`Limited`](crate::Limited).
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The error a [`Limited`](crate::Limited) request body yields past its limit.
///
/// It travels boxed; find it with `downcast_ref` along an error's source chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LengthLimitError {
    limit: u64,
}

// === impl LengthLimitError ===

impl LengthLimitError {
    pub(crate) fn new(limit: u64) -> Self {
        Self { limit }
    }

    /// The limit in bytes that the body went over.
    pub fn limit(&self) -> u64 {
        self.limit
    }
}

impl fmt::Display for LengthLimitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "request body is larger than the limit of {} bytes",
            self.limit
        )
    }
}

impl std::error::Error for LengthLimitError {}
