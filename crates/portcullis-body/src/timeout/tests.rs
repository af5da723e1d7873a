mod body_timeout {
    use std::pin::Pin;
    use std::task::{Context, Poll};
    use std::time::Duration;

    use bytes::Bytes;
    use http::{Request, Response, StatusCode};
    use http_body::Frame;
    use http_body_util::BodyExt;
    use tokio::sync::mpsc;
    use tower::{Layer, ServiceExt, service_fn};

    use crate::{BodyTimeoutLayer, TimedBody};

    /// A request body fed by a channel: the test is the slow client.
    struct Trickle(mpsc::Receiver<Bytes>);

    impl http_body::Body for Trickle {
        type Data = Bytes;
        type Error = std::io::Error;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
            self.0.poll_recv(cx).map(|c| c.map(|b| Ok(Frame::data(b))))
        }
    }

    /// Reads the whole body: 200 with its length, or 400 when the body fails (as
    /// a proxy whose upload failed would answer).
    async fn read(
        req: Request<TimedBody<Trickle>>,
    ) -> Result<Response<String>, std::convert::Infallible> {
        Ok(match req.into_body().collect().await {
            Ok(b) => Response::new(b.to_bytes().len().to_string()),
            Err(_) => {
                let mut r = Response::new(String::new());
                *r.status_mut() = StatusCode::BAD_REQUEST;
                r
            }
        })
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_idle_too_long_is_408_client_timeout() {
        let svc = BodyTimeoutLayer::new(Duration::from_secs(10)).layer(service_fn(read));
        let (tx, rx) = mpsc::channel(4);
        let call = tokio::spawn(svc.oneshot(Request::post("/").body(Trickle(rx)).unwrap()));
        tx.send(Bytes::from_static(b"abc")).await.unwrap();
        tokio::time::sleep(Duration::from_secs(9)).await;
        tx.send(Bytes::from_static(b"def")).await.unwrap();
        // Then silence past the idle timeout.
        tokio::time::sleep(Duration::from_secs(11)).await;
        let res = call.await.unwrap().unwrap();
        assert_eq!(res.status(), StatusCode::REQUEST_TIMEOUT);
        assert_eq!(res.headers()["portcullis-error"], "client_timeout");
        assert_eq!(res.headers()["connection"], "close");
        drop(tx);
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_under_the_minimum_rate_is_408_after_the_grace() {
        let svc = BodyTimeoutLayer::new(Duration::from_secs(10))
            .min_rate(100, Duration::from_secs(5))
            .layer(service_fn(read));
        let (tx, rx) = mpsc::channel(4);
        let call = tokio::spawn(svc.oneshot(Request::post("/").body(Trickle(rx)).unwrap()));
        // 10 bytes a second: never idle for 10s, but under 100 B/s.
        for _ in 0..8 {
            if tx.send(Bytes::from_static(b"0123456789")).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let res = call.await.unwrap().unwrap();
        assert_eq!(res.status(), StatusCode::REQUEST_TIMEOUT);
    }

    #[tokio::test(start_paused = true)]
    async fn a_steady_body_passes() {
        let svc = BodyTimeoutLayer::new(Duration::from_secs(10))
            .min_rate(100, Duration::from_secs(5))
            .layer(service_fn(read));
        let (tx, rx) = mpsc::channel(4);
        let call = tokio::spawn(svc.oneshot(Request::post("/").body(Trickle(rx)).unwrap()));
        for _ in 0..8 {
            tx.send(Bytes::from(vec![b'x'; 200])).await.unwrap();
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        drop(tx);
        let res = call.await.unwrap().unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), "1600");
    }
}
