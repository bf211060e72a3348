//! The access service's use cases: API keys, login tokens, rights and
//! credential resolution, with their rules. No SQL and no gRPC types beyond
//! the messages here.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use roster_core::auth::{Authenticator, CallContext};
use roster_core::events::{new_event, pack};
use roster_core::list::{FieldMask, Order, Page};
use roster_core::mail::OutgoingMail;
use roster_core::ratelimit::RateLimiter;
use roster_core::rights::RightSet;
use roster_core::time::{from_timestamp, now, opt_timestamp, timestamp};
use roster_core::token::{Token, TokenHasher, TokenType};
use roster_core::validation::{FieldViolation, max_chars, no_control_chars};
use roster_proto::v1::{
    ApiKey, ApiKeyEventData, ApiKeys, AuthInfoResponse, CreateLoginTokenRequest,
    CreateLoginTokenResponse, CreateUserApiKeyRequest, DeleteUserApiKeyRequest, EntityIdentifiers,
    Event, GetUserApiKeyRequest, ListUserApiKeysRequest, LoginToken, Right, Rights,
    UpdateUserApiKeyRequest, UserIdentifiers, entity_identifiers,
};

use crate::config::AccessConfig;
use crate::error::{Error, Result};
use crate::events;
use crate::grant::{grant, limit_to_pending_actions};
use crate::sessions::SessionDirectory;
use crate::store::{AccessStore, ApiKeyRecord, KeyOrder, KeyQuery, LoginTokenRecord, StoreError};
use crate::users::{Subject, UserDirectory};

/// The longest API key name.
pub const MAX_NAME_CHARS: usize = 50;

/// The orders ListAPIKeys accepts.
const KEY_ORDERS: &[&str] = &["api_key_id", "name", "created_at", "expires_at"];

/// The paths UpdateAPIKey accepts.
const UPDATE_PATHS: &[&str] = &["rights", "name", "expires_at"];

/// How much earlier than its user a key may have been created and still be
/// that user's: clocks of two services may disagree a little. A key older
/// than this belongs to a purged account whose ID was taken again.
const CLOCK_SLACK_SECS: i64 = 5;

/// The one message for every token that does not resolve, so a caller
/// learns nothing about which part was wrong.
const INVALID_TOKEN: &str = "invalid token";

/// The answer for a credential of a deactivated or administrator-locked
/// user: its holder knows the account already, and learns why it stopped.
const INACTIVE: &str = "account_inactive: the user is deactivated or locked";

/// API keys, login tokens, rights and credential resolution.
pub struct AccessService {
    store: Arc<dyn AccessStore>,
    users: Arc<dyn UserDirectory>,
    sessions: Arc<dyn SessionDirectory>,
    hasher: TokenHasher,
    auth: Arc<Authenticator>,
    config: AccessConfig,
    login_token_limiter: RateLimiter,
}

impl AccessService {
    pub fn new(
        store: Arc<dyn AccessStore>,
        users: Arc<dyn UserDirectory>,
        sessions: Arc<dyn SessionDirectory>,
        hasher: TokenHasher,
        auth: Arc<Authenticator>,
        config: AccessConfig,
    ) -> Self {
        let login_token_limiter = RateLimiter::new(config.login_token_rate_limit);
        Self {
            store,
            users,
            sessions,
            hasher,
            auth,
            config,
            login_token_limiter,
        }
    }

    fn event(
        &self,
        ctx: &CallContext,
        name: &str,
        user_id: &str,
        data: Option<prost_types::Any>,
    ) -> Event {
        let mut event = new_event(name, user_ids_event(user_id), data);
        ctx.stamp(&mut event);
        event
    }

