//! `Mailer.Enqueue` over real gRPC, delivered by the service's worker to a
//! real SMTP server: what arrives, what stays in the queue, and what the
//! call refuses.

use std::collections::HashMap;

use roster_proto::v1::mailer_client::MailerClient;
use roster_proto::v1::{EnqueueMailRequest, Right};
use roster_test_support::smtp::ReceivedMail;
use roster_test_support::{Backend, TestConfig, TestEnv, TestSmtp, with_token};
use tonic::Code;

use crate::support::{
    BASE_URL, WAIT, assert_invalid_field, enqueue, enqueue_and_wait_sent, enqueue_ok, expect_code,
    invitation, on_both_backends, pending, queued_mails_to, raw_row, record, secret, smtp_config,
    start_with_smtp, wait_for_record,
};

on_both_backends!(
    an_invitation_arrives_once_with_both_parts_its_link_and_its_message_id,
    every_template_renders_and_arrives,
    an_idempotency_key_sends_one_mail,
    the_secret_is_in_the_delivered_mail_only,
    invalid_requests_name_the_field_and_queue_nothing,
    only_cluster_callers_may_enqueue,
    names_and_titles_cannot_add_headers_or_recipients,
);

/// Asserts the mail's headers and parts every delivered mail shares.
#[track_caller]
fn assert_well_formed(mail: &ReceivedMail, id: &str, recipient: &str) {
    assert_eq!(mail.from, "roster@localhost", "envelope sender");
    assert_eq!(mail.to, [recipient], "envelope recipient");
    assert_eq!(
        mail.header("Message-ID").as_deref(),
        Some(format!("<{id}@roster>").as_str()),
        "{}",
        mail.raw()
    );
    assert_eq!(
        mail.header("From").as_deref(),
        Some("Roster <roster@localhost>")
    );
    let to = mail.header("To").unwrap_or_default();
    assert!(to.contains(recipient), "To: {to}");
    assert!(mail.header("Date").is_some(), "a Date header");
    assert_eq!(mail.content_type(), "multipart/alternative");
    let kinds: Vec<String> = mail.parts().into_iter().map(|p| p.content_type).collect();
    assert_eq!(kinds, ["text/plain", "text/html"], "{}", mail.raw());
}

async fn an_invitation_arrives_once_with_both_parts_its_link_and_its_message_id(backend: Backend) {
    let smtp = TestSmtp::start().await;
    let env = start_with_smtp(backend, &smtp).await;
    let token = secret("tok");
    let mut request = invitation("new@example.com", &token);
    request.recipient_name = "Ada Lovelace".into();
    let id = enqueue_ok(&env, request).await;
    assert!(uuid::Uuid::parse_str(&id).is_ok(), "a UUID: {id}");

    let mails = smtp.wait_for(1, WAIT).await;
    let mail = &mails[0];
    assert_well_formed(mail, &id, "new@example.com");
    let to = mail.header("To").unwrap_or_default();
    assert!(to.contains("Ada Lovelace"), "To: {to}");
    assert_eq!(
        mail.header("Subject").as_deref(),
        Some("You are invited to Roster")
    );
    let link = format!("{BASE_URL}/register?invitation_token={token}");
    let text = mail.text().expect("a text part");
    assert!(text.starts_with("Hello Ada Lovelace,"), "{text}");
    assert!(text.contains(&link), "{text}");
    assert!(text.contains("2030-01-31 12:00 UTC"), "{text}");
    let html = mail.html().expect("an HTML part");
    assert!(html.contains(&format!("href=\"{link}\"")), "{html}");
    // Sent as it reads (7bit), so the link stands whole in the message
    // source and in `.eml` files, ready to copy.
    assert!(mail.raw_contains(&link), "{}", mail.raw());
    assert!(
        mail.parts()
            .iter()
            .all(|p| p.header("Content-Transfer-Encoding") == Some("7bit")),
        "{:?}",
        mail.parts()
    );

    let sent = wait_for_record(&env.invitations_db, &id, "sent", |m| m.sent_at.is_some()).await;
    assert_eq!(sent.attempts, 1, "delivered at the first attempt");
    assert_eq!(sent.given_up_at, None);
    assert!(
        sent.data.keys().all(|k| !k.starts_with("secret_")),
        "secrets deleted after delivery: {:?}",
        sent.data.keys().collect::<Vec<_>>()
    );
    assert_eq!(
        sent.data.get("expires_at").map(String::as_str),
        Some("2030-01-31 12:00 UTC"),
        "the rest is kept"
    );
    assert_eq!(pending(&env.invitations_db).await, 0);

    // Exactly one: another pass finds nothing to deliver.
    assert_eq!(env.mailer.deliver_due().await.expect("a pass"), 0);
    assert_eq!(smtp.messages().len(), 1);
    assert_eq!(smtp.rcpt_attempts("new@example.com"), 1);
}

