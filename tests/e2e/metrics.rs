//! Prometheus metrics: with `metrics.listen` set, `rosterd` serves the
//! gRPC server series and Roster's own on `GET /metrics`; without it,
//! nothing listens.

use roster_proto::v1::authentication_client::AuthenticationClient;
use roster_proto::v1::user_registry_client::UserRegistryClient;
use roster_proto::v1::{CreateUserRequest, GetUserRequest, LoginRequest, User};
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

#[tokio::test]
async fn rosterd_reports_calls_logins_lockouts_cache_outboxes_and_mails() {
    let dir = tempfile::tempdir().unwrap();
    let metrics_addr = format!("127.0.0.1:{}", free_port());
    let rosterd = Rosterd::start(
        dir.path(),
        &["start", "all"],
        &[
            ("ROSTER__METRICS__LISTEN", metrics_addr.clone()),
            // Two wrong passwords lock a client out of an account.
            (
                "ROSTER__USER_REGISTRY__LOCKOUT__MAX_FAILURES_PER_CLIENT",
                "2".into(),
            ),
        ],
    )
    .await;
    let channel = rosterd.channel().await;
    let mut users = UserRegistryClient::new(channel.clone());
    for name in ["alice", "carol"] {
        users
            .create(CreateUserRequest {
                user: Some(User {
                    ids: Some(ids(name)),
                    primary_email_address: format!("{name}@example.com"),
                    password: "Correct-Horse-9".into(),
                    ..Default::default()
                }),
                invitation_token: String::new(),
            })
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

    // The relays report their outboxes, which empty once the bus took the
    // events (and the mailer the mails), and the mailer counts what it
    // sent.
    let drained = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let body = scrape(&metrics_addr).await.expect("metrics are served");
        let waiting = [
            "roster_outbox_waiting{service=\"user-registry\",rows=\"event\"}",
            "roster_outbox_waiting{service=\"sessions\",rows=\"event\"}",
            "roster_outbox_waiting{service=\"user-registry\",rows=\"mail\"}",
        ]
        .map(|series| value(&body, series));
        // At least alice's and carol's validation mails went out.
        let sent = value(&body, "roster_mail_deliveries_total{result=\"sent\"}");
        if waiting.iter().all(|w| *w == Some(0.0)) && sent.is_some_and(|sent| sent >= 2.0) {
            break;
        }
        assert!(
            std::time::Instant::now() < drained,
            "outboxes not reported empty ({waiting:?}) or mails not sent ({sent:?}) in:\n{body}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
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
