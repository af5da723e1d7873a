//! Requests that the router and an upstream could read differently: paths with
//! dot segments (RFC 3986 §5.2.4) and malformed hosts.

use std::io::Write as _;
use std::net::Ipv6Addr;

use crate::spec::MAX_HOST_LEN;

/// The dot segments a path holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Dots {
    /// At least one segment is `..`.
    pub(crate) dotdot: bool,
}

/// One `.` or two.
enum Dot {
    One,
    Two,
}

/// The dot segments of `path` (without its query): segments between `/`s that
/// are `.` or `..`, any dot possibly written `%2e` or `%2E`. `None` when there
/// are none, which one scan for `/.` and `/%` settles for most paths.
pub(crate) fn dot_segments(path: &str) -> Option<Dots> {
    let bytes = path.as_bytes();
    if !may_have_dot_segment(bytes) {
        return None;
    }
    let mut dots = None;
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'/' {
            match dot_kind(bytes.get(start..i).unwrap_or_default()) {
                Some(Dot::Two) => return Some(Dots { dotdot: true }),
                Some(Dot::One) => dots = Some(Dots { dotdot: false }),
                None => {}
            }
            start = i.saturating_add(1);
        }
    }
    match dot_kind(bytes.get(start..).unwrap_or_default()) {
        Some(Dot::Two) => Some(Dots { dotdot: true }),
        Some(Dot::One) => Some(Dots { dotdot: false }),
        None => dots,
    }
}

/// Whether `bytes` has a `.` or a `%` first or right after a `/`, where every
/// dot segment starts; eight bytes at a time, so that paths without dot
/// segments (most, `/site.css` included) cost one short scan.
pub(crate) fn may_have_dot_segment(bytes: &[u8]) -> bool {
    const LOW7: u64 = u64::from_ne_bytes([0x7f; 8]);
    const DOTS: u64 = u64::from_ne_bytes([b'.'; 8]);
    const PERCENTS: u64 = u64::from_ne_bytes([b'%'; 8]);
    const SLASHES: u64 = u64::from_ne_bytes([b'/'; 8]);
    // 0x80 in exactly the bytes of `x` that are zero.
    let zeros = |x: u64| !((x & LOW7).wrapping_add(LOW7) | x | LOW7);
    // The first byte counts as following a `/`.
    let mut carry = 0x80;
    let mut word = |w: [u8; 8]| {
        let x = u64::from_le_bytes(w);
        let starts = zeros(x ^ DOTS) | zeros(x ^ PERCENTS);
        let slashes = zeros(x ^ SLASHES);
        let after_slash = (slashes << 8) | carry;
        carry = slashes >> 56;
        starts & after_slash != 0
    };
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(chunk);
        if word(w) {
            return true;
        }
    }
    // The rest, padded with zeros, which are none of the three.
    let rest = chunks.remainder();
    let mut w = [0u8; 8];
    if let Some(dst) = w.get_mut(..rest.len()) {
        dst.copy_from_slice(rest);
    }
    word(w)
}

fn dot_kind(segment: &[u8]) -> Option<Dot> {
    // "%2E%2E" is the longest spelling.
    if segment.len() > 6 || !matches!(segment.first(), Some(b'.' | b'%')) {
        return None;
    }
    let mut rest = segment;
    let mut dots = 0;
    while !rest.is_empty() {
        rest = match rest {
            [b'.', tail @ ..] | [b'%', b'2', b'e' | b'E', tail @ ..] => tail,
            _ => return None,
        };
        dots += 1;
    }
    match dots {
        1 => Some(Dot::One),
        2 => Some(Dot::Two),
        _ => None,
    }
}