/// What each template must say: subject, and texts its text part and its
/// HTML part must contain.
struct TemplateCase {
    template: &'static str,
    vars: Vec<(&'static str, String)>,
    subject: String,
    text: Vec<String>,
    html: Vec<String>,
}

/// `(key, value)` pairs as owned template variables.
fn vars(pairs: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
    pairs.iter().map(|(k, v)| (*k, v.to_string())).collect()
}

async fn every_template_renders_and_arrives(backend: Backend) {
    let smtp = TestSmtp::start().await;
    let env = start_with_smtp(backend, &smtp).await;
    let token = secret("tok");
    let password = secret("pw");
    let cases: Vec<TemplateCase> = vec![
        TemplateCase {
            template: "invitation",
            vars: vars(&[("secret_token", &token)]),
            subject: "You are invited to Roster".into(),
            text: vec![format!("{BASE_URL}/register?invitation_token={token}")],
            html: vec![format!(
                "href=\"{BASE_URL}/register?invitation_token={token}\""
            )],
        },
        TemplateCase {
            template: "temporary_password",
            vars: vars(&[
                ("user_id", "ada"),
                ("secret_temporary_password", &password),
                ("expires_at", "2030-01-31"),
            ]),
            subject: "Your temporary password".into(),
            text: vec![
                format!("Temporary password: {password}"),
                "account ada".into(),
                "2030-01-31".into(),
            ],
            html: vec![password.clone()],
        },
        TemplateCase {
            template: "second_factor_code",
            vars: vars(&[
                ("user_id", "ada"),
                ("secret_code", "48213907"),
                ("expires_at", "2030-01-31"),
            ]),
            subject: "Your login code".into(),
            text: vec![
                "Code: 48213907".into(),
                "account ada".into(),
                "2030-01-31".into(),
            ],
            html: vec!["48213907".into()],
        },
        TemplateCase {
            template: "login_token",
            vars: vars(&[("user_id", "ada"), ("secret_token", &token)]),
            subject: "Your login link".into(),
            text: vec![format!("{BASE_URL}/login?token={token}")],
            html: vec![format!("href=\"{BASE_URL}/login?token={token}\"")],
        },
        TemplateCase {
            template: "validate_email",
            vars: vars(&[("user_id", "ada"), ("secret_token", &token)]),
            subject: "Confirm your email address".into(),
            text: vec![format!(
                "{BASE_URL}/validate-email?user_id=ada&token={token}"
            )],
            html: vec![format!(
                "href=\"{BASE_URL}/validate-email?user_id=ada&amp;token={token}\""
            )],
        },
        TemplateCase {
            template: "email_changed",
            vars: vars(&[("user_id", "ada"), ("new_email", "ada@new.example")]),
            subject: "The email address of your account changed".into(),
            text: vec!["account ada".into(), "changed to ada@new.example".into()],
            html: vec!["ada@new.example".into()],
        },
        TemplateCase {
            template: "address_in_use",
            vars: vars(&[]),
            subject: "Someone tried to register with your address".into(),
            text: vec!["already belongs to an account".into()],
            html: vec!["nothing was created".into()],
        },
        TemplateCase {
            template: "notification",
            vars: vars(&[
                ("title", "Welcome aboard ✓ — Zoë"),
                ("body", "Your account <b>is</b> ready."),
                ("path", "/settings"),
            ]),
            subject: "Welcome aboard ✓ — Zoë".into(),
            text: vec![
                "Your account <b>is</b> ready.".into(),
                format!("{BASE_URL}/settings"),
            ],
            html: vec![
                "Your account &lt;b&gt;is&lt;/b&gt; ready.".into(),
                format!("href=\"{BASE_URL}/settings\""),
            ],
        },
    ];
    let mut known: Vec<&str> = roster_invitations::templates::names().collect();
    known.sort_unstable();
    let mut covered: Vec<&str> = cases.iter().map(|c| c.template).collect();
    covered.sort_unstable();
    assert_eq!(known, covered, "every template has a case here");

    let mut ids = HashMap::new();
    for TemplateCase {
        template: name,
        vars,
        ..
    } in &cases
    {
        let recipient = format!("{name}@example.com");
        let id = enqueue_and_wait_sent(
            &env,
            EnqueueMailRequest {
                template: (*name).into(),
                recipient: recipient.clone(),
                recipient_name: "Ada".into(),
                data: vars
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.clone()))
                    .collect(),
                idempotency_key: String::new(),
            },
        )
        .await;
        ids.insert(recipient, id);
    }
    let mails = smtp.wait_for(cases.len(), WAIT).await;
    assert_eq!(mails.len(), cases.len());
    let by_recipient: HashMap<&str, &ReceivedMail> =
        mails.iter().map(|m| (m.to[0].as_str(), m)).collect();
    for expected in &cases {
        let name = expected.template;
        let recipient = format!("{name}@example.com");
        let mail = by_recipient
            .get(recipient.as_str())
            .unwrap_or_else(|| panic!("{name}: no mail"));
        assert_well_formed(mail, &ids[&recipient], &recipient);
        assert_eq!(
            mail.header("Subject").as_deref(),
            Some(expected.subject.as_str()),
            "{name}"
        );
        let text = mail.text().expect("a text part");
        assert!(text.starts_with("Hello Ada,"), "{name}: {text}");
        for needle in &expected.text {
            assert!(text.contains(needle), "{name}: {needle:?} not in {text}");
        }
        let html = mail.html().expect("an HTML part");
        assert!(html.contains("<html>"), "{name}: {html}");
        for needle in &expected.html {
            assert!(html.contains(needle), "{name}: {needle:?} not in {html}");
        }
    }
}

