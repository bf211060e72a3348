//! [`TestSmtp`]: a real SMTP server for tests (`mailin-embedded`, plain
//! SMTP on 127.0.0.1) that keeps every mail it accepts, so a test reads
//! back what the mailer sent: the envelope, the raw message, and its
//! decoded headers and parts ([`ReceivedMail`]).
//!
//! It can be stopped and started again on the same port (while stopped,
//! nothing listens: connections are refused, as with a server that is
//! down), and it can refuse recipients, for good (`550`) or for a number
//! of attempts (`451`).
//!
//! ```no_run
//! # async fn example() {
//! use std::time::Duration;
//! use roster_test_support::TestSmtp;
//!
//! let smtp = TestSmtp::start().await;
//! // ... configure the mailer with `smtp.url()` and queue a mail ...
//! let mails = smtp.wait_for(1, Duration::from_secs(10)).await;
//! assert_eq!(mails[0].to, ["new@example.com"]);
//! assert!(mails[0].text().unwrap().contains("invitation_token="));
//! # }
//! ```
//!
//! How it is built: `mailin-embedded` serves blocking, on threads of its
//! own, and cannot be stopped, so it listens on a private port and the
//! public port ([`TestSmtp::addr`]) is a TCP relay in front of it that the
//! test stops and starts. The relay passes bytes through unchanged; every
//! SMTP answer comes from `mailin`.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use mailin_embedded::{Handler, Response, Server, response};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

/// How long [`TestSmtp::start_again`] keeps trying to bind its old port.
const REBIND_TIMEOUT: Duration = Duration::from_secs(10);

/// A running (or stopped) SMTP server for one test.
pub struct TestSmtp {
    /// The address clients connect to; it stays the same across
    /// [`stop`](Self::stop) and [`start_again`](Self::start_again).
    pub addr: SocketAddr,
    /// The SMTP server itself, behind the relay.
    backend: SocketAddr,
    shared: Arc<Shared>,
    /// The relay accepting on `addr`, while the server is up.
    front: Mutex<Option<JoinHandle<()>>>,
}

/// One mail the server accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMail {
    /// The envelope sender (`MAIL FROM`), without angle brackets.
    pub from: String,
    /// The envelope recipients (`RCPT TO`), without angle brackets.
    pub to: Vec<String>,
    /// The message as received after `DATA` (dot-unstuffing undone, CRLF
    /// line ends, without the final `.` line).
    pub data: Vec<u8>,
}

/// One leaf part of a message (the message itself when it is not
/// multipart), its body decoded from its transfer encoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MimePart {
    /// The media type, lowercased, without parameters (`text/plain`).
    pub content_type: String,
    /// The part's headers, unfolded, in order.
    pub headers: Vec<(String, String)>,
    /// The body, transfer decoding undone, read as UTF-8, `\n` line ends.
    pub body: String,
}

struct Shared {
    state: Mutex<State>,
    /// How many mails were accepted so far.
    received: watch::Sender<usize>,
}

