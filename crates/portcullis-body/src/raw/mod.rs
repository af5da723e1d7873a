//! A sans-IO inspector of raw HTTP/1 request heads.
//!
//! hyper normalises some framing before any tower layer runs: with both
//! `Content-Length` and `Transfer-Encoding` it drops `Content-Length`, and its
//! parser trims trailing whitespace, so `Transfer-Encoding: chunked\t` looks like
//! `chunked`. [`HeadInspector`] sees the bytes first: the listener feeds it every
//! byte read from an HTTP/1 client connection, before hyper parses them, and
//! attaches the [`RawHeadVerdict`]s, one per request head and in order, to the
//! requests hyper produces. [`FramingGuard`](crate::FramingGuard) rejects a
//! request whose verdict is [`RawHeadVerdict::Bad`].
//!
//! The inspector follows message boundaries the way hyper does (Content-Length
//! bodies, chunked bodies with extensions and trailers), so a request head hidden
//! in a body is never mistaken for a head. Whenever it cannot follow the stream
//! with certainty it goes *passthrough* and reports nothing more on that
//! connection: after an HTTP/2 preface, a bad head (the gateway answers 400 and
//! closes), a malformed chunked body (hyper rejects it itself), or a head longer
//! than the limit. An `Upgrade` or `CONNECT` request does *not* stop it: the
//! upgrade may be refused and the connection go on as HTTP/1.1, so the listener
//! calls [`HeadInspector::stop`] once a protocol switch really happened.

use memchr::{memchr, memchr2};
use portcullis_core::Cause;

#[cfg(test)]
mod tests;

/// The inspector's judgement of one raw request head.
///
/// The listener inserts it into the request's extensions; see the
/// [module docs](crate#raw-request-heads).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawHeadVerdict {
    /// Nothing suspicious in the raw bytes.
    Ok,
    /// The raw head is malformed or its framing is ambiguous.
    Bad {
        /// [`Cause::BadFraming`] or [`Cause::BadRequest`]
        /// ([`Cause::HeadersTooLarge`] for a head over the inspector's limit).
        cause: Cause,
        /// A short, constant description, safe to log.
        reason: &'static str,
    },
}

/// Follows the request heads of one HTTP/1 client connection (sans IO).
///
/// Feed it every byte read from the client, in order and in any split; take one
/// [`RawHeadVerdict`] per complete request head with [`next_verdict`]. Memory is
/// bounded: only the current head is buffered (at most `max_head_bytes`), and
/// waiting verdicts are a count of `Ok`s plus at most one `Bad` (after a `Bad` the
/// inspector goes passthrough), so any number of pipelined requests is followed
/// in constant memory.
///
/// [`next_verdict`]: HeadInspector::next_verdict
#[derive(Debug)]
pub struct HeadInspector {
    max_head_bytes: usize,
    state: State,
    head: Vec<u8>,
    /// `Ok` verdicts waiting to be taken (run-length: they are all alike).
    oks: u64,
    /// The one `Bad` verdict, taken after the `oks` that precede it.
    bad: Option<RawHeadVerdict>,
    overflowed: bool,
    /// Request heads completed so far.
    completed: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before a request line: empty lines may come first (RFC 9112 §2.2).
    Start,
    /// A CR at message start; an LF must follow.
    StartCr,
    /// Inside a request head; how the bytes buffered so far end.
    Head(Tail),
    /// This many bytes of a Content-Length body are still to come.
    Body(u64),
    /// Inside a chunked body.
    Chunked(Chunk),
    /// Stopped following the stream; nothing more is reported.
    Passthrough,
}

/// The end of the buffered head, for finding CRLFCRLF (or LF LF) across feeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tail {
    Other,
    Lf,
    LfCr,
}