    /// Checks `right` on `user_id`. Callers acting on another user (admins
    /// through universal rights, other services) learn NOT_FOUND for users
    /// that do not exist; everybody else got PERMISSION_DENIED already.
    async fn authorize(&self, ctx: &CallContext, user_id: &str, right: Right) -> Result<()> {
        ctx.caller.require(user_id, right)?;
        if ctx.caller.user_id() != Some(user_id) {
            match self.users.subject(user_id).await? {
                Some(subject) if !subject.deleted => {}
                _ => return Err(Error::NotFound("user")),
            }
        }
        Ok(())
    }

    // ---- UserAccess ---------------------------------------------------

    /// The caller's rights on the user.
    pub async fn list_rights(&self, ctx: &CallContext, ids: UserIdentifiers) -> Result<Rights> {
        ctx.caller.require_authenticated()?;
        let user_id = user_id_of(Some(&ids), "")?;
        Ok(ctx.caller.rights_on(&user_id).to_proto())
    }

    #[tracing::instrument(skip_all)]
    pub async fn create_api_key(
        &self,
        ctx: &CallContext,
        req: CreateUserApiKeyRequest,
    ) -> Result<ApiKey> {
        let user_id = user_id_of(req.user_ids.as_ref(), "user_ids")?;
        ctx.caller.require(&user_id, Right::UserSettingsApiKeys)?;
        let name = key_name(&req.name, "name")?;
        let rights = key_rights(&req.rights, "rights")?;
        let expires_at = expiry(req.expires_at.as_ref(), "expires_at")?;
        no_escalation(ctx, &user_id, RightSet::from_i32s(&rights))?;
        self.authorize(ctx, &user_id, Right::UserSettingsApiKeys)
            .await?;

        let token = Token::generate(TokenType::ApiKey);
        let at = now();
        let record = ApiKeyRecord {
            id: token.id().to_string(),
            user_id: user_id.clone(),
            secret_hash: self.hasher.hash(&token),
            name,
            rights,
            created_at: at,
            updated_at: at,
            expires_at,
        };
        let mut api_key = api_key_message(&record);
        let event = self.event(
            ctx,
            events::API_KEY_CREATE,
            &user_id,
            Some(pack(&ApiKeyEventData {
                api_key: Some(api_key.clone()),
                changed_paths: Vec::new(),
            })),
        );
        self.store.insert_api_key(&record, &[event]).await?;
        tracing::info!(%user_id, api_key_id = %record.id, "API key created");
        api_key.key = token.to_string();
        Ok(api_key)
    }

    #[tracing::instrument(skip_all)]
    pub async fn list_api_keys(
        &self,
        ctx: &CallContext,
        req: ListUserApiKeysRequest,
    ) -> Result<(ApiKeys, u64)> {
        let user_id = user_id_of(req.user_ids.as_ref(), "user_ids")?;
        ctx.caller.require(&user_id, Right::UserSettingsApiKeys)?;
        let order = Order::parse(&req.order, KEY_ORDERS, "api_key_id")?;
        let page = Page::parse(req.limit, req.page)?;
        self.authorize(ctx, &user_id, Right::UserSettingsApiKeys)
            .await?;
        let (keys, total) = self
            .store
            .list_api_keys(KeyQuery {
                user_id: &user_id,
                order: match order.field {
                    "name" => KeyOrder::Name,
                    "created_at" => KeyOrder::CreatedAt,
                    "expires_at" => KeyOrder::ExpiresAt,
                    _ => KeyOrder::Id,
                },
                descending: order.descending,
                limit: page.limit(),
                offset: page.offset(),
            })
            .await?;
        Ok((
            ApiKeys {
                api_keys: keys.iter().map(api_key_message).collect(),
            },
            total,
        ))
    }

    /// The key `key_id` of `user_id`, after the rights check.
    async fn key_of(
        &self,
        ctx: &CallContext,
        user_id: &str,
        key_id: &str,
        field: &str,
    ) -> Result<ApiKeyRecord> {
        let key_id = key_id_of(key_id, field)?;
        self.authorize(ctx, user_id, Right::UserSettingsApiKeys)
            .await?;
        match self.store.get_api_key(&key_id).await? {
            Some(key) if key.user_id == user_id => Ok(key),
            _ => Err(Error::NotFound("api_key")),
        }
    }

