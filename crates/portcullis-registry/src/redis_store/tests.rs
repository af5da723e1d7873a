//! Tests against a real `redis-server`, started per test on a free port.

use tokio::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

use super::*;
use crate::model::{EndpointSpec, RouteSpec, ServiceSpec};

const START_DEADLINE: Duration = Duration::from_secs(10);

/// A `redis-server` child process, killed on drop.
struct RedisServer {
    port: u16,
    child: Option<Child>,
}

impl RedisServer {
    async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let mut server = RedisServer { port, child: None };
        server.restart().await;
        server
    }

    /// Starts the server on its port and waits until it answers PING.
    async fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start redis-server ({e}): it is needed by the Redis store tests; \
                     run scripts/test.sh, which installs Debian's redis-server package"
                )
            });
        self.child = Some(child);
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            if self.pings().await {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "redis-server on port {} did not answer PING within {START_DEADLINE:?}",
                self.port
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn pings(&self) -> bool {
        let Ok(Ok(mut s)) = tokio::time::timeout(
            Duration::from_millis(200),
            TcpStream::connect(("127.0.0.1", self.port)),
        )
        .await
        else {
            return false;
        };
        let mut buf = [0u8; 7];
        s.write_all(b"PING\r\n").await.is_ok()
            && matches!(
                tokio::time::timeout(Duration::from_millis(200), s.read_exact(&mut buf)).await,
                Ok(Ok(_))
            )
            && &buf == b"+PONG\r\n"
    }

    async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.expect("kill redis-server");
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    async fn store(&self) -> RedisStore {
        RedisStore::connect(RedisOptions::new(self.url()).resync_interval(Duration::from_secs(60)))
            .await
            .expect("store")
    }

    /// A plain connection, to look at what the store wrote.
    async fn raw(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    }
}

fn state(lease_expires: u64) -> StoredState {
    let mut endpoints = BTreeMap::new();
    for (id, port) in [("a", 3000), ("b", 3001)] {
        endpoints.insert(
            id.to_owned(),
            Endpoint {
                spec: EndpointSpec::new(format!("http://127.0.0.1:{port}")),
                lease_expires,
            },
        );
    }
    let mut services = BTreeMap::new();
    services.insert(
        "droplets".to_owned(),
        ServiceEntry {
            spec: ServiceSpec::new(vec![RouteSpec::new("/droplets/{id}")]),
            endpoints,
        },
    );
    services.insert(
        "volumes".to_owned(),
        ServiceEntry {
            spec: ServiceSpec::new(vec![RouteSpec::new("/volumes/")]),
            endpoints: BTreeMap::new(),
        },
    );
    StoredState::new(services)
}

