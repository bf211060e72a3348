//! `roster notifications watch` prints notifications as they are made.

use std::io::{BufRead as _, BufReader};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use crate::support::{PASSWORD, Server, run};

#[test]
fn watch_prints_a_notification_made_while_it_runs() {
    watch_case(Server::start());
}

/// The same through PostgreSQL and JetStream, where the notification is
/// made by the worker consuming the stream.
#[test]
fn watch_prints_a_notification_made_while_it_runs_on_postgres_and_jetstream() {
    watch_case(Server::start_on_postgres());
}

fn watch_case(server: Server) {
    run(
        &mut server.admin(&[
            "users",
            "create",
            "erin",
            "--email",
            "erin@example.com",
            "--password-stdin",
        ]),
        Some(&format!("{PASSWORD}\n")),
    )
    .ok();

    let mut watch = server.admin(&["notifications", "watch", "erin", "-o", "json"]);
    watch.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = watch.spawn().expect("start roster notifications watch");
    let (lines, received) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let (ready, subscribed) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = ready.send(line);
        }
    });
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
    let first = subscribed
        .recv_timeout(Duration::from_secs(20))
        .expect("watch says when it is subscribed");
    assert!(
        first.contains("Watching the notifications of erin"),
        "{first}"
    );

    // A new API key for erin makes an API_KEY_CREATED notification.
    run(
        &mut server.admin(&[
            "api-keys",
            "create",
            "erin",
            "--name",
            "watched",
            "--rights",
            "RIGHT_USER_INFO",
        ]),
        None,
    )
    .ok();
    let line = received
        .recv_timeout(Duration::from_secs(20))
        .expect("a notification arrives while watch runs");
    let _ = child.kill();
    let _ = child.wait();
    let notification: serde_json::Value =
        serde_json::from_str(&line).expect("one JSON object a line");
    assert_eq!(notification["notificationType"], "API_KEY_CREATED");
    assert_eq!(notification["entityIds"]["userIds"]["userId"], "erin");
    assert!(notification["id"].as_str().is_some_and(|id| !id.is_empty()));
}
