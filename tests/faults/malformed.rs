//! Malformed requests from a corpus file (`data/malformed.txt`, its format is
//! described at its top): every input gets a 4xx or a close, the gateway stays up
//! and keeps answering, and the origin never receives a request that the client
//! did not send as exactly one valid request.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::time::Duration;

use crate::support::{Action, Origin, Record, ok};
use crate::util::{Proc, Raw, Read, get_once, routes, serial};

/// The corpus.
const CORPUS: &str = include_str!("data/malformed.txt");

/// How long a read waits for the gateway's next bytes. Every complete input is
/// answered within milliseconds; silence means the gateway waits for more (or
/// keeps the connection alive), and the client then half-closes.
const READ_WAIT: Duration = Duration::from_millis(500);

/// Silent reads allowed after the client's FIN before the connection counts as
/// stalled (4 s).
const SILENT_AFTER_FIN: usize = 8;

/// Bound on writing one input (the largest is 1 MiB).
const WRITE_WAIT: Duration = Duration::from_secs(5);

/// What the gateway may do with an input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    /// Invalid as a whole: nothing reaches the origin.
    Reject,
    /// One valid request, then garbage: at most that one reaches the origin.
    One,
    /// Rejected, or repaired into at most one well-formed request.
    Lenient,
}

impl Class {
    /// Requests the origin may receive (and 2xx answers the client may get).
    fn allowed(self) -> usize {
        match self {
            Class::Reject => 0,
            Class::One | Class::Lenient => 1,
        }
    }
}

#[derive(Debug)]
struct Entry {
    name: String,
    class: Class,
    /// Half-close right after sending.
    eof: bool,
    /// A known gateway bug: run by [`malformed_known_bugs`] only.
    bug: bool,
    bytes: Vec<u8>,
}

/// Parses the corpus: `=== NAME CLASS [eof] [bug]` lines start entries; the lines that
/// follow, without their line breaks and with escapes decoded, are the message.
fn parse_corpus(text: &str) -> Vec<Entry> {
    let mut entries: Vec<(String, Class, bool, bool, String)> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        // Comments, and blank lines (which add nothing to a message).
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        if let Some(spec) = line.strip_prefix("=== ") {
            let mut words = spec.split_whitespace();
            let name = words.next().expect("an entry name").to_owned();
            let class = match words.next() {
                Some("reject") => Class::Reject,
                Some("one") => Class::One,
                Some("lenient") => Class::Lenient,
                other => panic!("line {}: bad class {other:?}", n + 1),
            };
            let (mut eof, mut bug) = (false, false);
            for flag in words {
                match flag {
                    "eof" => eof = true,
                    "bug" => bug = true,
                    other => panic!("line {}: unknown flag {other:?}", n + 1),
                }
            }
            entries.push((name, class, eof, bug, String::new()));
            continue;
        }
        let (_, _, _, _, body) = entries
            .last_mut()
            .unwrap_or_else(|| panic!("line {}: message text before any `===` line", n + 1));
        body.push_str(line);
    }
    entries
        .into_iter()
        .map(|(name, class, eof, bug, body)| {
            let bytes = decode(body.as_bytes()).unwrap_or_else(|e| panic!("entry {name}: {e}"));
            Entry {
                name,
                class,
                eof,
                bug,
                bytes,
            }
        })
        .collect()
}

/// Decodes `\r \n \t \\ \xHH \{N*TEXT}`.
fn decode(raw: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        if b != b'\\' {
            out.push(b);
            i += 1;
            continue;
        }
        match raw.get(i + 1) {
            Some(b'r') => out.push(b'\r'),
            Some(b'n') => out.push(b'\n'),
            Some(b't') => out.push(b'\t'),
            Some(b'\\') => out.push(b'\\'),
            Some(b'x') => {
                let hex = raw.get(i + 2..i + 4).ok_or("cut \\x escape")?;
                let hex = std::str::from_utf8(hex).map_err(|e| e.to_string())?;
                out.push(u8::from_str_radix(hex, 16).map_err(|e| format!("\\x{hex}: {e}"))?);
                i += 4;
                continue;
            }
            Some(b'{') => {
                let rest = &raw[i + 2..];
                let star = rest.iter().position(|&c| c == b'*').ok_or("no * in \\{")?;
                let close = closing_brace(rest).ok_or("no } for \\{")?;
                let count: usize = std::str::from_utf8(&rest[..star])
                    .map_err(|e| e.to_string())?
                    .parse()
                    .map_err(|e| format!("repeat count: {e}"))?;
                let unit = decode(&rest[star + 1..close])?;
                for _ in 0..count {
                    out.extend_from_slice(&unit);
                }
                i += 2 + close + 1;
                continue;
            }
            other => return Err(format!("unknown escape \\{:?}", other.map(|&c| c as char))),
        }
        i += 2;
    }
    Ok(out)
}