    #[tracing::instrument(skip_all)]
    pub async fn get_api_key(
        &self,
        ctx: &CallContext,
        req: GetUserApiKeyRequest,
    ) -> Result<ApiKey> {
        let user_id = user_id_of(req.user_ids.as_ref(), "user_ids")?;
        ctx.caller.require(&user_id, Right::UserSettingsApiKeys)?;
        let key = self.key_of(ctx, &user_id, &req.key_id, "key_id").await?;
        Ok(api_key_message(&key))
    }

    #[tracing::instrument(skip_all)]
    pub async fn update_api_key(
        &self,
        ctx: &CallContext,
        req: UpdateUserApiKeyRequest,
    ) -> Result<ApiKey> {
        let user_id = user_id_of(req.user_ids.as_ref(), "user_ids")?;
        ctx.caller.require(&user_id, Right::UserSettingsApiKeys)?;
        let input = req
            .api_key
            .ok_or_else(|| FieldViolation::new("api_key", "is required"))?;
        let mut mask = FieldMask::parse(
            req.field_mask.as_ref(),
            UPDATE_PATHS,
            &["id", "key", "created_at", "updated_at"],
        )?;
        if mask.is_empty() {
            mask.insert("rights");
            mask.insert("name");
        }
        let name = if mask.contains("name") {
            Some(key_name(&input.name, "api_key.name")?)
        } else {
            None
        };
        let rights = if mask.contains("rights") {
            if input.rights.is_empty() {
                return Err(FieldViolation::new(
                    "api_key.rights",
                    "must not be empty (delete the key with DeleteAPIKey)",
                )
                .into());
            }
            Some(key_rights(&input.rights, "api_key.rights")?)
        } else {
            None
        };
        let expires_at = if mask.contains("expires_at") {
            Some(expiry(input.expires_at.as_ref(), "api_key.expires_at")?)
        } else {
            None
        };
        let current = self.key_of(ctx, &user_id, &input.id, "api_key.id").await?;

        let mut updated = current.clone();
        let mut changed = Vec::new();
        if let Some(name) = name.filter(|n| *n != current.name) {
            updated.name = name;
            changed.push("name".to_string());
        }
        if let Some(rights) = rights {
            // The caller must hold every right the change adds and every
            // right it takes away, so nobody edits rights beyond their own.
            let before = RightSet::from_i32s(&current.rights);
            let after = RightSet::from_i32s(&rights);
            no_escalation(
                ctx,
                &user_id,
                after.minus(before).union(before.minus(after)),
            )?;
            if sorted(&rights) != sorted(&current.rights) {
                updated.rights = rights;
                changed.push("rights".to_string());
            }
        }
        if let Some(expires_at) = expires_at.filter(|e| *e != current.expires_at) {
            updated.expires_at = expires_at;
            changed.push("expires_at".to_string());
        }
        if changed.is_empty() {
            return Ok(api_key_message(&current));
        }
        updated.updated_at = now();
        let message = api_key_message(&updated);
        let event = self.event(
            ctx,
            events::API_KEY_UPDATE,
            &user_id,
            Some(pack(&ApiKeyEventData {
                api_key: Some(message.clone()),
                changed_paths: changed,
            })),
        );
        if !self.store.update_api_key(&updated, &[event]).await? {
            return Err(Error::NotFound("api_key"));
        }
        // The change holds here at once; other processes drop their cached
        // answers when the event reaches them.
        self.auth.forget_user(&user_id);
        tracing::info!(%user_id, api_key_id = %updated.id, "API key updated");
        Ok(message)
    }

