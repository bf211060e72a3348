//! The account lifecycle of `UserLifecycle`: the status, an
//! administrator's lock, deactivation, required actions and statistics.
//!
//! What each change does to the user's credentials is decided elsewhere,
//! from the state written here: the access service refuses every session
//! and API key of a deactivated or administrator-locked user and limits the
//! sessions of a user with pending actions; the sessions service ends the
//! sessions of a deactivated user on `user.lifecycle.deactivate`; every
//! process drops its cached credentials of the user on the event.

use chrono::{DateTime, Utc};
use roster_core::auth::CallContext;
use roster_core::events::{lifecycle, new_event, pack};
use roster_core::list::FieldMask;
use roster_proto::v1::{
    DeactivateUserRequest, Event, GetUserRequest, LockUserRequest, SetRequiredActionsRequest,
    State, UserIdentifiers, UserLifecycleStatus, UserRequiredAction, UserStateCount,
    UserStatistics, UserWithStatus,
};

use super::{UPDATE_ATTEMPTS, UserRegistryService, user_id_of, user_ids_event};
use crate::convert::{self, READABLE_PATHS, WRITE_ONLY_PATHS, now, opt_timestamp, timestamp};
use crate::domain::{LifecycleReason, RequiredActions, UserId};
use crate::error::{Error, Result};
use crate::lockout;
use crate::store::{StoreError, UserRecord};

/// Every review state, in enum order, for the statistics.
const STATES: [State; 5] = [
    State::Requested,
    State::Approved,
    State::Rejected,
    State::Flagged,
    State::Suspended,
];

/// Admins only: full admins and other services.
fn require_admin(ctx: &CallContext) -> Result<()> {
    ctx.caller.require_authenticated()?;
    if ctx.caller.is_admin() {
        Ok(())
    } else {
        Err(Error::PermissionDenied(
            "admin_only: only admins change an account's lifecycle".into(),
        ))
    }
}

fn reason_of(text: &str) -> Result<LifecycleReason> {
    Ok(LifecycleReason::parse(text)?)
}

/// The pending actions of `user`: the password change is
/// `require_password_update`, the others are stored apart.
fn required_actions(user: &UserRecord) -> Vec<i32> {
    let mut actions = Vec::new();
    if user.require_password_update {
        actions.push(UserRequiredAction::UpdatePassword as i32);
    }
    actions.extend(user.lifecycle.required_actions.iter().copied());
    actions.sort_unstable();
    actions.dedup();
    actions
}

/// The status of `user`, with `failure_lock` the end of an account-wide
/// lock after wrong passwords or codes, if one holds. Reasons only when `reasons`.
fn status_of(
    user: &UserRecord,
    failure_lock: Option<DateTime<Utc>>,
    reasons: bool,
) -> UserLifecycleStatus {
    let l = &user.lifecycle;
    let reason = |text: &str| {
        if reasons {
            text.to_string()
        } else {
            String::new()
        }
    };
    UserLifecycleStatus {
        user_ids: Some(UserIdentifiers {
            user_id: user.user_id.clone(),
            email: String::new(),
        }),
        state: user.state,
        locked: l.locked_at.is_some() || failure_lock.is_some(),
        locked_at: opt_timestamp(l.locked_at),
        // An administrator's lock lasts until UnlockUser, whatever else.
        locked_until: if l.locked_at.is_some() {
            None
        } else {
            opt_timestamp(failure_lock)
        },
        lock_reason: reason(&l.lock_reason),
        deactivated: l.deactivated_at.is_some(),
        deactivated_at: opt_timestamp(l.deactivated_at),
        deactivation_reason: reason(&l.deactivation_reason),
        required_actions: required_actions(user),
        primary_email_address_validated_at: opt_timestamp(user.primary_email_address_validated_at),
        sessions_ended_at: opt_timestamp(l.sessions_ended_at),
    }
}

/// A lifecycle change of one user, as a pure function of the stored user
/// and the time: it edits `after`, or refuses with the reason.
type Change<'a> =
    &'a (dyn Fn(&UserRecord, &mut UserRecord, DateTime<Utc>) -> Result<()> + Send + Sync);

impl UserRegistryService {
    /// The end of the account-wide lock after wrong passwords or codes, if one
    /// holds now.
    async fn failure_lock(&self, user_id: &str) -> Result<Option<DateTime<Utc>>> {
        Ok(self
            .store
            .user_version_and_lock(user_id, self.clock.now())
            .await?
            .and_then(|(_, lock)| lock))
    }