/// The index of the `}` that closes a repeat whose text starts at `rest[0]`
/// (repeats nest; escaped characters are skipped).
fn closing_brace(rest: &[u8]) -> Option<usize> {
    let mut depth = 0usize;
    let mut i = 0;
    while i < rest.len() {
        match (rest[i], rest.get(i + 1)) {
            (b'\\', Some(b'{')) => {
                depth += 1;
                i += 2;
            }
            (b'\\', _) => i += 2,
            (b'}', _) if depth == 0 => return Some(i),
            (b'}', _) => {
                depth -= 1;
                i += 1;
            }
            _ => i += 1,
        }
    }
    None
}

/// How an exchange ended.
#[derive(Debug)]
enum End {
    /// The gateway closed (or reset) the connection.
    Closed,
    /// Neither an answer nor a close, even after the client's FIN.
    Stalled,
    /// Something that is not HTTP came back.
    Broken(String),
}

#[derive(Debug)]
struct Outcome {
    /// Final (non-1xx) answers, in order: status and `portcullis-error`.
    answers: Vec<(u16, Option<String>)>,
    end: End,
}

impl Outcome {
    /// `400`, `200+400`, `close`...: the key of the summary.
    fn key(&self) -> String {
        if self.answers.is_empty() {
            return "close".to_owned();
        }
        self.answers
            .iter()
            .map(|(s, _)| s.to_string())
            .collect::<Vec<_>>()
            .join("+")
    }
}

/// Sends one input on a fresh connection and reads answers until the gateway
/// closes (a FIN is sent when the gateway falls silent, or at once for `eof`
/// inputs).
async fn exchange(addr: SocketAddr, entry: &Entry) -> Outcome {
    let mut c = Raw::connect(addr, READ_WAIT)
        .await
        .unwrap_or_else(|e| panic!("{}: connect: {e}", entry.name));
    let wrote_all = c.send(&entry.bytes, WRITE_WAIT).await;
    let mut fin = false;
    if entry.eof || !wrote_all {
        c.finish().await;
        fin = true;
    }
    let mut answers = Vec::new();
    let mut silent = 0;
    let end = loop {
        if answers.len() > 4 {
            break End::Broken(format!("more answers than requests: {answers:?}"));
        }
        match c.read("GET").await {
            Read::Response(res) => {
                if res.status >= 200 {
                    answers.push((res.status, res.cause().map(str::to_owned)));
                }
            }
            Read::Closed => break End::Closed,
            Read::Silent if !fin => {
                c.finish().await;
                fin = true;
            }
            Read::Silent => {
                silent += 1;
                if silent >= SILENT_AFTER_FIN {
                    break End::Stalled;
                }
            }
            Read::Broken(why) => break End::Broken(why),
        }
    };
    Outcome { answers, end }
}

fn is_tchar(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

fn is_token(s: &str) -> bool {
    !s.is_empty() && s.chars().all(is_tchar)
}

/// Why a request the origin received is not one well-formed HTTP/1.1 request, if
/// it is not.
fn malformed_at_origin(r: &Record) -> Option<String> {
    let raw = &r.head.raw;
    for (i, &b) in raw.iter().enumerate() {
        let bad = match b {
            b'\r' => raw.get(i + 1) != Some(&b'\n'),
            b'\n' => i == 0 || raw.get(i - 1) != Some(&b'\r'),
            b'\t' => false,
            0..=0x1f | 0x7f => true,
            _ => false,
        };
        if bad {
            return Some(format!("byte {b:#04x} at {i} of the head"));
        }
    }
    let parts: Vec<&str> = r.head.start.split(' ').collect();
    let line_ok =
        parts.len() == 3 && is_token(parts[0]) && !parts[1].is_empty() && parts[2] == "HTTP/1.1";
    if !line_ok {
        return Some(format!("request line {:?}", r.head.start));
    }
    if let Some((n, _)) = r.head.fields.iter().find(|(n, _)| !is_token(n)) {
        return Some(format!("field name {n:?}"));
    }
    let hosts = r.head.get_all("host").len();
    if hosts != 1 {
        return Some(format!("{hosts} Host fields"));
    }
    let cls = r.head.get_all("content-length");
    let tes = r.head.get_all("transfer-encoding");
    if cls.len() > 1 || (!cls.is_empty() && !tes.is_empty()) {
        return Some(format!(
            "framing: Content-Length {cls:?}, Transfer-Encoding {tes:?}"
        ));
    }
    if cls
        .iter()
        .any(|v| v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()))
    {
        return Some(format!("Content-Length {cls:?}"));
    }
    if !tes.is_empty() && !tes.iter().all(|v| v.eq_ignore_ascii_case("chunked")) {
        return Some(format!("Transfer-Encoding {tes:?}"));
    }
    // An h2c upgrade that reaches the origin can become a tunnel past the gateway
    // (h2c smuggling); RFC 9113 §3.1 retired it.
    if r.head
        .get_all("upgrade")
        .iter()
        .any(|v| v.to_ascii_lowercase().contains("h2c"))
    {
        return Some("an `Upgrade: h2c` request was forwarded".to_owned());
    }
    None
}

