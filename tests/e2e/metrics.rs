//! Prometheus metrics: with `metrics.listen` set, `rosterd` serves the
//! gRPC server series and Roster's own on `GET /metrics`; without it,
//! nothing listens.

use std::time::{Duration, Instant};

use roster_proto::v1::authentication_client::AuthenticationClient;
use roster_proto::v1::notification_service_client::NotificationServiceClient;
use roster_proto::v1::user_access_client::UserAccessClient;
use roster_proto::v1::user_registry_client::UserRegistryClient;
use roster_proto::v1::{
    CreateUserApiKeyRequest, CreateUserRequest, GetUserRequest, LoginRequest, NotificationType,
    Right, SubscribeNotificationsRequest, User,
};
use roster_test_support::with_token;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;

use crate::ids;
use crate::process::{Rosterd, free_port};

fn login(id: &str, password: &str) -> LoginRequest {
    LoginRequest {
        user_ids: Some(ids(id)),
        password: password.into(),
    }
}

/// The body of `GET /metrics` at `addr`, over plain HTTP/1.0.
async fn scrape(addr: &str) -> std::io::Result<String> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    assert!(
        response.starts_with("HTTP/1.0 200") || response.starts_with("HTTP/1.1 200"),
        "{response}"
    );
    Ok(response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default())
}