async fn an_idempotency_key_sends_one_mail(backend: Backend) {
    let smtp = TestSmtp::start().await;
    let env = start_with_smtp(backend, &smtp).await;
    let token = secret("tok");
    let mut first = invitation("once@example.com", &token);
    first.idempotency_key = "user.invited:7f3a".into();
    let id = enqueue_ok(&env, first.clone()).await;
    // A retry of the same request, and one with other content under the
    // same key: the first mail's ID, nothing queued.
    assert_eq!(enqueue_ok(&env, first.clone()).await, id);
    let mut other = invitation("other@example.com", &secret("tok"));
    other.idempotency_key = first.idempotency_key.clone();
    assert_eq!(enqueue_ok(&env, other).await, id);

    let mails = smtp.wait_for(1, WAIT).await;
    assert_eq!(mails[0].to, ["once@example.com"]);
    wait_for_record(&env.invitations_db, &id, "sent", |m| m.sent_at.is_some()).await;
    // After delivery too, the key still names the delivered mail.
    assert_eq!(enqueue_ok(&env, first).await, id);
    assert_eq!(env.mailer.deliver_due().await.expect("a pass"), 0);
    assert_eq!(smtp.messages().len(), 1, "one mail for one key");
    assert_eq!(pending(&env.invitations_db).await, 0);

    // A different key is a different mail.
    let mut second = invitation("once@example.com", &token);
    second.idempotency_key = "user.invited:7f3b".into();
    let second_id = enqueue_ok(&env, second).await;
    assert_ne!(second_id, id);
    smtp.wait_for(2, WAIT).await;
}