#[derive(Default)]
struct State {
    mails: Vec<ReceivedMail>,
    /// Every `RCPT TO` address, lowercased, accepted or not, in order.
    recipients_tried: Vec<String>,
    refuse_permanently: HashSet<String>,
    /// Recipient → how many more `RCPT TO` get a `451`.
    refuse_temporarily: HashMap<String, usize>,
    /// Connections the relay accepted.
    connections: usize,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl TestSmtp {
    /// An SMTP server on an ephemeral port of 127.0.0.1, up.
    pub async fn start() -> TestSmtp {
        let (received, _) = watch::channel(0);
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            received,
        });
        let backend_listener =
            std::net::TcpListener::bind("127.0.0.1:0").expect("bind the SMTP server");
        let backend = backend_listener
            .local_addr()
            .expect("the SMTP server's address");
        let mut server = Server::new(Recorder::new(shared.clone()));
        server
            .with_name("roster-test-smtp")
            .with_num_threads(8)
            .with_tcp_listener(backend_listener);
        // `serve` never returns: the thread ends with the test process.
        std::thread::Builder::new()
            .name(format!("test-smtp-{}", backend.port()))
            .spawn(move || {
                let _ = server.serve();
            })
            .expect("start the SMTP server thread");
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the SMTP port");
        let addr = listener.local_addr().expect("the SMTP port");
        let front = tokio::spawn(relay(listener, backend, shared.clone()));
        TestSmtp {
            addr,
            backend,
            shared,
            front: Mutex::new(Some(front)),
        }
    }

    /// The URL for `mail.smtp_url`: `smtp://127.0.0.1:<port>`, no TLS.
    pub fn url(&self) -> String {
        format!("smtp://{}", self.addr)
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Whether the server is up (accepting on [`addr`](Self::addr)).
    pub fn is_running(&self) -> bool {
        self.front_slot().is_some()
    }

    /// Takes the server down: once this returns, nothing listens on
    /// [`addr`](Self::addr) and open connections are cut. Mails already
    /// accepted stay readable. Does nothing when it is down already.
    pub async fn stop(&self) {
        let front = self.front_slot().take();
        if let Some(front) = front {
            front.abort();
            // The relay (and its listener and connections) is dropped once
            // the aborted task is joined.
            let _ = front.await;
        }
    }

    /// Brings the server up again on the same port. Does nothing when it
    /// is up. Panics when the port stays taken by something else.
    pub async fn start_again(&self) {
        if self.is_running() {
            return;
        }
        let deadline = Instant::now() + REBIND_TIMEOUT;
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(listener) => break listener,
                // A connection in the way: retried.
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("cannot listen on {} again: {e}", self.addr),
            }
        };
        let front = tokio::spawn(relay(listener, self.backend, self.shared.clone()));
        *self.front_slot() = Some(front);
    }

    /// Every mail accepted so far, in the order accepted.
    pub fn messages(&self) -> Vec<ReceivedMail> {
        self.shared.lock().mails.clone()
    }

    /// Waits until at least `n` mails were accepted and returns all of
    /// them; panics after `timeout` with what did arrive.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<ReceivedMail> {
        let mut received = self.shared.received.subscribe();
        let reached = tokio::time::timeout(timeout, received.wait_for(|count| *count >= n)).await;
        if reached.is_err() {
            let got = self.messages();
            panic!(
                "expected {n} mail(s) within {timeout:?}, got {}: {:?}",
                got.len(),
                got.iter().map(|m| &m.to).collect::<Vec<_>>()
            );
        }
        self.messages()
    }

    /// Mailer settings delivering here, retrying quickly.
    pub fn mail_config(&self) -> roster_invitations::MailConfig {
        roster_invitations::MailConfig {
            smtp_url: self.url().into(),
            timeout_secs: 5,
            retry_initial_ms: 20,
            retry_max_ms: 200,
            ..roster_invitations::MailConfig::default()
        }
    }

    /// Waits until `n` mails to `recipient` (case-insensitive) arrived and
    /// returns the `n`th (from 1); panics after `timeout`.
    pub async fn nth_mail_to(&self, recipient: &str, n: usize, timeout: Duration) -> ReceivedMail {
        self.first_mail_where(&format!("mail #{n} to {recipient}"), timeout, |mails| {
            mails
                .iter()
                .filter(|m| m.is_to(recipient))
                .nth(n.saturating_sub(1))
                .cloned()
        })
        .await
    }

    /// Waits until a mail to `recipient` whose subject contains `subject`
    /// arrived and returns the first such; panics after `timeout`.
    pub async fn mail_to_with_subject(
        &self,
        recipient: &str,
        subject: &str,
        timeout: Duration,
    ) -> ReceivedMail {
        self.first_mail_where(
            &format!("a mail to {recipient} about {subject:?}"),
            timeout,
            |mails| {
                mails
                    .iter()
                    .find(|m| {
                        m.is_to(recipient)
                            && m.header("Subject").is_some_and(|s| s.contains(subject))
                    })
                    .cloned()
            },
        )
        .await
    }

    async fn first_mail_where(
        &self,
        what: &str,
        timeout: Duration,
        find: impl Fn(&[ReceivedMail]) -> Option<ReceivedMail>,
    ) -> ReceivedMail {
        let mut received = self.shared.received.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(mail) = find(&self.messages()) {
                return mail;
            }
            let changed = tokio::time::timeout_at(deadline, received.changed()).await;
            if !matches!(changed, Ok(Ok(()))) {
                let got = self.messages();
                panic!(
                    "expected {what} within {timeout:?}; got mails to {:?} about {:?}",
                    got.iter().map(|m| &m.to).collect::<Vec<_>>(),
                    got.iter().map(|m| m.header("Subject")).collect::<Vec<_>>()
                );
            }
        }
    }

    /// Answers `550` to `RCPT TO:<recipient>` from now on (a permanent
    /// failure: the mailbox does not exist). Case-insensitive.
    pub fn refuse_permanently(&self, recipient: &str) {
        self.shared
            .lock()
            .refuse_permanently
            .insert(recipient.to_ascii_lowercase());
    }

    /// Answers `451` to the next `times` `RCPT TO:<recipient>` (a
    /// temporary failure), then accepts it. Case-insensitive.
    pub fn refuse_temporarily(&self, recipient: &str, times: usize) {
        self.shared
            .lock()
            .refuse_temporarily
            .insert(recipient.to_ascii_lowercase(), times);
    }

    /// How many times a client named `recipient` in `RCPT TO`, accepted or
    /// refused: the delivery attempts that reached the server.
    pub fn rcpt_attempts(&self, recipient: &str) -> usize {
        let recipient = recipient.to_ascii_lowercase();
        self.shared
            .lock()
            .recipients_tried
            .iter()
            .filter(|r| **r == recipient)
            .count()
    }

    /// Connections accepted on [`addr`](Self::addr) so far (none while the
    /// server is down).
    pub fn connections(&self) -> usize {
        self.shared.lock().connections
    }

    fn front_slot(&self) -> MutexGuard<'_, Option<JoinHandle<()>>> {
        self.front.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for TestSmtp {
    fn drop(&mut self) {
        if let Some(front) = self.front_slot().take() {
            front.abort();
        }
    }
}

