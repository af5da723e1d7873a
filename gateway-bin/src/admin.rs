//! The admin listener: `GET /healthz`, `GET /readyz`.
//!
//! TODO(#3, #4): metrics and the registration API mount here.

use std::convert::Infallible;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use http::{Method, Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use portcullis_core::{Cause, ErrorBody, ErrorResponse};
use tokio::net::TcpListener;

/// Serves the admin endpoints until the task is dropped.
pub async fn serve(listener: TcpListener) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(a) => a,
            Err(error) => {
                tracing::warn!(%error, "admin accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(handle);
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(std::time::Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

async fn handle(req: Request<Incoming>) -> Result<Response<ErrorBody>, Infallible> {
    let body = match (req.method(), req.uri().path()) {
        (&Method::GET, "/healthz") => r#"{"status":"ok"}"#,
        (&Method::GET, "/readyz") => r#"{"status":"ready"}"#,
        // The gateway's own error shape, as on the proxy listener.
        _ => return Ok(ErrorResponse::for_request(Cause::NoRoute, &req).build()),
    };
    let mut res = Response::new(ErrorBody::new(Bytes::from_static(body.as_bytes())));
    res.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    Ok(res)
}

/// Makes sure an admin token exists: the `PORTCULLIS_ADMIN_TOKEN` variable, or a
/// token file in the state folder, created (mode 0600) at first start.
pub fn ensure_token(state_dir: &Path) -> anyhow::Result<Option<PathBuf>> {
    use anyhow::Context as _;
    if std::env::var_os("PORTCULLIS_ADMIN_TOKEN").is_some() {
        return Ok(None);
    }
    std::fs::create_dir_all(state_dir)
        .with_context(|| format!("creating state folder {}", state_dir.display()))?;
    let path = state_dir.join("admin-token");
    if path.exists() {
        return Ok(Some(path));
    }
    let mut raw = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut raw))
        .context("reading /dev/urandom for the admin token")?;
    let token: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(&path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(token.as_bytes())
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(Some(path))
}