/// Item 4 of the mailer's promises: a secret variable reaches the
/// recipient and nothing else — not the mail's headers, not the queue row
/// after delivery, not `last_error` of a failed attempt.
async fn the_secret_is_in_the_delivered_mail_only(backend: Backend) {
    let smtp = TestSmtp::start().await;
    // One failed attempt first, so that there is a `last_error`.
    smtp.refuse_temporarily("secret@example.com", 1);
    let env = start_with_smtp(backend, &smtp).await;
    let token = secret("tok");
    let password = secret("pw");
    let id = enqueue_ok(
        &env,
        EnqueueMailRequest {
            template: "temporary_password".into(),
            recipient: "secret@example.com".into(),
            recipient_name: String::new(),
            data: [
                ("user_id".to_string(), "ada".to_string()),
                ("secret_temporary_password".to_string(), password.clone()),
                ("secret_token".to_string(), token.clone()),
            ]
            .into(),
            idempotency_key: String::new(),
        },
    )
    .await;
    let mails = smtp.wait_for(1, WAIT).await;
    let mail = &mails[0];
    let text = mail.text().expect("a text part");
    assert!(text.contains(&password), "{text}");
    assert!(mail.html().expect("an HTML part").contains(&password));
    for (name, value) in mail.headers() {
        assert!(
            !value.contains(&password) && !value.contains(&token),
            "a secret in the header {name}: {value}"
        );
    }
    let sent = wait_for_record(&env.invitations_db, &id, "sent", |m| m.sent_at.is_some()).await;
    assert_eq!(sent.attempts, 2, "one refusal, then delivered");
    let error = sent.last_error.clone().expect("the refusal is recorded");
    assert!(error.contains("451"), "{error}");
    let row = raw_row(&env.invitations_db, &id).await;
    for value in [&password, &token] {
        assert!(!row.contains(value.as_str()), "a secret in the row: {row}");
    }
    assert!(!row.contains("secret_"), "secret keys in the row: {row}");
    let debug = format!("{sent:?}");
    assert!(!debug.contains(&password), "{debug}");
}

async fn invalid_requests_name_the_field_and_queue_nothing(backend: Backend) {
    // No SMTP needed: nothing is queued.
    let env = TestEnv::start_with(backend, Default::default()).await;
    let valid = || invitation("new@example.com", "tok234");
    let with = |change: &dyn Fn(&mut EnqueueMailRequest)| {
        let mut request = valid();
        change(&mut request);
        request
    };
    let cases: Vec<(&str, EnqueueMailRequest)> = vec![
        ("template", with(&|r| r.template = "nope".into())),
        ("template", with(&|r| r.template = String::new())),
        ("template", with(&|r| r.template = "Invitation".into())),
        ("recipient", with(&|r| r.recipient = String::new())),
        (
            "recipient",
            with(&|r| r.recipient = "not-an-address".into()),
        ),
        (
            "recipient",
            with(&|r| r.recipient = "a@b@example.com".into()),
        ),
        (
            "recipient",
            with(&|r| r.recipient = format!("{}@example.com", "a".repeat(250))),
        ),
        (
            "recipient_name",
            with(&|r| r.recipient_name = "Ada\nBcc: eve@example.com".into()),
        ),
        (
            "recipient_name",
            with(&|r| r.recipient_name = "x".repeat(101)),
        ),
        (
            "data.secret_token",
            with(&|r| {
                r.data.remove("secret_token");
            }),
        ),
        (
            "data.secret_token",
            with(&|r| {
                r.data.insert("secret_token".into(), "   ".into());
            }),
        ),
        (
            "data.user_id",
            with(&|r| {
                r.template = "validate_email".into();
            }),
        ),
        (
            "data.expires_at",
            with(&|r| {
                r.data.insert("expires_at".into(), "soon\u{7}".into());
            }),
        ),
        (
            "data",
            with(&|r| {
                for i in 0..40 {
                    r.data.insert(format!("v{i}"), "x".into());
                }
            }),
        ),
        (
            "idempotency_key",
            with(&|r| r.idempotency_key = "k".repeat(129)),
        ),
    ];
    for (field, request) in cases {
        assert_invalid_field(enqueue(&env, request.clone()).await, field);
    }
    assert_eq!(
        pending(&env.invitations_db).await,
        0,
        "nothing queued by a refused request"
    );

    // The limits themselves are accepted.
    let at_limit = with(&|r| {
        r.idempotency_key = "k".repeat(128);
        r.recipient_name = "x".repeat(100);
    });
    let id = enqueue_ok(&env, at_limit).await;
    let stored = record(&env.invitations_db, &id).await;
    assert_eq!(
        stored.idempotency_key.as_deref(),
        Some("k".repeat(128).as_str())
    );
}