/// Chunked-body states, mirroring hyper's decoder (strict CRLF).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// The first hex digit of a chunk size.
    SizeStart,
    /// More hex digits, whitespace, `;` or CR.
    Size(u64),
    /// Whitespace after the size.
    SizeLws(u64),
    /// A chunk extension, up to CR.
    Ext(u64),
    /// The LF ending the size line.
    SizeLf(u64),
    /// This many data bytes of the chunk are still to come.
    Data(u64),
    DataCr,
    DataLf,
    /// After the last chunk: the start of a trailer line or the final CRLF.
    EndCr,
    /// Inside a trailer line, up to CR.
    Trailer,
    TrailerLf,
    /// The LF of the final CRLF.
    EndLf,
}

/// What a complete head means for the rest of the stream.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// `PRI * HTTP/2.0`: an HTTP/2 prior-knowledge connection.
    Preface,
    Bad(Cause, &'static str),
    Good {
        framing: Framing,
    },
}

#[derive(Debug, PartialEq, Eq)]
enum Framing {
    Empty,
    Length(u64),
    Chunked,
}

// === impl HeadInspector ===

impl HeadInspector {
    /// An inspector that buffers at most `max_head_bytes` of a request head.
    ///
    /// Use the same limit as the HTTP/1 server. A longer head gets
    /// `Bad { cause: HeadersTooLarge, .. }` and the inspector goes passthrough.
    pub fn new(max_head_bytes: usize) -> Self {
        Self {
            max_head_bytes,
            state: State::Start,
            head: Vec::new(),
            oks: 0,
            bad: None,
            overflowed: false,
            completed: 0,
        }
    }

    /// Inspects the next bytes read from the client.
    pub fn feed(&mut self, bytes: &[u8]) {
        let mut input = bytes;
        while !input.is_empty() {
            let used = self.step(input);
            input = input.get(used..).unwrap_or_default();
        }
    }

    /// The verdict on the oldest request head not yet taken, if it is complete.
    pub fn next_verdict(&mut self) -> Option<RawHeadVerdict> {
        if self.oks > 0 {
            self.oks -= 1;
            Some(RawHeadVerdict::Ok)
        } else {
            self.bad.take()
        }
    }

    /// Stops following the stream (the connection switched protocols): no more
    /// verdicts, and later bytes are not looked at. Verdicts already complete can
    /// still be taken.
    pub fn stop(&mut self) {
        self.head = Vec::new();
        self.state = State::Passthrough;
    }

    /// Whether a request head grew past `max_head_bytes`. A listener can close the
    /// connection at once instead of letting its HTTP parser buffer the rest.
    pub fn head_overflowed(&self) -> bool {
        self.overflowed
    }

    /// Whether the inspector stopped following the stream (no more verdicts).
    pub fn is_passthrough(&self) -> bool {
        self.state == State::Passthrough
    }

    /// Whether part of a request head was read and the rest has not come yet (a
    /// listener bounds this time: slowloris).
    pub fn in_head(&self) -> bool {
        matches!(self.state, State::Head(_) | State::StartCr)
    }

    /// Request heads completed so far (good or bad).
    pub fn heads_completed(&self) -> u64 {
        self.completed
    }

    /// Consumes a prefix of `input`, or changes state without consuming.
    fn step(&mut self, input: &[u8]) -> usize {
        match self.state {
            State::Passthrough => input.len(),
            State::Start => match input.first() {
                Some(b'\n') => 1,
                Some(b'\r') => {
                    self.state = State::StartCr;
                    1
                }
                Some(_) => {
                    self.state = State::Head(Tail::Other);
                    0
                }
                None => 0,
            },
            State::StartCr => {
                // httparse rejects a CR not followed by LF: hyper closes.
                self.state = if input.first() == Some(&b'\n') {
                    State::Start
                } else {
                    State::Passthrough
                };
                1
            }
            State::Head(tail) => self.step_head(tail, input),
            State::Body(remaining) => {
                let (used, left) = take_up_to(remaining, input.len());
                self.state = if left == 0 {
                    State::Start
                } else {
                    State::Body(left)
                };
                used
            }
            State::Chunked(chunk) => self.step_chunked(chunk, input),
        }
    }