/// Judges one input: the client's answers and what reached the origin.
fn judge(entry: &Entry, outcome: &Outcome, at_origin: &[Record], failures: &mut Vec<String>) {
    let name = &entry.name;
    let allowed = entry.class.allowed();
    let mut fail = |why: String| failures.push(format!("{name} ({:?}): {why}", entry.class));
    let mut answered_2xx = 0;
    for (status, cause) in &outcome.answers {
        match status {
            200..=299 => answered_2xx += 1,
            // 501 (unknown transfer coding or method) and 505 (HTTP version) are
            // the RFC's own refusals.
            400..=499 | 501 | 505 => {}
            _ => fail(format!("answered {status} (cause {cause:?})")),
        }
    }
    if answered_2xx > allowed {
        fail(format!(
            "{answered_2xx} success answers, at most {allowed} allowed: {:?}",
            outcome.answers
        ));
    }
    match &outcome.end {
        End::Closed => {}
        End::Stalled => fail(format!(
            "the connection stayed open and silent after the client's FIN (answers {:?})",
            outcome.answers
        )),
        End::Broken(why) => fail(format!("broken answer: {why}")),
    }
    let complete: Vec<&Record> = at_origin.iter().filter(|r| r.body.complete).collect();
    if complete.len() > allowed {
        fail(format!(
            "the origin received {} requests, at most {allowed} allowed: {:#?}",
            complete.len(),
            complete
                .iter()
                .map(|r| shorten(&r.head.text()))
                .collect::<Vec<_>>()
        ));
    }
    for r in &complete {
        if r.head.target().contains("smuggled") {
            fail(format!(
                "a smuggled request reached the origin: {:?}",
                shorten(&r.head.text())
            ));
        }
        if let Some(why) = malformed_at_origin(r) {
            fail(format!(
                "the origin received a malformed request ({why}): {:?}",
                shorten(&r.head.text())
            ));
        }
    }
}

/// What a run over some entries saw.
#[derive(Debug, Default)]
struct Summary {
    inputs: usize,
    tally: BTreeMap<String, usize>,
    forwarded: usize,
    cut_at_origin: usize,
    failures: Vec<String>,
}

impl Summary {
    /// The one-line summary for the issue note.
    fn line(&self) -> String {
        let counts: Vec<String> = self.tally.iter().map(|(k, n)| format!("{k}:{n}")).collect();
        format!(
            "{} inputs; answers {}; forwarded as one request {}; heads with a cut body at the origin {}; gateway alive throughout",
            self.inputs,
            counts.join(" "),
            self.forwarded,
            self.cut_at_origin
        )
    }
}

/// Sends each entry to one gateway in front of one recording origin, checking
/// after each that the gateway still runs and answers a normal request.
async fn run_corpus(entries: &[&Entry]) -> Summary {
    let origin = Origin::start(|_| Action::Respond(ok("fine"))).await;
    // A short header timeout, so that cut heads end quickly.
    let p = Proc::run("header_timeout = \"3s\"", &routes(&origin)).await;
    let verbose = std::env::var_os("FAULTS_VERBOSE").is_some();
    let mut sum = Summary {
        inputs: entries.len(),
        ..Summary::default()
    };
    let mut seen = 0;
    for (i, entry) in entries.iter().enumerate() {
        let started = tokio::time::Instant::now();
        let outcome = exchange(p.gw.addr, entry).await;
        let took = started.elapsed();
        p.assert_alive(&format!("input {}", entry.name));
        let alive = format!("/__alive/{i}");
        match get_once(p.gw.addr, &alive, Duration::from_secs(5)).await {
            Read::Response(res) if res.status == 200 => {}
            other => panic!(
                "after input {}, a normal request got {other:?}; logs:\n{}",
                entry.name,
                p.gw.logs()
            ),
        }
        // A request forwarded for the input was recorded before its answer went
        // back; the short settle covers one cut by the client's FIN.
        tokio::time::sleep(Duration::from_millis(30)).await;
        let records = origin.records();
        let new: Vec<Record> = records
            .get(seen..)
            .unwrap_or(&[])
            .iter()
            .filter(|r| !r.head.target().starts_with("/__alive/"))
            .cloned()
            .collect();
        seen = records.len();
        sum.forwarded += new.iter().filter(|r| r.body.complete).count();
        sum.cut_at_origin += new.iter().filter(|r| !r.body.complete).count();
        judge(entry, &outcome, &new, &mut sum.failures);
        *sum.tally.entry(outcome.key()).or_default() += 1;
        if verbose {
            eprintln!(
                "{:<40} {:<8} {:<8} {:>5}ms origin {:?}",
                entry.name,
                format!("{:?}", entry.class),
                outcome.key(),
                took.as_millis(),
                new.iter()
                    .map(|r| shorten(&r.head.text()))
                    .collect::<Vec<_>>()
            );
        }
    }
    // Late arrivals: nothing smuggled may ever reach the origin.
    tokio::time::sleep(Duration::from_millis(200)).await;
    for r in origin.records() {
        if r.head.target().contains("smuggled") && r.body.complete {
            sum.failures.push(format!(
                "a smuggled request reached the origin late: {:?}",
                shorten(&r.head.text())
            ));
        }
    }
    sum
}

