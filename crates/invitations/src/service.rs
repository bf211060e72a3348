//! The invitations service's use cases: invitations
//! (`UserInvitationRegistry`), redeeming their tokens for the user registry
//! (`InvitationTokens`), and queuing mails for the other services
//! (`Mailer.Enqueue`). No SQL and no gRPC types beyond the messages here.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use roster_core::auth::CallContext;
use roster_core::events::{new_event, pack};
use roster_core::list::{Order, Page};
use roster_core::time::{now, opt_timestamp, timestamp};
use roster_core::token::{Token, TokenHasher, TokenType};
use roster_core::validation::{FieldViolation, max_chars, no_control_chars};
use roster_proto::v1::{
    ClaimInvitationRequest, ClaimInvitationResponse, DeleteInvitationRequest, EnqueueMailRequest,
    EnqueueMailResponse, EntityIdentifiers, Event, GetInvitationRequest, Invitation, Invitations,
    ListInvitationsRequest, ResendInvitationRequest, Right, SendInvitationRequest,
    SendInvitationsResponse, SettleInvitationClaimRequest, UserIdentifiers, entity_identifiers,
};
use tokio::sync::Notify;

use crate::config::InvitationsConfig;
use crate::domain::{EmailAddress, send_addresses, user_id_of, uuid_of};
use crate::error::{Error, Result};
use crate::events;
use crate::store::{
    ClaimRecord, InvitationOrder, InvitationQuery, InvitationRecord, InvitationStore, MailRecord,
    MailStore,
};
use crate::templates;
use crate::users::UserLookup;

/// Most template variables per mail.
const MAX_VARIABLES: usize = 32;
/// Longest variable value, in characters.
const MAX_VALUE_CHARS: usize = 4096;

/// The orders List accepts.
const LIST_ORDERS: &[&str] = &["email", "created_at", "expires_at", "accepted_at"];

/// The template of the invitation mail.
const INVITATION_TEMPLATE: &str = "invitation";

/// How often a use case that lost a race re-reads the invitation and
/// tries again before it gives up.
const ATTEMPTS: usize = 3;

/// The one reason for every invitation token that finds nothing (malformed,
/// of another type, unknown, wrong secret, deleted, replaced by Resend), so
/// a caller learns nothing about which part was wrong.
const INVALID_INVITATION: &str = "is not a valid invitation";
const ALREADY_USED: &str =
    "invitation_already_used: the invitation was used, or a registration with it is in progress";
const EXPIRED: &str = "invitation_expired: the invitation expired; ask for a new one";
const ACCEPTED: &str =
    "invitation_already_used: the invitation was accepted (accepted invitations stay as history)";
const IN_PROGRESS: &str =
    "invitation_in_use: a registration with the invitation is in progress; try again later";
const CLAIM_NOT_HELD: &str = "invitation_claim_not_held: the claim was released or taken over, or the invitation was deleted";
const CHANGED: &str = "invitation_changed: the invitation changed meanwhile; try again";

/// Invitations, their tokens, and mail queuing.
pub struct InvitationsService {
    mail: Arc<dyn MailStore>,
    invitations: Arc<dyn InvitationStore>,
    users: Arc<dyn UserLookup>,
    hasher: TokenHasher,
    config: InvitationsConfig,
    wake_mailer: Arc<Notify>,
}

impl InvitationsService {
    pub fn new(
        mail: Arc<dyn MailStore>,
        invitations: Arc<dyn InvitationStore>,
        users: Arc<dyn UserLookup>,
        hasher: TokenHasher,
        config: InvitationsConfig,
        wake_mailer: Arc<Notify>,
    ) -> Self {
        Self {
            mail,
            invitations,
            users,
            hasher,
            config,
            wake_mailer,
        }
    }

    /// An event about `record`, with the invitation (never its token) as
    /// data.
    fn event(&self, ctx: &CallContext, name: &str, record: &InvitationRecord) -> Event {
        let mut identifiers = vec![EntityIdentifiers {
            ids: Some(entity_identifiers::Ids::InvitationEmail(
                record.email.clone(),
            )),
        }];
        if let Some(user_id) = &record.accepted_by {
            identifiers.push(EntityIdentifiers {
                ids: Some(entity_identifiers::Ids::UserIds(user_ids(user_id))),
            });
        }
        let mut event = new_event(name, identifiers, Some(pack(&invitation_message(record))));
        ctx.stamp(&mut event);
        event
    }

