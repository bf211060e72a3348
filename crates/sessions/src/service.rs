//! The sessions service's use cases: logging in and out, listing and ending
//! sessions (wrong passwords are counted by the user registry, which checks
//! them), and checking session tokens for
//! the access service.

use std::sync::Arc;

use chrono::Duration;
use roster_core::auth::{Authenticator, CallContext};
use roster_core::events::{new_event, pack};
use roster_core::list::{Order, Page};
use roster_core::metrics::{self, login_outcome};
use roster_core::ratelimit::RateLimiter;
use roster_core::time::{Clock, timestamp};
use roster_core::token::{Token, TokenHasher, TokenType};
use roster_core::validation::FieldViolation;
use roster_proto::v1::{
    AuthenticationMethodType, CheckSessionResponse, CompleteLoginRequest, EntityIdentifiers, Event,
    LoginFailureEventData, LoginRequest, LoginResponse, Right, State, UserIdentifiers, UserSession,
    UserSessionIdentifiers, UserSessions, check_second_factor_request, complete_login_request,
    entity_identifiers,
};

use crate::config::SessionsConfig;
use crate::error::{Error, Result};
use crate::events;
use crate::peers::{Account, PasswordCheck, Peers};
use crate::store::{ChallengeRecord, SessionOrder, SessionQuery, SessionRecord, SessionStore};

/// The orders List accepts.
const SESSION_ORDERS: &[&str] = &["created_at", "updated_at", "expires_at"];

/// The one answer to a wrong password or an unknown user.
const WRONG: &str = "incorrect user or password";

/// The one answer to a failed second step: a wrong, reused or stale code,
/// a bad challenge or a locked account alike.
const WRONG_CODE: &str = "incorrect or expired challenge or code";

/// How long a login challenge lives, in seconds.
pub const CHALLENGE_TTL_SECS: i64 = 5 * 60;
/// Codes (and mailed codes) one challenge allows.
pub const CHALLENGE_ATTEMPTS: i32 = 5;

/// The longest user agent kept with a session.
const MAX_USER_AGENT_CHARS: usize = 512;

/// Logins and sessions.
pub struct SessionsService {
    store: Arc<dyn SessionStore>,
    peers: Arc<dyn Peers>,
    hasher: TokenHasher,
    auth: Arc<Authenticator>,
    clock: Arc<dyn Clock>,
    config: SessionsConfig,
    limiter: RateLimiter,
}

impl SessionsService {
    pub fn new(
        store: Arc<dyn SessionStore>,
        peers: Arc<dyn Peers>,
        hasher: TokenHasher,
        auth: Arc<Authenticator>,
        clock: Arc<dyn Clock>,
        config: SessionsConfig,
    ) -> Self {
        let limiter = RateLimiter::new(config.login_rate_limit);
        Self {
            store,
            peers,
            hasher,
            auth,
            clock,
            config,
            limiter,
        }
    }

    fn event(
        &self,
        ctx: &CallContext,
        name: &str,
        user_id: Option<&str>,
        data: Option<prost_types::Any>,
    ) -> Event {
        let identifiers = user_id.map(user_ids_event).unwrap_or_default();
        let mut event = new_event(name, identifiers, data);
        ctx.stamp(&mut event);
        event
    }

    fn failure_event(
        &self,
        ctx: &CallContext,
        name: &str,
        user_id: Option<&str>,
        reason: &str,
        failures: u32,
    ) -> Event {
        self.event(
            ctx,
            name,
            user_id,
            Some(pack(&LoginFailureEventData {
                reason: reason.to_string(),
                failures,
                locked_until: None,
            })),
        )
    }

    fn seconds(secs: u64) -> Duration {
        Duration::seconds(i64::try_from(secs).unwrap_or(i64::MAX))
    }

    fn allow_attempt(&self, ctx: &CallContext) -> Result<()> {
        if self.limiter.allow(&[&ctx.client_key()]) {
            Ok(())
        } else {
            Err(Error::RateLimited)
        }
    }

    // ---- Authentication ------------------------------------------------

