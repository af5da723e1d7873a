//! Label values: bounded sets only, never raw request data.

use http::{Method, StatusCode};

/// The `route` label of requests no route matched.
pub(crate) const UNMATCHED: &str = "unmatched";

/// The `cause` label of requests whose inner service failed with an `Err`.
pub(crate) const INTERNAL: &str = "internal";

/// The `method` label: a standard method's name, or `other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct MethodLabel(u8);

/// The `status_class` label: `1xx` … `5xx`, or `other` for 600–999.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct StatusClass(u8);

// === impl MethodLabel ===

impl MethodLabel {
    pub(crate) fn of(method: &Method) -> Self {
        let index = match *method {
            Method::GET => 0,
            Method::HEAD => 1,
            Method::POST => 2,
            Method::PUT => 3,
            Method::DELETE => 4,
            Method::CONNECT => 5,
            Method::OPTIONS => 6,
            Method::TRACE => 7,
            Method::PATCH => 8,
            _ => 9,
        };
        Self(index)
    }

    pub(crate) const fn as_str(self) -> &'static str {
        match self.0 {
            0 => "GET",
            1 => "HEAD",
            2 => "POST",
            3 => "PUT",
            4 => "DELETE",
            5 => "CONNECT",
            6 => "OPTIONS",
            7 => "TRACE",
            8 => "PATCH",
            _ => "other",
        }
    }
}

// === impl StatusClass ===

impl StatusClass {
    /// The class of errors the inner service returned as `Err`.
    pub(crate) const SERVER_ERROR: Self = Self(5);

    pub(crate) fn of(status: StatusCode) -> Self {
        // StatusCode is 100..=999, so the hundreds digit is 1..=9.
        let class = status.as_u16() / 100;
        Self(u8::try_from(class).unwrap_or(0))
    }

    pub(crate) const fn as_str(self) -> &'static str {
        match self.0 {
            1 => "1xx",
            2 => "2xx",
            3 => "3xx",
            4 => "4xx",
            5 => "5xx",
            _ => "other",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods() {
        assert_eq!(MethodLabel::of(&Method::GET).as_str(), "GET");
        assert_eq!(MethodLabel::of(&Method::PATCH).as_str(), "PATCH");
        assert_eq!(MethodLabel::of(&Method::CONNECT).as_str(), "CONNECT");
        let foo = Method::from_bytes(b"FOO").unwrap();
        assert_eq!(MethodLabel::of(&foo).as_str(), "other");
        let lower = Method::from_bytes(b"get").unwrap();
        assert_eq!(MethodLabel::of(&lower).as_str(), "other");
    }

    #[test]
    fn status_classes() {
        let class = |code: u16| StatusClass::of(StatusCode::from_u16(code).unwrap()).as_str();
        assert_eq!(class(100), "1xx");
        assert_eq!(class(101), "1xx");
        assert_eq!(class(200), "2xx");
        assert_eq!(class(304), "3xx");
        assert_eq!(class(499), "4xx");
        assert_eq!(class(504), "5xx");
        assert_eq!(class(599), "5xx");
        assert_eq!(class(600), "other");
        assert_eq!(class(999), "other");
        assert_eq!(StatusClass::SERVER_ERROR.as_str(), "5xx");
    }
}
