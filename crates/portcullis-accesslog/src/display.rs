//! Bounded, escaping `Display` of client-controlled bytes, and the redacting path.
//!
//! Nothing here allocates: every wrapper formats straight into the subscriber's
//! writer, and only when an event is really written.

use std::fmt::{self, Write};

/// Appended to a value cut at its byte limit.
pub(crate) const ELLIPSIS: &str = "…";

/// Written instead of a redacted value.
pub(crate) const REDACTED: &str = "[redacted]";

/// Counts the bytes of input written against a limit and cuts the rest.
pub(crate) struct Budget {
    remaining: usize,
    truncated: bool,
}

// === impl Budget ===

impl Budget {
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            remaining: limit,
            truncated: false,
        }
    }

    /// Whether the limit was reached: nothing more will be written.
    pub(crate) fn exhausted(&self) -> bool {
        self.truncated
    }

    /// Writes `bytes`, escaped, as far as the limit allows.
    pub(crate) fn write(&mut self, f: &mut dyn Write, bytes: &[u8]) -> fmt::Result {
        self.write_with(f, bytes, write_escaped)
    }

    /// Writes `bytes` with `escape`, as far as the limit allows.
    pub(crate) fn write_with(
        &mut self,
        f: &mut dyn Write,
        bytes: &[u8],
        escape: fn(&mut dyn Write, &[u8]) -> fmt::Result,
    ) -> fmt::Result {
        if self.truncated {
            return Ok(());
        }
        let take = if bytes.len() > self.remaining {
            self.truncated = true;
            floor_char_boundary(bytes, self.remaining)
        } else {
            bytes.len()
        };
        self.remaining = self.remaining.saturating_sub(take);
        escape(f, bytes.get(..take).unwrap_or_default())
    }

    /// Writes the truncation marker if the limit was reached.
    pub(crate) fn finish(self, f: &mut dyn Write) -> fmt::Result {
        if self.truncated {
            f.write_str(ELLIPSIS)?;
        }
        Ok(())
    }
}

/// The largest `n <= at` that does not split a UTF-8 sequence of `bytes`.
fn floor_char_boundary(bytes: &[u8], at: usize) -> usize {
    let mut n = at.min(bytes.len());
    // A UTF-8 sequence has at most 3 continuation bytes.
    for _ in 0..3 {
        match bytes.get(n) {
            Some(b) if (b & 0b1100_0000) == 0b1000_0000 && n > 0 => n -= 1,
            _ => break,
        }
    }
    n
}

/// Characters written escaped: controls (C0, DEL, C1) and the bidirectional
/// overrides that could make a terminal show a line other than it is.
fn needs_escape(c: char) -> bool {
    c == '\\'
        || c.is_control()
        || matches!(c, '\u{200e}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// Writes bytes as text: `\` as `\\`, controls as `\u{1b}`, invalid UTF-8 as `\xff`.
pub(crate) fn write_escaped(f: &mut dyn Write, bytes: &[u8]) -> fmt::Result {
    for chunk in bytes.utf8_chunks() {
        let valid = chunk.valid();
        let mut start = 0;
        for (i, c) in valid.char_indices() {
            if needs_escape(c) {
                f.write_str(valid.get(start..i).unwrap_or_default())?;
                if c == '\\' {
                    f.write_str("\\\\")?;
                } else {
                    write!(f, "\\u{{{:x}}}", u32::from(c))?;
                }
                start = i + c.len_utf8();
            }
        }
        f.write_str(valid.get(start..).unwrap_or_default())?;
        for b in chunk.invalid() {
            write!(f, "\\x{b:02x}")?;
        }
    }
    Ok(())
}

/// Writes bytes as the inside of a JSON string: `"` and `\` escaped, controls as
/// `\u00XX`, invalid UTF-8 as U+FFFD.
pub(crate) fn write_json_escaped(f: &mut dyn Write, bytes: &[u8]) -> fmt::Result {
    for chunk in bytes.utf8_chunks() {
        let valid = chunk.valid();
        let mut start = 0;
        for (i, c) in valid.char_indices() {
            let esc = c == '"' || needs_escape(c);
            if esc {
                f.write_str(valid.get(start..i).unwrap_or_default())?;
                match c {
                    '"' => f.write_str("\\\"")?,
                    '\\' => f.write_str("\\\\")?,
                    c => {
                        // Escape as UTF-16 code units: every char here is in the BMP.
                        let mut units = [0u16; 2];
                        for u in c.encode_utf16(&mut units) {
                            write!(f, "\\u{u:04x}")?;
                        }
                    }
                }
                start = i + c.len_utf8();
            }
        }
        f.write_str(valid.get(start..).unwrap_or_default())?;
        if !chunk.invalid().is_empty() {
            f.write_char('\u{fffd}')?;
        }
    }
    Ok(())
}

/// Client bytes shown escaped and cut at `limit` bytes (then `…`).
#[derive(Clone, Copy)]
pub(crate) struct Text<'a> {
    bytes: &'a [u8],
    limit: usize,
}

impl<'a> Text<'a> {
    pub(crate) fn new(bytes: &'a [u8], limit: usize) -> Self {
        Self { bytes, limit }
    }
}

impl fmt::Display for Text<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut budget = Budget::new(self.limit);
        budget.write(f, self.bytes)?;
        budget.finish(f)
    }
}

