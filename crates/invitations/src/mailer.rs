//! The delivery worker: takes due mails from the queue, renders them,
//! hands them to the transport, and records the outcome — delivered
//! (secrets deleted), retried later with backoff, or given up for good.
//!
//! Each mail is delivered once in the normal course. The one gap is a
//! crash after the SMTP server accepted a mail and before it was marked
//! sent: the mail is sent again when its lease runs out. Every attempt
//! carries the same `Message-ID` (`<mail id>@roster`), so receiving
//! systems can recognise the repeat.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use lettre::Message;
use lettre::message::header::ContentTransferEncoding;
use lettre::message::{Body, Mailbox, MultiPart, SinglePart};
use roster_core::metrics::{self, mail_result};
use tokio::sync::Notify;

use crate::config::MailConfig;
use crate::store::{MailRecord, MailStore};
use crate::templates;
use crate::transport::{DeliveryError, MailTransport};

/// The longest wait between two requests to the transport to remove old
/// mail files.
const MAX_PRUNE_INTERVAL: Duration = Duration::from_secs(60);

/// Delivers queued mails.
pub struct Mailer {
    store: Arc<dyn MailStore>,
    transport: Arc<dyn MailTransport>,
    config: MailConfig,
    from: Mailbox,
    wake: Arc<Notify>,
    stopping: AtomicBool,
}

impl Mailer {
    pub fn new(
        store: Arc<dyn MailStore>,
        transport: Arc<dyn MailTransport>,
        config: MailConfig,
    ) -> anyhow::Result<Self> {
        let from = config
            .from
            .parse()
            .map_err(|e| anyhow::anyhow!("mail.from: {e}"))?;
        Ok(Self {
            store,
            transport,
            config,
            from,
            wake: Arc::new(Notify::new()),
            stopping: AtomicBool::new(false),
        })
    }