fn corpus() -> Vec<Entry> {
    let corpus = parse_corpus(CORPUS);
    let mut names = HashSet::new();
    for e in &corpus {
        assert!(names.insert(&e.name), "duplicate entry name {}", e.name);
    }
    corpus
}

fn assert_clean(sum: &Summary) {
    assert!(
        sum.failures.is_empty(),
        "{} failure(s) over {} inputs:\n{}",
        sum.failures.len(),
        sum.inputs,
        sum.failures.join("\n")
    );
}

/// Every corpus input but those flagged `bug` (see [`malformed_known_bugs`]).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed() {
    let _serial = serial().await;
    let corpus = corpus();
    let entries: Vec<&Entry> = corpus.iter().filter(|e| !e.bug).collect();
    assert!(
        entries.len() >= 100,
        "the corpus has {} runnable entries",
        entries.len()
    );
    let sum = run_corpus(&entries).await;
    eprintln!("malformed: {}", sum.line());
    assert_clean(&sum);
}

/// At most 300 characters of `text`, for assertion messages.
fn shorten(text: &str) -> String {
    if text.chars().count() <= 300 {
        return text.to_owned();
    }
    let head: String = text.chars().take(300).collect();
    format!("{head}… ({} bytes)", text.len())
}

#[test]
fn the_corpus_format_decodes_escapes_and_repeats() {
    assert_eq!(
        decode(br"a\r\n\t\\\x00\xff\{3*ab\r}\{2*<\{2*-}>}z").expect("decodes"),
        b"a\r\n\t\\\x00\xffab\rab\rab\r<--><-->z"
    );
    assert!(decode(br"\q").is_err());
    let corpus =
        parse_corpus("# c\n=== x reject eof bug\nGET / \nHTTP/1.1\\r\\n\n# c\n=== y one\n");
    assert_eq!(corpus.len(), 2);
    assert_eq!(corpus[0].bytes, b"GET / HTTP/1.1\r\n");
    assert!(corpus[0].eof && corpus[0].bug);
    assert!(!corpus[1].eof && !corpus[1].bug);
    assert_eq!(corpus[1].class, Class::One);
    assert!(corpus[1].bytes.is_empty());
}

/// An `Upgrade: h2c` request must not become a tunnel to the origin: through it
/// the client would speak HTTP/2 straight to the origin, past the gateway's
/// routing, auth and limits ("h2c smuggling"). RFC 9113 §3.1 retired the h2c
/// upgrade; WebSocket upgrades are unaffected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_upgrade_is_not_tunnelled() {
    let _serial = serial().await;
    const SWITCH: &[u8] =
        b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n";
    let origin = Origin::start(|_| Action::Upgrade(SWITCH.to_vec())).await;
    let p = Proc::run("", &routes(&origin)).await;
    let mut c = Raw::connect(p.gw.addr, Duration::from_secs(5))
        .await
        .expect("connect");
    let request = b"GET /x HTTP/1.1\r\nHost: test.local\r\nConnection: Upgrade, HTTP2-Settings\r\n\
        Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n";
    assert!(c.send(request, WRITE_WAIT).await, "write the request");
    let answer = c.read("GET").await;
    let forwarded: Vec<String> = origin
        .records()
        .iter()
        .filter(|r| r.head.get("upgrade").is_some())
        .map(|r| r.head.text())
        .collect();
    if let Read::Response(res) = &answer {
        assert_ne!(
            res.status,
            101,
            "the gateway opened an h2c tunnel to the origin: {}",
            res.dump()
        );
    }
    assert!(
        forwarded.is_empty(),
        "the origin received an upgrade request: {forwarded:?}"
    );
}