    #[tracing::instrument(skip_all)]
    pub async fn delete_api_key(
        &self,
        ctx: &CallContext,
        req: DeleteUserApiKeyRequest,
    ) -> Result<()> {
        let user_id = user_id_of(req.user_ids.as_ref(), "user_ids")?;
        ctx.caller.require(&user_id, Right::UserSettingsApiKeys)?;
        let key = self.key_of(ctx, &user_id, &req.key_id, "key_id").await?;
        let event = self.event(
            ctx,
            events::API_KEY_DELETE,
            &user_id,
            Some(pack(&ApiKeyEventData {
                api_key: Some(api_key_message(&key)),
                changed_paths: Vec::new(),
            })),
        );
        if !self
            .store
            .delete_api_key(&user_id, &key.id, &[event])
            .await?
        {
            return Err(Error::NotFound("api_key"));
        }
        self.auth.forget_user(&user_id);
        tracing::info!(%user_id, api_key_id = %key.id, "API key deleted");
        Ok(())
    }

    /// Creates a login token. Anonymous callers get the same answer whether
    /// or not the user exists; the token itself is only returned to an
    /// admin creating it for a user who is not an admin.
    #[tracing::instrument(skip_all)]
    pub async fn create_login_token(
        &self,
        ctx: &CallContext,
        req: CreateLoginTokenRequest,
    ) -> Result<CreateLoginTokenResponse> {
        if !self.config.login_tokens_enabled {
            return Err(Error::FailedPrecondition(
                "login tokens are disabled (access.login_tokens_enabled)",
            ));
        }
        let user_id = user_id_of(req.user_ids.as_ref(), "user_ids")?;
        let admin = ctx.caller.is_admin();
        if req.skip_email && !admin {
            return Err(Error::PermissionDenied(
                "only admins may skip the email (skip_email)".into(),
            ));
        }
        if !admin
            && !self
                .login_token_limiter
                .allow(&[&ctx.client_key(), &format!("user:{user_id}")])
        {
            return Err(Error::RateLimited);
        }
        let subject = match self.users.subject(&user_id).await? {
            Some(subject) if !subject.deleted => subject,
            _ if admin => return Err(Error::NotFound("user")),
            _ => return Ok(CreateLoginTokenResponse::default()),
        };
        // A machine never logs in; to anyone but an admin the answer is the
        // one an unknown user gets, so nobody learns which IDs are machines.
        if subject.machine {
            if admin {
                return Err(Error::FailedPrecondition(
                    "machine_user: a machine user has no login; it uses API keys",
                ));
            }
            return Ok(CreateLoginTokenResponse::default());
        }
        // A login link goes only to an address the user has proven, or an
        // address-changing credential would log in as the user. To anyone
        // but an admin the answer is the one an unknown user gets.
        if !subject.email_validated && !req.skip_email {
            if admin {
                return Err(Error::FailedPrecondition(
                    "email_not_validated: a login token is only mailed to a validated address",
                ));
            }
            tracing::info!(%user_id, "no login token: address not validated");
            return Ok(CreateLoginTokenResponse::default());
        }
        // Nor does a locked or deactivated account get one: it could not be
        // used now and would only lie in wait for the unlock.
        if subject.suspended {
            if admin {
                return Err(Error::FailedPrecondition(
                    "account_inactive: the user is locked or deactivated",
                ));
            }
            tracing::info!(%user_id, "no login token: account locked or deactivated");
            return Ok(CreateLoginTokenResponse::default());
        }
        let token = Token::generate(TokenType::LoginToken);
        let at = now();
        let ttl = i64::try_from(self.config.login_token_ttl_secs).unwrap_or(i64::MAX);
        let record = LoginTokenRecord {
            id: token.id().to_string(),
            user_id: user_id.clone(),
            secret_hash: self.hasher.hash(&token),
            created_at: at,
            expires_at: at + Duration::try_seconds(ttl).unwrap_or(Duration::MAX),
            used_at: None,
        };
        let event = self.event(
            ctx,
            events::LOGIN_TOKEN_CREATE,
            &user_id,
            Some(pack(&login_token_message(&record))),
        );
        let mails = if req.skip_email {
            Vec::new()
        } else {
            vec![
                OutgoingMail::new("login_token", &subject.email, &subject.name)
                    .with("user_id", &user_id)
                    .with("secret_token", token.to_string())
                    .with(
                        "expires_at",
                        roster_core::mail::format_time(record.expires_at),
                    ),
            ]
        };
        match self
            .store
            .insert_login_token(&record, self.config.max_live_login_tokens, &[event], &mails)
            .await
        {
            Ok(()) => {}
            // A token already waits in the user's mail. Only admins learn
            // so: to anyone else the answer would reveal that the account
            // exists.
            Err(StoreError::TooManyLoginTokens) if !admin => {
                tracing::info!(%user_id, "login token refused: too many live ones");
                return Ok(CreateLoginTokenResponse::default());
            }
            Err(error) => return Err(error.into()),
        }
        tracing::info!(%user_id, login_token_id = %record.id, "login token created");
        let reveal = admin && !subject.admin && ctx.caller.user_id() != Some(user_id.as_str());
        Ok(CreateLoginTokenResponse {
            token: if reveal {
                token.to_string()
            } else {
                String::new()
            },
        })
    }