    /// The invitation mail for `record`, carrying `token`.
    fn mail_for(&self, record: &InvitationRecord, token: &Token, at: DateTime<Utc>) -> MailRecord {
        MailRecord {
            id: uuid::Uuid::new_v4().to_string(),
            idempotency_key: None,
            template: INVITATION_TEMPLATE.into(),
            recipient: record.email.clone(),
            recipient_name: String::new(),
            data: BTreeMap::from([
                // `secret_*`: deleted from the queue once delivered.
                ("secret_token".to_string(), token.to_string()),
                (
                    "expires_at".to_string(),
                    roster_core::mail::format_time(record.expires_at),
                ),
            ]),
            attempts: 0,
            next_attempt_at: at,
            last_error: None,
            created_at: at,
            sent_at: None,
            given_up_at: None,
        }
    }

    // ---- UserInvitationRegistry ---------------------------------------

    /// Invites every address of the request, all or nothing: each
    /// invitation, its mail and its `invitation.create` event in one
    /// transaction. An expired, unaccepted invitation to an address is
    /// replaced: deleted, with an `invitation.delete` event of its own in
    /// the same transaction; a live one refuses the call with
    /// ALREADY_EXISTS `invitation_already_sent`. Whether a user with the
    /// address exists is not checked: users belong to the user registry.
    #[tracing::instrument(skip_all)]
    pub async fn send(
        &self,
        ctx: &CallContext,
        req: SendInvitationRequest,
    ) -> Result<SendInvitationsResponse> {
        ctx.caller.require_universal(Right::SendInvites)?;
        let addresses = send_addresses(&req.email, &req.emails)?;
        let sent_by = ctx.caller.user_id().unwrap_or_default().to_string();
        let at = now();
        let expires_at = at + self.config.token_ttl();
        let mut batch = Vec::with_capacity(addresses.len());
        let mut events = Vec::with_capacity(addresses.len());
        let mut invitations = Vec::with_capacity(addresses.len());
        for address in addresses {
            let token = Token::generate(TokenType::Invitation);
            let record = InvitationRecord {
                id: uuid::Uuid::new_v4().to_string(),
                email: address.as_str().to_string(),
                email_key: address.key().to_string(),
                token_id: token.id().to_string(),
                token_hash: self.hasher.hash(&token),
                sent_by: sent_by.clone(),
                created_at: at,
                updated_at: at,
                expires_at,
                accepted_at: None,
                accepted_by: None,
                claim: None,
            };
            let mail = self.mail_for(&record, &token, at);
            events.push(self.event(ctx, events::INVITATION_CREATE, &record));
            invitations.push(Invitation {
                token: token.to_string(),
                ..invitation_message(&record)
            });
            batch.push((record, mail));
        }
        // An expired invitation a new one replaces goes with an event of
        // its own, as if deleted.
        let replaced =
            |record: &InvitationRecord| self.event(ctx, events::INVITATION_DELETE, record);
        self.invitations
            .send(&batch, at, &events, &replaced)
            .await?;
        self.wake_mailer.notify_one();
        tracing::info!(count = batch.len(), sent_by = %sent_by, "invitations sent");
        Ok(SendInvitationsResponse { invitations })
    }

    /// A page of the invitations the caller may see: every invitation for
    /// admins, the ones they sent for everybody else.
    #[tracing::instrument(skip_all)]
    pub async fn list(
        &self,
        ctx: &CallContext,
        req: ListInvitationsRequest,
    ) -> Result<(Invitations, u64)> {
        ctx.caller.require_universal(Right::SendInvites)?;
        let order = if req.order.is_empty() {
            Order {
                field: "created_at",
                descending: true,
            }
        } else {
            Order::parse(&req.order, LIST_ORDERS, "created_at")?
        };
        let page = Page::parse(req.limit, req.page)?;
        let sent_by = if ctx.caller.is_admin() {
            None
        } else {
            match ctx.caller.user_id() {
                Some(user_id) => Some(user_id),
                None => return Ok((Invitations::default(), 0)),
            }
        };
        let (records, total) = self
            .invitations
            .list(InvitationQuery {
                sent_by,
                order: match order.field {
                    "email" => InvitationOrder::Email,
                    "expires_at" => InvitationOrder::ExpiresAt,
                    "accepted_at" => InvitationOrder::AcceptedAt,
                    _ => InvitationOrder::CreatedAt,
                },
                descending: order.descending,
                limit: page.limit(),
                offset: page.offset(),
            })
            .await?;
        Ok((
            Invitations {
                invitations: records.iter().map(invitation_message).collect(),
            },
            total,
        ))
    }