    /// Applies `change` to the live user `user_id` and writes it with the
    /// event `name` (carrying the status after the change, reasons
    /// included), retrying when a concurrent change got there first. A
    /// change that leaves no active admin fails with `last_admin`.
    async fn change_lifecycle(
        &self,
        ctx: &CallContext,
        user_id: &UserId,
        name: &str,
        change: Change<'_>,
    ) -> Result<UserLifecycleStatus> {
        for _ in 0..UPDATE_ATTEMPTS {
            let before = self
                .authorized_user(ctx, user_id, roster_proto::v1::Right::UserInfo, false)
                .await?;
            let at = now();
            let mut after = before.clone();
            change(&before, &mut after, at)?;
            after.updated_at = at;
            // An unlock also lifts the lock after wrong passwords, so its
            // event reports none.
            let failure_lock = if after.lifecycle.locked_at.is_some() || name == lifecycle::UNLOCK {
                None
            } else {
                self.failure_lock(user_id.as_str()).await?
            };
            let status = status_of(&after, failure_lock, true);
            let event = self.lifecycle_event(ctx, name, &status);
            let guard = before.is_effective_admin() && !after.is_effective_admin();
            match self
                .store
                .update_user(&after, before.updated_at, guard, &[event])
                .await
            {
                Ok(()) => {
                    tracing::info!(user_id = %after.user_id, event = name, "account lifecycle changed");
                    return Ok(status);
                }
                Err(StoreError::Conflict) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(Error::FailedPrecondition(
            "the user is being changed concurrently; try again",
        ))
    }

    fn lifecycle_event(
        &self,
        ctx: &CallContext,
        name: &str,
        status: &UserLifecycleStatus,
    ) -> Event {
        let user_id = status
            .user_ids
            .as_ref()
            .map(|ids| ids.user_id.as_str())
            .unwrap_or_default();
        let mut event = new_event(name, user_ids_event(user_id), Some(pack(status)));
        ctx.stamp(&mut event);
        event
    }

    /// The user's lifecycle status. Reasons go to admins only.
    #[tracing::instrument(skip_all)]
    pub async fn get_status(
        &self,
        ctx: &CallContext,
        ids: UserIdentifiers,
    ) -> Result<UserLifecycleStatus> {
        let user_id = user_id_of(Some(&ids), "")?;
        let user = self
            .authorized_user(ctx, &user_id, roster_proto::v1::Right::UserInfo, false)
            .await?;
        let failure_lock = self.failure_lock(&user.user_id).await?;
        let mut status = status_of(&user, failure_lock, ctx.caller.is_admin());
        self.add_policy_actions(&user, &mut status).await?;
        Ok(status)
    }

    /// Adds ENROL_SECOND_FACTOR to `status` when the second-factor policy
    /// applies to `user` and the user has no active factor (the action is
    /// then pending without being stored, and goes once a factor is added).
    pub(crate) async fn add_policy_actions(
        &self,
        user: &UserRecord,
        status: &mut UserLifecycleStatus,
    ) -> Result<()> {
        let enrol = UserRequiredAction::EnrolSecondFactor as i32;
        // A machine has no login for a factor to guard.
        if status.required_actions.contains(&enrol)
            || user.is_machine()
            || !self.config.require_second_factor.applies_to(user.admin)
            || !self.active_factor_kinds(&user.user_id).await?.is_empty()
        {
            return Ok(());
        }
        status.required_actions.push(enrol);
        status.required_actions.sort_unstable();
        Ok(())
    }

    /// Clears a stored ENROL_SECOND_FACTOR once the user has added a
    /// factor.
    pub(crate) async fn second_factor_enrolled(
        &self,
        ctx: &CallContext,
        user: &UserRecord,
    ) -> Result<()> {
        let enrol = UserRequiredAction::EnrolSecondFactor as i32;
        if !user.lifecycle.required_actions.contains(&enrol) {
            return Ok(());
        }
        let user_id = UserId::parse(&user.user_id).map_err(Error::InvalidArgument)?;
        self.change_lifecycle(
            ctx,
            &user_id,
            lifecycle::SET_REQUIRED_ACTIONS,
            &|_, after, _| {
                after.lifecycle.required_actions.retain(|a| *a != enrol);
                Ok(())
            },
        )
        .await?;
        Ok(())
    }

    /// Ends every session `user_id` made until now (`sessions_ended_at`,
    /// which the access service checks on every session and the sessions
    /// service acts on), with a `user.lifecycle.end_sessions` event.
    pub(crate) async fn end_sessions(&self, ctx: &CallContext, user_id: &str) -> Result<()> {
        let user_id = UserId::parse(user_id).map_err(Error::InvalidArgument)?;
        self.change_lifecycle(ctx, &user_id, lifecycle::END_SESSIONS, &|_, after, at| {
            after.lifecycle.sessions_ended_at = Some(at);
            Ok(())
        })
        .await?;
        Ok(())
    }

    /// A user and its status from one read of the store: `Get` and
    /// `GetStatus` in one, for callers that need both (the access service
    /// resolving a credential).
    #[tracing::instrument(skip_all)]
    pub async fn get_with_status(
        &self,
        ctx: &CallContext,
        req: GetUserRequest,
    ) -> Result<UserWithStatus> {
        let user_id = user_id_of(req.user_ids.as_ref(), "user_ids")?;
        let mask = FieldMask::parse(req.field_mask.as_ref(), READABLE_PATHS, WRITE_ONLY_PATHS)?;
        let right = roster_proto::v1::Right::UserInfo;
        ctx.caller.require(user_id.as_str(), right)?;
        let admin = ctx.caller.is_admin();
        let now = self.clock.now();
        let (user, failure_lock) =
            match self.store.read_user_and_lock(user_id.as_str(), now).await? {
                // Soft-deleted users as Get shows them: to admins only.
                Some((u, lock)) if u.deleted_at.is_none() || admin => (u, lock),
                _ if admin => return Err(Error::NotFound("user")),
                _ => {
                    return Err(Error::PermissionDenied(format!(
                        "missing right {}",
                        right.as_str_name()
                    )));
                }
            };
        let mut status = user
            .deleted_at
            .is_none()
            .then(|| status_of(&user, failure_lock, admin));
        if let Some(status) = status.as_mut() {
            self.add_policy_actions(&user, status).await?;
        }
        Ok(UserWithStatus {
            user: Some(convert::apply_mask(
                convert::user_full(&user),
                &mask,
                READABLE_PATHS,
            )),
            status,
        })
    }

    /// An administrator's lock: logins and every credential refused until
    /// UnlockUser.
    #[tracing::instrument(skip_all)]
    pub async fn lock_user(
        &self,
        ctx: &CallContext,
        req: LockUserRequest,
    ) -> Result<UserLifecycleStatus> {
        let user_id = user_id_of(req.user_ids.as_ref(), "user_ids")?;
        let reason = reason_of(&req.reason)?;
        require_admin(ctx)?;
        self.change_lifecycle(ctx, &user_id, lifecycle::LOCK, &|before, after, at| {
            if before.lifecycle.deactivated_at.is_some() {
                return Err(Error::FailedPrecondition(
                    "deactivated: the user is deactivated; reactivate it first",
                ));
            }
            if before.lifecycle.locked_at.is_some() {
                return Err(Error::FailedPrecondition(
                    "already_locked: an admin locked the user already",
                ));
            }
            after.lifecycle.locked_at = Some(at);
            after.lifecycle.lock_reason = reason.as_str().to_string();
            Ok(())
        })
        .await
    }

    /// Lifts the administrator's lock and the locks after wrong passwords,
    /// forgetting the wrong passwords.
    #[tracing::instrument(skip_all)]
    pub async fn unlock_user(
        &self,
        ctx: &CallContext,
        ids: UserIdentifiers,
    ) -> Result<UserLifecycleStatus> {
        let user_id = user_id_of(Some(&ids), "")?;
        require_admin(ctx)?;
        let failure_lock = self.failure_lock(user_id.as_str()).await?;
        let status = self
            .change_lifecycle(ctx, &user_id, lifecycle::UNLOCK, &|before, after, _| {
                if before.lifecycle.locked_at.is_none() && failure_lock.is_none() {
                    return Err(Error::FailedPrecondition(
                        "not_locked: the user is not locked",
                    ));
                }
                after.lifecycle.locked_at = None;
                after.lifecycle.lock_reason.clear();
                Ok(())
            })
            .await?;
        self.store
            .clear_password_failures(user_id.as_str(), lockout::Forget::All)
            .await?;
        Ok(status)
    }

    /// Deactivates the account: its sessions end, its API keys are refused
    /// until reactivation.
    #[tracing::instrument(skip_all)]
    pub async fn deactivate_user(
        &self,
        ctx: &CallContext,
        req: DeactivateUserRequest,
    ) -> Result<UserLifecycleStatus> {
        let user_id = user_id_of(req.user_ids.as_ref(), "user_ids")?;
        let reason = reason_of(&req.reason)?;
        require_admin(ctx)?;
        self.change_lifecycle(
            ctx,
            &user_id,
            lifecycle::DEACTIVATE,
            &|before, after, at| {
                if before.lifecycle.deactivated_at.is_some() {
                    return Err(Error::FailedPrecondition(
                        "already_deactivated: the user is deactivated already",
                    ));
                }
                after.lifecycle.deactivated_at = Some(at);
                after.lifecycle.deactivation_reason = reason.as_str().to_string();
                after.lifecycle.sessions_ended_at = Some(at);
                Ok(())
            },
        )
        .await
    }

    /// Reactivates a deactivated account.
    #[tracing::instrument(skip_all)]
    pub async fn reactivate_user(
        &self,
        ctx: &CallContext,
        ids: UserIdentifiers,
    ) -> Result<UserLifecycleStatus> {
        let user_id = user_id_of(Some(&ids), "")?;
        require_admin(ctx)?;
        self.change_lifecycle(ctx, &user_id, lifecycle::REACTIVATE, &|before, after, _| {
            if before.lifecycle.deactivated_at.is_none() {
                return Err(Error::FailedPrecondition(
                    "not_deactivated: the user is active",
                ));
            }
            after.lifecycle.deactivated_at = None;
            after.lifecycle.deactivation_reason.clear();
            Ok(())
        })
        .await
    }

    /// Replaces the user's pending actions. A pending email validation
    /// clears the address's validation, so the user proves it again.
    #[tracing::instrument(skip_all)]
    pub async fn set_required_actions(
        &self,
        ctx: &CallContext,
        req: SetRequiredActionsRequest,
    ) -> Result<UserLifecycleStatus> {
        let user_id = user_id_of(req.user_ids.as_ref(), "user_ids")?;
        let actions = RequiredActions::parse(&req.actions)?;
        require_admin(ctx)?;
        self.change_lifecycle(
            ctx,
            &user_id,
            lifecycle::SET_REQUIRED_ACTIONS,
            &|before, after, _| {
                if before.lifecycle.deactivated_at.is_some() {
                    return Err(Error::FailedPrecondition(
                        "deactivated: the user is deactivated; reactivate it first",
                    ));
                }
                // Both actions need a password or an address, which a machine
                // has not; clearing stays possible.
                if actions.iter().next().is_some() {
                    super::machine::refuse_machine(before)?;
                }
                after.require_password_update =
                    actions.contains(UserRequiredAction::UpdatePassword);
                after.lifecycle.required_actions = actions
                    .iter()
                    .filter(|a| *a != UserRequiredAction::UpdatePassword)
                    .map(|a| a as i32)
                    .collect();
                if actions.contains(UserRequiredAction::ValidateEmail) {
                    after.primary_email_address_validated_at = None;
                }
                Ok(())
            },
        )
        .await
    }

    /// Counts over every user, in one aggregate query.
    #[tracing::instrument(skip_all)]
    pub async fn user_statistics(&self, ctx: &CallContext) -> Result<UserStatistics> {
        require_admin(ctx)?;
        let at = self.clock.now();
        let counts = self.store.user_counts(at).await?;
        Ok(UserStatistics {
            total: counts.total,
            by_state: STATES
                .iter()
                .map(|state| UserStateCount {
                    state: *state as i32,
                    count: counts.by_state[*state as usize],
                })
                .collect(),
            admins: counts.admins,
            deleted: counts.deleted,
            locked: counts.locked,
            deactivated: counts.deactivated,
            email_unvalidated: counts.email_unvalidated,
            machines: counts.machines,
            second_factor_enrolled: match &self.second_factors {
                Some(factors) => factors.store.users_with_active_factor().await?,
                None => 0,
            },
            computed_at: Some(timestamp(at)),
        })
    }
}

/// Takes a done email validation off the pending actions.
pub(super) fn email_validated(user: &mut UserRecord) {
    user.lifecycle
        .required_actions
        .retain(|a| *a != UserRequiredAction::ValidateEmail as i32);
}