    /// Logs in with a password.
    #[tracing::instrument(skip_all)]
    pub async fn login(&self, ctx: &CallContext, req: LoginRequest) -> Result<LoginResponse> {
        let ids = req
            .user_ids
            .ok_or_else(|| FieldViolation::new("user_ids", "is required"))?;
        if ids.user_id.is_empty() == ids.email.is_empty() {
            return Err(
                FieldViolation::new("user_ids", "give exactly one of user_id and email").into(),
            );
        }
        if req.password.is_empty() {
            return Err(FieldViolation::new("password", "is required").into());
        }
        self.allow_attempt(ctx)?;
        let checked = self
            .peers
            .check_password(ids, req.password, ctx.client_key())
            .await?;
        let (account, reason, failures) = match checked {
            PasswordCheck::UnknownUser => (None, login_outcome::UNKNOWN_USER, 0),
            PasswordCheck::Known {
                throttled: true,
                account,
                ..
            } => (Some(account), login_outcome::THROTTLED, 0),
            PasswordCheck::Known {
                valid: false,
                account,
                failures,
                ..
            } => (Some(account), login_outcome::WRONG_PASSWORD, failures),
            PasswordCheck::Known {
                account,
                second_factors,
                ..
            } => {
                if let Err(error) = self.refuse_inactive(ctx, &account).await {
                    metrics::login(login_outcome::STATE);
                    return Err(error);
                }
                if !second_factors.is_empty() {
                    return self.challenge(&account, second_factors, "password").await;
                }
                let response = self.start_session(ctx, &account, "password").await?;
                metrics::login(login_outcome::SUCCESS);
                return Ok(response);
            }
        };
        metrics::login(reason);
        // Unknown user, wrong password, or any password while the account
        // is locked for this client: one answer, so a guesser learns
        // nothing (the user registry counted the guess).
        let user_id = account.as_ref().map(|a| a.user_id.as_str());
        let event = self.failure_event(ctx, events::LOGIN_FAILED, user_id, reason, failures);
        self.store.record_events(&[event]).await?;
        Err(Error::Unauthenticated(WRONG))
    }

    /// Logs in with a login token.
    #[tracing::instrument(skip_all)]
    pub async fn login_with_token(
        &self,
        ctx: &CallContext,
        token: String,
    ) -> Result<LoginResponse> {
        if token.is_empty() {
            return Err(FieldViolation::new("token", "is required").into());
        }
        self.allow_attempt(ctx)?;
        let user_id = self
            .peers
            .consume_login_token(token)
            .await
            .map_err(|status| {
                if status.code() == tonic::Code::Unauthenticated {
                    Error::Unauthenticated("invalid login token")
                } else {
                    Error::Caller(status)
                }
            })?;
        let account = self
            .peers
            .account(&user_id)
            .await?
            .ok_or(Error::Unauthenticated("invalid login token"))?;
        self.refuse_inactive(ctx, &account).await?;
        // A token proves the mailbox, so it logs in while the password is
        // locked (the lock is about guessed passwords), and lifts the lock:
        // whoever guessed the password into a lock cannot keep its owner
        // out. Wrong second-factor codes stay counted (in windows of their
        // own), so the token buys no new code guesses.
        self.peers.forget_password_failures(&user_id).await?;
        let factors = self.peers.active_second_factors(&user_id).await?;
        match beyond_the_mailbox(factors) {
            Some(methods) => self.challenge(&account, methods, "login_token").await,
            None => self.start_session(ctx, &account, "login_token").await,
        }
    }

    /// Answers a right first step of a user with second factors: a
    /// challenge to complete with one of `methods`, and no session yet.
    async fn challenge(
        &self,
        account: &Account,
        methods: Vec<i32>,
        first_factor: &str,
    ) -> Result<LoginResponse> {
        let token = Token::generate(TokenType::LoginChallenge);
        let now = self.clock.now();
        let record = ChallengeRecord {
            id: token.id().to_string(),
            user_id: account.user_id.clone(),
            secret_hash: self.hasher.hash(&token),
            created_at: now,
            expires_at: now + Duration::seconds(CHALLENGE_TTL_SECS),
            attempts: 0,
            methods,
            first_factor: first_factor.to_string(),
            password_update_only: account.require_password_update,
        };
        self.store.insert_challenge(&record, now).await?;
        tracing::info!(user_id = %account.user_id, first_factor, "second factor required");
        Ok(LoginResponse {
            session_ids: Some(UserSessionIdentifiers {
                user_ids: Some(user_ids(&account.user_id)),
                session_id: String::new(),
            }),
            token: String::new(),
            expires_at: None,
            password_update_required: false,
            second_factor_required: true,
            challenge: token.to_string(),
            second_factor_methods: record.methods,
            challenge_expires_at: Some(timestamp(record.expires_at)),
        })
    }