    fn step_head(&mut self, tail: Tail, input: &[u8]) -> usize {
        let room = self.max_head_bytes.saturating_sub(self.head.len());
        match find_head_end(tail, input) {
            Ok(end) => {
                let Some(part) = input.get(..end).filter(|_| end <= room) else {
                    self.head_too_large();
                    return input.len();
                };
                // The common case, a head that arrived in one read, is analysed in
                // place; a head split across reads was buffered, and its buffer is
                // freed so that idle keep-alive connections hold no head memory.
                let outcome = if self.head.is_empty() {
                    analyse(part)
                } else {
                    self.head.extend_from_slice(part);
                    let outcome = analyse(&self.head);
                    self.head = Vec::new();
                    outcome
                };
                self.apply(outcome);
                end
            }
            Err(tail) => {
                if input.len() > room {
                    self.head_too_large();
                } else {
                    self.head.extend_from_slice(input);
                    self.state = State::Head(tail);
                }
                input.len()
            }
        }
    }

    fn head_too_large(&mut self) {
        self.overflowed = true;
        self.head = Vec::new();
        self.push(RawHeadVerdict::Bad {
            cause: Cause::HeadersTooLarge,
            reason: "request head too large",
        });
        self.state = State::Passthrough;
    }

    fn apply(&mut self, outcome: Outcome) {
        self.state = match outcome {
            Outcome::Preface => State::Passthrough,
            Outcome::Bad(cause, reason) => {
                self.push(RawHeadVerdict::Bad { cause, reason });
                State::Passthrough
            }
            Outcome::Good { framing } => {
                self.push(RawHeadVerdict::Ok);
                {
                    match framing {
                        Framing::Empty | Framing::Length(0) => State::Start,
                        Framing::Length(n) => State::Body(n),
                        Framing::Chunked => State::Chunked(Chunk::SizeStart),
                    }
                }
            }
        };
    }

    /// Queues a verdict. A `Bad` one is always followed by passthrough, so at
    /// most one is ever queued.
    fn push(&mut self, verdict: RawHeadVerdict) {
        self.completed = self.completed.saturating_add(1);
        match verdict {
            RawHeadVerdict::Ok => self.oks = self.oks.saturating_add(1),
            bad @ RawHeadVerdict::Bad { .. } => self.bad = Some(bad),
        }
    }

    fn step_chunked(&mut self, chunk: Chunk, input: &[u8]) -> usize {
        // Data and line contents are skipped in bulk; the few structural bytes
        // go one at a time.
        match chunk {
            Chunk::Data(remaining) => {
                let (used, left) = take_up_to(remaining, input.len());
                self.state = State::Chunked(if left == 0 {
                    Chunk::DataCr
                } else {
                    Chunk::Data(left)
                });
                return used;
            }
            Chunk::Ext(size) => {
                return match memchr2(b'\r', b'\n', input) {
                    None => input.len(),
                    Some(i) => {
                        // hyper refuses an LF inside an extension.
                        self.state = match input.get(i) {
                            Some(b'\r') => State::Chunked(Chunk::SizeLf(size)),
                            _ => State::Passthrough,
                        };
                        i.saturating_add(1)
                    }
                };
            }
            Chunk::Trailer => {
                return match memchr(b'\r', input) {
                    None => input.len(),
                    Some(i) => {
                        self.state = State::Chunked(Chunk::TrailerLf);
                        i.saturating_add(1)
                    }
                };
            }
            _ => {}
        }
        let Some(&b) = input.first() else {
            return 0;
        };
        let next = match (chunk, b) {
            (Chunk::SizeStart, _) => hex(b).map(|d| Chunk::Size(u64::from(d))),
            (Chunk::Size(size), _) => match b {
                b'\t' | b' ' => Some(Chunk::SizeLws(size)),
                b';' => Some(Chunk::Ext(size)),
                b'\r' => Some(Chunk::SizeLf(size)),
                _ => hex(b).and_then(|d| {
                    size.checked_mul(16)
                        .and_then(|s| s.checked_add(u64::from(d)))
                        .map(Chunk::Size)
                }),
            },
            (Chunk::SizeLws(size), b'\t' | b' ') => Some(Chunk::SizeLws(size)),
            (Chunk::SizeLws(size), b';') => Some(Chunk::Ext(size)),
            (Chunk::SizeLws(size), b'\r') => Some(Chunk::SizeLf(size)),
            (Chunk::SizeLf(0), b'\n') => Some(Chunk::EndCr),
            (Chunk::SizeLf(size), b'\n') => Some(Chunk::Data(size)),
            (Chunk::DataCr, b'\r') => Some(Chunk::DataLf),
            (Chunk::DataLf, b'\n') => Some(Chunk::SizeStart),
            (Chunk::EndCr, b'\r') => Some(Chunk::EndLf),
            (Chunk::EndCr, _) => Some(Chunk::Trailer),
            (Chunk::TrailerLf, b'\n') => Some(Chunk::EndCr),
            (Chunk::EndLf, b'\n') => {
                self.state = State::Start;
                return 1;
            }
            _ => None,
        };
        // A malformed chunked body: hyper fails reading it and closes.
        self.state = next.map_or(State::Passthrough, State::Chunked);
        1
    }
}

