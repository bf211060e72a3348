//! The invitations service's use cases; for now, queuing mails for the
//! other services (`Mailer.Enqueue`).

use std::collections::BTreeMap;
use std::sync::Arc;

use roster_core::auth::CallContext;
use roster_core::validation::{FieldViolation, max_chars, no_control_chars};
use roster_proto::v1::{EnqueueMailRequest, EnqueueMailResponse};
use tokio::sync::Notify;

use crate::error::{Error, Result};
use crate::store::{MailRecord, MailStore};
use crate::templates;

/// Most template variables per mail.
const MAX_VARIABLES: usize = 32;
/// Longest variable value, in characters.
const MAX_VALUE_CHARS: usize = 4096;

/// Mail queuing.
pub struct InvitationsService {
    mail: Arc<dyn MailStore>,
    wake_mailer: Arc<Notify>,
}

impl InvitationsService {
    pub fn new(mail: Arc<dyn MailStore>, wake_mailer: Arc<Notify>) -> Self {
        Self { mail, wake_mailer }
    }

    /// Queues a mail for delivery (other services only).
    #[tracing::instrument(skip_all)]
    pub async fn enqueue(
        &self,
        ctx: &CallContext,
        req: EnqueueMailRequest,
    ) -> Result<EnqueueMailResponse> {
        ctx.caller.require_cluster()?;
        let Some(required) = templates::required(&req.template) else {
            let known: Vec<&str> = templates::names().collect();
            return Err(FieldViolation::new(
                "template",
                format!("must be one of {}", known.join(", ")),
            )
            .into());
        };
        if req.recipient.is_empty() {
            return Err(FieldViolation::new("recipient", "is required").into());
        }
        max_chars("recipient", &req.recipient, 254)?;
        req.recipient
            .parse::<lettre::Address>()
            .map_err(|_| FieldViolation::new("recipient", "is not an email address"))?;
        max_chars("recipient_name", &req.recipient_name, 100)?;
        no_control_chars("recipient_name", &req.recipient_name)?;
        if req.recipient_name.contains(['\n', '\t']) {
            return Err(FieldViolation::new("recipient_name", "must be one line").into());
        }
        if req.data.len() > MAX_VARIABLES {
            return Err(FieldViolation::new(
                "data",
                format!("must hold at most {MAX_VARIABLES} variables"),
            )
            .into());
        }
        for (key, value) in &req.data {
            let field = format!("data.{key}");
            max_chars(&field, value, MAX_VALUE_CHARS)?;
            no_control_chars(&field, value)?;
            templates::check_variable(key, value)
                .map_err(|why| FieldViolation::new(&field, why))?;
        }
        if let Some(missing) = required.iter().find(|k| {
            req.data
                .get(**k)
                .is_none_or(|value| value.trim().is_empty())
        }) {
            return Err(FieldViolation::new(
                format!("data.{missing}"),
                format!("is required by the `{}` template", req.template),
            )
            .into());
        }
        max_chars("idempotency_key", &req.idempotency_key, 128)?;
        let now = roster_core::time::now();
        let mail = MailRecord {
            id: uuid::Uuid::new_v4().to_string(),
            idempotency_key: (!req.idempotency_key.is_empty()).then_some(req.idempotency_key),
            template: req.template,
            recipient: req.recipient,
            recipient_name: req.recipient_name,
            data: req.data.into_iter().collect::<BTreeMap<_, _>>(),
            attempts: 0,
            next_attempt_at: now,
            last_error: None,
            created_at: now,
            sent_at: None,
            given_up_at: None,
        };
        let id = self.mail.enqueue(&mail).await.map_err(Error::Store)?;
        self.wake_mailer.notify_one();
        tracing::info!(mail_id = %id, template = %mail.template, "mail queued");
        Ok(EnqueueMailResponse { mail_id: id })
    }
}