    /// The live challenge `token` names, one attempt counted against it;
    /// anything else is the one UNAUTHENTICATED answer.
    async fn attempt_challenge(&self, token: &str) -> Result<ChallengeRecord> {
        let token = Token::parse(token).map_err(|_| Error::Unauthenticated(WRONG_CODE))?;
        if token.kind() != TokenType::LoginChallenge {
            return Err(Error::Unauthenticated(WRONG_CODE));
        }
        let challenge = self
            .store
            .attempt_challenge(token.id(), self.clock.now(), CHALLENGE_ATTEMPTS)
            .await?
            .ok_or(Error::Unauthenticated(WRONG_CODE))?;
        if !self.hasher.verify(&token, &challenge.secret_hash) {
            return Err(Error::Unauthenticated(WRONG_CODE));
        }
        Ok(challenge)
    }

    /// Completes a login with a second factor.
    #[tracing::instrument(skip_all)]
    pub async fn complete_login(
        &self,
        ctx: &CallContext,
        req: CompleteLoginRequest,
    ) -> Result<LoginResponse> {
        if req.challenge.is_empty() {
            return Err(FieldViolation::new("challenge", "is required").into());
        }
        let (code, method) = match req.code {
            Some(complete_login_request::Code::TotpCode(c)) if !c.is_empty() => (
                check_second_factor_request::Code::TotpCode(c),
                AuthenticationMethodType::Totp,
            ),
            Some(complete_login_request::Code::EmailCode(c)) if !c.is_empty() => (
                check_second_factor_request::Code::EmailCode(c),
                AuthenticationMethodType::OtpEmail,
            ),
            Some(complete_login_request::Code::RecoveryCode(c)) if !c.is_empty() => (
                check_second_factor_request::Code::RecoveryCode(c),
                AuthenticationMethodType::RecoveryCode,
            ),
            _ => {
                return Err(FieldViolation::new(
                    "code",
                    "give one of totp_code, email_code and recovery_code",
                )
                .into());
            }
        };
        self.allow_attempt(ctx)?;
        let challenge = self.attempt_challenge(&req.challenge).await?;
        let checked = if challenge.methods.contains(&(method as i32)) {
            Some(
                self.peers
                    .check_second_factor(&challenge.user_id, code, ctx.client_key())
                    .await?,
            )
        } else {
            None
        };
        if !checked.is_some_and(|c| c.valid) {
            let (reason, failures) = match checked {
                Some(c) if c.throttled => (login_outcome::THROTTLED, 0),
                Some(c) => ("wrong_code", c.failures),
                None => ("wrong_code", 0),
            };
            metrics::login(reason);
            let event = self.failure_event(
                ctx,
                events::LOGIN_FAILED,
                Some(&challenge.user_id),
                reason,
                failures,
            );
            self.store.record_events(&[event]).await?;
            return Err(Error::Unauthenticated(WRONG_CODE));
        }
        let mut account = self
            .peers
            .account(&challenge.user_id)
            .await?
            .ok_or(Error::Unauthenticated(WRONG_CODE))?;
        self.refuse_inactive(ctx, &account).await?;
        account.require_password_update |= challenge.password_update_only;
        let method_name = method.as_str_name().to_ascii_lowercase();
        let response = self
            .start_session_from(ctx, &account, &challenge, &method_name)
            .await?;
        metrics::login(login_outcome::SUCCESS);
        Ok(response)
    }

    /// Mails a one-time code for a login challenge.
    #[tracing::instrument(skip_all)]
    pub async fn send_login_email_code(&self, ctx: &CallContext, challenge: String) -> Result<()> {
        if challenge.is_empty() {
            return Err(FieldViolation::new("challenge", "is required").into());
        }
        self.allow_attempt(ctx)?;
        let challenge = self.attempt_challenge(&challenge).await?;
        if !challenge
            .methods
            .contains(&(AuthenticationMethodType::OtpEmail as i32))
        {
            return Err(Error::FailedPrecondition(
                "no_otp_email: this login cannot be completed with a mailed code".into(),
            ));
        }
        self.peers
            .send_second_factor_email_code(&challenge.user_id)
            .await?;
        Ok(())
    }

    /// Only approved (or flagged) users log in.
    async fn refuse_inactive(&self, ctx: &CallContext, account: &Account) -> Result<()> {
        let why = match account.state {
            State::Approved | State::Flagged => return Ok(()),
            State::Requested => "the account awaits approval",
            State::Rejected => "the account was rejected",
            State::Suspended => "the account is suspended",
        };
        let event = self.failure_event(
            ctx,
            events::LOGIN_FAILED,
            Some(&account.user_id),
            "state",
            0,
        );
        self.store.record_events(&[event]).await?;
        Err(Error::FailedPrecondition(why.to_string()))
    }

