//! [`RequestIdLayer`], [`RequestId`] and [`RequestIdFuture`]: the `x-request-id` header.

use std::cell::Cell;
use std::fmt;
use std::future::Future;
use std::hash::{BuildHasher, RandomState};
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::{SystemTime, UNIX_EPOCH};

use http::{HeaderName, HeaderValue, Request, Response};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

/// The request id header: `x-request-id`.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Longest client request id kept, in bytes.
pub(crate) const MAX_REQUEST_ID: usize = 128;

/// Gives every request an `x-request-id`, and echoes it on the response.
///
/// See the [crate docs](crate#request-ids) for the rules.
#[derive(Debug, Clone, Copy)]
#[must_use]
pub struct RequestIdLayer {
    trust_incoming: bool,
}

/// Gives every request an `x-request-id`, and echoes it on the response; built by
/// [`RequestIdLayer`].
#[derive(Debug, Clone)]
pub struct RequestId<S> {
    inner: S,
    trust_incoming: bool,
}

pin_project! {
    /// The response future of [`RequestId`]: sets `x-request-id` on the response.
    pub struct RequestIdFuture<F> {
        #[pin]
        inner: F,
        id: HeaderValue,
    }
}

// === impl RequestIdLayer ===

impl RequestIdLayer {
    /// A layer that keeps a valid client request id and generates one otherwise.
    pub fn new() -> Self {
        Self {
            trust_incoming: true,
        }
    }

    /// A layer that always generates a new id, ignoring the client's.
    pub fn always_generate() -> Self {
        Self {
            trust_incoming: false,
        }
    }
}

impl Default for RequestIdLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl<S> Layer<S> for RequestIdLayer {
    type Service = RequestId<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestId {
            inner,
            trust_incoming: self.trust_incoming,
        }
    }
}

// === impl RequestId ===

impl<S> RequestId<S> {
    /// Wraps `inner`, keeping valid client ids (as [`RequestIdLayer::new`]).
    pub fn new(inner: S) -> Self {
        RequestIdLayer::new().layer(inner)
    }

    /// A layer that keeps valid client ids (as [`RequestIdLayer::new`]).
    pub fn layer() -> RequestIdLayer {
        RequestIdLayer::new()
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for RequestId<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = RequestIdFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let headers = req.headers_mut();
        let kept = if self.trust_incoming {
            let mut all = headers.get_all(&X_REQUEST_ID).iter();
            match (all.next(), all.next()) {
                (Some(id), None) if is_valid_request_id(id.as_bytes()) => Some(id.clone()),
                _ => None,
            }
        } else {
            None
        };
        let id = match kept {
            Some(id) => id,
            None => {
                let id = generate();
                // `insert` replaces every value the client sent.
                headers.insert(X_REQUEST_ID, id.clone());
                id
            }
        };
        RequestIdFuture {
            inner: self.inner.call(req),
            id,
        }
    }
}

/// Whether `id` is kept as a request id: 1 to 128 bytes of `A-Z a-z 0-9 . _ : -`.
pub fn is_valid_request_id(id: &[u8]) -> bool {
    (1..=MAX_REQUEST_ID).contains(&id.len())
        && id
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// A new id: a UUID v7 (time-ordered), hyphenated, lower case.
///
/// Its 74 random bits come from a per-thread SplitMix64 generator seeded from the
/// standard library's randomly keyed hasher, not from a system call per request:
/// ids must be unique, and need not be secret.
pub(crate) fn generate() -> HeaderValue {
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let (a, b) = RNG.with(|state| (next(state), next(state)));
    let mut random = [0u8; 10];
    random[..8].copy_from_slice(&a.to_le_bytes());
    random[8..].copy_from_slice(&b.to_le_bytes()[..2]);
    let id = uuid::Builder::from_unix_timestamp_millis(millis, &random).into_uuid();
    let mut buf = uuid::Uuid::encode_buffer();
    let id = id.hyphenated().encode_lower(&mut buf);
    HeaderValue::from_str(id).unwrap_or_else(|_| HeaderValue::from_static("invalid-uuid"))
}

thread_local! {
    static RNG: Cell<u64> = Cell::new(seed());
}

/// 64 random bits: `RandomState` keys come from the operating system.
fn seed() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    RandomState::new().hash_one((nanos, std::thread::current().id()))
}

/// SplitMix64 (Steele, Lea and Flood, 2014).
fn next(state: &Cell<u64>) -> u64 {
    let s = state.get().wrapping_add(0x9e37_79b9_7f4a_7c15);
    state.set(s);
    let mut z = s;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

// === impl RequestIdFuture ===

impl<F, B, E> Future for RequestIdFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut res = ready!(this.inner.poll(cx))?;
        // The gateway's id wins over any the upstream sent.
        res.headers_mut().insert(X_REQUEST_ID, this.id.clone());
        Poll::Ready(Ok(res))
    }
}

impl<F> fmt::Debug for RequestIdFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestIdFuture")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}