    #[tracing::instrument(skip_all)]
    pub async fn get(&self, ctx: &CallContext, req: GetInvitationRequest) -> Result<Invitation> {
        ctx.caller.require_universal(Right::SendInvites)?;
        let id = uuid_of("id", &req.id)?;
        match self.invitations.get(&id).await? {
            Some(record) if visible(ctx, &record) => Ok(invitation_message(&record)),
            _ => Err(Error::NotFound("invitation")),
        }
    }

    /// The invitation to `email` the caller may see: the unaccepted one,
    /// else the one accepted last. Someone else's is NOT_FOUND, so
    /// callers learn nothing about invitations they did not send.
    async fn visible_by_email(&self, ctx: &CallContext, email: &str) -> Result<InvitationRecord> {
        ctx.caller.require_universal(Right::SendInvites)?;
        let email = EmailAddress::parse("email", email)?;
        match self.invitations.get_by_email(email.key()).await? {
            Some(record) if visible(ctx, &record) => Ok(record),
            _ => Err(Error::NotFound("invitation")),
        }
    }

    /// Deletes the unaccepted invitation to the address; its token stops
    /// working at once. No invitation to the address, or one the caller did
    /// not send, is NOT_FOUND; an accepted one (kept as history) is
    /// FAILED_PRECONDITION `invitation_already_used`; one claimed by a
    /// registration in progress is FAILED_PRECONDITION `invitation_in_use`,
    /// so that a registration never loses the invitation it holds; a stale
    /// claim is settled first, as Claim does.
    #[tracing::instrument(skip_all)]
    pub async fn delete(&self, ctx: &CallContext, req: DeleteInvitationRequest) -> Result<()> {
        for _ in 0..ATTEMPTS {
            let record = self.visible_by_email(ctx, &req.email).await?;
            if record.accepted_at.is_some() {
                return Err(Error::FailedPrecondition(ACCEPTED));
            }
            let expected_claim = self.claim_to_drop(ctx, &record).await?;
            let event = self.event(ctx, events::INVITATION_DELETE, &record);
            if self
                .invitations
                .delete(&record.id, expected_claim, &[event])
                .await?
            {
                tracing::info!(invitation_id = %record.id, "invitation deleted");
                return Ok(());
            }
            // Claimed, accepted or deleted since it was read: look again.
        }
        Err(Error::FailedPrecondition(CHANGED))
    }

    /// Sends the unaccepted (pending or expired) invitation to the address
    /// again, with a new token and a new expiry, in one transaction with
    /// its mail. An accepted one is FAILED_PRECONDITION
    /// `invitation_already_used`; one claimed by a registration in progress
    /// is FAILED_PRECONDITION `invitation_in_use`; a stale claim is settled
    /// first, as Claim does.
    #[tracing::instrument(skip_all)]
    pub async fn resend(
        &self,
        ctx: &CallContext,
        req: ResendInvitationRequest,
    ) -> Result<Invitation> {
        for _ in 0..ATTEMPTS {
            let record = self.visible_by_email(ctx, &req.email).await?;
            if record.accepted_at.is_some() {
                return Err(Error::FailedPrecondition(ACCEPTED));
            }
            let expected_claim = self.claim_to_drop(ctx, &record).await?;
            let at = now();
            let token = Token::generate(TokenType::Invitation);
            let updated = InvitationRecord {
                token_id: token.id().to_string(),
                token_hash: self.hasher.hash(&token),
                updated_at: at,
                expires_at: at + self.config.token_ttl(),
                claim: None,
                ..record.clone()
            };
            let mail = self.mail_for(&updated, &token, at);
            let event = self.event(ctx, events::INVITATION_UPDATE, &updated);
            if self
                .invitations
                .resend(&updated, expected_claim, &mail, &[event])
                .await?
            {
                self.wake_mailer.notify_one();
                tracing::info!(invitation_id = %updated.id, "invitation sent again");
                return Ok(invitation_message(&updated));
            }
        }
        Err(Error::FailedPrecondition(CHANGED))
    }