/// Skips up to `remaining` of `available` bytes: (bytes used, bytes still to come).
fn take_up_to(remaining: u64, available: usize) -> (usize, u64) {
    let used = usize::try_from(remaining).map_or(available, |r| r.min(available));
    let used_u64 = u64::try_from(used).unwrap_or(u64::MAX);
    (used, remaining.saturating_sub(used_u64))
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Finds the end of a head (an empty line: LF LF or LF CR LF) in `input`,
/// continuing from `tail`. Ok(bytes of `input` up to and including the final
/// LF), or Err(the new tail) when the head goes on.
fn find_head_end(mut tail: Tail, input: &[u8]) -> Result<usize, Tail> {
    let mut pos = 0usize;
    loop {
        match tail {
            Tail::Other => {
                let rest = input.get(pos..).unwrap_or_default();
                let Some(i) = memchr(b'\n', rest) else {
                    return Err(Tail::Other);
                };
                pos = pos.saturating_add(i).saturating_add(1);
                tail = Tail::Lf;
            }
            Tail::Lf => match input.get(pos) {
                None => return Err(Tail::Lf),
                Some(b'\n') => return Ok(pos.saturating_add(1)),
                Some(b'\r') => {
                    pos = pos.saturating_add(1);
                    tail = Tail::LfCr;
                }
                Some(_) => tail = Tail::Other,
            },
            Tail::LfCr => match input.get(pos) {
                None => return Err(Tail::LfCr),
                Some(b'\n') => return Ok(pos.saturating_add(1)),
                Some(_) => tail = Tail::Other,
            },
        }
    }
}

/// Judges one complete head (request line, header lines, empty line).
fn analyse(head: &[u8]) -> Outcome {
    let mut lines = lines(head);
    let Some(Ok(request_line)) = lines.next().map(strip_cr) else {
        return Outcome::Bad(Cause::BadRequest, "bare cr in request head");
    };
    if request_line == b"PRI * HTTP/2.0" {
        return Outcome::Preface;
    }
    let Some((_method, http10)) = parse_request_line(request_line) else {
        return Outcome::Bad(Cause::BadRequest, "malformed request line");
    };

    let mut content_length = None;
    let mut chunked = false;
    for line in lines {
        let Ok(line) = strip_cr(line) else {
            return Outcome::Bad(Cause::BadRequest, "bare cr in request head");
        };
        if line.is_empty() {
            break;
        }
        if matches!(line.first(), Some(b' ' | b'\t')) {
            return Outcome::Bad(Cause::BadRequest, "obsolete line folding");
        }
        let Some(colon) = memchr(b':', line) else {
            return Outcome::Bad(Cause::BadRequest, "header line without colon");
        };
        let (name, value) = line.split_at(colon);
        let value = value.get(1..).unwrap_or_default();
        if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
            return Outcome::Bad(Cause::BadRequest, "invalid header name");
        }
        if value.iter().any(|&b| is_ctl(b)) {
            return Outcome::Bad(Cause::BadRequest, "control byte in header value");
        }
        if name.eq_ignore_ascii_case(b"content-length") {
            if content_length.is_some() {
                return Outcome::Bad(Cause::BadFraming, "duplicate content-length");
            }
            match parse_content_length(value) {
                Ok(n) => content_length = Some(n),
                Err(reason) => return Outcome::Bad(Cause::BadFraming, reason),
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            if chunked {
                return Outcome::Bad(Cause::BadFraming, "duplicate transfer-encoding");
            }
            // Leading whitespace only: hyper would trim `chunked\t` to `chunked`
            // while another parser on the path may not.
            if !trim_start(value).eq_ignore_ascii_case(b"chunked") {
                return Outcome::Bad(Cause::BadFraming, "transfer-encoding other than chunked");
            }
            chunked = true;
        }
    }

    let framing = match (content_length, chunked) {
        (Some(_), true) => {
            return Outcome::Bad(Cause::BadFraming, "content-length with transfer-encoding");
        }
        (None, true) if http10 => {
            return Outcome::Bad(Cause::BadFraming, "transfer-encoding on http/1.0");
        }
        (None, true) => Framing::Chunked,
        (Some(n), false) => Framing::Length(n),
        (None, false) => Framing::Empty,
    };
    // An `Upgrade` or `CONNECT` request is followed like any other: whether the
    // connection switches protocols is only known from the response
    // (`HeadInspector::stop`).
    Outcome::Good { framing }
}

/// The LF-separated lines of `head`, without their LF.
fn lines(head: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = head;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let line;
        (line, rest) = match memchr(b'\n', rest) {
            Some(i) => {
                let (line, tail) = rest.split_at(i);
                (line, tail.get(1..).unwrap_or_default())
            }
            None => (rest, &[][..]),
        };
        Some(line)
    })
}