/// Accepts on `listener` and pipes each connection to the SMTP server at
/// `backend`, until aborted (which drops the listener and every open
/// connection).
async fn relay(listener: TcpListener, backend: SocketAddr, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((mut client, _)) => {
                    shared.lock().connections += 1;
                    connections.spawn(async move {
                        if let Ok(mut server) = TcpStream::connect(backend).await {
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                        }
                    });
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// The `mailin` handler: one clone per connection, recording into the
/// shared state.
#[derive(Clone)]
struct Recorder {
    shared: Arc<Shared>,
    from: String,
    to: Vec<String>,
    data: Vec<u8>,
}

impl Recorder {
    fn new(shared: Arc<Shared>) -> Self {
        Self {
            shared,
            from: String::new(),
            to: Vec::new(),
            data: Vec::new(),
        }
    }
}

impl Handler for Recorder {
    fn rcpt(&mut self, to: &str) -> Response {
        let recipient = to.to_ascii_lowercase();
        let mut state = self.shared.lock();
        state.recipients_tried.push(recipient.clone());
        if state.refuse_permanently.contains(&recipient) {
            return Response::custom(550, "5.1.1 Mailbox unavailable (TestSmtp)".into());
        }
        if let Some(left) = state.refuse_temporarily.get_mut(&recipient)
            && *left > 0
        {
            *left -= 1;
            return Response::custom(451, "4.3.0 Try again later (TestSmtp)".into());
        }
        response::OK
    }

    fn data_start(&mut self, _domain: &str, from: &str, _is8bit: bool, to: &[String]) -> Response {
        self.from = from.to_string();
        self.to = to.to_vec();
        self.data.clear();
        response::OK
    }

    fn data(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.data.extend_from_slice(buf);
        Ok(())
    }

    fn data_end(&mut self) -> Response {
        let mail = ReceivedMail {
            from: std::mem::take(&mut self.from),
            to: std::mem::take(&mut self.to),
            data: std::mem::take(&mut self.data),
        };
        let mut state = self.shared.lock();
        state.mails.push(mail);
        self.shared.received.send_replace(state.mails.len());
        response::OK
    }
}

// ---- Reading mails ------------------------------------------------------

impl ReceivedMail {
    /// The raw message as text (invalid UTF-8 replaced).
    pub fn raw(&self) -> String {
        String::from_utf8_lossy(&self.data).into_owned()
    }

    /// Whether `needle` occurs anywhere in the raw message (as sent, before
    /// any decoding).
    pub fn raw_contains(&self, needle: &str) -> bool {
        let needle = needle.as_bytes();
        !needle.is_empty() && self.data.windows(needle.len()).any(|w| w == needle)
    }

    /// The message's top-level headers, unfolded, encoded words (RFC 2047)
    /// decoded, in order.
    pub fn headers(&self) -> Vec<(String, String)> {
        let text = normalize(&self.raw());
        let (headers, _) = split_entity(&text);
        headers
    }

    /// The first top-level header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers()
            .into_iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// Every top-level header named `name` (case-insensitive).
    pub fn header_all(&self, name: &str) -> Vec<String> {
        self.headers()
            .into_iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
            .collect()
    }

    /// The top-level media type, lowercased, without parameters.
    pub fn content_type(&self) -> String {
        media_type(&self.header("Content-Type").unwrap_or_default())
    }

    /// The leaf parts, depth first, bodies decoded.
    pub fn parts(&self) -> Vec<MimePart> {
        let text = normalize(&self.raw());
        let mut parts = Vec::new();
        collect_parts(&text, &mut parts);
        parts
    }

    /// The decoded body of the first `text/plain` part.
    pub fn text(&self) -> Option<String> {
        self.part("text/plain")
    }

    /// The decoded body of the first `text/html` part.
    pub fn html(&self) -> Option<String> {
        self.part("text/html")
    }

    /// Whether `recipient` (case-insensitive) is among the envelope
    /// recipients.
    pub fn is_to(&self, recipient: &str) -> bool {
        self.to.iter().any(|to| to.eq_ignore_ascii_case(recipient))
    }

    /// The value of the query parameter `name` in the first link of the
    /// text part that carries it (`…?token=<value>&…`).
    pub fn link_param(&self, name: &str) -> Option<String> {
        let text = self.text()?;
        let needle = format!("{name}=");
        text.split(|c: char| c.is_whitespace())
            .filter(|word| word.starts_with("http://") || word.starts_with("https://"))
            .find_map(|link| {
                let query = link.split_once('?')?.1;
                query
                    .split('&')
                    .find_map(|pair| pair.strip_prefix(needle.as_str()))
                    .map(str::to_string)
            })
    }

    /// What follows `label` on the first line of the text part that starts
    /// with it (`Temporary password: <value>`).
    pub fn line_value(&self, label: &str) -> Option<String> {
        self.text()?.lines().find_map(|line| {
            line.trim()
                .strip_prefix(label)
                .map(|v| v.trim().to_string())
        })
    }

    fn part(&self, content_type: &str) -> Option<String> {
        self.parts()
            .into_iter()
            .find(|p| p.content_type == content_type)
            .map(|p| p.body)
    }
}

impl MimePart {
    /// The first header of this part named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// `text` with `\n` line ends.
fn normalize(text: &str) -> String {
    text.replace("\r\n", "\n")
}

/// Headers (unfolded, decoded) and body of an entity with `\n` line ends.
fn split_entity(text: &str) -> (Vec<(String, String)>, &str) {
    let (head, body) = if let Some(body) = text.strip_prefix('\n') {
        ("", body)
    } else {
        match text.find("\n\n") {
            Some(i) => (&text[..i], &text[i + 2..]),
            None => (text, ""),
        }
    };
    let mut unfolded: Vec<String> = Vec::new();
    for line in head.lines() {
        match unfolded.last_mut() {
            Some(last) if line.starts_with([' ', '\t']) => last.push_str(line),
            _ => unfolded.push(line.to_string()),
        }
    }
    let headers = unfolded
        .iter()
        .filter_map(|line| {
            let (name, value) = line.split_once(':')?;
            Some((name.trim().to_string(), decode_words(value.trim())))
        })
        .collect();
    (headers, body)
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn media_type(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// The value of parameter `name` of a header such as `Content-Type`.
fn parameter(value: &str, name: &str) -> Option<String> {
    value.split(';').skip(1).find_map(|param| {
        let (key, value) = param.split_once('=')?;
        key.trim()
            .eq_ignore_ascii_case(name)
            .then(|| value.trim().trim_matches('"').to_string())
    })
}

fn collect_parts(entity: &str, out: &mut Vec<MimePart>) {
    let (headers, body) = split_entity(entity);
    let content_type = header(&headers, "Content-Type").unwrap_or("text/plain");
    let kind = media_type(content_type);
    if kind.starts_with("multipart/")
        && let Some(boundary) = parameter(content_type, "boundary")
    {
        for part in split_multipart(body, &boundary) {
            collect_parts(&part, out);
        }
        return;
    }
    let encoding = header(&headers, "Content-Transfer-Encoding")
        .unwrap_or("7bit")
        .trim()
        .to_ascii_lowercase();
    let bytes = match encoding.as_str() {
        "quoted-printable" => decode_quoted_printable(body),
        "base64" => decode_base64(body),
        _ => body.as_bytes().to_vec(),
    };
    out.push(MimePart {
        content_type: kind,
        headers,
        body: normalize(&String::from_utf8_lossy(&bytes)),
    });
}

/// The parts between the delimiters of `boundary` (RFC 2046 5.1.1).
fn split_multipart(body: &str, boundary: &str) -> Vec<String> {
    let open = format!("--{boundary}");
    let close = format!("--{boundary}--");
    let mut parts = Vec::new();
    let mut current: Option<Vec<&str>> = None;
    for line in body.split('\n') {
        let line_trimmed = line.trim_end();
        if line_trimmed == close {
            if let Some(lines) = current.take() {
                parts.push(lines.join("\n"));
            }
            break;
        }
        if line_trimmed == open {
            if let Some(lines) = current.take() {
                parts.push(lines.join("\n"));
            }
            current = Some(Vec::new());
            continue;
        }
        if let Some(lines) = current.as_mut() {
            lines.push(line);
        }
    }
    parts
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Quoted-printable (RFC 2045 6.7), `\n` line ends; with `underscore`
/// (the Q encoding of headers), `_` is a space.
fn decode_qp(text: &str, underscore: bool) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'=' if bytes.get(i + 1) == Some(&b'\n') => i += 2,
            b'=' => match (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            ) {
                (Some(hi), Some(lo)) => {
                    out.push(hi * 16 + lo);
                    i += 3;
                }
                _ => {
                    out.push(b'=');
                    i += 1;
                }
            },
            b'_' if underscore => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

fn decode_quoted_printable(text: &str) -> Vec<u8> {
    decode_qp(text, false)
}

fn decode_base64(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for c in text.bytes() {
        let value = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => break,
            _ => continue,
        };
        acc = (acc << 6) | u32::from(value);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(u8::try_from((acc >> bits) & 0xFF).unwrap_or_default());
            acc &= (1 << bits) - 1;
        }
    }
    out
}

/// A header value with its encoded words (`=?utf-8?b?...?=`,
/// `=?utf-8?q?...?=`) decoded; whitespace between two encoded words goes.
fn decode_words(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    let mut pending_space = String::new();
    let mut after_word = false;
    while !rest.is_empty() {
        if let Some((decoded, len)) = encoded_word(rest) {
            if !after_word {
                out.push_str(&pending_space);
            }
            pending_space.clear();
            out.push_str(&decoded);
            rest = &rest[len..];
            after_word = true;
            continue;
        }
        let c = rest.chars().next().unwrap_or(' ');
        if c == ' ' || c == '\t' {
            pending_space.push(c);
        } else {
            out.push_str(&pending_space);
            pending_space.clear();
            out.push(c);
            after_word = false;
        }
        rest = &rest[c.len_utf8()..];
    }
    out.push_str(&pending_space);
    out
}

/// The encoded word at the start of `text`: its text and its length.
fn encoded_word(text: &str) -> Option<(String, usize)> {
    let inner = text.strip_prefix("=?")?;
    let (_charset, inner) = inner.split_once('?')?;
    let (encoding, inner) = inner.split_once('?')?;
    let end = inner.find("?=")?;
    let payload = &inner[..end];
    if payload.contains([' ', '\t']) {
        return None;
    }
    let bytes = match encoding {
        "b" | "B" => decode_base64(payload),
        "q" | "Q" => decode_qp(payload, true),
        _ => return None,
    };
    let len = text.len() - inner.len() + end + 2;
    Some((String::from_utf8_lossy(&bytes).into_owned(), len))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mail(raw: &str) -> ReceivedMail {
        ReceivedMail {
            from: "a@example.com".into(),
            to: vec!["b@example.com".into()],
            data: raw.replace('\n', "\r\n").into_bytes(),
        }
    }

    #[test]
    fn multipart_parts_are_decoded_from_their_transfer_encodings() {
        let m = mail(
            "Subject: =?utf-8?b?SMOpbGxv?= =?utf-8?q?_w=C3=B6rld?=\n\
             Content-Type: multipart/alternative;\n boundary=\"XYZ\"\n\
             \n\
             preamble\n\
             --XYZ\n\
             Content-Type: text/plain; charset=utf-8\n\
             Content-Transfer-Encoding: quoted-printable\n\
             \n\
             a=3Db soft =\n\
             break\n\
             --XYZ\n\
             Content-Type: text/html; charset=utf-8\n\
             Content-Transfer-Encoding: base64\n\
             \n\
             PHA+aGk8\n\
             L3A+\n\
             --XYZ--\n",
        );
        assert_eq!(m.header("subject").as_deref(), Some("Héllo wörld"));
        assert_eq!(m.content_type(), "multipart/alternative");
        assert_eq!(m.text().as_deref(), Some("a=b soft break"));
        assert_eq!(m.html().as_deref(), Some("<p>hi</p>"));
        assert_eq!(m.parts().len(), 2);
    }

    #[test]
    fn plain_words_and_spaces_stay_as_they_are() {
        assert_eq!(
            decode_words("Roster <roster@localhost>"),
            "Roster <roster@localhost>"
        );
        assert_eq!(decode_words("a =?x"), "a =?x");
        assert_eq!(decode_words("=?utf-8?q?a?= b"), "a b");
    }
}