/// The value of the series `series` (name and labels, as exported).
fn value(body: &str, series: &str) -> Option<f64> {
    body.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// A `rosterd start all` serving metrics, with `env` besides; its data
/// folder lives as long as it does.
struct Metered {
    rosterd: Rosterd,
    /// Where its metrics are scraped (`host:port`).
    metrics: String,
    _dir: tempfile::TempDir,
}

async fn start_metered(env: &[(&'static str, String)]) -> Metered {
    let dir = tempfile::tempdir().unwrap();
    let metrics = format!("127.0.0.1:{}", free_port());
    let mut env = env.to_vec();
    env.push(("ROSTER__METRICS__LISTEN", metrics.clone()));
    let rosterd = Rosterd::start(dir.path(), &["start", "all"], &env).await;
    Metered {
        rosterd,
        metrics,
        _dir: dir,
    }
}

#[tokio::test]
async fn rosterd_reports_calls_logins_lockouts_cache_outboxes_and_mails() {
    // Two wrong passwords lock a client out of an account.
    let metered = start_metered(&[(
        "ROSTER__USER_REGISTRY__LOCKOUT__MAX_FAILURES_PER_CLIENT",
        "2".into(),
    )])
    .await;
    let (rosterd, metrics_addr) = (&metered.rosterd, metered.metrics.clone());
    let channel = rosterd.channel().await;
    let mut users = UserRegistryClient::new(channel.clone());
    for name in ["alice", "carol"] {
        users
            .create(register(name))
            .await
            .expect("the user registers");
    }
    let get = users
        .get(GetUserRequest {
            user_ids: Some(ids("alice")),
            field_mask: None,
        })
        .await
        .unwrap_err();
    assert_eq!(get.code(), Code::Unauthenticated);

    let mut auth = AuthenticationClient::new(channel);
    let wrong = auth.login(login("alice", "Wrong-Horse-9")).await;
    assert_eq!(wrong.unwrap_err().code(), Code::Unauthenticated);
    let unknown = auth.login(login("bob", "Correct-Horse-9")).await;
    assert_eq!(unknown.unwrap_err().code(), Code::Unauthenticated);
    let token = auth
        .login(login("alice", "Correct-Horse-9"))
        .await
        .expect("alice logs in")
        .into_inner()
        .token;
    // The first use of alice's session asks the access service, the
    // second finds it in the cache.
    for _ in 0..2 {
        users
            .get(with_token(
                GetUserRequest {
                    user_ids: Some(ids("alice")),
                    field_mask: None,
                },
                &token,
            ))
            .await
            .expect("alice reads herself");
    }
    // Carol's client guesses twice and is locked out of her account; her
    // right password from there is refused too.
    for _ in 0..2 {
        let wrong = auth.login(login("carol", "Wrong-Horse-9")).await;
        assert_eq!(wrong.unwrap_err().code(), Code::Unauthenticated);
    }
    let locked = auth.login(login("carol", "Correct-Horse-9")).await;
    assert_eq!(locked.unwrap_err().code(), Code::Unauthenticated);

    let body = scrape(&metrics_addr).await.expect("metrics are served");
    let expect = |series: &str, count: f64| {
        assert_eq!(value(&body, series), Some(count), "{series} in:\n{body}");
    };
    // Labels in the order the layer records them: service, method, code.
    let registry = "grpc_service=\"roster.v1.UserRegistry\"";
    let authentication = "grpc_service=\"roster.v1.Authentication\"";
    for (series, count) in [
        (
            format!("grpc_server_started_total{{{registry},grpc_method=\"Create\"}}"),
            2.0,
        ),
        (
            format!(
                "grpc_server_handled_total{{{registry},grpc_method=\"Create\",grpc_code=\"OK\"}}"
            ),
            2.0,
        ),
        (
            format!(
                "grpc_server_handled_total{{{registry},grpc_method=\"Get\",grpc_code=\"Unauthenticated\"}}"
            ),
            1.0,
        ),
        (
            format!(
                "grpc_server_handled_total{{{authentication},grpc_method=\"Login\",grpc_code=\"Unauthenticated\"}}"
            ),
            5.0,
        ),
        (
            format!(
                "grpc_server_handled_total{{{authentication},grpc_method=\"Login\",grpc_code=\"OK\"}}"
            ),
            1.0,
        ),
        (
            format!("grpc_server_handling_seconds_count{{{authentication},grpc_method=\"Login\"}}"),
            6.0,
        ),
        ("roster_logins_total{outcome=\"success\"}".to_string(), 1.0),
    ] {
        expect(&series, count);
    }
    expect("roster_logins_total{outcome=\"wrong_password\"}", 3.0);
    expect("roster_logins_total{outcome=\"unknown_user\"}", 1.0);
    expect("roster_logins_total{outcome=\"throttled\"}", 1.0);
    expect("roster_lockouts_total{scope=\"client\"}", 1.0);
    expect("roster_credential_cache_total{result=\"miss\"}", 1.0);
    expect("roster_credential_cache_total{result=\"hit\"}", 1.0);
    // Alice's two Gets read the user cache (the second misses too when
    // the event of her creation arrived between them).
    let user_cache = |result: &str| {
        value(
            &body,
            &format!("roster_user_cache_total{{read=\"get\",result=\"{result}\"}}"),
        )
        .unwrap_or(0.0)
    };
    assert_eq!(user_cache("hit") + user_cache("miss"), 2.0, "{body}");

    // The relays report their outboxes, which empty once the bus took the
    // events (and the mailer the mails), and the mailer counts what it
    // sent.
    let waiting = [
        "roster_outbox_waiting{service=\"user-registry\",rows=\"event\"}",
        "roster_outbox_waiting{service=\"sessions\",rows=\"event\"}",
        "roster_outbox_waiting{service=\"user-registry\",rows=\"mail\"}",
    ];
    scrape_until(
        &metrics_addr,
        "outboxes reported empty and mails sent",
        |body| {
            // At least alice's and carol's validation mails went out.
            let sent = value(body, "roster_mail_deliveries_total{result=\"sent\"}");
            waiting.iter().all(|w| value(body, w) == Some(0.0))
                && sent.is_some_and(|sent| sent >= 2.0)
        },
    )
    .await;
}

/// Scrapes `addr` until `done` holds for the body (10 s at most); returns
/// that body.
async fn scrape_until(addr: &str, what: &str, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let body = scrape(addr).await.expect("metrics are served");
        if done(&body) {
            return body;
        }
        assert!(Instant::now() < deadline, "{what}, never seen in:\n{body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn register(name: &str) -> CreateUserRequest {
    CreateUserRequest {
        user: Some(User {
            ids: Some(ids(name)),
            primary_email_address: format!("{name}@example.com"),
            password: "Correct-Horse-9".into(),
            ..Default::default()
        }),
        invitation_token: String::new(),
    }
}

fn subscribe(user: &str, token: &str) -> tonic::Request<SubscribeNotificationsRequest> {
    with_token(
        SubscribeNotificationsRequest {
            receiver_ids: Some(ids(user)),
        },
        token,
    )
}

/// The series of `Subscribe` calls handled with `code`.
fn subscribe_handled(code: &str) -> String {
    format!(
        "grpc_server_handled_total{{grpc_service=\"roster.v1.NotificationService\",grpc_method=\"Subscribe\",grpc_code=\"{code}\"}}"
    )
}

/// Scrapes `addr` until no stream is open and one `Subscribe` counts as
/// handled with `code`; returns that body.
async fn closed_stream_counted(addr: &str, code: &str) -> String {
    scrape_until(addr, &format!("the stream closed as {code}"), |body| {
        value(body, "roster_notification_streams_open") == Some(0.0)
            && value(body, &subscribe_handled(code)) == Some(1.0)
    })
    .await
}

#[tokio::test]
async fn rosterd_reports_open_streams_their_codes_pools_and_password_work() {
    let metered = start_metered(&[]).await;
    let (rosterd, metrics_addr) = (&metered.rosterd, metered.metrics.clone());
    let channel = rosterd.channel().await;
    UserRegistryClient::new(channel.clone())
        .create(register("alice"))
        .await
        .expect("alice registers");
    let mut auth = AuthenticationClient::new(channel.clone());
    let wrong = auth.login(login("alice", "Wrong-Horse-9")).await;
    assert_eq!(wrong.unwrap_err().code(), Code::Unauthenticated);
    let mut sessions = Vec::new();
    for _ in 0..2 {
        let token = auth
            .login(login("alice", "Correct-Horse-9"))
            .await
            .expect("alice logs in")
            .into_inner()
            .token;
        sessions.push(token);
    }
    // One hash (the registration) and three verifications (the logins).
    let (hashes, verifications) = (1.0, 3.0);

    // Alice listens with her first session, is told of the key she makes,
    // and logs that session out: the stream ends UNAUTHENTICATED after its
    // first message, so its status travels in the trailers.
    let mut notifications = NotificationServiceClient::new(channel.clone());
    let mut stream = notifications
        .subscribe(subscribe("alice", &sessions[0]))
        .await
        .expect("alice subscribes")
        .into_inner();
    let open = "roster_notification_streams_open";
    scrape_until(&metrics_addr, "one open stream", |body| {
        value(body, open) == Some(1.0)
    })
    .await;
    UserAccessClient::new(channel.clone())
        .create_api_key(with_token(
            CreateUserApiKeyRequest {
                user_ids: Some(ids("alice")),
                name: "laptop".into(),
                rights: vec![Right::UserInfo as i32],
                expires_at: None,
            },
            &sessions[0],
        ))
        .await
        .expect("alice makes a key");
    let told = tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .expect("a notification within 5 s")
        .expect("the stream is open")
        .expect("a notification");
    assert_eq!(
        told.notification_type,
        NotificationType::ApiKeyCreated as i32
    );
    auth.logout(with_token((), &sessions[0]))
        .await
        .expect("alice logs out");
    let end = tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .expect("the stream ends soon after the logout");
    assert_eq!(end.unwrap_err().code(), Code::Unauthenticated);

    let body = closed_stream_counted(&metrics_addr, "Unauthenticated").await;
    assert_eq!(value(&body, &subscribe_handled("OK")), None, "{body}");

    // A stream the client drops counts as cancelled, and closes too.
    let dropped = notifications
        .subscribe(subscribe("alice", &sessions[1]))
        .await
        .expect("alice subscribes again")
        .into_inner();
    scrape_until(&metrics_addr, "the second stream open", |body| {
        value(body, open) == Some(1.0)
    })
    .await;
    drop(dropped);
    let body = closed_stream_counted(&metrics_addr, "Canceled").await;
    let started = "grpc_server_started_total{grpc_service=\"roster.v1.NotificationService\",grpc_method=\"Subscribe\"}";
    assert_eq!(value(&body, started), Some(2.0), "{body}");
    assert_eq!(
        value(
            &body,
            "grpc_server_handling_seconds_count{grpc_service=\"roster.v1.NotificationService\",grpc_method=\"Subscribe\"}"
        ),
        Some(2.0),
        "{body}"
    );

    // Every password operation waited and ran once.
    for (operation, count) in [("hash", hashes), ("verify", verifications)] {
        for histogram in [
            "roster_password_hash_wait_seconds",
            "roster_password_hash_seconds",
        ] {
            let series = format!("{histogram}_count{{operation=\"{operation}\"}}");
            assert_eq!(value(&body, &series), Some(count), "{series} in:\n{body}");
            let sum = format!("{histogram}_sum{{operation=\"{operation}\"}}");
            let sum = value(&body, &sum).unwrap_or(-1.0);
            assert!(
                (0.0..10.0 * count).contains(&sum),
                "{histogram} {operation}: {sum}"
            );
        }
        // Argon2id takes a measurable time; waiting for a free slot on an
        // idle server does not exceed it by much.
        let ran = value(
            &body,
            &format!("roster_password_hash_seconds_sum{{operation=\"{operation}\"}}"),
        );
        assert!(ran.is_some_and(|ran| ran > 0.0), "{operation}: {ran:?}");
    }

    // Each service's pool, on SQLite: at least the connection it keeps,
    // none beyond its maximum (database.max_connections, 10).
    for service in [
        "user-registry",
        "access",
        "sessions",
        "invitations",
        "notifications",
    ] {
        let labels = format!("service=\"{service}\",backend=\"sqlite\"");
        let max = value(&body, &format!("roster_db_connections_max{{{labels}}}"));
        assert_eq!(max, Some(10.0), "{service} in:\n{body}");
        let in_use = value(
            &body,
            &format!("roster_db_connections{{{labels},state=\"in_use\"}}"),
        );
        let idle = value(
            &body,
            &format!("roster_db_connections{{{labels},state=\"idle\"}}"),
        );
        let (Some(in_use), Some(idle)) = (in_use, idle) else {
            panic!("{service}: no connection gauges in:\n{body}");
        };
        assert!(
            in_use + idle >= 1.0 && in_use + idle <= 10.0,
            "{service}: {in_use} + {idle}"
        );
    }
}

#[tokio::test]
async fn mails_held_back_show_in_the_outbox_age_and_the_mail_queue() {
    // The user registry cannot reach the mailer: the validation mail it owes
    // waits in its outbox and grows old.
    let registry = start_metered(&[(
        "ROSTER__CLUSTER__INVITATIONS_ADDRESS",
        format!("http://127.0.0.1:{}", free_port()),
    )])
    .await;
    let metrics_addr = registry.metrics.clone();
    UserRegistryClient::new(registry.rosterd.channel().await)
        .create(register("amy"))
        .await
        .expect("amy registers");
    let waiting = "roster_outbox_waiting{service=\"user-registry\",rows=\"mail\"}";
    let age = "roster_outbox_oldest_age_seconds{service=\"user-registry\",rows=\"mail\"}";
    // Rows are stamped to the second: two seconds on, the row is at least
    // one second old.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let body = scrape_until(&metrics_addr, "an outbox row a second old", |body| {
        value(body, waiting) == Some(1.0) && value(body, age).is_some_and(|age| age >= 1.0)
    })
    .await;
    assert!(value(&body, age).is_some_and(|age| age < 60.0), "{body}");
    // The events went out: their outbox is empty, so no age.
    assert_eq!(
        value(
            &body,
            "roster_outbox_oldest_age_seconds{service=\"user-registry\",rows=\"event\"}"
        ),
        Some(0.0),
        "{body}"
    );
    drop(registry);

    // The mailer has the mail but no SMTP server takes it: it waits in the
    // mail queue for its next attempt.
    let metered = start_metered(&[
        (
            "ROSTER__MAIL__SMTP_URL",
            format!("smtp://127.0.0.1:{}", free_port()),
        ),
        ("ROSTER__MAIL__RETRY_INITIAL_MS", "100".into()),
        ("ROSTER__MAIL__POLL_INTERVAL_MS", "100".into()),
    ])
    .await;
    let (rosterd, metrics_addr) = (&metered.rosterd, metered.metrics.clone());
    UserRegistryClient::new(rosterd.channel().await)
        .create(register("ben"))
        .await
        .expect("ben registers");
    let body = scrape_until(&metrics_addr, "a mail retrying", |body| {
        value(body, "roster_mail_queue_waiting{state=\"retrying\"}") == Some(1.0)
            && value(body, "roster_mail_queue_waiting{state=\"pending\"}") == Some(0.0)
    })
    .await;
    assert!(
        value(&body, "roster_mail_deliveries_total{result=\"retry\"}").is_some_and(|n| n >= 1.0),
        "{body}"
    );
    assert_eq!(
        value(&body, "roster_mail_deliveries_total{result=\"sent\"}"),
        None,
        "{body}"
    );
    // The mail left the registry's outbox for the queue.
    assert_eq!(
        value(
            &body,
            "roster_outbox_waiting{service=\"user-registry\",rows=\"mail\"}"
        ),
        Some(0.0),
        "{body}"
    );
}

/// How many TCP ports process `pid` listens on (Linux: its socket inodes
/// matched against the listening sockets in `/proc/net/tcp{,6}`).
fn listening_ports(pid: u32) -> usize {
    let inodes: std::collections::HashSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .filter_map(|target| {
            let target = target.to_string_lossy().into_owned();
            Some(
                target
                    .strip_prefix("socket:[")?
                    .strip_suffix(']')?
                    .to_string(),
            )
        })
        .collect();
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|table| std::fs::read_to_string(table).ok())
        .flat_map(|table| {
            table
                .lines()
                .skip(1)
                .map(|line| {
                    line.split_whitespace()
                        .map(str::to_string)
                        .collect::<Vec<_>>()
                })
                .collect::<Vec<_>>()
        })
        // Column 3 is the state (0A: LISTEN), column 9 the inode.
        .filter(|fields| fields.len() > 9 && fields[3] == "0A" && inodes.contains(&fields[9]))
        .count()
}

#[tokio::test]
async fn metrics_listen_on_their_own_port_only_when_set() {
    let dir = tempfile::tempdir().unwrap();
    let off = Rosterd::start(dir.path(), &["start", "all"], &[]).await;
    // The gRPC listener and nothing else.
    assert_eq!(listening_ports(off.child.id()), 1);
    drop(off);

    let dir = tempfile::tempdir().unwrap();
    let metrics_addr = format!("127.0.0.1:{}", free_port());
    let on = Rosterd::start(
        dir.path(),
        &["start", "all"],
        &[("ROSTER__METRICS__LISTEN", metrics_addr.clone())],
    )
    .await;
    assert_eq!(listening_ports(on.child.id()), 2);
    let body = scrape(&metrics_addr).await.expect("metrics are served");
    assert!(
        body.contains("# TYPE grpc_server_handled_total counter"),
        "{body}"
    );
}