    // ---- EntityAccess (internal) --------------------------------------

    /// Uses up a login token and says whose it was.
    #[tracing::instrument(skip_all)]
    pub async fn consume_login_token(
        &self,
        ctx: &CallContext,
        token: &str,
    ) -> Result<UserIdentifiers> {
        require_cluster(ctx)?;
        const INVALID: &str = "invalid login token";
        let token = Token::parse(token).map_err(|_| Error::Unauthenticated(INVALID))?;
        if token.kind() != TokenType::LoginToken {
            return Err(Error::Unauthenticated(INVALID));
        }
        let Some(record) = self.store.get_login_token(token.id()).await? else {
            return Err(Error::Unauthenticated(INVALID));
        };
        let at = now();
        if !self.hasher.verify(&token, &record.secret_hash) || !record.is_live(at) {
            return Err(Error::Unauthenticated(INVALID));
        }
        // A deleted user logs in no more; the token stays unused, should
        // the user be restored within its lifetime.
        // Nor does a deactivated or locked one; the token stays unused. A
        // token minted before a deactivation is ended with the sessions, so
        // it starts none after the reactivation either.
        match self.users.subject(&record.user_id).await? {
            Some(subject) if subject.suspended && !subject.deleted => {
                return Err(Error::Unauthenticated(INACTIVE));
            }
            Some(subject)
                if subject.sessions_ended_at.is_some_and(|ended| {
                    record.created_at <= ended + Duration::seconds(CLOCK_SLACK_SECS)
                }) =>
            {
                return Err(Error::Unauthenticated(INVALID));
            }
            Some(subject) if !subject.deleted => {}
            _ => return Err(Error::Unauthenticated(INVALID)),
        }
        let mut used = record.clone();
        used.used_at = Some(at);
        let event = self.event(
            ctx,
            events::LOGIN_TOKEN_USE,
            &record.user_id,
            Some(pack(&login_token_message(&used))),
        );
        if !self.store.use_login_token(&record.id, at, &[event]).await? {
            return Err(Error::Unauthenticated(INVALID));
        }
        Ok(UserIdentifiers {
            user_id: record.user_id,
            email: String::new(),
        })
    }

    /// Resolves a bearer token to what it may do.
    pub async fn auth_info(&self, ctx: &CallContext, token: &str) -> Result<AuthInfoResponse> {
        require_cluster(ctx)?;
        let token = Token::parse(token).map_err(|_| Error::Unauthenticated(INVALID_TOKEN))?;
        match token.kind() {
            TokenType::ApiKey => self.api_key_info(&token).await,
            TokenType::LoginToken => Err(Error::Unauthenticated(
                "a login token is not a credential: exchange it for a session with Authentication.LoginWithToken",
            )),
            TokenType::Session => self.session_info(&token).await,
            TokenType::Invitation | TokenType::LoginChallenge => {
                Err(Error::Unauthenticated(INVALID_TOKEN))
            }
        }
    }