async fn only_cluster_callers_may_enqueue(backend: Backend) {
    let env = TestEnv::start_with(backend, Default::default()).await;
    let mut client = MailerClient::new(env.channel());
    let request = || invitation("new@example.com", "tok234");

    expect_code(client.enqueue(request()).await, Code::Unauthenticated);
    let mut wrong_key = tonic::Request::new(request());
    wrong_key.metadata_mut().insert(
        roster_core::auth::CLUSTER_KEY_HEADER,
        "not-the-cluster-key".parse().unwrap(),
    );
    expect_code(client.enqueue(wrong_key).await, Code::Unauthenticated);
    let user = env.user_token("plain-user", &[Right::UserAll]).await;
    expect_code(
        client.enqueue(with_token(request(), &user)).await,
        Code::PermissionDenied,
    );
    let admin = env.admin_token("an-admin").await;
    expect_code(
        client.enqueue(with_token(request(), &admin)).await,
        Code::PermissionDenied,
    );
    // Creating the callers may queue mails of their own (email
    // validation); none of the refused requests queued one.
    assert!(
        queued_mails_to(&env.invitations_db, "new@example.com")
            .await
            .is_empty()
    );
}

/// A recipient name or a notification title written to break out of its
/// header: the mail still goes to its one recipient, with no header added.
async fn names_and_titles_cannot_add_headers_or_recipients(backend: Backend) {
    let smtp = TestSmtp::start().await;
    let env = start_with_smtp(backend, &smtp).await;
    let mut by_name = invitation("victim@example.com", &secret("tok"));
    by_name.recipient_name = "Eve\" <eve@evil.example>, \"x".into();
    enqueue_and_wait_sent(&env, by_name).await;
    let by_title = EnqueueMailRequest {
        template: "notification".into(),
        recipient: "victim@example.com".into(),
        recipient_name: String::new(),
        data: [
            (
                "title".to_string(),
                "Hello\nBcc: eve@evil.example".to_string(),
            ),
            ("body".to_string(), "b".to_string()),
        ]
        .into(),
        idempotency_key: String::new(),
    };
    enqueue_and_wait_sent(&env, by_title).await;
    let mails = smtp.wait_for(2, WAIT).await;
    for mail in &mails {
        assert_eq!(mail.to, ["victim@example.com"], "{}", mail.raw());
        assert!(mail.header("Bcc").is_none(), "{}", mail.raw());
        assert_eq!(mail.header_all("To").len(), 1, "{}", mail.raw());
        assert_eq!(mail.header_all("Subject").len(), 1, "{}", mail.raw());
        let to = mail.header("To").unwrap_or_default();
        assert!(
            to == "victim@example.com" || to.ends_with(" <victim@example.com>"),
            "To: {to}"
        );
        let raw_to = mail
            .raw()
            .lines()
            .find(|l| l.starts_with("To:"))
            .unwrap_or_default()
            .to_string();
        assert!(!raw_to.contains("eve@evil.example"), "in clear: {raw_to}");
    }
    assert_eq!(smtp.rcpt_attempts("eve@evil.example"), 0);
}

/// `templates.rs` promises that variables are percent-encoded inside
/// links "so a value cannot change a link's structure". A notification
/// `path` that does not start with `/` is appended to `mail.base_url` as
/// it is, and moves the link to another host.
#[tokio::test]
async fn a_notification_path_cannot_move_the_link_to_another_host() {
    let smtp = TestSmtp::start().await;
    let mut mail = smtp_config(&smtp);
    mail.base_url = "https://roster.example.com".into();
    let env = TestEnv::start_configured(
        Backend::Sqlite,
        TestConfig {
            mail,
            ..TestConfig::default()
        },
    )
    .await;
    let request = EnqueueMailRequest {
        template: "notification".into(),
        recipient: "a@example.com".into(),
        recipient_name: String::new(),
        data: [
            ("title".to_string(), "t".to_string()),
            ("body".to_string(), "b".to_string()),
            ("path".to_string(), ".evil.example/phish".to_string()),
        ]
        .into(),
        idempotency_key: String::new(),
    };
    match enqueue(&env, request).await {
        // Refusing the path is one right answer...
        Err(status) => assert_invalid_field::<()>(Err(status), "data.path"),
        // ...keeping the link on the configured host the other.
        Ok(_) => {
            let mails = smtp.wait_for(1, WAIT).await;
            let text = mails[0].text().expect("a text part");
            let link = text
                .split_whitespace()
                .find(|w| w.starts_with("https://"))
                .expect("a link");
            assert!(
                link.starts_with("https://roster.example.com/"),
                "the link left base_url's host: {link}"
            );
        }
    }
}
