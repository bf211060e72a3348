//! The use cases of the user registry. Each checks the caller's rights,
//! validates its input into domain types, and writes the change together
//! with its event through the store (one transaction).

mod factors;
mod lifecycle;
mod machine;
mod metadata;

pub use factors::{SecondFactors, method_of};

use std::sync::Arc;

use chrono::Duration;
use roster_core::auth::CallContext;
use roster_core::events::{new_event, pack};
use roster_core::list::{FieldMask, Order, Page};
use roster_core::mail::OutgoingMail;
use roster_core::password::PasswordHasher;
use roster_core::ratelimit::RateLimiter;
use roster_core::time::Clock;
use roster_core::validation::{FieldViolation, max_chars};
use roster_proto::v1::{
    CheckPasswordRequest, CheckPasswordResponse, CreateExternalUserRequest,
    CreateTemporaryPasswordRequest, CreateUserRequest, DeleteExternalUserRequest,
    EntityIdentifiers, Event, ExternalUser, GetExternalUserByExternalIdRequest,
    GetExternalUserByUserIdRequest, GetUserRequest, ListUsersRequest, Picture, Right,
    SearchUsersRequest, SendEmailValidationRequest, SendEmailValidationResponse, State,
    UpdateUserPasswordRequest, UpdateUserRequest, User, UserEventData, UserIdentifiers, UserType,
    Users, ValidateEmailRequest, ValidateEmailResponse, entity_identifiers,
};

use crate::config::UserRegistryConfig;
use crate::convert::{self, READABLE_PATHS, WRITE_ONLY_PATHS, now};
use crate::domain::{
    Attributes, Description, Email, ExternalId, Name, PageToken, ProviderId, SearchText,
    StateDescription, UserId, validate_picture,
};
use crate::error::{Error, Result};
use crate::events::*;
use crate::invitations::Invitations;
use crate::lockout::{self, Failures};
use crate::store::{
    ExternalUserRecord, Keyset, ORDER_FIELDS, OrderValue, StoreError, UserQuery, UserRecord,
    UserStore,
};
use roster_proto::v1::LoginFailureEventData;

/// Paths an Update may name; the `ADMIN_PATHS` among them need an admin.
pub const UPDATE_PATHS: &[&str] = &[
    "name",
    "description",
    "attributes",
    "primary_email_address",
    "primary_email_address_validated_at",
    "require_password_update",
    "state",
    "state_description",
    "admin",
    "temporary_password",
    "profile_picture",
    "email_notification_preferences",
    "universal_rights",
];

/// Paths only admins may update.
pub const ADMIN_PATHS: &[&str] = &[
    "primary_email_address_validated_at",
    "require_password_update",
    "state",
    "state_description",
    "admin",
    "temporary_password",
    "universal_rights",
];

/// How often an update is retried when a concurrent one got there first.
const UPDATE_ATTEMPTS: usize = 5;

pub struct UserRegistryService {
    store: Arc<dyn UserStore>,
    hasher: PasswordHasher,
    invitations: Arc<dyn Invitations>,
    config: UserRegistryConfig,
    limiter: RateLimiter,
    registrations: RateLimiter,
    /// At most one "someone tried to register with your address" mail per
    /// address and hour, so the answer to a taken address cannot be used
    /// to flood its owner's mailbox.
    address_notices: RateLimiter,
    clock: Arc<dyn Clock>,
    /// Second factors (`service::factors`).
    second_factors: Option<SecondFactors>,
}

/// How a password guess went, as the service that asked may know it (its
/// own caller hears only "wrong" unless it was [`Guess::Right`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guess {
    Right,
    /// With the account's wrong passwords in the window, this one included
    /// (0 for an unknown user).
    Wrong {
        failures: u32,
    },
    /// The account is locked for this client: the password was not
    /// accepted, right or not.
    Throttled,
}

fn user_ids_event(user_id: &str) -> Vec<EntityIdentifiers> {
    vec![EntityIdentifiers {
        ids: Some(entity_identifiers::Ids::UserIds(UserIdentifiers {
            user_id: user_id.to_string(),
            email: String::new(),
        })),
    }]
}

fn user_id_of(ids: Option<&UserIdentifiers>, prefix: &str) -> Result<UserId> {
    let raw = ids.map(|i| i.user_id.as_str()).unwrap_or_default();
    UserId::parse(raw).map_err(|v| Error::InvalidArgument(v.under(prefix)))
}

fn provider_id_of(
    ids: Option<&roster_proto::v1::AuthenticationProviderIdentifiers>,
    prefix: &str,
) -> Result<ProviderId> {
    let raw = ids.map(|i| i.provider_id.as_str()).unwrap_or_default();
    ProviderId::parse(raw).map_err(|v| Error::InvalidArgument(v.under(prefix)))
}

fn state_of(value: i32, field: &str) -> Result<State> {
    State::try_from(value).map_err(|_| FieldViolation::new(field, "unknown state").into())
}

fn rights_of(rights: Option<&roster_proto::v1::Rights>, field: &str) -> Result<Option<Vec<i32>>> {
    let Some(rights) = rights else {
        return Ok(None);
    };
    let mut out = Vec::new();
    for r in &rights.rights {
        match Right::try_from(*r) {
            Ok(Right::Invalid) | Err(_) => {
                return Err(FieldViolation::new(field, format!("unknown right {r}")).into());
            }
            Ok(_) if out.contains(r) => {}
            Ok(_) => out.push(*r),
        }
    }
    out.sort_unstable();
    Ok(Some(out))
}