    /// The live, undeleted user `user_id`, or UNAUTHENTICATED; also for a
    /// deactivated or administrator-locked user.
    async fn live_subject(&self, user_id: &str) -> Result<Subject> {
        match self.users.subject(user_id).await? {
            Some(subject) if !subject.deleted && subject.suspended => {
                Err(Error::Unauthenticated(INACTIVE))
            }
            Some(subject) if !subject.deleted => Ok(subject),
            _ => Err(Error::Unauthenticated(INVALID_TOKEN)),
        }
    }

    /// A session carries every right of its user (within the state's
    /// limits), none while the password must be changed, and only what
    /// the user's pending required actions need while any is pending.
    async fn session_info(&self, token: &Token) -> Result<AuthInfoResponse> {
        let Some(session) = self.sessions.session(&token.to_string()).await? else {
            return Err(Error::Unauthenticated(INVALID_TOKEN));
        };
        let subject = self.live_subject(&session.user_id).await?;
        if !made_for(session.created_at, &subject) {
            return Err(Error::Unauthenticated(INVALID_TOKEN));
        }
        // A deactivation ends sessions for good: one made before it stays
        // refused after reactivation, even before the sessions service has
        // deleted it. (A login that raced the deactivation is ended by the
        // sessions service, which ends every session of a user still
        // deactivated when it handles the event.)
        if let (Some(created), Some(ended)) = (session.created_at, subject.sessions_ended_at)
            && created <= ended
        {
            return Err(Error::Unauthenticated(INVALID_TOKEN));
        }
        let carried = if session.password_update_only {
            RightSet::EMPTY
        } else {
            RightSet::all()
        };
        let mut granted = limit_to_pending_actions(
            grant(carried, &subject, self.config.require_validated_email),
            &subject,
        );
        if session.password_update_only {
            granted
                .warnings
                .push("the password must be changed first (UserRegistry.UpdatePassword)".into());
        }
        Ok(AuthInfoResponse {
            user_ids: Some(UserIdentifiers {
                user_id: session.user_id,
                email: String::new(),
            }),
            rights: Some(granted.own.to_proto()),
            universal_rights: Some(granted.universal.to_proto()),
            is_admin: granted.is_admin,
            state: subject.state as i32,
            token_type: "session".into(),
            token_id: session.session_id,
            expires_at: opt_timestamp(session.expires_at),
            warnings: granted.warnings,
            password_update_only: session.password_update_only,
        })
    }

    async fn api_key_info(&self, token: &Token) -> Result<AuthInfoResponse> {
        let Some(key) = self.store.get_api_key(token.id()).await? else {
            return Err(Error::Unauthenticated(INVALID_TOKEN));
        };
        if !self.hasher.verify(token, &key.secret_hash) {
            return Err(Error::Unauthenticated(INVALID_TOKEN));
        }
        if key.expires_at.is_some_and(|at| at <= Utc::now()) {
            return Err(Error::Unauthenticated(
                "api_key_expired: the API key expired",
            ));
        }
        let subject = match self.users.subject(&key.user_id).await? {
            Some(subject) if !subject.deleted && made_for(Some(key.created_at), &subject) => {
                subject
            }
            _ => return Err(Error::Unauthenticated(INVALID_TOKEN)),
        };
        // Suspended, not deleted: the key works again after reactivation or
        // unlock.
        if subject.suspended {
            return Err(Error::Unauthenticated(INACTIVE));
        }
        let granted = grant(
            RightSet::from_i32s(&key.rights),
            &subject,
            self.config.require_validated_email,
        );
        Ok(AuthInfoResponse {
            user_ids: Some(UserIdentifiers {
                user_id: key.user_id.clone(),
                email: String::new(),
            }),
            rights: Some(granted.own.to_proto()),
            universal_rights: Some(granted.universal.to_proto()),
            is_admin: granted.is_admin,
            state: subject.state as i32,
            token_type: "api_key".into(),
            token_id: key.id,
            expires_at: opt_timestamp(key.expires_at),
            warnings: granted.warnings,
            password_update_only: false,
        })
    }