/// Removes the CR of a CRLF line ending; Err if another CR is left in the line.
fn strip_cr(line: &[u8]) -> Result<&[u8], ()> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    match memchr(b'\r', line) {
        Some(_) => Err(()),
        None => Ok(line),
    }
}

/// `METHOD SP target SP HTTP/1.x`: (method, is HTTP/1.0).
fn parse_request_line(line: &[u8]) -> Option<(&[u8], bool)> {
    let first = memchr(b' ', line)?;
    let last = memchr::memrchr(b' ', line)?;
    let method = line.get(..first)?;
    let target = line.get(first.checked_add(1)?..last)?;
    let version = line.get(last.checked_add(1)?..)?;
    if method.is_empty() || target.is_empty() {
        return None;
    }
    match version {
        b"HTTP/1.1" => Some((method, false)),
        b"HTTP/1.0" => Some((method, true)),
        _ => None,
    }
}

/// The raw value after the colon, without leading SP/HTAB and trailing SP,
/// must be 1 to 19 ASCII digits. A trailing HTAB is refused: parsers disagree
/// on it.
fn parse_content_length(value: &[u8]) -> Result<u64, &'static str> {
    let mut digits = trim_start(value);
    while let Some(rest) = digits.strip_suffix(b" ") {
        digits = rest;
    }
    if digits.contains(&b',') {
        return Err("duplicate content-length");
    }
    parse_digits(digits).ok_or("invalid content-length")
}

/// 1 to 19 ASCII digits as a number (19 digits always fit in a u64).
pub(crate) fn parse_digits(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    digits.iter().try_fold(0u64, |acc, &b| {
        if b.is_ascii_digit() {
            acc.checked_mul(10)?.checked_add(u64::from(b - b'0'))
        } else {
            None
        }
    })
}

fn trim_start(value: &[u8]) -> &[u8] {
    let start = value
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .unwrap_or(value.len());
    value.get(start..).unwrap_or_default()
}

/// A control byte other than HTAB (0x00-0x1F, 0x7F).
pub(crate) fn is_ctl(b: u8) -> bool {
    (b < 0x20 && b != b'\t') || b == 0x7f
}

/// RFC 9110 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}
