//! `probe` against real sockets on 127.0.0.1.

mod support;

use std::time::Duration;

use portcullis_health::{FailureKind, HealthCheckConfig, ProbeResult, USER_AGENT_VALUE, probe};
use support::{OK, Origin, Reply};

fn config() -> HealthCheckConfig {
    let mut cfg = HealthCheckConfig {
        timeout: Duration::from_millis(300),
        connect_timeout: Duration::from_millis(300),
        ..HealthCheckConfig::default()
    };
    cfg.headers
        .insert("X-Forwarded-Proto".into(), "https".into());
    cfg
}

#[tokio::test]
async fn each_probe_uses_a_new_connection_and_sends_probe_headers() {
    let origin = Origin::start(Reply::Raw(OK)).await;
    for _ in 0..3 {
        let result = probe(origin.addr, "app.internal:3000", &config()).await;
        assert!(
            matches!(result, ProbeResult::Ok { status: 200, .. }),
            "{result:?}"
        );
    }
    assert_eq!(origin.accepted(), 3, "one TCP connection per probe");
    let heads = origin.heads();
    assert_eq!(heads.len(), 3);
    let head = heads[0].to_ascii_lowercase();
    assert!(head.starts_with("get /healthz http/1.1\r\n"), "{head}");
    assert!(head.contains("\r\nhost: app.internal:3000\r\n"), "{head}");
    assert!(
        head.contains(&format!(
            "\r\nuser-agent: {}\r\n",
            USER_AGENT_VALUE.to_ascii_lowercase()
        )),
        "{head}"
    );
    assert!(head.contains("\r\nx-forwarded-proto: https\r\n"), "{head}");
    assert!(head.contains("\r\nconnection: close\r\n"), "{head}");
}

#[tokio::test]
async fn method_and_path_are_configurable() {
    let origin = Origin::start(Reply::Raw(
        "HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n",
    ))
    .await;
    let cfg = HealthCheckConfig {
        method: "HEAD".into(),
        path: "/up?deep=1".into(),
        expected_status: vec![200, 204],
        ..config()
    };
    let result = probe(origin.addr, "h", &cfg).await;
    assert!(
        matches!(result, ProbeResult::Ok { status: 204, .. }),
        "{result:?}"
    );
    assert!(origin.heads()[0].starts_with("HEAD /up?deep=1 HTTP/1.1\r\n"));
}

#[tokio::test]
async fn refused_port_is_refused() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let result = probe(addr, "h", &config()).await;
    let ProbeResult::Failed { kind, detail, .. } = result else {
        panic!("expected a failure, got {result:?}")
    };
    assert_eq!(kind, FailureKind::Refused);
    assert!(detail.starts_with("connection refused"), "{detail}");
}

#[tokio::test]
async fn silent_server_times_out_within_the_timeout() {
    let origin = Origin::start(Reply::Silent).await;
    let result = tokio::time::timeout(Duration::from_secs(3), probe(origin.addr, "h", &config()))
        .await
        .expect("the probe must end by its own timeout");
    let ProbeResult::Failed { kind, detail, .. } = result else {
        panic!("expected a failure, got {result:?}")
    };
    assert_eq!(kind, FailureKind::Timeout);
    assert_eq!(detail, "no answer within 300ms");
    assert_eq!(origin.accepted(), 1);
}

#[tokio::test]
async fn status_500_keeps_the_first_bytes_of_the_body() {
    static RESPONSE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let body = format!("database down\r\n{}", "x".repeat(284));
    let raw = RESPONSE.get_or_init(|| format!("{}{body}", support::FAIL));
    let origin = Origin::start(Reply::Raw(raw.as_str())).await;
    let result = probe(origin.addr, "h", &config()).await;
    let ProbeResult::Failed { kind, detail, .. } = result.clone() else {
        panic!("expected a failure, got {result:?}")
    };
    assert_eq!(kind, FailureKind::Status(500));
    let expected_text = format!("database down  {}", "x".repeat(128 - 15));
    assert_eq!(detail, format!("status 500: {expected_text}"));
    assert_eq!(result.as_str(), "status");
    assert_eq!(
        result.to_string(),
        format!("status: status 500: {expected_text}")
    );
}

#[tokio::test]
async fn garbage_response_is_a_protocol_error() {
    let origin = Origin::start(Reply::Raw("SMTP ready\r\n\r\n")).await;
    let result = probe(origin.addr, "h", &config()).await;
    assert!(
        matches!(
            result,
            ProbeResult::Failed {
                kind: FailureKind::Protocol,
                ..
            }
        ),
        "{result:?}"
    );
}