/// Any `Display` (an error), escaped and cut at `limit` bytes.
pub(crate) struct DisplayText<'a> {
    value: &'a dyn fmt::Display,
    limit: usize,
}

impl<'a> DisplayText<'a> {
    pub(crate) fn new(value: &'a dyn fmt::Display, limit: usize) -> Self {
        Self { value, limit }
    }
}

impl fmt::Display for DisplayText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Escaper<'a, 'b> {
            out: &'a mut fmt::Formatter<'b>,
            budget: Budget,
        }
        impl Write for Escaper<'_, '_> {
            fn write_str(&mut self, s: &str) -> fmt::Result {
                self.budget.write(self.out, s.as_bytes())
            }
        }
        let mut w = Escaper {
            out: f,
            budget: Budget::new(self.limit),
        };
        write!(w, "{}", self.value)?;
        w.budget.finish(w.out)
    }
}

/// A request target (`path?query`) with the values of some query parameters
/// replaced by `[redacted]`, escaped and cut at `limit` bytes.
pub(crate) struct RedactedPath<'a> {
    target: &'a [u8],
    redact: &'a [Box<[u8]>],
    limit: usize,
}

impl<'a> RedactedPath<'a> {
    pub(crate) fn new(target: &'a [u8], redact: &'a [Box<[u8]>], limit: usize) -> Self {
        Self {
            target,
            redact,
            limit,
        }
    }

    fn redacts(&self, name: &[u8]) -> bool {
        self.redact
            .iter()
            .any(|want| **want == *name || percent_decoded_eq(name, want))
    }
}

impl fmt::Display for RedactedPath<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut budget = Budget::new(self.limit);
        let (path, query) = match self.target.iter().position(|b| *b == b'?') {
            Some(q) => (
                self.target.get(..q).unwrap_or_default(),
                self.target.get(q + 1..),
            ),
            None => (self.target, None),
        };
        budget.write(f, path)?;
        if let Some(query) = query {
            budget.write(f, b"?")?;
            for (n, param) in query.split(|b| *b == b'&').enumerate() {
                if budget.exhausted() {
                    break;
                }
                if n > 0 {
                    budget.write(f, b"&")?;
                }
                // The whole parameter is judged before any of it is written, so a
                // cut inside it can never leave a secret behind.
                match param.iter().position(|b| *b == b'=') {
                    Some(eq) if !self.redact.is_empty() => {
                        let name = param.get(..eq).unwrap_or_default();
                        if self.redacts(name) {
                            budget.write(f, name)?;
                            budget.write(f, b"=")?;
                            budget.write(f, REDACTED.as_bytes())?;
                        } else {
                            budget.write(f, param)?;
                        }
                    }
                    _ => budget.write(f, param)?,
                }
            }
        }
        budget.finish(f)
    }
}