    /// The claim on the unaccepted `record` that Resend or Delete may drop,
    /// to be found still in place when they write: none, or a stale one
    /// whose user does not exist. A fresh claim is a registration in
    /// progress: FAILED_PRECONDITION `invitation_in_use`. A stale one whose
    /// user exists is accepted for that user: `invitation_already_used`.
    async fn claim_to_drop<'r>(
        &self,
        ctx: &CallContext,
        record: &'r InvitationRecord,
    ) -> Result<Option<&'r str>> {
        let Some(claim) = &record.claim else {
            return Ok(None);
        };
        if claim.at > now() - self.config.claim_timeout() {
            return Err(Error::FailedPrecondition(IN_PROGRESS));
        }
        if self.settle_stale_claim(ctx, record, claim).await? {
            return Err(Error::FailedPrecondition(ACCEPTED));
        }
        Ok(Some(claim.id.as_str()))
    }

    // ---- InvitationTokens (internal) ----------------------------------

    /// A claim left unsettled past the timeout: its registration went
    /// silent. When its user exists, the registration succeeded without
    /// saying so, and the invitation is accepted for that user now (true).
    /// When not, the claim may be taken over (false).
    async fn settle_stale_claim(
        &self,
        ctx: &CallContext,
        record: &InvitationRecord,
        claim: &ClaimRecord,
    ) -> Result<bool> {
        if !self.users.exists(&claim.user_id).await? {
            return Ok(false);
        }
        let at = now();
        let accepted = accepted(record, claim, at);
        let event = self.event(ctx, events::INVITATION_ACCEPT, &accepted);
        if self
            .invitations
            .accept(&record.id, &claim.id, at, &[event])
            .await?
        {
            tracing::info!(
                invitation_id = %record.id,
                user_id = %claim.user_id,
                "stale invitation claim accepted: its user exists"
            );
        }
        // Accepted here, or settled otherwise meanwhile: either way the
        // claim is not free.
        Ok(true)
    }

    /// Reserves the invitation behind `token` for a registration of
    /// `user_id`.
    #[tracing::instrument(skip_all)]
    pub async fn claim(
        &self,
        ctx: &CallContext,
        req: ClaimInvitationRequest,
    ) -> Result<ClaimInvitationResponse> {
        ctx.caller.require_cluster()?;
        let token = invitation_token(&req.token)?;
        let user_id = user_id_of("user_id", &req.user_id)?;
        for _ in 0..ATTEMPTS {
            let Some(record) = self
                .invitations
                .get_by_token_id(token.id())
                .await?
                .filter(|r| self.hasher.verify(&token, &r.token_hash))
            else {
                return Err(FieldViolation::new("invitation_token", INVALID_INVITATION).into());
            };
            if record.accepted_at.is_some() {
                return Err(Error::FailedPrecondition(ALREADY_USED));
            }
            let at = now();
            let stale_before = at - self.config.claim_timeout();
            let expected_claim = match &record.claim {
                None => None,
                Some(claim) if claim.at > stale_before => {
                    return Err(Error::FailedPrecondition(ALREADY_USED));
                }
                Some(claim) => {
                    if self.settle_stale_claim(ctx, &record, claim).await? {
                        return Err(Error::FailedPrecondition(ALREADY_USED));
                    }
                    Some(claim.id.as_str())
                }
            };
            if record.expires_at <= at {
                return Err(Error::FailedPrecondition(EXPIRED));
            }
            let claim = ClaimRecord {
                id: uuid::Uuid::new_v4().to_string(),
                user_id: user_id.clone(),
                at,
            };
            if self
                .invitations
                .claim(
                    &record.id,
                    &record.token_id,
                    &claim,
                    expected_claim,
                    stale_before,
                )
                .await?
            {
                tracing::info!(invitation_id = %record.id, %user_id, "invitation claimed");
                let claim_id = claim.id.clone();
                let claimed = InvitationRecord {
                    claim: Some(claim),
                    ..record
                };
                return Ok(ClaimInvitationResponse {
                    invitation: Some(invitation_message(&claimed)),
                    claim_id,
                });
            }
            // Claimed, accepted, replaced or deleted since it was read:
            // look again.
        }
        Err(Error::FailedPrecondition(ALREADY_USED))
    }

    /// The registration of the claim succeeded: the invitation is accepted
    /// by the claim's user. Again with the same claim: the same answer.
    #[tracing::instrument(skip_all)]
    pub async fn accept(
        &self,
        ctx: &CallContext,
        req: SettleInvitationClaimRequest,
    ) -> Result<Invitation> {
        ctx.caller.require_cluster()?;
        let id = uuid_of("invitation_id", &req.invitation_id)?;
        let claim_id = uuid_of("claim_id", &req.claim_id)?;
        for _ in 0..ATTEMPTS {
            let Some(record) = self.invitations.get(&id).await? else {
                return Err(Error::FailedPrecondition(CLAIM_NOT_HELD));
            };
            let Some(claim) = record.claim.clone().filter(|c| c.id == claim_id) else {
                return Err(Error::FailedPrecondition(CLAIM_NOT_HELD));
            };
            if record.accepted_at.is_some() {
                return Ok(invitation_message(&record));
            }
            let at = now();
            let accepted = accepted(&record, &claim, at);
            let event = self.event(ctx, events::INVITATION_ACCEPT, &accepted);
            if self
                .invitations
                .accept(&id, &claim_id, at, &[event])
                .await?
            {
                tracing::info!(invitation_id = %id, user_id = %claim.user_id, "invitation accepted");
                return Ok(invitation_message(&accepted));
            }
        }
        Err(Error::FailedPrecondition(CLAIM_NOT_HELD))
    }

    /// The registration of the claim failed: the token works again. A
    /// claim that is not held is left alone.
    #[tracing::instrument(skip_all)]
    pub async fn release(
        &self,
        ctx: &CallContext,
        req: SettleInvitationClaimRequest,
    ) -> Result<()> {
        ctx.caller.require_cluster()?;
        let id = uuid_of("invitation_id", &req.invitation_id)?;
        let claim_id = uuid_of("claim_id", &req.claim_id)?;
        if self.invitations.release(&id, &claim_id).await? {
            tracing::info!(invitation_id = %id, "invitation claim released");
        }
        Ok(())
    }

    // ---- Mailer (internal) --------------------------------------------

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
        let id = self.mail.enqueue(&mail).await?;
        self.wake_mailer.notify_one();
        tracing::info!(mail_id = %id, template = %mail.template, "mail queued");
        Ok(EnqueueMailResponse { mail_id: id })
    }
}