async fn wait_until<F: Future<Output = bool>>(
    what: &str,
    within: Duration,
    mut f: impl FnMut() -> F,
) {
    let deadline = Instant::now() + within;
    while !f().await {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn save_load_round_trip_and_deletes() {
    let server = RedisServer::start().await;
    let store = server.store().await;
    assert!(store.is_healthy());
    assert_eq!(store.load().await.unwrap(), None);

    let full = state(now_unix_ms() + 60_000);
    store.save(&full).await.unwrap();
    assert_eq!(store.load().await.unwrap(), Some(full.clone()));

    let mut raw = server.raw().await;
    let mut keys: Vec<String> = redis::cmd("KEYS")
        .arg("portcullis:*")
        .query_async(&mut raw)
        .await
        .unwrap();
    keys.sort();
    assert_eq!(
        keys,
        [
            "portcullis:ep:droplets:a",
            "portcullis:ep:droplets:b",
            "portcullis:epoch",
            "portcullis:format",
            "portcullis:svc:droplets",
            "portcullis:svc:volumes",
        ]
    );
    let spec: String = redis::cmd("GET")
        .arg("portcullis:svc:volumes")
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(
        serde_json::from_str::<ServiceSpec>(&spec).unwrap(),
        full.services["volumes"].spec
    );

    // Saving a smaller state deletes what it no longer holds.
    let mut smaller = full.clone();
    smaller.services.remove("volumes");
    smaller
        .services
        .get_mut("droplets")
        .unwrap()
        .endpoints
        .remove("b");
    store.save(&smaller).await.unwrap();
    assert_eq!(store.load().await.unwrap(), Some(smaller));

    // An empty state is stored as such, not as "nothing stored".
    store.save(&StoredState::default()).await.unwrap();
    assert_eq!(store.load().await.unwrap(), Some(StoredState::default()));

    // Other prefixes are other registries.
    let other = RedisStore::connect(RedisOptions::new(server.url()).key_prefix("other:"))
        .await
        .unwrap();
    assert_eq!(other.load().await.unwrap(), None);
}

#[tokio::test]
async fn endpoint_ttl_is_the_lease_and_redis_expires_it() {
    let server = RedisServer::start().await;
    let store = server.store().await;
    let mut raw = server.raw().await;

    store.save(&state(now_unix_ms() + 30_000)).await.unwrap();
    let pttl: i64 = redis::cmd("PTTL")
        .arg("portcullis:ep:droplets:a")
        .query_async(&mut raw)
        .await
        .unwrap();
    assert!((29_000..=30_000).contains(&pttl), "pttl {pttl}");
    let svc_ttl: i64 = redis::cmd("PTTL")
        .arg("portcullis:svc:droplets")
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(svc_ttl, -1, "services do not expire");

    // A lapsed lease is not written at all.
    store.save(&state(now_unix_ms() - 1)).await.unwrap();
    let loaded = store.load().await.unwrap().unwrap();
    assert!(loaded.services["droplets"].endpoints.is_empty());

    // A one-second lease disappears from Redis by itself.
    store.save(&state(now_unix_ms() + 1_000)).await.unwrap();
    let loaded = store.load().await.unwrap().unwrap();
    assert_eq!(loaded.services["droplets"].endpoints.len(), 2);
    wait_until("endpoints expire", Duration::from_secs(3), || async {
        let loaded = store.load().await.unwrap().unwrap();
        loaded.services["droplets"].endpoints.is_empty()
    })
    .await;
    assert_eq!(store.load().await.unwrap().unwrap().services.len(), 2);
}

/// Waits until `n` subscribers listen on the changes channel.
async fn wait_for_subscribers(server: &RedisServer, n: i64) {
    let mut raw = server.raw().await;
    wait_until("subscription", Duration::from_secs(5), || {
        let mut raw = raw.clone();
        async move {
            let (_, count): (String, i64) = redis::cmd("PUBSUB")
                .arg("NUMSUB")
                .arg("portcullis:changes")
                .query_async(&mut raw)
                .await
                .unwrap();
            count >= n
        }
    })
    .await;
    let _ = &mut raw;
}

#[tokio::test]
async fn save_on_one_gateway_notifies_the_other_within_a_second() {
    let server = RedisServer::start().await;
    let a = server.store().await;
    let b = server.store().await;
    let mut a_changes = a.subscribe();
    let mut b_changes = b.subscribe();
    wait_for_subscribers(&server, 2).await;

    let s = state(now_unix_ms() + 60_000);
    a.save(&s).await.unwrap();
    tokio::time::timeout(Duration::from_secs(1), b_changes.recv())
        .await
        .expect("B notified within 1s")
        .expect("channel open");
    assert_eq!(b.load().await.unwrap(), Some(s.clone()));
    // B's registry now holds what it loaded (as the gateway does after restoring).
    b.mark_restored(&s).await.unwrap();
    // A ignores its own message.
    assert!(
        tokio::time::timeout(Duration::from_millis(300), a_changes.recv())
            .await
            .is_err()
    );
    // And the other way round.
    b.save(&StoredState::default()).await.unwrap();
    tokio::time::timeout(Duration::from_secs(1), a_changes.recv())
        .await
        .expect("A notified within 1s")
        .expect("channel open");
    assert_eq!(a.load().await.unwrap(), Some(StoredState::default()));
}

#[tokio::test]
async fn periodic_resync_fires() {
    let server = RedisServer::start().await;
    let store = RedisStore::connect(
        RedisOptions::new(server.url()).resync_interval(Duration::from_millis(200)),
    )
    .await
    .unwrap();
    let mut changes = store.subscribe();
    for _ in 0..2 {
        tokio::time::timeout(Duration::from_secs(2), changes.recv())
            .await
            .expect("resync tick")
            .expect("channel open");
    }
}

#[tokio::test]
async fn unreachable_redis_fails_fast_and_recovers_on_restart() {
    let mut server = RedisServer::start().await;
    let store = server.store().await;
    let mut changes = store.subscribe();
    wait_for_subscribers(&server, 1).await;
    let s = state(now_unix_ms() + 60_000);
    store.save(&s).await.unwrap();
    assert!(store.is_healthy());

    server.stop().await;
    let started = Instant::now();
    let err = store.save(&s).await.unwrap_err();
    assert!(
        started.elapsed() < DEFAULT_REDIS_TIMEOUT + Duration::from_millis(250),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        matches!(
            err,
            StoreError::Unavailable {
                store: "redis",
                op: "save",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(!store.is_healthy());
    let started = Instant::now();
    assert!(matches!(
        store.load().await.unwrap_err(),
        StoreError::Unavailable { op: "load", .. }
    ));
    assert!(started.elapsed() < DEFAULT_REDIS_TIMEOUT + Duration::from_millis(250));
    assert!(store.ping().await.is_err());
    assert!(!store.is_healthy());

    // Back on the same port (empty: no persistence): operations succeed again.
    server.restart().await;
    wait_until("store recovers", Duration::from_secs(10), || async {
        store.ping().await.is_ok()
    })
    .await;
    assert!(store.is_healthy());
    assert_eq!(store.load().await.unwrap(), None);
    store.save(&s).await.unwrap();
    assert_eq!(store.load().await.unwrap(), Some(s));
    assert!(store.is_healthy());
    // The subscription came back and asked for a resync.
    tokio::time::timeout(Duration::from_secs(10), changes.recv())
        .await
        .expect("resync after recovery")
        .expect("channel open");
}

#[tokio::test]
async fn invalid_url_and_corrupt_data_are_errors() {
    assert!(matches!(
        RedisStore::connect(RedisOptions::new("nope://x"))
            .await
            .unwrap_err(),
        StoreError::Unavailable { op: "connect", .. }
    ));
    let server = RedisServer::start().await;
    let store = server.store().await;
    store.save(&StoredState::default()).await.unwrap();
    let mut raw = server.raw().await;
    let () = redis::cmd("SET")
        .arg("portcullis:svc:broken")
        .arg("{not json")
        .query_async(&mut raw)
        .await
        .unwrap();
    match store.load().await.unwrap_err() {
        StoreError::Invalid { store, reason } => {
            assert_eq!(store, "redis");
            assert!(reason.starts_with("portcullis:svc:broken: "), "{reason}");
        }
        other => panic!("expected Invalid, got {other:?}"),
    }
    // The next save drops the broken key.
    store.save(&StoredState::default()).await.unwrap();
    assert_eq!(store.load().await.unwrap(), Some(StoredState::default()));
}

#[test]
fn options_debug_redacts_the_password() {
    let o = RedisOptions::new("redis://user:s3cret@db:6379/0").key_prefix("x:");
    let d = format!("{o:?}");
    assert!(d.contains("redis://***@db:6379/0"), "{d}");
    assert!(!d.contains("s3cret"));
    assert_eq!(o.url(), "redis://user:s3cret@db:6379/0");
    assert_eq!(glob_escape("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\");
}

#[tokio::test]
async fn gateways_changing_different_things_keep_each_others_changes() {
    let server = RedisServer::start().await;
    let (a, b) = (server.store().await, server.store().await);
    assert_eq!(a.load().await.unwrap(), None);
    assert_eq!(b.load().await.unwrap(), None);
    let full = state(now_unix_ms() + 60_000);
    let only = |name: &str, from: &StoredState| {
        let mut s = StoredState::default();
        s.services
            .insert(name.to_owned(), from.services[name].clone());
        s
    };

    // Each registers a service without having seen the other's: both stay.
    a.save(&only("droplets", &full)).await.unwrap();
    b.save(&only("volumes", &full)).await.unwrap();
    assert_eq!(a.load().await.unwrap(), Some(full.clone()));

    // B deletes its service, not having reloaded: A's stays.
    b.save(&StoredState::default()).await.unwrap();
    assert_eq!(b.load().await.unwrap(), Some(only("droplets", &full)));

    // An endpoint whose lease lapsed on A while B renewed it: A's save (without
    // it, as after A's expiry tick) leaves B's renewal alone.
    let mut short = only("droplets", &full);
    for ep in short
        .services
        .get_mut("droplets")
        .unwrap()
        .endpoints
        .values_mut()
    {
        ep.lease_expires = now_unix_ms() + 300;
    }
    a.save(&short).await.unwrap();
    assert_eq!(b.load().await.unwrap(), Some(short.clone()));
    b.mark_restored(&short).await.unwrap();
    let renewed = only("droplets", &full);
    b.save(&renewed).await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let mut expired_on_a = short.clone();
    expired_on_a
        .services
        .get_mut("droplets")
        .unwrap()
        .endpoints
        .clear();
    a.save(&expired_on_a).await.unwrap();
    assert_eq!(a.load().await.unwrap(), Some(renewed.clone()));
    a.mark_restored(&renewed).await.unwrap();

    // A deregistration of a live endpoint is a delete.
    let mut without_b = renewed.clone();
    without_b
        .services
        .get_mut("droplets")
        .unwrap()
        .endpoints
        .remove("b");
    a.save(&without_b).await.unwrap();
    assert_eq!(b.load().await.unwrap(), Some(without_b.clone()));
    b.mark_restored(&without_b).await.unwrap();

    // Redis loses its data: the next save writes the whole state again.
    let mut raw = server.raw().await;
    let () = redis::cmd("FLUSHALL").query_async(&mut raw).await.unwrap();
    let mut plus = without_b.clone();
    plus.services
        .insert("volumes".to_owned(), full.services["volumes"].clone());
    a.save(&plus).await.unwrap();
    assert_eq!(b.load().await.unwrap(), Some(plus.clone()));

    // A registration B's registry refused when restoring (its own policy) is
    // not B's to delete: B marks what it restored, without it.
    let mut refused_by_b = plus.clone();
    refused_by_b.services.remove("volumes");
    b.mark_restored(&refused_by_b).await.unwrap();
    let mut b_change = refused_by_b.clone();
    b_change
        .services
        .insert("extra".to_owned(), full.services["volumes"].clone());
    b.save(&b_change).await.unwrap();
    let mut both = plus.clone();
    both.services
        .insert("extra".to_owned(), full.services["volumes"].clone());
    assert_eq!(a.load().await.unwrap(), Some(both.clone()));

    // Redis loses its data and A re-seeds it: B, whose knowledge is now stale,
    // writes its whole state at its next save instead of a diff.
    let () = redis::cmd("FLUSHALL").query_async(&mut raw).await.unwrap();
    a.save(&only("droplets", &both)).await.unwrap();
    b.save(&b_change).await.unwrap();
    let loaded = a.load().await.unwrap().unwrap();
    let names: Vec<&String> = loaded.services.keys().collect();
    assert_eq!(names, ["droplets", "extra"]);
}

/// A measurement, not a test of speed: prints how long saves and loads of a large
/// state take on loopback. Run with
/// `cargo test --release -p portcullis-registry --all-features big_state -- --ignored --nocapture`.
#[tokio::test]
#[ignore = "a measurement; run by hand"]
async fn measure_big_state() {
    let server = RedisServer::start().await;
    let store = server.store().await;
    let mut services = BTreeMap::new();
    let lease = now_unix_ms() + 600_000;
    for s in 0..200 {
        let mut endpoints = BTreeMap::new();
        for e in 0..50 {
            endpoints.insert(
                format!("e{e}"),
                Endpoint {
                    spec: EndpointSpec::new(format!("http://10.0.{s}.{e}:8080")),
                    lease_expires: lease,
                },
            );
        }
        services.insert(
            format!("svc{s}"),
            ServiceEntry {
                spec: ServiceSpec::new(vec![RouteSpec::new(format!("/svc{s}/"))]),
                endpoints,
            },
        );
    }
    let state = StoredState::new(services);
    let t = Instant::now();
    store.save(&state).await.unwrap();
    eprintln!("seed 200 services x 50 endpoints: {:?}", t.elapsed());
    let t = Instant::now();
    assert_eq!(store.load().await.unwrap(), Some(state.clone()));
    eprintln!("load: {:?}", t.elapsed());
    let mut beat = state.clone();
    if let Some(ep) = beat
        .services
        .get_mut("svc7")
        .and_then(|s| s.endpoints.get_mut("e3"))
    {
        ep.lease_expires += 1000;
    }
    let t = Instant::now();
    store.save(&beat).await.unwrap();
    eprintln!("one heartbeat among 10,000 endpoints: {:?}", t.elapsed());
}