/// Whether `raw`, percent-decoded, equals `want` (`api%5Fkey` is `api_key`).
fn percent_decoded_eq(raw: &[u8], want: &[u8]) -> bool {
    if !raw.contains(&b'%') {
        return false;
    }
    let mut want = want.iter();
    let mut i = 0;
    while let Some(&b) = raw.get(i) {
        let decoded = match (
            b,
            raw.get(i + 1).and_then(hex),
            raw.get(i + 2).and_then(hex),
        ) {
            (b'%', Some(hi), Some(lo)) => {
                i += 3;
                hi << 4 | lo
            }
            _ => {
                i += 1;
                b
            }
        };
        if want.next() != Some(&decoded) {
            return false;
        }
    }
    want.next().is_none()
}

fn hex(b: &u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redact(target: &str, names: &[&str], limit: usize) -> String {
        let names: Vec<Box<[u8]>> = names.iter().map(|n| n.as_bytes().into()).collect();
        RedactedPath::new(target.as_bytes(), &names, limit).to_string()
    }

    #[test]
    fn redacts_values_and_keeps_order() {
        assert_eq!(
            redact("/a?api_key=CANARY123&x=1", &["api_key", "token"], 2048),
            "/a?api_key=[redacted]&x=1"
        );
        assert_eq!(
            redact("/a?x=1&token=s1&y=&token=s2&&token", &["token"], 2048),
            "/a?x=1&token=[redacted]&y=&token=[redacted]&&token"
        );
        // Names are case-sensitive, and compared raw or percent-decoded.
        assert_eq!(
            redact("/a?API_KEY=v&api%5Fkey=w&api%5key=z", &["api_key"], 2048),
            "/a?API_KEY=v&api%5Fkey=[redacted]&api%5key=z"
        );
        // The path itself is never touched, nor a query without configured names.
        assert_eq!(
            redact("//a/../b;p?api_key=1", &[], 2048),
            "//a/../b;p?api_key=1"
        );
        assert_eq!(redact("/token=1", &["token"], 2048), "/token=1");
        assert_eq!(redact("/?", &["token"], 2048), "/?");
    }

    #[test]
    fn cuts_at_the_limit_without_leaking() {
        assert_eq!(redact("/abcdef", &[], 4), "/abc…");
        assert_eq!(redact("/abc", &[], 4), "/abc");
        assert_eq!(redact("/a?token=SECRET", &["token"], 10), "/a?token=[…");
        let long = format!("/{}?token=SECRET", "p".repeat(3000));
        let out = redact(&long, &["token"], 2048);
        assert_eq!(out.len(), 2048 + ELLIPSIS.len());
        assert!(out.ends_with('…'));
    }

    #[test]
    fn escapes_controls_and_invalid_utf8() {
        let t = Text::new(b"a\x1b[31mb\\c\xff\xfe\xc3\xa9\x7f", 64).to_string();
        assert_eq!(t, "a\\u{1b}[31mb\\\\c\\xff\\xfeé\\u{7f}");
        assert_eq!(
            Text::new("x\u{202e}y".as_bytes(), 64).to_string(),
            "x\\u{202e}y"
        );
        // A cut never splits a character.
        assert_eq!(Text::new("ééé".as_bytes(), 3).to_string(), "é…");
        assert_eq!(Text::new(b"", 3).to_string(), "");
        let e = "boom\n".repeat(10);
        assert_eq!(
            DisplayText::new(&e, 12).to_string(),
            "boom\\u{a}boom\\u{a}bo…"
        );
    }

    #[test]
    fn json_escaping() {
        struct J(&'static [u8]);
        impl fmt::Display for J {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write_json_escaped(f, self.0)
            }
        }
        assert_eq!(
            J(b"a\"b\\c\x01\xffd").to_string(),
            "a\\\"b\\\\c\\u0001\u{fffd}d"
        );
    }
}
