//! HTTP/1.1 on the wire, as raw as possible: a buffered reader with timeouts, a
//! head parser that keeps header lines in order, body readers that report how the
//! body ended, and the deterministic data pattern with its checksum.

use std::io;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};

/// Upper bound on any single network wait in these tests.
pub(crate) const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// Bytes of a body kept in memory; longer bodies are only counted and checksummed.
pub(crate) const STORE_CAP: usize = 1 << 20;

/// Largest head section accepted.
const MAX_HEAD: usize = 256 * 1024;

/// A buffered reader whose every read has a timeout.
#[derive(Debug)]
pub(crate) struct Reader<R> {
    inner: R,
    buf: Vec<u8>,
    pos: usize,
    timeout: Duration,
}

impl<R: AsyncRead + Unpin> Reader<R> {
    pub(crate) fn new(inner: R, timeout: Duration) -> Self {
        Self {
            inner,
            buf: Vec::with_capacity(64 * 1024),
            pos: 0,
            timeout,
        }
    }

    /// Bytes read but not consumed yet.
    pub(crate) fn buffered(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    fn consume(&mut self, n: usize) {
        self.pos += n;
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        }
    }

    /// Reads more bytes into the buffer; `Ok(0)` at end of stream. Cancel safe.
    pub(crate) async fn fill(&mut self) -> io::Result<usize> {
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.reserve(64 * 1024);
        match tokio::time::timeout(self.timeout, self.inner.read_buf(&mut self.buf)).await {
            Ok(r) => r,
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no bytes within {:?}", self.timeout),
            )),
        }
    }

    /// Reads a head section (through the empty line). `Ok(None)` when the stream
    /// ends cleanly before its first byte.
    pub(crate) async fn read_head(&mut self) -> io::Result<Option<Head>> {
        loop {
            if let Some(end) = find(self.buffered(), b"\r\n\r\n") {
                let raw = self.buffered()[..end + 4].to_vec();
                self.consume(end + 4);
                return Ok(Some(Head::parse(raw)));
            }
            if self.buffered().len() > MAX_HEAD {
                return Err(io::Error::other("head section too large"));
            }
            if self.fill().await? == 0 {
                if self.buffered().is_empty() {
                    return Ok(None);
                }
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "stream ended inside a head section: {:?}",
                        String::from_utf8_lossy(self.buffered())
                    ),
                ));
            }
        }
    }

    /// Reads one CRLF-terminated line, without the CRLF.
    async fn read_line(&mut self) -> io::Result<Vec<u8>> {
        loop {
            if let Some(end) = find(self.buffered(), b"\r\n") {
                let line = self.buffered()[..end].to_vec();
                self.consume(end + 2);
                return Ok(line);
            }
            if self.buffered().len() > MAX_HEAD {
                return Err(io::Error::other("line too long"));
            }
            if self.fill().await? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
    }

    /// Reads up to `n` bytes, handing each piece to `sink`; returns how many came
    /// before the stream ended.
    pub(crate) async fn read_n(&mut self, n: u64, sink: &mut impl FnMut(&[u8])) -> io::Result<u64> {
        let mut got = 0u64;
        while got < n {
            if self.buffered().is_empty() && self.fill().await? == 0 {
                break;
            }
            let want = usize::try_from(n - got).unwrap_or(usize::MAX);
            let take = want.min(self.buffered().len());
            sink(&self.buf[self.pos..self.pos + take]);
            self.consume(take);
            got += take as u64;
        }
        Ok(got)
    }

    /// Reads exactly `n` bytes into a vector (fails at end of stream).
    pub(crate) async fn read_exact_vec(&mut self, n: usize) -> io::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(n);
        let got = self
            .read_n(n as u64, &mut |b| out.extend_from_slice(b))
            .await?;
        if got < n as u64 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("stream ended after {got} of {n} bytes"),
            ));
        }
        Ok(out)
    }

    /// Reads until the end of the stream.
    pub(crate) async fn read_to_end(&mut self, sink: &mut impl FnMut(&[u8])) -> io::Result<u64> {
        self.read_n(u64::MAX, sink).await
    }

    /// Reads a body framed as `framing`.
    pub(crate) async fn read_body(&mut self, framing: Framing) -> io::Result<Body> {
        let mut body = Body::default();
        match framing {
            Framing::None => body.complete = true,
            Framing::Length(n) => {
                let got = match self.read_n(n, &mut |b| body.take(b)).await {
                    Ok(got) => got,
                    Err(e) if is_cut(&e) => body.len,
                    Err(e) => return Err(e),
                };
                body.complete = got == n;
            }
            Framing::Close => {
                match self.read_to_end(&mut |b| body.take(b)).await {
                    Ok(_) => {}
                    Err(e) if is_cut(&e) => {}
                    Err(e) => return Err(e),
                }
                // Nothing tells a cut close-delimited body from a whole one.
                body.complete = true;
            }
            Framing::Chunked => match self.read_chunks(&mut body).await {
                Ok(()) => body.complete = true,
                Err(e) if is_cut(&e) => body.complete = false,
                Err(e) => return Err(e),
            },
        }
        Ok(body)
    }

    async fn read_chunks(&mut self, body: &mut Body) -> io::Result<()> {
        loop {
            let line = self.read_line().await?;
            body.raw_extend(&line);
            body.raw_extend(b"\r\n");
            let size_text = String::from_utf8_lossy(&line);
            let size_text = size_text.split(';').next().unwrap_or("").trim();
            let size = u64::from_str_radix(size_text, 16).map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("bad chunk size line {:?}", String::from_utf8_lossy(&line)),
                )
            })?;
            if size == 0 {
                loop {
                    let trailer = self.read_line().await?;
                    body.raw_extend(&trailer);
                    body.raw_extend(b"\r\n");
                    if trailer.is_empty() {
                        return Ok(());
                    }
                    body.trailers.push(split_field(&trailer));
                }
            }
            let got = self
                .read_n(size, &mut |b| {
                    body.raw_extend(b);
                    body.take_decoded(b);
                })
                .await?;
            if got < size {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            let crlf = self.read_line().await?;
            body.raw_extend(b"\r\n");
            if !crlf.is_empty() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "chunk data not followed by CRLF",
                ));
            }
        }
    }

    pub(crate) fn into_inner(self) -> (R, Vec<u8>) {
        let rest = self.buf[self.pos..].to_vec();
        (self.inner, rest)
    }
}