fn notification_types(
    prefs: Option<&roster_proto::v1::EmailNotificationPreferences>,
) -> Result<Vec<i32>> {
    let mut out = Vec::new();
    for t in prefs.map(|p| p.types.as_slice()).unwrap_or_default() {
        if roster_proto::v1::NotificationType::try_from(*t).is_err() {
            return Err(FieldViolation::new(
                "user.email_notification_preferences.types",
                format!("unknown notification type {t}"),
            )
            .into());
        }
        if !out.contains(t) {
            out.push(*t);
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// The admin-only fields a Create request sets to something other than
/// their default. A narrow admin credential may create users, but only a
/// full admin may create them with any of these.
fn admin_fields_set(user: &User) -> Vec<&'static str> {
    [
        ("admin", user.admin),
        ("universal_rights", user.universal_rights.is_some()),
        ("state", user.state != State::Requested as i32),
        ("state_description", !user.state_description.is_empty()),
        ("require_password_update", user.require_password_update),
        (
            "primary_email_address_validated_at",
            user.primary_email_address_validated_at.is_some(),
        ),
        ("temporary_password", !user.temporary_password.is_empty()),
    ]
    .into_iter()
    .filter_map(|(field, set)| set.then_some(field))
    .collect()
}

fn encode_picture(picture: Option<&Picture>) -> Result<Option<Vec<u8>>> {
    match picture {
        None => Ok(None),
        Some(p) => {
            validate_picture(p).map_err(|v| v.under("user"))?;
            Ok(Some(prost::Message::encode_to_vec(p)))
        }
    }
}

impl UserRegistryService {
    pub fn new(
        store: Arc<dyn UserStore>,
        hasher: PasswordHasher,
        invitations: Arc<dyn Invitations>,
        config: UserRegistryConfig,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let limiter = RateLimiter::new(config.rate_limit);
        let registrations = RateLimiter::new(config.registration_rate_limit);
        Self {
            store,
            hasher,
            invitations,
            config,
            limiter,
            registrations,
            address_notices: RateLimiter::new(roster_core::ratelimit::RateLimitConfig {
                max_attempts: 1,
                window_secs: 3600,
            }),
            clock,
            second_factors: None,
        }
    }

    pub fn store(&self) -> &Arc<dyn UserStore> {
        &self.store
    }

    /// Starts validating the primary email address: a fresh secret, of
    /// which only the SHA-256 is stored (it replaces any earlier one), and
    /// the mail that carries it, to be queued with the change.
    fn start_email_validation(
        &self,
        record: &mut UserRecord,
        at: chrono::DateTime<chrono::Utc>,
    ) -> (String, OutgoingMail) {
        let secret = roster_core::token::random_secret(32);
        let expires_at = at + Duration::seconds(self.config.email_validation_ttl_secs as i64);
        record.email_validation_hash = Some(roster_core::token::hash_secret(&secret));
        record.email_validation_expires_at = Some(expires_at);
        let mail = OutgoingMail::new(
            "validate_email",
            &record.primary_email_address,
            &record.name,
        )
        .with("user_id", &record.user_id)
        .with("secret_token", secret.as_str())
        .with("expires_at", roster_core::mail::format_time(expires_at));
        (secret, mail)
    }

    /// A user event stamped with the caller, carrying the user without
    /// secrets.
    fn event(
        &self,
        ctx: &CallContext,
        name: &str,
        user: &UserRecord,
        changed_paths: Vec<String>,
        revoke_all_access: bool,
    ) -> Event {
        // Picture bytes stay out of events: they would make every event of
        // the user as big as the picture, past what a bus message may be.
        let data = UserEventData {
            user: Some(convert::without_embedded_picture(convert::user_full(user))),
            changed_paths,
            revoke_all_access,
        };
        let mut event = new_event(name, user_ids_event(&user.user_id), Some(pack(&data)));
        ctx.stamp(&mut event);
        event
    }

    /// The user, for a caller that holds `right` on it. Callers without the
    /// right get PERMISSION_DENIED whether or not the user exists; admins
    /// get NOT_FOUND for unknown users.
    async fn authorized_user(
        &self,
        ctx: &CallContext,
        user_id: &UserId,
        right: Right,
        include_deleted: bool,
    ) -> Result<UserRecord> {
        ctx.caller.require(user_id.as_str(), right)?;
        match self.store.get_user(user_id.as_str()).await? {
            Some(u) if include_deleted || u.deleted_at.is_none() => Ok(u),
            _ if ctx.caller.is_admin() => Err(Error::NotFound("user")),
            // A credential of a user that no longer exists.
            _ => Err(Error::PermissionDenied(format!(
                "missing right {}",
                right.as_str_name()
            ))),
        }
    }

    /// Checks `password` against `user`'s (a dummy hash when there is no
    /// user, so the time taken tells nothing), in the account's budget of
    /// wrong passwords for the client `client_key`. A wrong one is
    /// counted; while the account is locked for the client, even the right
    /// one is [`Guess::Throttled`] and nothing is counted.
    pub async fn guess_password(
        &self,
        ctx: &CallContext,
        user: Option<&UserRecord>,
        password: &str,
        client_key: &str,
    ) -> Result<Guess> {
        // A machine has no password: checked against the dummy hash, as
        // for no user at all.
        let user = user.filter(|u| !u.is_machine());
        let right = self
            .hasher
            .verify(password, user.map(|u| u.password_hash.as_str()))
            .await
            .map_err(Error::from)?;
        let Some(user) = user else {
            return Ok(Guess::Wrong { failures: 0 });
        };
        let counters = lockout::Secret::Password.counters(client_key);
        self.judge_guess(ctx, user, right, &counters).await
    }

    /// Counts a guess at one of `user`'s secrets that was `right` or not,
    /// in that secret's `counters` (see [`lockout::Secret`]): while either
    /// is locked, even a right guess is [`Guess::Throttled`] and nothing is
    /// counted; a right one forgets both.
    async fn judge_guess(
        &self,
        ctx: &CallContext,
        user: &UserRecord,
        right: bool,
        counters: &lockout::Counters,
    ) -> Result<Guess> {
        let now = self.clock.now();
        let state = self.store.guess_state(&user.user_id, counters, now).await?;
        if state.locked_until.is_some() {
            tracing::info!(user_id = %user.user_id, counter = counters.account, "guess while locked");
            return Ok(Guess::Throttled);
        }
        if right {
            if state.counted {
                self.store
                    .clear_password_failures(&user.user_id, lockout::Forget::Guess(counters))
                    .await?;
            }
            return Ok(Guess::Right);
        }
        let outcome = self.count_failure(ctx, user, counters).await?;
        Ok(Guess::Wrong {
            failures: outcome.failures,
        })
    }

    /// Counts one failure of `user` in `counters`, locking either at its
    /// limit, with the `user.lock` event of a new account lock in the same
    /// transaction. `failures` is the account's count after it (the limit,
    /// when this failure locked it).
    pub(crate) async fn count_failure(
        &self,
        ctx: &CallContext,
        user: &UserRecord,
        counters: &lockout::Counters,
    ) -> Result<Failures> {
        let policy = self.config.lockout.policy(self.clock.now());
        let build = |outcome: &Failures| {
            if !outcome.newly_locked {
                return Vec::new();
            }
            // Wrong codes mean the first factor (the password, or the
            // mailbox) is in someone else's hands: a reason of their own.
            let reason = if counters.account == lockout::FACTOR_ACCOUNT {
                "too_many_wrong_codes"
            } else {
                "too_many_failures"
            };
            let data = LoginFailureEventData {
                reason: reason.into(),
                failures: policy.max_failures,
                locked_until: outcome.locked_until.map(roster_core::time::timestamp),
            };
            let mut event = new_event(USER_LOCK, user_ids_event(&user.user_id), Some(pack(&data)));
            ctx.stamp(&mut event);
            vec![event]
        };
        let outcome = self
            .store
            .record_password_failure(&user.user_id, counters, &policy, &build)
            .await?;
        if outcome.newly_locked {
            tracing::info!(user_id = %user.user_id, counter = counters.account, "account locked after wrong guesses");
            roster_core::metrics::lockout(true);
        } else if outcome.client_newly_locked {
            tracing::info!(user_id = %user.user_id, counter = counters.account, "a client locked out after wrong guesses");
            roster_core::metrics::lockout(false);
        }
        Ok(Failures {
            failures: if outcome.newly_locked {
                policy.max_failures
            } else {
                outcome.failures
            },
            ..outcome
        })
    }

    // ---- UserRegistry -------------------------------------------------

    #[tracing::instrument(skip_all)]
    pub async fn create(&self, ctx: &CallContext, req: CreateUserRequest) -> Result<User> {
        let admin = ctx.caller.universal_rights().contains(Right::UserCreate);
        let input = req
            .user
            .ok_or_else(|| FieldViolation::new("user", "is required"))?;
        // Creating users is one right; handing a new user more than a
        // plain account is another. A credential narrower than a full
        // admin's could otherwise make a full admin and log in as it.
        if admin
            && !ctx.caller.is_admin()
            && let Some(field) = admin_fields_set(&input).first()
        {
            return Err(Error::PermissionDenied(format!(
                "admin_field: only a full admin may set `user.{field}`"
            )));
        }
        match UserType::try_from(input.r#type) {
            Ok(UserType::Human) => {}
            Ok(UserType::Machine) if !req.invitation_token.is_empty() => {
                return Err(FieldViolation::new(
                    "invitation_token",
                    "must be empty for a machine user: invitations are for people",
                )
                .into());
            }
            Ok(UserType::Machine) => return self.create_machine(ctx, input).await,
            Err(_) => return Err(FieldViolation::new("user.type", "unknown user type").into()),
        }
        let user_id = user_id_of(input.ids.as_ref(), "user.ids")?;
        let email = Email::parse(&input.primary_email_address).map_err(|v| v.under("user"))?;
        self.config
            .password_policy
            .check(&input.password, &user_id)
            .and_then(|()| {
                let policy = &self.config.password_policy;
                policy.check_against_email(&input.password, email.as_str())
            })
            .map_err(|v| v.under("user"))?;
        let name = Name::parse(&input.name).map_err(|v| v.under("user"))?;
        let description = Description::parse(&input.description).map_err(|v| v.under("user"))?;
        let attributes = Attributes::parse(&input.attributes).map_err(|v| v.under("user"))?;
        let picture = encode_picture(input.profile_picture.as_ref())?;
        let types = notification_types(input.email_notification_preferences.as_ref())?;

        if !admin {
            if !self.config.registration_enabled {
                return Err(Error::PermissionDenied("registration is disabled".into()));
            }
            if self.config.invitation_required && req.invitation_token.is_empty() {
                return Err(FieldViolation::new(
                    "invitation_token",
                    "is required: registration needs an invitation",
                )
                .into());
            }
        }
        max_chars("invitation_token", &req.invitation_token, 128)?;

        if !admin && !self.registrations.allow(&[&ctx.client_key()]) {
            return Err(Error::RateLimited);
        }
        let at = now();
        let password_hash = self
            .hasher
            .hash(&input.password)
            .await
            .map_err(Error::from)?;
        let mut record = UserRecord {
            user_id: user_id.as_str().to_string(),
            name: name.into_string(),
            description: description.into_string(),
            attributes: attributes.into_map(),
            primary_email_address: email.as_str().to_string(),
            email_normalized: email.normalized(),
            primary_email_address_validated_at: None,
            password_hash,
            password_updated_at: at,
            require_password_update: false,
            state: if self.config.admin_approval_required {
                State::Requested as i32
            } else {
                State::Approved as i32
            },
            state_description: String::new(),
            admin: false,
            temporary_password_hash: None,
            temporary_password_created_at: None,
            temporary_password_expires_at: None,
            email_validation_hash: None,
            email_validation_expires_at: None,
            profile_picture: picture,
            email_notification_types: types,
            universal_rights: None,
            created_at: at,
            updated_at: at,
            deleted_at: None,
            lifecycle: Default::default(),
            user_type: UserType::Human as i32,
        };
        if admin {
            // Admins may set the admin-only fields at creation. A user an
            // admin creates is approved unless the admin says otherwise
            // (REQUESTED is the enum's zero value, so it cannot be told
            // apart from "not set"; an admin who wants it updates later).
            let state = state_of(input.state, "user.state")?;
            record.state = if state == State::Requested {
                State::Approved as i32
            } else {
                state as i32
            };
            record.state_description = StateDescription::parse(&input.state_description)
                .map_err(|v| v.under("user"))?
                .into_string();
            record.admin = input.admin;
            record.require_password_update = input.require_password_update;
            record.primary_email_address_validated_at = input
                .primary_email_address_validated_at
                .as_ref()
                .map(|t| {
                    convert::from_timestamp(t).ok_or_else(|| {
                        FieldViolation::new(
                            "user.primary_email_address_validated_at",
                            "out of range",
                        )
                    })
                })
                .transpose()?;
            record.universal_rights =
                rights_of(input.universal_rights.as_ref(), "user.universal_rights")?;
        } else if record.state == State::Requested as i32 {
            record.state_description = "admin approval required".into();
        }
        let claim = if req.invitation_token.is_empty() {
            None
        } else {
            // The token proves the invitation, not the mailbox: whoever sent
            // it saw it too. The address is validated as any other.
            Some(
                self.invitations
                    .claim(&req.invitation_token, &record.user_id)
                    .await?,
            )
        };
        let mut mails = Vec::new();
        if record.primary_email_address_validated_at.is_none() {
            mails.push(self.start_email_validation(&mut record, at).1);
        }
        let event = self.event(ctx, USER_CREATE, &record, Vec::new(), false);
        if let Err(error) = self
            .store
            .insert_user_mailing(&record, &[event], &mails)
            .await
        {
            if let Some(claim) = &claim
                && let Err(status) = self.invitations.release(claim).await
            {
                // The claim lapses after `invitations.claim_timeout_secs`.
                tracing::warn!(
                    invitation_id = %claim.invitation_id,
                    code = ?status.code(),
                    "could not release an invitation claim"
                );
            }
            if !admin && matches!(error, StoreError::AlreadyExists("primary_email_address")) {
                return self.answer_taken_address(ctx, &record).await;
            }
            return Err(error.into());
        }
        if let Some(claim) = &claim
            && let Err(status) = self.invitations.accept(claim).await
        {
            if status.code() == tonic::Code::FailedPrecondition {
                // The claim was lost (the invitation deleted, or taken over
                // after a stall): the user must not outlive it.
                let purge = self.event(ctx, USER_PURGE, &record, Vec::new(), false);
                self.store
                    .purge_user(&record.user_id, false, &[purge])
                    .await?;
                tracing::warn!(
                    invitation_id = %claim.invitation_id,
                    user_id = %record.user_id,
                    "invitation claim lost during registration; user removed"
                );
                return Err(Error::FailedPrecondition(
                    "invitation_already_used: the invitation changed during registration",
                ));
            }
            // The user exists, so the invitations service accepts the claim
            // for it when the claim lapses; nobody else can take it
            // meanwhile.
            tracing::warn!(
                invitation_id = %claim.invitation_id,
                code = ?status.code(),
                "could not accept an invitation claim; it settles when it lapses"
            );
        }
        tracing::info!(
            user_id = %record.user_id,
            invited = claim.is_some(),
            "user created"
        );
        Ok(convert::user_full(&record))
    }

    /// A registration with an address that has an account already: the
    /// answer a success gets (the user as it would have been), so the
    /// answer does not confirm who has an account, and a mail to the
    /// address, whose owner learns of the attempt. Nothing is created.
    async fn answer_taken_address(&self, ctx: &CallContext, record: &UserRecord) -> Result<User> {
        // A taken ID is said plainly (IDs are public handles), whichever
        // of the two the database happened to report.
        if self.store.get_user(&record.user_id).await?.is_some() {
            return Err(Error::AlreadyExists("user_id"));
        }
        if self
            .address_notices
            .allow(&[&format!("address-in-use:{}", record.email_normalized)])
        {
            let mail = OutgoingMail::new("address_in_use", &record.primary_email_address, "");
            self.store.append_mailing(&[], &[mail]).await?;
        }
        tracing::info!(client = %ctx.client_key(), "registration with a taken address answered as a success");
        Ok(convert::user_full(record))
    }

    /// The user a Get answers with, without secrets: from the store's
    /// cache for users' credentials; checked against the row for another
    /// service (the cluster key), which may be confirming an event that
    /// reached it before it reached this process (the sessions service
    /// asks for `state` and `password_updated_at` before ending sessions).
    async fn user_to_show(
        &self,
        ctx: &CallContext,
        user_id: &UserId,
    ) -> Result<Option<Arc<UserRecord>>> {
        if !ctx.caller.is_cluster() {
            return Ok(self.store.read_user(user_id.as_str()).await?);
        }
        let now = self.clock.now();
        let found = self.store.read_user_and_lock(user_id.as_str(), now).await?;
        Ok(found.map(|(user, _)| user))
    }

    #[tracing::instrument(skip_all)]
    pub async fn get(&self, ctx: &CallContext, req: GetUserRequest) -> Result<User> {
        ctx.caller.require_authenticated()?;
        let user_id = user_id_of(req.user_ids.as_ref(), "user_ids")?;
        let mask = FieldMask::parse(req.field_mask.as_ref(), READABLE_PATHS, WRITE_ONLY_PATHS)?;
        let rights = ctx.caller.rights_on(user_id.as_str());
        let full = rights.contains(Right::UserInfo);
        let stored = self.user_to_show(ctx, &user_id).await?;
        let visible_to_admin = ctx.caller.is_admin();
        let user = match stored {
            Some(u) if u.deleted_at.is_none() || visible_to_admin => u,
            _ if visible_to_admin => return Err(Error::NotFound("user")),
            _ => {
                return Err(Error::PermissionDenied(
                    "missing right RIGHT_USER_INFO".into(),
                ));
            }
        };
        let visible: &[&str] = if full {
            READABLE_PATHS
        } else {
            convert::PUBLIC_PATHS
        };
        Ok(convert::apply_mask(
            convert::user_full(&user),
            &mask,
            visible,
        ))
    }

    #[tracing::instrument(skip_all)]
    pub async fn list(&self, ctx: &CallContext, req: ListUsersRequest) -> Result<UserPage> {
        ctx.caller.require_universal(Right::UserList)?;
        let mask = FieldMask::parse(req.field_mask.as_ref(), READABLE_PATHS, WRITE_ONLY_PATHS)?;
        let order = Order::parse(&req.order, ORDER_FIELDS, "user_id")?;
        let page = Page::parse(req.limit, req.page)?;
        let after = keyset_of(&req.page_token, &page, &order)?;
        let query = UserQuery {
            deleted: req.deleted,
            metadata: metadata::metadata_filters(
                ctx,
                &req.metadata,
                self.config.metadata_max_value_bytes,
            )?,
            types: machine::types_of(&req.types)?,
            order: order.field,
            descending: order.descending,
            limit: page.limit(),
            offset: page.offset(),
            count: after.is_none(),
            after,
            ..Default::default()
        };
        let (page, total) = self.page_of(query, &mask).await?;
        Ok(UserPage {
            total: page.counted.then_some(total),
            capped: false,
            ..page
        })
    }

    /// Reads one row more than the page holds: when it comes, more users
    /// follow, and the page's last user is where the next one starts.
    async fn page_of(&self, mut query: UserQuery, mask: &FieldMask) -> Result<(UserPage, u64)> {
        let limit = query.limit as usize;
        query.limit += 1;
        let (mut records, total) = self.store.search_users(&query).await?;
        let next_page_token = (records.len() > limit).then(|| {
            records.truncate(limit);
            let last = &records[limit - 1];
            PageToken::encode(
                query.order,
                query.descending,
                &Keyset {
                    value: OrderValue::of(last, query.order),
                    user_id: last.user_id.clone(),
                },
            )
        });
        // A page holds up to 1000 users: embedded pictures come only when the
        // mask asks for `profile_picture` (their URLs always come).
        let users = records
            .iter()
            .map(|r| {
                let user = convert::apply_mask(convert::user_full(r), mask, READABLE_PATHS);
                if mask.contains("profile_picture") {
                    user
                } else {
                    convert::without_embedded_picture(user)
                }
            })
            .collect();
        let page = UserPage {
            users: Users { users },
            total: None,
            capped: false,
            next_page_token,
            counted: query.count,
        };
        Ok((page, total))
    }

    #[tracing::instrument(skip_all)]
    /// Searches users; the total stops at the count cap (`capped`).
    pub async fn search(&self, ctx: &CallContext, req: SearchUsersRequest) -> Result<UserPage> {
        ctx.caller.require_universal(Right::UserList)?;
        let mut mask = FieldMask::parse(req.field_mask.as_ref(), READABLE_PATHS, WRITE_ONLY_PATHS)?;
        let order = Order::parse(&req.order, ORDER_FIELDS, "user_id")?;
        let page = Page::parse(req.limit, req.page)?;
        let after = keyset_of(&req.page_token, &page, &order)?;
        let text = |field: &str, value: &str| -> Result<Option<String>> {
            let t = SearchText::parse(field, value)?;
            Ok((!t.is_empty()).then(|| value.to_string()))
        };
        let mut states = Vec::new();
        for s in &req.state {
            states.push(state_of(*s, "state")? as i32);
        }
        let mut attributes: Vec<(String, String)> = Vec::new();
        for (k, v) in &req.attributes_contain {
            SearchText::parse(&format!("attributes_contain.{k}"), k)?;
            SearchText::parse(&format!("attributes_contain.{k}"), v)?;
            attributes.push((k.clone(), v.clone()));
        }
        attributes.sort();
        let query = UserQuery {
            deleted: req.deleted,
            id_or_name: text("query", &req.query)?,
            id_contains: text("id_contains", &req.id_contains)?,
            name_contains: text("name_contains", &req.name_contains)?,
            description_contains: text("description_contains", &req.description_contains)?,
            attributes,
            states,
            metadata: metadata::metadata_filters(
                ctx,
                &req.metadata,
                self.config.metadata_max_value_bytes,
            )?,
            types: machine::types_of(&req.types)?,
            order: order.field,
            descending: order.descending,
            limit: page.limit(),
            offset: page.offset(),
            count: after.is_none(),
            after,
            // One more than the cap tells "exactly the cap" from "more".
            count_cap: Some(self.config.search_count_cap.max(1).saturating_add(1) as i64),
        };
        // Searched fields come back even when the mask leaves them out.
        if !mask.is_empty() {
            if query.name_contains.is_some() || query.id_or_name.is_some() {
                mask.insert("name");
            }
            if query.description_contains.is_some() {
                mask.insert("description");
            }
            if !query.attributes.is_empty() {
                mask.insert("attributes");
            }
            if !query.states.is_empty() {
                mask.insert("state");
            }
            if !query.types.is_empty() {
                mask.insert("type");
            }
        }
        let text_filters = query.has_text_filters();
        let (page, total) = self.page_of(query, &mask).await?;
        let cap = self.config.search_count_cap.max(1);
        let capped = text_filters && total > cap;
        Ok(UserPage {
            total: page.counted.then_some(if capped { cap } else { total }),
            capped: page.counted && capped,
            ..page
        })
    }

    #[tracing::instrument(skip_all)]
    pub async fn update(&self, ctx: &CallContext, req: UpdateUserRequest) -> Result<User> {
        let input = req
            .user
            .ok_or_else(|| FieldViolation::new("user", "is required"))?;
        let user_id = user_id_of(input.ids.as_ref(), "user.ids")?;
        let mask = FieldMask::parse(
            req.field_mask.as_ref(),
            UPDATE_PATHS,
            &["password", "password_updated_at"],
        )?;
        ctx.caller
            .require(user_id.as_str(), Right::UserSettingsBasic)?;
        let admin = ctx.caller.is_admin();
        if let Some(path) = mask.paths().find(|p| !admin && ADMIN_PATHS.contains(p)) {
            return Err(Error::PermissionDenied(format!(
                "update_admin_field: only admins may update `{path}`"
            )));
        }
        if mask.paths().any(|p| machine::HUMAN_ONLY_PATHS.contains(&p)) {
            let target = self
                .authorized_user(ctx, &user_id, Right::UserSettingsBasic, false)
                .await?;
            machine::refuse_machine(&target)?;
        }
        if mask.contains("primary_email_address") && !admin {
            // Mailed codes go to the address: with a second factor, moving
            // it takes what a completed login gives (RIGHT_USER_ALL), so a
            // narrow key and a stolen password cannot redirect them.
            if !self.active_factor_kinds(user_id.as_str()).await?.is_empty() {
                ctx.caller.require(user_id.as_str(), Right::UserAll)?;
            }
            self.prove_password(ctx, &user_id, &req.password).await?;
        }
        // Validate every requested value before touching the store.
        let name = if mask.contains("name") {
            Some(Name::parse(&input.name).map_err(|v| v.under("user"))?)
        } else {
            None
        };
        let description = if mask.contains("description") {
            Some(Description::parse(&input.description).map_err(|v| v.under("user"))?)
        } else {
            None
        };
        let attributes = if mask.contains("attributes") {
            Some(Attributes::parse(&input.attributes).map_err(|v| v.under("user"))?)
        } else {
            None
        };
        let email = if mask.contains("primary_email_address") {
            Some(Email::parse(&input.primary_email_address).map_err(|v| v.under("user"))?)
        } else {
            None
        };
        let validated_at = input
            .primary_email_address_validated_at
            .as_ref()
            .filter(|_| mask.contains("primary_email_address_validated_at"))
            .map(|t| {
                convert::from_timestamp(t).ok_or_else(|| {
                    FieldViolation::new("user.primary_email_address_validated_at", "out of range")
                })
            })
            .transpose()?;
        let state = if mask.contains("state") {
            Some(state_of(input.state, "user.state")?)
        } else {
            None
        };
        let state_description = if mask.contains("state_description") {
            Some(StateDescription::parse(&input.state_description).map_err(|v| v.under("user"))?)
        } else {
            None
        };
        let picture = if mask.contains("profile_picture") {
            Some(encode_picture(input.profile_picture.as_ref())?)
        } else {
            None
        };
        let types = if mask.contains("email_notification_preferences") {
            Some(notification_types(
                input.email_notification_preferences.as_ref(),
            )?)
        } else {
            None
        };
        let universal = if mask.contains("universal_rights") {
            Some(rights_of(
                input.universal_rights.as_ref(),
                "user.universal_rights",
            )?)
        } else {
            None
        };
        let temporary = if mask.contains("temporary_password") {
            if input.temporary_password.is_empty() {
                None
            } else {
                self.config
                    .password_policy
                    .check(&input.temporary_password, &user_id)
                    .map_err(|v| FieldViolation::new("user.temporary_password", v.reason))?;
                Some(
                    self.hasher
                        .hash(&input.temporary_password)
                        .await
                        .map_err(Error::from)?,
                )
            }
        } else {
            None
        };

        for _ in 0..UPDATE_ATTEMPTS {
            let before = self
                .authorized_user(ctx, &user_id, Right::UserSettingsBasic, false)
                .await?;
            let mut after = before.clone();
            let at = now();
            if let Some(v) = &name {
                after.name = v.as_str().to_string();
            }
            if let Some(v) = &description {
                after.description = v.as_str().to_string();
            }
            if let Some(v) = &attributes {
                after.attributes = v.as_map().clone();
            }
            if let Some(v) = &email {
                after.primary_email_address = v.as_str().to_string();
                after.email_normalized = v.normalized();
                // A user who changes the address must validate it again; an
                // admin's change keeps the validation.
                if !admin && after.email_normalized != before.email_normalized {
                    after.primary_email_address_validated_at = None;
                }
            }
            if temporary.is_some() {
                self.config
                    .password_policy
                    .check_against_email(&input.temporary_password, &after.primary_email_address)
                    .map_err(|v| FieldViolation::new("user.temporary_password", v.reason))?;
            }
            if mask.contains("primary_email_address_validated_at") {
                after.primary_email_address_validated_at = validated_at;
            }
            let mut mails = Vec::new();
            if after.email_normalized != before.email_normalized {
                // The old address hears of it: if the change was not the
                // owner's, this is the owner's warning.
                mails.push(
                    OutgoingMail::new("email_changed", &before.primary_email_address, &before.name)
                        .with("user_id", &before.user_id)
                        .with("new_email", &after.primary_email_address),
                );
            }
            if after.primary_email_address_validated_at.is_some() {
                after.email_validation_hash = None;
                after.email_validation_expires_at = None;
                lifecycle::email_validated(&mut after);
            } else if after.email_normalized != before.email_normalized
                || before.primary_email_address_validated_at.is_some()
            {
                mails.push(self.start_email_validation(&mut after, at).1);
            }
            if mask.contains("require_password_update") {
                after.require_password_update = input.require_password_update;
            }
            if let Some(s) = state {
                after.state = s as i32;
                if state_description.is_none() {
                    after.state_description.clear();
                }
            }
            if let Some(v) = &state_description {
                after.state_description = v.as_str().to_string();
            }
            if mask.contains("admin") {
                after.admin = input.admin;
            }
            if mask.contains("temporary_password") {
                match &temporary {
                    Some(hash) => {
                        after.temporary_password_hash = Some(hash.clone());
                        after.temporary_password_created_at = Some(at);
                        after.temporary_password_expires_at = Some(
                            at + Duration::seconds(
                                self.config.admin_temporary_password_ttl_secs as i64,
                            ),
                        );
                    }
                    None => {
                        after.temporary_password_hash = None;
                        after.temporary_password_created_at = None;
                        after.temporary_password_expires_at = None;
                    }
                }
            }
            if let Some(v) = &picture {
                after.profile_picture = v.clone();
            }
            if let Some(v) = &types {
                after.email_notification_types = v.clone();
            }
            if let Some(v) = &universal {
                after.universal_rights = v.clone();
            }
            after.updated_at = at;
            let changed = changed_paths(&before, &after);
            let guard = before.is_effective_admin() && !after.is_effective_admin();
            let event = self.event(ctx, USER_UPDATE, &after, changed, false);
            match self
                .store
                .update_user_mailing(&after, before.updated_at, guard, &[event], &mails)
                .await
            {
                Ok(()) => {
                    // The answer shows what the caller may read, as Get does,
                    // plus what it has just written.
                    let visible: Vec<&str> = if ctx
                        .caller
                        .rights_on(user_id.as_str())
                        .contains(Right::UserInfo)
                    {
                        READABLE_PATHS.to_vec()
                    } else {
                        convert::PUBLIC_PATHS
                            .iter()
                            .copied()
                            .chain(mask.paths())
                            .collect()
                    };
                    return Ok(convert::apply_mask(
                        convert::user_full(&after),
                        &FieldMask::default(),
                        &visible,
                    ));
                }
                Err(StoreError::Conflict) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(Error::FailedPrecondition(
            "the user is being changed concurrently; try again",
        ))
    }

    #[tracing::instrument(skip_all)]
    pub async fn delete(&self, ctx: &CallContext, ids: UserIdentifiers) -> Result<()> {
        let user_id = user_id_of(Some(&ids), "")?;
        for _ in 0..UPDATE_ATTEMPTS {
            let before = self
                .authorized_user(ctx, &user_id, Right::UserDelete, false)
                .await?;
            let mut after = before.clone();
            let at = now();
            after.deleted_at = Some(at);
            after.updated_at = at;
            let event = self.event(ctx, USER_DELETE, &after, Vec::new(), false);
            match self
                .store
                .update_user(
                    &after,
                    before.updated_at,
                    before.is_effective_admin(),
                    &[event],
                )
                .await
            {
                Ok(()) => return Ok(()),
                Err(StoreError::Conflict) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(Error::FailedPrecondition(
            "the user is being changed concurrently; try again",
        ))
    }

    #[tracing::instrument(skip_all)]
    pub async fn restore(&self, ctx: &CallContext, ids: UserIdentifiers) -> Result<()> {
        let user_id = user_id_of(Some(&ids), "")?;
        let before = self
            .authorized_user(ctx, &user_id, Right::UserDelete, true)
            .await?;
        let Some(deleted_at) = before.deleted_at else {
            return Err(Error::FailedPrecondition("the user is not deleted"));
        };
        let at = now();
        if at - deleted_at > Duration::seconds(self.config.restore_window_secs as i64) {
            return Err(Error::FailedPrecondition(
                "restore_window_expired: the user can no longer be restored",
            ));
        }
        let mut after = before.clone();
        after.deleted_at = None;
        after.updated_at = at;
        let event = self.event(ctx, USER_RESTORE, &after, Vec::new(), false);
        match self
            .store
            .update_user(&after, before.updated_at, false, &[event])
            .await
        {
            Ok(()) => Ok(()),
            // Someone else registered with the email meanwhile.
            Err(StoreError::AlreadyExists(_)) => Err(Error::FailedPrecondition(
                "the user's email address now belongs to another user",
            )),
            Err(StoreError::Conflict) => Err(Error::FailedPrecondition(
                "the user is being changed concurrently; try again",
            )),
            Err(e) => Err(e.into()),
        }
    }

    #[tracing::instrument(skip_all)]
    pub async fn purge(&self, ctx: &CallContext, ids: UserIdentifiers) -> Result<()> {
        let user_id = user_id_of(Some(&ids), "")?;
        ctx.caller.require_universal(Right::UserPurge)?;
        let user = self
            .store
            .get_user(user_id.as_str())
            .await?
            .ok_or(Error::NotFound("user"))?;
        let event = self.event(ctx, USER_PURGE, &user, Vec::new(), false);
        match self
            .store
            .purge_user(user_id.as_str(), true, &[event])
            .await
        {
            Ok(()) => Ok(()),
            Err(StoreError::Conflict) => Err(Error::NotFound("user")),
            Err(e) => Err(e.into()),
        }
    }

    /// Changes a password proven by the current or a live temporary
    /// password. Needs no other credential: it is rate-limited per client
    /// address, and a wrong current password counts in the account's
    /// budget of wrong passwords (see `lockout.rs`). There is no per-user
    /// rate limit, which anyone could use up to keep the user from
    /// changing the password.
    #[tracing::instrument(skip_all)]
    pub async fn update_password(
        &self,
        ctx: &CallContext,
        req: UpdateUserPasswordRequest,
    ) -> Result<()> {
        let user_id = user_id_of(req.user_ids.as_ref(), "user_ids")?;
        if req.old.is_empty() {
            return Err(FieldViolation::new("old", "is required").into());
        }
        self.config
            .password_policy
            .check(&req.new, &user_id)
            .map_err(|v| FieldViolation::new("new", v.reason))?;
        if req.new == req.old {
            return Err(FieldViolation::new("new", "must differ from the old password").into());
        }
        if !self
            .limiter
            .allow(&[&format!("password@{}", ctx.client_key())])
        {
            return Err(Error::RateLimited);
        }
        // A machine has no password to change: it answers as no user.
        let stored = self
            .store
            .get_user(user_id.as_str())
            .await?
            .filter(|u| u.deleted_at.is_none() && !u.is_machine());
        // Both checks always run (against the dummy hash when there is
        // nothing to check), so the time taken tells nobody whether the user
        // exists or has a temporary password. The password is a guess like
        // a login's, in the same budget; the temporary password is 256
        // random bits that nobody guesses, so it stays usable while the
        // account is locked (it is how a locked-out user gets back in).
        let password_ok = self
            .guess_password(ctx, stored.as_ref(), &req.old, &ctx.client_key())
            .await?
            == Guess::Right;
        let temporary_ok = self
            .hasher
            .verify(
                &req.old,
                stored
                    .as_ref()
                    .and_then(|u| u.temporary_password_hash.as_deref()),
            )
            .await
            .map_err(Error::from)?;
        let Some(before) = stored else {
            return Err(Error::Unauthenticated("old_password: incorrect password"));
        };
        // A deactivated or locked account changes no password: the answer
        // is the one a wrong password gets, whatever was given.
        if before.lifecycle.suspends_credentials() {
            tracing::info!(user_id = %before.user_id, "password change of a locked or deactivated user refused");
            return Err(Error::Unauthenticated("old_password: incorrect password"));
        }
        let at = now();
        let mut used_temporary = false;
        if !password_ok {
            if !temporary_ok {
                let event = self.event(
                    ctx,
                    USER_UPDATE_INCORRECT_PASSWORD,
                    &before,
                    Vec::new(),
                    false,
                );
                self.store.append_events(&[event]).await?;
                return Err(Error::Unauthenticated("old_password: incorrect password"));
            }
            if before.temporary_password_expires_at.is_none_or(|e| e <= at) {
                return Err(Error::Unauthenticated(
                    "temporary_password_expired: the temporary password expired",
                ));
            }
            used_temporary = true;
        }
        // Only now that the caller proved the old password may the answer
        // say anything about the address.
        self.config
            .password_policy
            .check_against_email(&req.new, &before.primary_email_address)
            .map_err(|v| FieldViolation::new("new", v.reason))?;
        let mut after = before.clone();
        after.password_hash = self.hasher.hash(&req.new).await.map_err(Error::from)?;
        after.password_updated_at = at;
        after.require_password_update = false;
        if used_temporary {
            after.temporary_password_hash = None;
            after.temporary_password_created_at = None;
            after.temporary_password_expires_at = None;
        }
        after.updated_at = at;
        let mut changed = vec!["password".to_string(), "password_updated_at".to_string()];
        changed.extend(
            changed_paths(&before, &after)
                .into_iter()
                .filter(|p| p != "password_updated_at"),
        );
        let event = self.event(ctx, USER_UPDATE, &after, changed, req.revoke_all_access);
        match self
            .store
            .update_user(&after, before.updated_at, false, &[event])
            .await
        {
            // A new password makes earlier password guesses moot, and
            // lifts their lock; wrong second-factor codes stay counted, or
            // whoever can set a password (through the mailbox, say) could
            // buy new code guesses with every change.
            Ok(()) => {
                self.store
                    .clear_password_failures(
                        &after.user_id,
                        lockout::Forget::Secret(lockout::Secret::Password),
                    )
                    .await?;
                Ok(())
            }
            Err(StoreError::Conflict) => Err(Error::FailedPrecondition(
                "the user is being changed concurrently; try again",
            )),
            Err(e) => Err(e.into()),
        }
    }

    /// The forgotten-password flow. The answer is the same whether or not
    /// the user exists and whether or not a temporary password is already
    /// live, so it tells nobody who has an account.
    #[tracing::instrument(skip_all)]
    pub async fn create_temporary_password(
        &self,
        ctx: &CallContext,
        req: CreateTemporaryPasswordRequest,
    ) -> Result<()> {
        let user_id = user_id_of(req.user_ids.as_ref(), "user_ids")?;
        // Budgets of their own: using these up blocks nothing else.
        let user_key = format!("temporary-password:{}", user_id.as_str());
        let client_key = format!("temporary-password@{}", ctx.client_key());
        if !self.limiter.allow(&[&client_key, &user_key]) {
            return Err(Error::RateLimited);
        }
        let secret = roster_core::token::random_secret(32);
        // Hash before looking the user up, so both paths cost the same.
        let hash = self.hasher.hash(&secret).await.map_err(Error::from)?;
        // A machine has no password to forget: it answers as no user.
        let Some(before) = self
            .store
            .get_user(user_id.as_str())
            .await?
            .filter(|u| u.deleted_at.is_none() && !u.is_machine())
        else {
            return Ok(());
        };
        // A secret that resets the password goes only to an address the
        // user has proven: else whoever could set the address (a profile
        // key, a typo) would receive the account.
        if before.primary_email_address_validated_at.is_none() {
            tracing::info!(user_id = %before.user_id, "no temporary password: address not validated");
            return Ok(());
        }
        let at = now();
        if before.temporary_password_expires_at.is_some_and(|e| e > at) {
            return Ok(());
        }
        let mut after = before.clone();
        after.temporary_password_hash = Some(hash);
        after.temporary_password_created_at = Some(at);
        after.temporary_password_expires_at =
            Some(at + Duration::seconds(self.config.temporary_password_ttl_secs as i64));
        after.updated_at = at;
        let changed = changed_paths(&before, &after);
        let event = self.event(ctx, USER_UPDATE, &after, changed, false);
        let mail = OutgoingMail::new(
            "temporary_password",
            &after.primary_email_address,
            &after.name,
        )
        .with("user_id", &after.user_id)
        .with("secret_temporary_password", secret)
        .with(
            "expires_at",
            after
                .temporary_password_expires_at
                .map(roster_core::mail::format_time)
                .unwrap_or_default(),
        );
        match self
            .store
            .update_user_mailing(&after, before.updated_at, false, &[event], &[mail])
            .await
        {
            // A concurrent request made one first: same answer.
            Ok(()) | Err(StoreError::Conflict) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    // ---- UserLifecycle: email validation -----------------------------

    /// Sends a fresh validation link for the primary email address; it
    /// replaces any earlier one, so this is also "resend". Admins may take
    /// the code in the answer instead of a mail.
    #[tracing::instrument(skip_all)]
    pub async fn send_email_validation(
        &self,
        ctx: &CallContext,
        req: SendEmailValidationRequest,
    ) -> Result<SendEmailValidationResponse> {
        let user_id = user_id_of(req.user_ids.as_ref(), "user_ids")?;
        if req.return_code && !ctx.caller.is_admin() {
            return Err(Error::PermissionDenied(
                "only admins may take the code instead of a mail (return_code)".into(),
            ));
        }
        let before = self
            .authorized_user(ctx, &user_id, Right::UserSettingsBasic, false)
            .await?;
        machine::refuse_machine(&before)?;
        if !ctx.caller.is_admin()
            && !self
                .limiter
                .allow(&[&format!("send-validation:{}", user_id.as_str())])
        {
            return Err(Error::RateLimited);
        }
        if before.primary_email_address_validated_at.is_some() {
            return Err(Error::FailedPrecondition(
                "email_already_validated: the primary email address is validated",
            ));
        }
        let at = now();
        let mut after = before.clone();
        let (code, mail) = self.start_email_validation(&mut after, at);
        after.updated_at = at;
        let mails = if req.return_code {
            Vec::new()
        } else {
            vec![mail]
        };
        // `updated_at` moves so that a concurrent change of the user cannot
        // write the old code's hash back; the event names no readable path.
        let event = self.event(ctx, USER_UPDATE, &after, Vec::new(), false);
        match self
            .store
            .update_user_mailing(&after, before.updated_at, false, &[event], &mails)
            .await
        {
            Ok(()) => {}
            Err(StoreError::Conflict) => {
                return Err(Error::FailedPrecondition(
                    "the user is being changed concurrently; try again",
                ));
            }
            Err(e) => return Err(e.into()),
        }
        tracing::info!(user_id = %after.user_id, mailed = !req.return_code, "email validation sent");
        Ok(SendEmailValidationResponse {
            code: if req.return_code { code } else { String::new() },
            expires_at: after
                .email_validation_expires_at
                .map(roster_core::time::timestamp),
        })
    }

    /// Validates the primary email address with the code from the mail.
    /// Needs no credential: the code is the proof.
    #[tracing::instrument(skip_all)]
    pub async fn validate_email(
        &self,
        ctx: &CallContext,
        req: ValidateEmailRequest,
    ) -> Result<ValidateEmailResponse> {
        let user_id = user_id_of(req.user_ids.as_ref(), "user_ids")?;
        if req.code.is_empty() {
            return Err(FieldViolation::new("code", "is required").into());
        }
        max_chars("code", &req.code, 128)?;
        // Per address only, in a budget of its own: a code is 256 random
        // bits, so guessing is hopeless, and a per-user budget would let
        // anybody keep the user from validating.
        let client_key = format!("validate@{}", ctx.client_key());
        if !self.limiter.allow(&[&client_key]) {
            return Err(Error::RateLimited);
        }
        let wrong = || {
            Error::from(FieldViolation::new(
                "code",
                "is not a valid code for this user",
            ))
        };
        let Some(before) = self
            .store
            .get_user(user_id.as_str())
            .await?
            .filter(|u| u.deleted_at.is_none())
        else {
            return Err(wrong());
        };
        // Unknown user, nothing pending (validated already, say) or a wrong
        // code: one answer, so nobody learns about an account without its
        // code.
        let Some(hash) = before.email_validation_hash.as_deref() else {
            return Err(wrong());
        };
        if !roster_core::token::verify_secret(&req.code, hash) {
            return Err(wrong());
        }
        let at = now();
        if before.email_validation_expires_at.is_none_or(|e| e <= at) {
            return Err(Error::FailedPrecondition(
                "email_validation_expired: ask for a new validation mail",
            ));
        }
        let mut after = before.clone();
        after.primary_email_address_validated_at = Some(at);
        after.email_validation_hash = None;
        after.email_validation_expires_at = None;
        lifecycle::email_validated(&mut after);
        after.updated_at = at;
        let changed = changed_paths(&before, &after);
        let event = self.event(ctx, USER_UPDATE, &after, changed, false);
        match self
            .store
            .update_user(&after, before.updated_at, false, &[event])
            .await
        {
            Ok(()) => {}
            // A concurrent validation with the same code won: the code is
            // spent either way.
            Err(StoreError::Conflict) => return Err(wrong()),
            Err(e) => return Err(e.into()),
        }
        tracing::info!(user_id = %after.user_id, "primary email address validated");
        Ok(ValidateEmailResponse {
            user_ids: Some(UserIdentifiers {
                user_id: after.user_id.clone(),
                email: String::new(),
            }),
            primary_email_address_validated_at: Some(roster_core::time::timestamp(at)),
        })
    }

    // ---- UserCredentials (internal) ----------------------------------

    /// Checks a password for another service. Unknown users and wrong
    /// passwords take the same time; the calling service (never an end
    /// user) learns which it was, to count failures per user.
    #[tracing::instrument(skip_all)]
    pub async fn check_password(
        &self,
        ctx: &CallContext,
        req: CheckPasswordRequest,
    ) -> Result<CheckPasswordResponse> {
        ctx.caller.require_cluster()?;
        let ids = req.user_ids.unwrap_or_default();
        let stored = if !ids.user_id.is_empty() {
            let id = UserId::parse(&ids.user_id).map_err(|v| v.under("user_ids"))?;
            self.store.get_user(id.as_str()).await?
        } else if !ids.email.is_empty() {
            let email = Email::parse(&ids.email)
                .map_err(|_| FieldViolation::new("user_ids.email", "is not an email address"))?;
            self.store.find_live_by_email(&email.normalized()).await?
        } else {
            return Err(
                FieldViolation::new("user_ids", "a user ID or an email is required").into(),
            );
        }
        // A machine never logs in: NOT_FOUND, as an unknown user, after
        // the same dummy hash, so no guesser learns which IDs are machines.
        .filter(|u| u.deleted_at.is_none() && !u.is_machine());
        max_chars("client_key", &req.client_key, 128)?;
        let mut guess = self
            .guess_password(ctx, stored.as_ref(), &req.password, &req.client_key)
            .await?;
        // A deactivated or locked account logs in with no password: the
        // right one is answered as one given while locked, so the login
        // answer tells a guesser nothing about the account.
        if guess == Guess::Right
            && stored
                .as_ref()
                .is_some_and(|u| u.lifecycle.suspends_credentials())
        {
            tracing::info!("login of a locked or deactivated user refused");
            guess = Guess::Throttled;
        }
        let ok = guess == Guess::Right;
        match stored {
            Some(user) => {
                if ok && self.hasher.needs_rehash(&user.password_hash) {
                    self.upgrade_password_hash(&user, &req.password).await;
                }
                let stored_id = user.user_id.clone();
                let full = convert::user_full(&user);
                let mask = FieldMask::default();
                let user = convert::apply_mask(
                    full,
                    &mask,
                    &[
                        "state",
                        "admin",
                        "require_password_update",
                        "primary_email_address",
                        "primary_email_address_validated_at",
                    ],
                );
                let second_factors = if ok {
                    self.active_factor_kinds(&stored_id)
                        .await?
                        .into_iter()
                        .map(|k| method_of(k) as i32)
                        .collect()
                } else {
                    Vec::new()
                };
                Ok(CheckPasswordResponse {
                    user: Some(user),
                    second_factors,
                    valid: ok,
                    throttled: guess == Guess::Throttled,
                    failures: match guess {
                        Guess::Wrong { failures } => failures,
                        _ => 0,
                    },
                })
            }
            None => Err(Error::NotFound("user")),
        }
    }

    /// Requires `password` to be the user's current one, as a guess in the
    /// account's budget: the proof a change of the primary email address
    /// needs from anyone but a full admin.
    async fn prove_password(
        &self,
        ctx: &CallContext,
        user_id: &UserId,
        password: &str,
    ) -> Result<()> {
        self.prove_password_for(ctx, user_id, password, "to change primary_email_address")
            .await
    }

    /// Requires `password` to be the user's current one (`purpose` says
    /// what for, when it is missing), as a guess in the account's budget.
    async fn prove_password_for(
        &self,
        ctx: &CallContext,
        user_id: &UserId,
        password: &str,
        purpose: &str,
    ) -> Result<()> {
        if password.is_empty() {
            return Err(FieldViolation::new(
                "password",
                format!("is required {purpose}: the current password"),
            )
            .into());
        }
        let stored = self
            .store
            .get_user(user_id.as_str())
            .await?
            .filter(|u| u.deleted_at.is_none());
        match self
            .guess_password(ctx, stored.as_ref(), password, &ctx.client_key())
            .await?
        {
            Guess::Right => Ok(()),
            Guess::Wrong { .. } | Guess::Throttled => {
                Err(Error::Unauthenticated("password: incorrect password"))
            }
        }
    }

    /// Forgets the user's wrong passwords and lifts their locks, for
    /// another service that saw the user prove the mailbox (a login token).
    /// Wrong second-factor codes stay counted: the mailbox proves nothing
    /// about them.
    #[tracing::instrument(skip_all)]
    pub async fn forget_password_failures(
        &self,
        ctx: &CallContext,
        ids: UserIdentifiers,
    ) -> Result<()> {
        ctx.caller.require_cluster()?;
        let user_id = user_id_of(Some(&ids), "")?;
        self.store
            .clear_password_failures(
                user_id.as_str(),
                lockout::Forget::Secret(lockout::Secret::Password),
            )
            .await?;
        Ok(())
    }

    /// Replaces a hash made with older settings, or imported from another
    /// system (PBKDF2), by an Argon2id hash with the current settings, once
    /// the password has just been proven. Only the stored form changes —
    /// not the password, not `updated_at` — so no event announces it. A
    /// failure or a concurrent change leaves the old hash, which still
    /// verifies; the next login tries again.
    async fn upgrade_password_hash(&self, user: &UserRecord, password: &str) {
        let hash = match self.hasher.hash(password).await {
            Ok(hash) => hash,
            Err(e) => {
                tracing::warn!(error = %e, "cannot rehash a password");
                return;
            }
        };
        let mut upgraded = user.clone();
        upgraded.password_hash = hash;
        match self
            .store
            .update_user(&upgraded, user.updated_at, false, &[])
            .await
        {
            Ok(()) => tracing::info!(user_id = %user.user_id, "password hash upgraded"),
            Err(StoreError::Conflict) => {}
            Err(e) => tracing::warn!(error = %e, "cannot store an upgraded password hash"),
        }
    }

    // ---- ExternalUserRegistry ----------------------------------------

    fn external_event(&self, ctx: &CallContext, name: &str, link: &ExternalUserRecord) -> Event {
        let mut event = new_event(
            name,
            user_ids_event(&link.user_id),
            Some(pack(&convert::external_user(link))),
        );
        ctx.stamp(&mut event);
        event
    }

    #[tracing::instrument(skip_all)]
    pub async fn create_external_user(
        &self,
        ctx: &CallContext,
        req: CreateExternalUserRequest,
    ) -> Result<ExternalUser> {
        ctx.caller.require_universal(Right::UserCreate)?;
        let input = req
            .external_user
            .ok_or_else(|| FieldViolation::new("external_user", "is required"))?;
        let user_id = user_id_of(input.user_ids.as_ref(), "external_user.user_ids")?;
        let provider = provider_id_of(input.provider_ids.as_ref(), "external_user.provider_ids")?;
        let external_id =
            ExternalId::parse(&input.external_id).map_err(|v| v.under("external_user"))?;
        let user = self.store.get_user(user_id.as_str()).await?;
        if user.is_none_or(|u| u.deleted_at.is_some()) {
            return Err(Error::NotFound("user"));
        }
        let at = now();
        let link = ExternalUserRecord {
            provider_id: provider.as_str().to_string(),
            external_id: external_id.as_str().to_string(),
            user_id: user_id.as_str().to_string(),
            created_at: at,
            updated_at: at,
        };
        let event = self.external_event(ctx, EXTERNAL_USER_CREATE, &link);
        self.store.insert_external_user(&link, &[event]).await?;
        Ok(convert::external_user(&link))
    }

    #[tracing::instrument(skip_all)]
    pub async fn get_external_user_by_user_id(
        &self,
        ctx: &CallContext,
        req: GetExternalUserByUserIdRequest,
    ) -> Result<ExternalUser> {
        let user_id = user_id_of(req.user_ids.as_ref(), "user_ids")?;
        let provider = provider_id_of(req.provider_ids.as_ref(), "provider_ids")?;
        ctx.caller.require(user_id.as_str(), Right::UserInfo)?;
        self.store
            .get_external_user_by_user_id(provider.as_str(), user_id.as_str())
            .await?
            .map(|l| convert::external_user(&l))
            .ok_or(Error::NotFound("external user"))
    }

    #[tracing::instrument(skip_all)]
    pub async fn get_external_user_by_external_id(
        &self,
        ctx: &CallContext,
        req: GetExternalUserByExternalIdRequest,
    ) -> Result<ExternalUser> {
        let provider = provider_id_of(req.provider_ids.as_ref(), "provider_ids")?;
        let external_id = ExternalId::parse(&req.external_id)?;
        ctx.caller.require_universal(Right::UserList)?;
        self.store
            .get_external_user_by_external_id(provider.as_str(), external_id.as_str())
            .await?
            .map(|l| convert::external_user(&l))
            .ok_or(Error::NotFound("external user"))
    }

    #[tracing::instrument(skip_all)]
    pub async fn delete_external_user(
        &self,
        ctx: &CallContext,
        req: DeleteExternalUserRequest,
    ) -> Result<()> {
        let provider = provider_id_of(req.provider_ids.as_ref(), "provider_ids")?;
        let external_id = ExternalId::parse(&req.external_id)?;
        ctx.caller.require_universal(Right::UserCreate)?;
        let link = self
            .store
            .get_external_user_by_external_id(provider.as_str(), external_id.as_str())
            .await?
            .ok_or(Error::NotFound("external user"))?;
        let event = self.external_event(ctx, EXTERNAL_USER_DELETE, &link);
        if self
            .store
            .delete_external_user(provider.as_str(), external_id.as_str(), &[event])
            .await?
        {
            Ok(())
        } else {
            Err(Error::NotFound("external user"))
        }
    }
}

/// The paths whose stored value differs (secrets by their hash).
fn changed_paths(before: &UserRecord, after: &UserRecord) -> Vec<String> {
    let mut out = Vec::new();
    let mut check = |path: &str, changed: bool| {
        if changed {
            out.push(path.to_string());
        }
    };
    check("name", before.name != after.name);
    check("description", before.description != after.description);
    check("attributes", before.attributes != after.attributes);
    check(
        "primary_email_address",
        before.primary_email_address != after.primary_email_address,
    );
    check(
        "primary_email_address_validated_at",
        before.primary_email_address_validated_at != after.primary_email_address_validated_at,
    );
    check(
        "password_updated_at",
        before.password_updated_at != after.password_updated_at,
    );
    check(
        "require_password_update",
        before.require_password_update != after.require_password_update,
    );
    check("state", before.state != after.state);
    check(
        "state_description",
        before.state_description != after.state_description,
    );
    check("admin", before.admin != after.admin);
    check(
        "temporary_password",
        before.temporary_password_hash != after.temporary_password_hash,
    );
    check(
        "profile_picture",
        before.profile_picture != after.profile_picture,
    );
    check(
        "email_notification_preferences",
        before.email_notification_types != after.email_notification_types,
    );
    check(
        "universal_rights",
        before.universal_rights != after.universal_rights,
    );
    out
}

/// A page of users as List and SearchUsers answer it.
#[derive(Debug)]
pub struct UserPage {
    pub users: Users,
    /// The number of matches (`x-total-count`); none on a keyset page after
    /// the first.
    pub total: Option<u64>,
    /// The total stopped at the search count cap.
    pub capped: bool,
    /// Where the next page starts (`x-next-page-token`), while more follow.
    pub next_page_token: Option<String>,
    /// Whether the matches were counted.
    counted: bool,
}

/// The keyset a `page_token` names, if one was sent; `page` cannot be
/// combined with it.
fn keyset_of(token: &str, page: &Page, order: &Order) -> Result<Option<Keyset>> {
    if token.is_empty() {
        return Ok(None);
    }
    if page.page > 1 {
        return Err(FieldViolation::new("page", "must be 0 or 1 with a page_token").into());
    }
    Ok(Some(
        PageToken::parse(token, order.field, order.descending)?.after,
    ))
}