/// RFC 3986 §5.2.4 `remove_dot_segments` on an absolute path, reading `%2e` and
/// `%2E` as `.` in dot segments only: other bytes (`%2F` included) are opaque
/// and kept as they are. A path that does not start with `/` is returned as is.
pub(crate) fn remove_dot_segments(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let Some(rest) = path.strip_prefix('/') else {
        out.push_str(path);
        return out;
    };
    let mut segments = rest.split('/').peekable();
    while let Some(segment) = segments.next() {
        let last = segments.peek().is_none();
        match dot_kind(segment.as_bytes()) {
            Some(Dot::One) => {}
            Some(Dot::Two) => {
                if let Some(at) = out.rfind('/') {
                    out.truncate(at);
                }
            }
            None => {
                out.push('/');
                out.push_str(segment);
                continue;
            }
        }
        // A dot segment at the end leaves the directory: `/a/b/..` is `/a/`.
        if last {
            out.push('/');
        }
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

/// Byte classes of a host: [`REG_NAME`], [`UPPER`], [`COLON`], or none.
static HOST_BYTES: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut b = 0u8;
    while b < 128 {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_' {
            table[b as usize] = REG_NAME;
        }
        if b.is_ascii_uppercase() {
            table[b as usize] |= UPPER;
        }
        if b == b':' {
            table[b as usize] = COLON;
        }
        b += 1;
    }
    table
};
const REG_NAME: u8 = 1;
const UPPER: u8 = 2;
const COLON: u8 = 4;

/// The host of a `Host` value or a URI authority without userinfo
/// (`host[:port]`) as the table stores it, or `None` when it is malformed.
///
/// The host must be a reg-name (letters, digits, `-`, `.`, `_`; at most 255
/// bytes), which covers IPv4 literals, or an `[IPv6]` literal, optionally
/// followed by `:` and one to five digits. The port and a trailing dot are
/// dropped, letters lower-cased and an IPv6 literal put in canonical form
/// (`[0::1]` is `[::1]`); `buf` holds the result when that changes it.
pub(crate) fn host_key<'a>(raw: &'a [u8], buf: &'a mut [u8; MAX_HOST_LEN]) -> Option<&'a [u8]> {
    if raw.first() == Some(&b'[') {
        let end = raw.iter().position(|&b| b == b']')?;
        let (literal, port) = raw.split_at_checked(end.checked_add(1)?)?;
        check_port(port)?;
        let literal = std::str::from_utf8(literal).ok()?;
        return write_canonical_ipv6(literal, buf).map(str::as_bytes);
    }
    // One pass: reg-name bytes up to the first `:`.
    let mut end = raw.len();
    let mut classes = 0;
    for (i, &b) in raw.iter().enumerate() {
        let class = HOST_BYTES.get(usize::from(b)).copied().unwrap_or(0);
        if class & REG_NAME == 0 {
            if class != COLON {
                return None;
            }
            end = i;
            break;
        }
        classes |= class;
    }
    let (name, port) = raw.split_at_checked(end)?;
    check_port(port)?;
    let name = name.strip_suffix(b".").unwrap_or(name);
    if name.is_empty() || name.len() > MAX_HOST_LEN {
        return None;
    }
    if classes & UPPER == 0 {
        return Some(name);
    }
    let dst = buf.get_mut(..name.len())?;
    dst.copy_from_slice(name);
    dst.make_ascii_lowercase();
    Some(dst)
}

/// `Some` for nothing or `:` and one to five digits.
fn check_port(port: &[u8]) -> Option<()> {
    match port.split_first() {
        None => Some(()),
        Some((b':', digits))
            if (1..=5).contains(&digits.len()) && digits.iter().all(u8::is_ascii_digit) =>
        {
            Some(())
        }
        Some(_) => None,
    }
}

/// `[ip]` in canonical form, for a configured host; `None` if `host` is not a
/// bracketed IPv6 literal.
pub(crate) fn canonical_ipv6(host: &str) -> Option<String> {
    let mut buf = [0u8; MAX_HOST_LEN];
    write_canonical_ipv6(host, &mut buf).map(str::to_owned)
}

fn write_canonical_ipv6<'a>(host: &str, buf: &'a mut [u8]) -> Option<&'a str> {
    let ip = host.strip_prefix('[')?.strip_suffix(']')?;
    if !ip
        .bytes()
        .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
    {
        return None;
    }
    let ip: Ipv6Addr = ip.parse().ok()?;
    let mut w: &mut [u8] = &mut *buf;
    write!(w, "[{ip}]").ok()?;
    let unused = w.len();
    let len = buf.len().checked_sub(unused)?;
    std::str::from_utf8(buf.get(..len)?).ok()
}