/// Whether an error means "the peer went away" rather than "we waited too long".
pub(crate) fn is_cut(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
    )
}

/// How a message body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// No body.
    None,
    /// `Content-Length`.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Until the connection closes.
    Close,
}

/// A body as read off the wire.
#[derive(Debug, Default, Clone)]
pub(crate) struct Body {
    /// Decoded bytes, the first [`STORE_CAP`] of them.
    pub(crate) data: Vec<u8>,
    /// Raw bytes (chunk framing included), the first [`STORE_CAP`] of them.
    pub(crate) raw: Vec<u8>,
    /// Decoded length.
    pub(crate) len: u64,
    /// Checksum of every decoded byte.
    pub(crate) sum: Checksum,
    /// Trailer fields of a chunked body.
    pub(crate) trailers: Vec<(String, String)>,
    /// Whether the body ended as its framing says (whole length, last chunk).
    pub(crate) complete: bool,
}

impl Body {
    fn take(&mut self, b: &[u8]) {
        self.raw_extend(b);
        self.take_decoded(b);
    }

    fn take_decoded(&mut self, b: &[u8]) {
        self.len += b.len() as u64;
        self.sum.update(b);
        let room = STORE_CAP.saturating_sub(self.data.len());
        self.data.extend_from_slice(&b[..room.min(b.len())]);
    }

    fn raw_extend(&mut self, b: &[u8]) {
        let room = STORE_CAP.saturating_sub(self.raw.len());
        self.raw.extend_from_slice(&b[..room.min(b.len())]);
    }

    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.data).into_owned()
    }
}

/// A parsed head section: start line and header lines in order, names as sent.
#[derive(Debug, Clone)]
pub(crate) struct Head {
    /// The exact bytes, through the empty line.
    pub(crate) raw: Vec<u8>,
    /// The first line.
    pub(crate) start: String,
    /// Header lines in order, `(name, value)` with the value trimmed.
    pub(crate) fields: Vec<(String, String)>,
}