    /// Notified when a mail is queued, so delivery starts at once.
    pub fn waker(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// Delivers until `shutdown` resolves, then finishes the mail it is
    /// sending (at most `mail.timeout_secs`) and hands the rest of its batch
    /// back to the queue.
    pub async fn run(self: Arc<Self>, shutdown: impl Future<Output = ()>) {
        let worker = {
            let me = self.clone();
            tokio::spawn(async move { me.work().await })
        };
        shutdown.await;
        self.stopping.store(true, Ordering::SeqCst);
        self.wake.notify_one();
        let _ = worker.await;
    }

    async fn work(&self) {
        let poll = Duration::from_millis(self.config.poll_interval_ms);
        // Often enough that no file outlives its retention by much more
        // than half of it, and at most once a minute.
        let prune_every = self
            .config
            .file_retention()
            .map_or(MAX_PRUNE_INTERVAL, |r| (r / 2).min(MAX_PRUNE_INTERVAL));
        let mut pruned: Option<tokio::time::Instant> = None;
        while !self.stopping.load(Ordering::SeqCst) {
            if pruned.is_none_or(|at| at.elapsed() >= prune_every) {
                self.transport.prune().await;
                pruned = Some(tokio::time::Instant::now());
            }
            let delivered = self.deliver_due().await;
            self.report_waiting().await;
            match delivered {
                // A full batch: there may be more.
                Ok(n) if n >= self.config.batch as usize => continue,
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "cannot read the mail queue"),
            }
            if self.stopping.load(Ordering::SeqCst) {
                break;
            }
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(poll) => {}
            }
        }
    }

    /// Sets the mail-queue gauges after a pass: one count over the mails
    /// still due, at most once per poll interval when idle.
    async fn report_waiting(&self) {
        match self.store.waiting().await {
            Ok(waiting) => metrics::mail_queue(waiting.pending, waiting.retrying),
            Err(error) => tracing::debug!(%error, "cannot count the mail queue"),
        }
    }

    /// One pass: delivers the mails due now; returns how many it took.
    pub async fn deliver_due(&self) -> anyhow::Result<usize> {
        let now = roster_core::time::now();
        // Long enough for the whole batch at the slowest, one mail after the
        // other; a worker that dies holding mails only delays them by this
        // much.
        let per_mail = i64::try_from(self.config.timeout_secs).unwrap_or(60) + 10;
        let lease = chrono::Duration::seconds(per_mail * i64::from(self.config.batch) + 60);
        let mails = self
            .store
            .claim_due(now, now + lease, i64::from(self.config.batch))
            .await?;
        let taken = mails.len();
        for mail in mails {
            if self.stopping.load(Ordering::SeqCst) {
                // Not tried: due again at once, for the next worker.
                let released = self
                    .store
                    .mark_failed(
                        &mail.id,
                        "not tried: the worker stopped",
                        roster_core::time::now(),
                    )
                    .await;
                if let Err(error) = released {
                    tracing::warn!(mail_id = %mail.id, %error, "cannot hand a mail back");
                }
                continue;
            }
            self.deliver(mail).await;
        }
        Ok(taken)
    }

    async fn deliver(&self, mail: MailRecord) {
        let outcome = match self.message(&mail) {
            Ok(message) => self.transport.deliver(&mail.id, message).await,
            Err(reason) => Err(DeliveryError::Permanent(reason)),
        };
        let now = roster_core::time::now();
        metrics::mail_delivery(match &outcome {
            Ok(()) => mail_result::SENT,
            Err(DeliveryError::Temporary(_)) => mail_result::RETRY,
            Err(DeliveryError::Permanent(_)) => mail_result::FAILED,
        });
        let recorded = match &outcome {
            Ok(()) => {
                tracing::info!(mail_id = %mail.id, template = %mail.template, attempt = mail.attempts, "mail delivered");
                self.store.mark_sent(&mail.id, now).await
            }
            Err(DeliveryError::Temporary(error)) => {
                let wait = self.backoff(mail.attempts);
                tracing::warn!(mail_id = %mail.id, attempt = mail.attempts, %error, retry_in_ms = wait.num_milliseconds(), "mail delivery failed; will retry");
                self.store.mark_failed(&mail.id, error, now + wait).await
            }
            Err(DeliveryError::Permanent(error)) => {
                tracing::error!(mail_id = %mail.id, attempt = mail.attempts, %error, "mail cannot be delivered; giving up");
                self.store.give_up(&mail.id, error, now).await
            }
        };
        if let Err(error) = recorded {
            // The lease runs out and the mail is tried again.
            tracing::warn!(mail_id = %mail.id, %error, "cannot record a delivery outcome");
        }
    }

    /// How long to wait after the `attempts`-th failed attempt.
    fn backoff(&self, attempts: u32) -> chrono::Duration {
        let factor = 1u64 << attempts.saturating_sub(1).min(30);
        let ms = self
            .config
            .retry_initial_ms
            .saturating_mul(factor)
            .min(self.config.retry_max_ms);
        chrono::Duration::milliseconds(i64::try_from(ms).unwrap_or(i64::MAX))
    }

    fn message(&self, mail: &MailRecord) -> Result<Message, String> {
        let rendered = templates::render(
            &mail.template,
            &mail.recipient_name,
            &mail.data,
            &self.config.base_url,
        )
        .ok_or_else(|| format!("unknown template `{}`", mail.template))?;
        let to = Mailbox::new(
            (!mail.recipient_name.is_empty()).then(|| mail.recipient_name.clone()),
            mail.recipient
                .parse()
                .map_err(|e| format!("bad recipient: {e}"))?,
        );
        Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(rendered.subject)
            .message_id(Some(format!("<{}@roster>", mail.id)))
            .date(mail.created_at.into())
            .multipart(
                MultiPart::alternative()
                    .singlepart(SinglePart::plain(readable(rendered.text)))
                    .singlepart(SinglePart::html(readable(rendered.html))),
            )
            .map_err(|e| format!("cannot build the mail: {e}"))
    }
}

/// A text part as it is when it can travel so (`7bit`: ASCII, no NUL,
/// lines of at most 998 characters, RFC 5322), so links stay whole and
/// copyable in `.eml` files and mail sources; otherwise whatever encoding
/// lettre finds best. (lettre itself keeps `7bit` to lines under 76
/// characters, which every link breaks.)
fn readable(text: String) -> Body {
    let fits = text.is_ascii() && !text.contains('\0') && text.lines().all(|l| l.len() <= 998);
    if !fits {
        return Body::new(text);
    }
    let crlf = text.replace("\r\n", "\n").replace('\n', "\r\n");
    Body::dangerous_pre_encoded(crlf.into_bytes(), ContentTransferEncoding::SevenBit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ascii_text_with_long_links_travels_as_it_is() {
        let link = format!(
            "https://roster.example.com/register?token={}",
            "a".repeat(90)
        );
        let body = readable(format!("Hello,\n\nRegister here: {link}\n"));
        assert_eq!(body.encoding(), ContentTransferEncoding::SevenBit);
        let raw = String::from_utf8(body.as_ref().to_vec()).unwrap();
        assert!(raw.contains(&link), "{raw}");
        assert!(
            raw.contains("Hello,\r\n\r\nRegister"),
            "CRLF line ends: {raw:?}"
        );
    }

    #[test]
    fn other_text_is_encoded() {
        assert_ne!(
            readable("Hello Zoë,\n".into()).encoding(),
            ContentTransferEncoding::SevenBit
        );
        assert_ne!(
            readable(format!("{}\n", "x".repeat(1200))).encoding(),
            ContentTransferEncoding::SevenBit
        );
    }
}