/// Whether the caller may see `record`: admins (and other services) see
/// every invitation, everybody else the ones they sent.
fn visible(ctx: &CallContext, record: &InvitationRecord) -> bool {
    ctx.caller.is_admin() || ctx.caller.user_id() == Some(record.sent_by.as_str())
}

/// `record` accepted at `at` by the user of `claim`.
fn accepted(record: &InvitationRecord, claim: &ClaimRecord, at: DateTime<Utc>) -> InvitationRecord {
    InvitationRecord {
        accepted_at: Some(at),
        accepted_by: Some(claim.user_id.clone()),
        updated_at: at,
        ..record.clone()
    }
}

/// An invitation token from a request (`CreateUserRequest.invitation_token`
/// as the user registry passes it on): anything but a well-formed `rin`
/// token is [`INVALID_INVITATION`].
fn invitation_token(text: &str) -> Result<Token, FieldViolation> {
    if text.is_empty() {
        return Err(FieldViolation::new("invitation_token", "is required"));
    }
    Token::parse(text)
        .ok()
        .filter(|token| token.kind() == TokenType::Invitation)
        .ok_or_else(|| FieldViolation::new("invitation_token", INVALID_INVITATION))
}

fn user_ids(user_id: &str) -> UserIdentifiers {
    UserIdentifiers {
        user_id: user_id.to_string(),
        email: String::new(),
    }
}

/// The invitation as callers see it: never with its token.
fn invitation_message(record: &InvitationRecord) -> Invitation {
    Invitation {
        email: record.email.clone(),
        token: String::new(),
        expires_at: Some(timestamp(record.expires_at)),
        created_at: Some(timestamp(record.created_at)),
        updated_at: Some(timestamp(record.updated_at)),
        accepted_at: opt_timestamp(record.accepted_at),
        accepted_by: record.accepted_by.as_deref().map(user_ids),
        id: record.id.clone(),
        sent_by: (!record.sent_by.is_empty()).then(|| user_ids(&record.sent_by)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_well_formed_invitation_tokens_pass() {
        let token = Token::generate(TokenType::Invitation);
        assert_eq!(invitation_token(&token.to_string()).unwrap(), token);
        let api_key = Token::generate(TokenType::ApiKey).to_string();
        let truncated = token.to_string()[..20].to_string();
        for bad in [
            "",
            "rin",
            "rin..",
            api_key.as_str(),
            truncated.as_str(),
            "rin.a.b.c",
        ] {
            let error = invitation_token(bad).unwrap_err();
            assert_eq!(error.field, "invitation_token", "{bad}");
            assert!(!error.reason.contains(bad) || bad.is_empty(), "{bad}");
        }
    }

    proptest::proptest! {
        #[test]
        fn parsing_a_token_never_panics(text in ".*") {
            let _ = invitation_token(&text);
        }
    }
}