    async fn start_session(
        &self,
        ctx: &CallContext,
        account: &Account,
        method: &str,
    ) -> Result<LoginResponse> {
        let (token, record, event) = self.new_session(ctx, account, method);
        let prune_before = self.clock.now() - Self::seconds(self.config.keep_expired_secs);
        self.store
            .insert_session(&record, prune_before, &[event])
            .await?;
        tracing::info!(user_id = %account.user_id, session_id = %record.id, method, "logged in");
        Ok(session_response(&token, &record))
    }

    /// The session a completed challenge leads to, stored as the challenge
    /// goes (so one challenge makes at most one session).
    async fn start_session_from(
        &self,
        ctx: &CallContext,
        account: &Account,
        challenge: &ChallengeRecord,
        method: &str,
    ) -> Result<LoginResponse> {
        let (token, record, mut event) = self.new_session(ctx, account, method);
        event
            .correlation_ids
            .push(format!("first_factor:{}", challenge.first_factor));
        let prune_before = self.clock.now() - Self::seconds(self.config.keep_expired_secs);
        if !self
            .store
            .complete_challenge(&challenge.id, &record, prune_before, &[event])
            .await?
        {
            return Err(Error::Unauthenticated(WRONG_CODE));
        }
        tracing::info!(user_id = %account.user_id, session_id = %record.id, method, "logged in");
        Ok(session_response(&token, &record))
    }

    /// A new session of `account` and its `user.login` event.
    fn new_session(
        &self,
        ctx: &CallContext,
        account: &Account,
        method: &str,
    ) -> (Token, SessionRecord, Event) {
        let token = Token::generate(TokenType::Session);
        let now = self.clock.now();
        let record = SessionRecord {
            id: token.id().to_string(),
            user_id: account.user_id.clone(),
            secret_hash: self.hasher.hash(&token),
            created_at: now,
            updated_at: now,
            expires_at: now + Self::seconds(self.config.session_ttl_secs),
            remote_ip: ctx.remote_ip.clone(),
            user_agent: ctx.user_agent.chars().take(MAX_USER_AGENT_CHARS).collect(),
            password_update_only: account.require_password_update,
        };
        let mut session = session_message(&record, now);
        session.user_agent.clone_from(&record.user_agent);
        let mut event = self.event(
            ctx,
            events::LOGIN,
            Some(&account.user_id),
            Some(pack(&session)),
        );
        event.correlation_ids.push(format!("login:{method}"));
        (token, record, event)
    }

    /// Ends the session the caller authenticates with.
    #[tracing::instrument(skip_all)]
    pub async fn logout(&self, ctx: &CallContext) -> Result<()> {
        ctx.caller.require_authenticated()?;
        let roster_core::auth::Caller::User(info) = &ctx.caller else {
            return Err(FieldViolation::new(
                "authorization",
                "only a session can log out; this credential is not one",
            )
            .into());
        };
        if info.token_type != "session" {
            return Err(FieldViolation::new(
                "authorization",
                "only a session can log out; API keys are deleted with UserAccess.DeleteAPIKey",
            )
            .into());
        }
        let user_id = ctx.caller.user_id().unwrap_or_default().to_string();
        let session_id = info.token_id.clone();
        self.end_sessions(ctx, &user_id, &[session_id], events::LOGOUT)
            .await?;
        Ok(())
    }

    // ---- UserSessionRegistry ------------------------------------------

    /// Checks RIGHT_USER_ALL on the user; callers acting on another user
    /// (admins) learn NOT_FOUND for users that do not exist.
    async fn authorize(&self, ctx: &CallContext, user_id: &str) -> Result<()> {
        ctx.caller.require(user_id, Right::UserAll)?;
        if ctx.caller.user_id() != Some(user_id) && self.peers.account(user_id).await?.is_none() {
            return Err(Error::NotFound("user"));
        }
        Ok(())
    }