impl Head {
    fn parse(raw: Vec<u8>) -> Self {
        let text = String::from_utf8_lossy(&raw).into_owned();
        let mut lines = text.split("\r\n");
        let start = lines.next().unwrap_or("").to_owned();
        let fields = lines
            .filter(|l| !l.is_empty())
            .map(|l| split_field(l.as_bytes()))
            .collect();
        Self { raw, start, fields }
    }

    /// The exact head as text (for assertion messages).
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.raw).into_owned()
    }

    /// The first value of `name` (case-insensitive).
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `name`, in order.
    pub(crate) fn get_all(&self, name: &str) -> Vec<&str> {
        self.fields
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// Every value of `name`, joined as a list.
    pub(crate) fn joined(&self, name: &str) -> Option<String> {
        let all = self.get_all(name);
        if all.is_empty() {
            None
        } else {
            Some(all.join(", "))
        }
    }

    /// Whether `name` is present.
    pub(crate) fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// How the message body is delimited, for a request.
    pub(crate) fn request_framing(&self) -> Framing {
        if self.has("transfer-encoding") {
            let te = self
                .joined("transfer-encoding")
                .unwrap_or_default()
                .to_ascii_lowercase();
            if te.trim().ends_with("chunked") {
                return Framing::Chunked;
            }
        }
        match self.get("content-length").and_then(|v| v.parse().ok()) {
            Some(n) => Framing::Length(n),
            None => Framing::None,
        }
    }

    /// How the body of a response to `method` is delimited.
    pub(crate) fn response_framing(&self, method: &str) -> Framing {
        let status = self.status();
        if method.eq_ignore_ascii_case("HEAD")
            || (100..200).contains(&status)
            || status == 204
            || status == 304
        {
            return Framing::None;
        }
        if self.has("transfer-encoding") {
            let te = self
                .joined("transfer-encoding")
                .unwrap_or_default()
                .to_ascii_lowercase();
            if te.trim().ends_with("chunked") {
                return Framing::Chunked;
            }
            return Framing::Close;
        }
        match self.get("content-length").and_then(|v| v.parse().ok()) {
            Some(n) => Framing::Length(n),
            None => Framing::Close,
        }
    }

    /// The status code of a response head (0 when unparsable).
    pub(crate) fn status(&self) -> u16 {
        self.start
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    }

    /// Method of a request head.
    pub(crate) fn method(&self) -> &str {
        self.start.split(' ').next().unwrap_or("")
    }

    /// Request target of a request head, as sent.
    pub(crate) fn target(&self) -> &str {
        self.start.split(' ').nth(1).unwrap_or("")
    }
}

fn split_field(line: &[u8]) -> (String, String) {
    let line = String::from_utf8_lossy(line);
    match line.split_once(':') {
        Some((n, v)) => (n.to_owned(), v.trim_matches([' ', '\t']).to_owned()),
        None => (line.into_owned(), String::new()),
    }
}

pub(crate) fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// FNV-1a over a byte stream: order-sensitive, cheap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Checksum(pub(crate) u64);

impl Default for Checksum {
    fn default() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
}

impl Checksum {
    pub(crate) fn update(&mut self, bytes: &[u8]) {
        let mut h = self.0;
        for &b in bytes {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        self.0 = h;
    }

    /// Checksum of the first `len` bytes of the pattern.
    pub(crate) fn of_pattern(len: u64) -> Self {
        let mut sum = Self::default();
        let mut buf = vec![0u8; 64 * 1024];
        let mut off = 0;
        while off < len {
            let n = (len - off).min(buf.len() as u64) as usize;
            fill_pattern(off, &mut buf[..n]);
            sum.update(&buf[..n]);
            off += n as u64;
        }
        sum
    }
}

/// Fills `buf` with the pattern bytes starting at `offset`: never periodic, so a
/// lost, repeated or reordered piece changes the checksum.
pub(crate) fn fill_pattern(offset: u64, buf: &mut [u8]) {
    for (i, b) in buf.iter_mut().enumerate() {
        let x = (offset + i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        *b = (x >> 56) as u8;
    }
}