    /// Forgets every credential of a purged user, once the user registry
    /// confirms that the user is gone: events are input like any other, so
    /// a forged or stray `user.purge` for a live (or only soft-deleted)
    /// user deletes nothing.
    pub async fn forget_user_credentials(&self, user_id: &str) -> Result<u64> {
        if let Some(subject) = self.users.subject(user_id).await? {
            tracing::warn!(
                %user_id,
                deleted = subject.deleted,
                "a user.purge event names a user the registry still has; its credentials stay"
            );
            return Ok(0);
        }
        let removed = self.store.delete_user_credentials(user_id).await?;
        self.auth.forget_user(user_id);
        if removed > 0 {
            tracing::info!(%user_id, removed, "credentials of a purged user deleted");
        }
        Ok(removed)
    }
}

/// Whether a credential made at `created_at` can be `subject`'s: one made
/// before the user existed (beyond the clock slack) belonged to a purged
/// account whose ID was taken again.
fn made_for(created_at: Option<DateTime<Utc>>, subject: &Subject) -> bool {
    created_at.is_some_and(|at| at + Duration::seconds(CLOCK_SLACK_SECS) >= subject.created_at)
}

fn require_cluster(ctx: &CallContext) -> Result<()> {
    Ok(ctx.caller.require_cluster()?)
}

/// Refuses rights the caller does not hold on `user_id`, naming them.
fn no_escalation(ctx: &CallContext, user_id: &str, wanted: RightSet) -> Result<()> {
    let missing = wanted.minus(ctx.caller.rights_on(user_id));
    if missing.is_empty() {
        return Ok(());
    }
    let names: Vec<&str> = missing.to_vec().iter().map(|r| r.as_str_name()).collect();
    Err(Error::PermissionDenied(format!(
        "insufficient_rights: the caller lacks {}",
        names.join(", ")
    )))
}

fn user_ids_event(user_id: &str) -> Vec<EntityIdentifiers> {
    vec![EntityIdentifiers {
        ids: Some(entity_identifiers::Ids::UserIds(UserIdentifiers {
            user_id: user_id.to_string(),
            email: String::new(),
        })),
    }]
}

/// The user ID of `ids`, checked for shape (`<field>.user_id`).
fn user_id_of(ids: Option<&UserIdentifiers>, field: &str) -> Result<String, FieldViolation> {
    let path = if field.is_empty() {
        "user_id".to_string()
    } else {
        format!("{field}.user_id")
    };
    let Some(ids) = ids else {
        return Err(FieldViolation::new(field, "is required"));
    };
    roster_core::validation::user_id(&path, &ids.user_id)
}

/// A key ID as [`Token`] writes it.
fn key_id_of(id: &str, field: &str) -> Result<String, FieldViolation> {
    if id.is_empty() {
        return Err(FieldViolation::new(field, "is required"));
    }
    if id.len() != roster_core::token::ID_CHARS
        || !id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b))
    {
        return Err(FieldViolation::new(field, "is not an API key ID"));
    }
    Ok(id.to_string())
}

fn key_name(name: &str, field: &str) -> Result<String, FieldViolation> {
    max_chars(field, name, MAX_NAME_CHARS)?;
    no_control_chars(field, name)?;
    Ok(name.to_string())
}

/// At least one right, each known and at most once.
fn key_rights(rights: &[i32], field: &str) -> Result<Vec<i32>, FieldViolation> {
    if rights.is_empty() {
        return Err(FieldViolation::new(field, "must hold at least one right"));
    }
    let mut seen = Vec::with_capacity(rights.len());
    for (i, &number) in rights.iter().enumerate() {
        match Right::try_from(number) {
            Ok(Right::Invalid) | Err(_) => {
                return Err(FieldViolation::new(
                    format!("{field}[{i}]"),
                    format!("{number} is not a right"),
                ));
            }
            Ok(_) if seen.contains(&number) => {
                return Err(FieldViolation::new(
                    format!("{field}[{i}]"),
                    "repeats a right",
                ));
            }
            Ok(_) => seen.push(number),
        }
    }
    Ok(seen)
}