    #[tracing::instrument(skip_all)]
    pub async fn list(
        &self,
        ctx: &CallContext,
        req: roster_proto::v1::ListUserSessionsRequest,
    ) -> Result<(UserSessions, u64)> {
        let user_id = user_id_of(req.user_ids.as_ref(), "user_ids")?;
        ctx.caller.require(&user_id, Right::UserAll)?;
        let order = if req.order.is_empty() {
            Order {
                field: "created_at",
                descending: true,
            }
        } else {
            Order::parse(&req.order, SESSION_ORDERS, "created_at")?
        };
        let page = Page::parse(req.limit, req.page)?;
        self.authorize(ctx, &user_id).await?;
        let (sessions, total) = self
            .store
            .list_sessions(SessionQuery {
                user_id: &user_id,
                order: match order.field {
                    "updated_at" => SessionOrder::UpdatedAt,
                    "expires_at" => SessionOrder::ExpiresAt,
                    _ => SessionOrder::CreatedAt,
                },
                descending: order.descending,
                limit: page.limit(),
                offset: page.offset(),
            })
            .await?;
        let now = self.clock.now();
        Ok((
            UserSessions {
                sessions: sessions.iter().map(|s| session_message(s, now)).collect(),
            },
            total,
        ))
    }

    #[tracing::instrument(skip_all)]
    pub async fn delete(&self, ctx: &CallContext, ids: UserSessionIdentifiers) -> Result<()> {
        let user_id = user_id_of(ids.user_ids.as_ref(), "user_ids")?;
        ctx.caller.require(&user_id, Right::UserAll)?;
        if ids.session_id.is_empty() {
            return Err(FieldViolation::new("session_id", "is required").into());
        }
        self.authorize(ctx, &user_id).await?;
        let ended = self
            .end_sessions(ctx, &user_id, &[ids.session_id], events::SESSION_DELETE)
            .await?;
        if ended == 0 {
            return Err(Error::NotFound("session"));
        }
        Ok(())
    }

    /// Ends the given sessions of the user, one `event_name` event each, and
    /// drops this process's cached answers for the user at once.
    async fn end_sessions(
        &self,
        ctx: &CallContext,
        user_id: &str,
        session_ids: &[String],
        event_name: &str,
    ) -> Result<u64> {
        let mut events = Vec::with_capacity(session_ids.len());
        for id in session_ids {
            let mut event = self.event(
                ctx,
                event_name,
                Some(user_id),
                Some(pack(&UserSessionIdentifiers {
                    user_ids: Some(user_ids(user_id)),
                    session_id: id.clone(),
                })),
            );
            event.correlation_ids.push(format!("session:{id}"));
            events.push(event);
        }
        let ended = self
            .store
            .delete_sessions(user_id, session_ids, &events)
            .await?;
        if ended > 0 {
            self.auth.forget_user(user_id);
        }
        Ok(ended)
    }

    /// Ends every session of the user (revocation on other services'
    /// events). Idempotent.
    pub async fn end_all_sessions(&self, ctx: &CallContext, user_id: &str) -> Result<u64> {
        let ids = self.store.session_ids_of(user_id).await?;
        if ids.is_empty() {
            return Ok(0);
        }
        let ended = self
            .end_sessions(ctx, user_id, &ids, events::SESSION_DELETE)
            .await?;
        tracing::info!(%user_id, ended, "sessions ended");
        Ok(ended)
    }

    /// Ends the user's sessions made before `before`: those a password
    /// change at `before` revokes, and no session made since.
    pub async fn end_sessions_made_before(
        &self,
        ctx: &CallContext,
        user_id: &str,
        before: chrono::DateTime<chrono::Utc>,
    ) -> Result<u64> {
        let mut older = Vec::new();
        for id in self.store.session_ids_of(user_id).await? {
            let session = self.store.get_session(&id).await?;
            if session.is_some_and(|s| s.created_at < before) {
                older.push(id);
            }
        }
        if older.is_empty() {
            return Ok(0);
        }
        let ended = self
            .end_sessions(ctx, user_id, &older, events::SESSION_DELETE)
            .await?;
        tracing::info!(%user_id, ended, "sessions older than a password change ended");
        Ok(ended)
    }

    /// The services this one asks about users, for the event worker's
    /// confirmations.
    pub fn peers(&self) -> &Arc<dyn Peers> {
        &self.peers
    }

    // ---- SessionCredentials (internal) --------------------------------

