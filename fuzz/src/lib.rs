//! Helpers shared by the fuzz targets in `fuzz_targets/`.
//!
//! Nothing here is part of Portcullis: the targets exercise the real crates and
//! use these only to split fuzz input into parts and to drive services whose
//! futures are ready at once.
#![forbid(unsafe_code)]

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

/// Polls `fut` with a no-op waker until it is ready, at most `max_polls` times.
///
/// The services under test answer without waiting on IO, so their futures are
/// ready on the first or second poll; `None` means one of them waited for
/// something that never comes, which the caller reports as a bug.
pub fn poll_now<F: Future>(fut: F, max_polls: usize) -> Option<F::Output> {
    let mut fut = pin!(fut);
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..max_polls {
        if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return Some(out);
        }
    }
    None
}

/// Reads fuzz input as a sequence of small fields.
///
/// Every read succeeds: past the end it yields zeros and empty slices, so a
/// target never has to give up on short input.
#[derive(Debug)]
pub struct Input<'a> {
    rest: &'a [u8],
}

impl<'a> Input<'a> {
    /// Wraps `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Self { rest: data }
    }

    /// One byte, or 0 at the end.
    pub fn byte(&mut self) -> u8 {
        match self.rest.split_first() {
            Some((&b, rest)) => {
                self.rest = rest;
                b
            }
            None => 0,
        }
    }

    /// Whether any input is left.
    pub fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// The bytes up to the next `sep` (not included; `sep` is consumed), or
    /// all the rest when there is none.
    pub fn field(&mut self, sep: u8) -> &'a [u8] {
        match self.rest.iter().position(|&b| b == sep) {
            Some(i) => {
                let (field, rest) = self.rest.split_at(i);
                self.rest = rest.get(1..).unwrap_or_default();
                field
            }
            None => std::mem::take(&mut self.rest),
        }
    }

    /// Everything left.
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.rest)
    }
}

/// Fields of `data` separated by `sep`: seed files are written with `\n`
/// between the parts so that they stay readable.
pub fn fields(data: &[u8], sep: u8) -> Vec<&[u8]> {
    data.split(|&b| b == sep).collect()
}