/// An optional expiry, which must lie in the future.
fn expiry(
    at: Option<&prost_types::Timestamp>,
    field: &str,
) -> Result<Option<DateTime<Utc>>, FieldViolation> {
    let Some(at) = at else {
        return Ok(None);
    };
    let at =
        from_timestamp(at).ok_or_else(|| FieldViolation::new(field, "is not a valid timestamp"))?;
    if at <= Utc::now() {
        return Err(FieldViolation::new(field, "must be in the future"));
    }
    Ok(Some(at))
}

/// The rights in enum-number order, to compare lists as sets.
fn sorted(rights: &[i32]) -> Vec<i32> {
    let mut rights = rights.to_vec();
    rights.sort_unstable();
    rights
}

fn api_key_message(record: &ApiKeyRecord) -> ApiKey {
    ApiKey {
        id: record.id.clone(),
        key: String::new(),
        name: record.name.clone(),
        rights: record.rights.clone(),
        created_at: Some(timestamp(record.created_at)),
        updated_at: Some(timestamp(record.updated_at)),
        expires_at: opt_timestamp(record.expires_at),
    }
}

fn login_token_message(record: &LoginTokenRecord) -> LoginToken {
    LoginToken {
        user_ids: Some(UserIdentifiers {
            user_id: record.user_id.clone(),
            email: String::new(),
        }),
        created_at: Some(timestamp(record.created_at)),
        updated_at: Some(timestamp(record.used_at.unwrap_or(record.created_at))),
        expires_at: Some(timestamp(record.expires_at)),
        token: String::new(),
        used: record.used_at.is_some(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rights_must_be_known_unique_and_present() {
        assert!(key_rights(&[], "rights").is_err());
        assert!(key_rights(&[0], "rights").is_err());
        assert!(key_rights(&[9999], "rights").is_err());
        let repeated = key_rights(&[1, 2, 1], "rights").unwrap_err();
        assert_eq!(repeated.field, "rights[2]");
        assert_eq!(key_rights(&[14, 1], "rights").unwrap(), vec![14, 1]);
    }

    #[test]
    fn user_ids_are_checked_for_shape() {
        let ids = |id: &str| UserIdentifiers {
            user_id: id.into(),
            email: String::new(),
        };
        assert!(user_id_of(Some(&ids("alice-1")), "user_ids").is_ok());
        for bad in ["", "a", "-a", "a-", "a--b", "Alice", &"a".repeat(37)] {
            let err = user_id_of(Some(&ids(bad)), "user_ids").unwrap_err();
            assert_eq!(err.field, "user_ids.user_id", "{bad}");
        }
        assert_eq!(user_id_of(None, "user_ids").unwrap_err().field, "user_ids");
    }

    #[test]
    fn key_ids_are_token_ids() {
        let token = Token::generate(TokenType::ApiKey);
        assert!(key_id_of(token.id(), "key_id").is_ok());
        assert!(key_id_of("", "key_id").is_err());
        assert!(key_id_of("ABCDEFGHIJKLMNOPQRSTUVWX", "key_id").is_err());
        assert!(key_id_of("short", "key_id").is_err());
    }

    proptest::proptest! {
        #[test]
        fn parsing_input_never_panics(id in ".*", name in ".*", rights in proptest::collection::vec(proptest::num::i32::ANY, 0..8)) {
            let _ = key_id_of(&id, "key_id");
            let _ = key_name(&name, "name");
            let _ = key_rights(&rights, "rights");
            let _ = user_id_of(Some(&UserIdentifiers { user_id: id, email: String::new() }), "user_ids");
        }
    }
}