    /// Checks a session token for the access service.
    pub async fn check_session(
        &self,
        ctx: &CallContext,
        token: &str,
    ) -> Result<CheckSessionResponse> {
        ctx.caller.require_cluster()?;
        const INVALID: &str = "invalid token";
        let token = Token::parse(token).map_err(|_| Error::Unauthenticated(INVALID))?;
        if token.kind() != TokenType::Session {
            return Err(Error::Unauthenticated(INVALID));
        }
        let Some(session) = self.store.get_session(token.id()).await? else {
            return Err(Error::Unauthenticated(INVALID));
        };
        if !self.hasher.verify(&token, &session.secret_hash) {
            return Err(Error::Unauthenticated(INVALID));
        }
        if session.expires_at <= self.clock.now() {
            return Err(Error::Unauthenticated("the session expired"));
        }
        Ok(CheckSessionResponse {
            session_ids: Some(UserSessionIdentifiers {
                user_ids: Some(user_ids(&session.user_id)),
                session_id: session.id,
            }),
            expires_at: Some(timestamp(session.expires_at)),
            password_update_only: session.password_update_only,
            created_at: Some(timestamp(session.created_at)),
        })
    }
}

/// The second factors a login token must be followed by, if any: a token
/// proves the mailbox, which is all a mailed code proves, so it stands in
/// for OTP_EMAIL (and the recovery codes backing it), but not for an
/// authenticator app, nor for recovery codes a user keeps as their only
/// factor.
fn beyond_the_mailbox(factors: Vec<i32>) -> Option<Vec<i32>> {
    let has = |m: AuthenticationMethodType| factors.contains(&(m as i32));
    let mailbox_is_enough =
        has(AuthenticationMethodType::OtpEmail) && !has(AuthenticationMethodType::Totp);
    let methods: Vec<i32> = factors
        .iter()
        .copied()
        .filter(|m| *m != AuthenticationMethodType::OtpEmail as i32)
        .collect();
    (!mailbox_is_enough && !methods.is_empty()).then_some(methods)
}

fn session_response(token: &Token, record: &SessionRecord) -> LoginResponse {
    LoginResponse {
        session_ids: Some(UserSessionIdentifiers {
            user_ids: Some(user_ids(&record.user_id)),
            session_id: record.id.clone(),
        }),
        token: token.to_string(),
        expires_at: Some(timestamp(record.expires_at)),
        password_update_required: record.password_update_only,
        ..LoginResponse::default()
    }
}

fn user_ids(user_id: &str) -> UserIdentifiers {
    UserIdentifiers {
        user_id: user_id.to_string(),
        email: String::new(),
    }
}

fn user_ids_event(user_id: &str) -> Vec<EntityIdentifiers> {
    vec![EntityIdentifiers {
        ids: Some(entity_identifiers::Ids::UserIds(user_ids(user_id))),
    }]
}

/// The user ID of `ids` (`<field>.user_id`), required.
fn user_id_of(ids: Option<&UserIdentifiers>, field: &str) -> Result<String, FieldViolation> {
    let id = ids.map(|i| i.user_id.as_str()).unwrap_or_default();
    if id.is_empty() {
        return Err(FieldViolation::new(
            format!("{field}.user_id"),
            "is required",
        ));
    }
    Ok(id.to_string())
}

fn session_message(record: &SessionRecord, now: chrono::DateTime<chrono::Utc>) -> UserSession {
    UserSession {
        user_ids: Some(user_ids(&record.user_id)),
        session_id: record.id.clone(),
        created_at: Some(timestamp(record.created_at)),
        updated_at: Some(timestamp(record.updated_at)),
        expires_at: Some(timestamp(record.expires_at)),
        session_secret: String::new(),
        remote_ip: record.remote_ip.clone(),
        user_agent: record.user_agent.clone(),
        expired: record.expires_at <= now,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use AuthenticationMethodType::{OtpEmail, RecoveryCode, Totp};

    fn after_token(factors: &[AuthenticationMethodType]) -> Option<Vec<i32>> {
        beyond_the_mailbox(factors.iter().map(|m| *m as i32).collect())
    }

    #[test]
    fn a_login_token_stands_in_for_mailed_codes_but_not_for_an_app_or_lone_recovery_codes() {
        assert_eq!(after_token(&[]), None);
        assert_eq!(after_token(&[OtpEmail]), None);
        assert_eq!(after_token(&[OtpEmail, RecoveryCode]), None);
        assert_eq!(after_token(&[Totp]), Some(vec![Totp as i32]));
        assert_eq!(
            after_token(&[Totp, OtpEmail, RecoveryCode]),
            Some(vec![Totp as i32, RecoveryCode as i32])
        );
        assert_eq!(
            after_token(&[RecoveryCode]),
            Some(vec![RecoveryCode as i32])
        );
    }
}
