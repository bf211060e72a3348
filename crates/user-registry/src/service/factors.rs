//! Second factors: `UserAuthenticationFactors` (enrolment, removal,
//! listing) and the internal `SecondFactorCredentials` (a code checked and
//! used up at login, a mailed code sent).
//!
//! Rights follow what a factor can reach. While a user has no active
//! factor, adding one needs RIGHT_USER_ALL, or RIGHT_USER_SETTINGS_BASIC
//! and the current password (counted in the lockout): a first factor
//! changes how the user logs in, so a narrow key alone must not shut the
//! owner out of a password login. Once the user has one, adding another
//! needs RIGHT_USER_ALL: only a credential born of a complete login (or a
//! full admin) holds it, so a narrower API key together with a stolen
//! password cannot add a factor of its own choosing and log in past the
//! user's. Removing needs RIGHT_USER_ALL and the current password
//! (counted in the lockout), or a full admin.
//!
//! A user whom the second-factor policy (or a stored
//! ENROL_SECOND_FACTOR) requires to enrol has sessions limited to that;
//! adding the first factor ends them all, the one it was added through
//! too, and the next login proves the new factor.
//!
//! Wrong codes count in windows like those of wrong passwords, with the
//! same limits, but of their own (`lockout::Secret`): a login token or a
//! new password lifts a password lock, and neither may buy new code
//! guesses.

use std::sync::Arc;

use chrono::Duration;
use roster_core::auth::CallContext;
use roster_core::events::{mfa, new_event, pack};
use roster_core::mail::OutgoingMail;
use roster_proto::v1::{
    AddOtpEmailRequest, AuthenticationFactor, AuthenticationMethodType, CheckSecondFactorRequest,
    CheckSecondFactorResponse, Event, GenerateRecoveryCodesRequest, GenerateRecoveryCodesResponse,
    ListAuthenticationFactorsRequest, ListAuthenticationFactorsResponse,
    ListAuthenticationMethodTypesResponse, RegisterTotpRequest, RegisterTotpResponse,
    RemoveAuthenticationFactorRequest, Right, UserIdentifiers, VerifyTotpRegistrationRequest,
    check_second_factor_request::Code,
};

use super::{UserRegistryService, user_id_of, user_ids_event};
use crate::domain::UserId;
use crate::error::{Error, Result};
use crate::factor_keys::FactorKeys;
use crate::lockout::{Forget, Secret};
use crate::store::UserRecord;
use crate::store::factors::{FactorKind, FactorRecord, FactorStore};
use crate::totp;

/// A code that matched one of a user's factors, not used up yet.
enum MatchedCode {
    /// The TOTP time step it matched.
    Totp(i64),
    /// The digest of the mailed code.
    Email(String),
    /// The digest of the recovery code, and the batch it is in.
    Recovery { hash: String, factor: FactorRecord },
}

/// Recovery codes in a batch.
pub const RECOVERY_CODES: usize = 10;
/// Random bytes of a recovery code: 80 bits, 16 base32 characters.
const RECOVERY_CODE_BYTES: usize = 10;
/// Digits of a mailed code.
pub const EMAIL_CODE_DIGITS: usize = 8;
/// The least time between two codes mailed to one user, in seconds: a
/// holder of the password (or of many challenges) cannot flood the
/// mailbox, nor replace the code its owner is about to type.
pub const EMAIL_CODE_INTERVAL_SECS: i64 = 30;

const RECOVERY_PURPOSE: &str = "recovery";
const EMAIL_PURPOSE: &str = "email";

/// The factor store and the keys of its secrets.
pub struct SecondFactors {
    pub store: Arc<dyn FactorStore>,
    pub keys: Arc<FactorKeys>,
}

/// The method a factor kind offers at login.
pub fn method_of(kind: FactorKind) -> AuthenticationMethodType {
    match kind {
        FactorKind::Totp => AuthenticationMethodType::Totp,
        FactorKind::OtpEmail => AuthenticationMethodType::OtpEmail,
        FactorKind::RecoveryCodes => AuthenticationMethodType::RecoveryCode,
    }
}

fn factor_message(factor: &FactorRecord) -> AuthenticationFactor {
    AuthenticationFactor {
        r#type: method_of(factor.kind) as i32,
        created_at: Some(roster_core::time::timestamp(factor.created_at)),
        ready: factor.verified_at.is_some(),
        remaining_codes: factor.remaining_codes,
    }
}

/// A recovery code as typed: case, spaces and dashes do not matter.
fn normalize_recovery_code(code: &str) -> String {
    code.chars()
        .filter(|c| !matches!(c, '-' | ' '))
        .flat_map(char::to_lowercase)
        .collect()
}

/// A new recovery code, `xxxx-xxxx-xxxx-xxxx`.
fn new_recovery_code() -> String {
    let raw = roster_core::token::random_secret(RECOVERY_CODE_BYTES);
    raw.as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join("-")
}

impl UserRegistryService {
    /// Adds the second factors (the store and its keys).
    pub fn with_second_factors(
        mut self,
        store: Arc<dyn FactorStore>,
        keys: Arc<FactorKeys>,
    ) -> Self {
        self.second_factors = Some(SecondFactors { store, keys });
        self
    }

    fn second_factors(&self) -> Result<&SecondFactors> {
        self.second_factors
            .as_ref()
            .ok_or_else(|| Error::Internal(anyhow::anyhow!("second factors are not configured")))
    }

    /// The user's active factor kinds (a batch of recovery codes counts
    /// while any is unused).
    pub async fn active_factor_kinds(&self, user_id: &str) -> Result<Vec<FactorKind>> {
        let Some(factors) = &self.second_factors else {
            return Ok(Vec::new());
        };
        Ok(factors
            .store
            .factors(user_id)
            .await?
            .iter()
            .filter(|f| f.is_active())
            .map(|f| f.kind)
            .collect())
    }

    fn factor_event(
        &self,
        ctx: &CallContext,
        name: &str,
        user_id: &str,
        factor: AuthenticationFactor,
    ) -> Event {
        let mut event = new_event(name, user_ids_event(user_id), Some(pack(&factor)));
        ctx.stamp(&mut event);
        event
    }

    /// The user and its factors, for a caller that may add a factor to it:
    /// see the module documentation for the rights and the password this
    /// needs.
    async fn enrolling_user(
        &self,
        ctx: &CallContext,
        ids: Option<&UserIdentifiers>,
        password: Option<&str>,
    ) -> Result<(UserRecord, Vec<FactorRecord>)> {
        let user_id = user_id_of(ids, "user_ids")?;
        let user = self
            .authorized_user(ctx, &user_id, Right::UserSettingsBasic, false)
            .await?;
        // A machine never logs in: there is no login for a factor to guard.
        super::machine::refuse_machine(&user)?;
        let factors = self
            .second_factors()?
            .store
            .factors(user_id.as_str())
            .await?;
        if factors.iter().any(FactorRecord::is_active) {
            // A factor stored while clearing ENROL_SECOND_FACTOR failed
            // leaves the action behind: any later enrolment attempt clears
            // it, since the user has what it asks for.
            self.second_factor_enrolled(ctx, &user).await?;
            ctx.caller.require(user_id.as_str(), Right::UserAll)?;
        } else if let Some(password) = password
            && ctx
                .caller
                .require(user_id.as_str(), Right::UserAll)
                .is_err()
        {
            // A first factor changes how the user logs in: a narrower
            // credential adds one only with the password, or it could
            // shut the owner out of a password login.
            self.prove_password_for(ctx, &user_id, password, "to add a first second factor")
                .await?;
        }
        Ok((user, factors))
    }

    /// Before the first factor of a user whom the second-factor policy or
    /// a stored ENROL_SECOND_FACTOR requires to enrol one is stored: every
    /// session the user made until now ends (`sessions_ended_at`), since
    /// each proved no second factor and was limited to enrolling one. A
    /// session keeps what its login proved; without this, a stolen
    /// password would enrol a factor of its own and the session it logged
    /// in with would become a full one. Done first, so a failure after it
    /// ends sessions for nothing rather than leaving one unlimited.
    async fn end_sessions_before_first_factor(
        &self,
        ctx: &CallContext,
        user: &UserRecord,
        factors: &[FactorRecord],
    ) -> Result<()> {
        let enrol = roster_proto::v1::UserRequiredAction::EnrolSecondFactor as i32;
        let required = user.lifecycle.required_actions.contains(&enrol)
            || self.config.require_second_factor.applies_to(user.admin);
        if !required || factors.iter().any(FactorRecord::is_active) {
            return Ok(());
        }
        self.end_sessions(ctx, &user.user_id).await
    }

    /// The user, for a caller that may remove its factors: a full admin,
    /// or RIGHT_USER_ALL with the current password.
    async fn removing_user(
        &self,
        ctx: &CallContext,
        req: &RemoveAuthenticationFactorRequest,
    ) -> Result<UserId> {
        let user_id = user_id_of(req.user_ids.as_ref(), "user_ids")?;
        self.authorized_user(ctx, &user_id, Right::UserAll, false)
            .await?;
        if !ctx.caller.is_admin() {
            self.prove_password_for(ctx, &user_id, &req.password, "to remove a second factor")
                .await?;
        }
        Ok(user_id)
    }

    // ---- UserAuthenticationFactors -----------------------------------

    #[tracing::instrument(skip_all)]
    pub async fn register_totp(
        &self,
        ctx: &CallContext,
        req: RegisterTotpRequest,
    ) -> Result<RegisterTotpResponse> {
        let (user, factors) = self
            .enrolling_user(ctx, req.user_ids.as_ref(), Some(&req.password))
            .await?;
        if factors
            .iter()
            .any(|f| f.kind == FactorKind::Totp && f.verified_at.is_some())
        {
            return Err(Error::AlreadyExists("totp"));
        }
        let second = self.second_factors()?;
        let secret = totp::generate_secret();
        let mut record = FactorRecord::new(&user.user_id, FactorKind::Totp, self.clock.now());
        record.secret_sealed = Some(second.keys.seal(&user.user_id, &secret));
        // Pending: no event until it is verified.
        if !second.store.put_factor(&record, &[]).await? {
            return Err(Error::AlreadyExists("totp"));
        }
        tracing::info!(user_id = %user.user_id, "TOTP registration started");
        Ok(RegisterTotpResponse {
            uri: totp::uri(&self.config.totp_issuer, &user.user_id, &secret),
            secret: totp::encode_secret(&secret),
        })
    }

    #[tracing::instrument(skip_all)]
    pub async fn verify_totp_registration(
        &self,
        ctx: &CallContext,
        req: VerifyTotpRegistrationRequest,
    ) -> Result<()> {
        if !totp::is_well_formed(&req.code) {
            return Err(roster_core::validation::FieldViolation::new(
                "code",
                "must be the 6 digits the authenticator app shows",
            )
            .into());
        }
        // No password: RegisterTOTP asked for it, and only its caller has
        // the secret a right code comes from.
        let (user, factors) = self
            .enrolling_user(ctx, req.user_ids.as_ref(), None)
            .await?;
        let Some(pending) = factors
            .iter()
            .find(|f| f.kind == FactorKind::Totp && f.verified_at.is_none())
        else {
            return Err(Error::FailedPrecondition(
                "no_pending_totp: RegisterTOTP first",
            ));
        };
        let second = self.second_factors()?;
        let secret = second
            .keys
            .open(
                &user.user_id,
                pending.secret_sealed.as_deref().unwrap_or_default(),
            )
            .map_err(|e| Error::Internal(e.into()))?;
        let now = self.clock.now();
        let Some(step) = totp::verify(&secret, &req.code, totp::step_of(now.timestamp()), 0) else {
            return Err(roster_core::validation::FieldViolation::new(
                "code",
                "is not the app's current code",
            )
            .into());
        };
        self.end_sessions_before_first_factor(ctx, &user, &factors)
            .await?;
        let mut active = pending.clone();
        active.verified_at = Some(now);
        let event = self.factor_event(ctx, mfa::TOTP_ADDED, &user.user_id, factor_message(&active));
        if !second
            .store
            .activate_factor(&user.user_id, FactorKind::Totp, now, step, &[event])
            .await?
        {
            return Err(Error::FailedPrecondition(
                "no_pending_totp: RegisterTOTP first",
            ));
        }
        self.second_factor_enrolled(ctx, &user).await?;
        tracing::info!(user_id = %user.user_id, "TOTP added");
        Ok(())
    }

    #[tracing::instrument(skip_all)]
    pub async fn remove_factor(
        &self,
        ctx: &CallContext,
        req: RemoveAuthenticationFactorRequest,
        kind: FactorKind,
    ) -> Result<()> {
        let user_id = self.removing_user(ctx, &req).await?;
        let second = self.second_factors()?;
        let factor = second
            .store
            .factors(user_id.as_str())
            .await?
            .into_iter()
            .find(|f| f.kind == kind)
            .ok_or(Error::NotFound("second factor"))?;
        let name = match kind {
            FactorKind::Totp => mfa::TOTP_REMOVED,
            FactorKind::OtpEmail => mfa::OTP_EMAIL_REMOVED,
            FactorKind::RecoveryCodes => mfa::RECOVERY_CODES_REMOVED,
        };
        let event = self.factor_event(ctx, name, user_id.as_str(), factor_message(&factor));
        let events = if factor.verified_at.is_some() {
            vec![event]
        } else {
            Vec::new()
        };
        if !second
            .store
            .remove_factor(user_id.as_str(), kind, &events)
            .await?
        {
            return Err(Error::NotFound("second factor"));
        }
        tracing::info!(user_id = %user_id.as_str(), kind = kind.as_str(), "second factor removed");
        Ok(())
    }

    #[tracing::instrument(skip_all)]
    pub async fn add_otp_email(&self, ctx: &CallContext, req: AddOtpEmailRequest) -> Result<()> {
        let (user, factors) = self
            .enrolling_user(ctx, req.user_ids.as_ref(), Some(&req.password))
            .await?;
        if user.primary_email_address_validated_at.is_none() {
            return Err(Error::FailedPrecondition(
                "email_not_validated: codes go only to a validated primary email address",
            ));
        }
        if factors.iter().any(|f| f.kind == FactorKind::OtpEmail) {
            return Err(Error::AlreadyExists("otp_email"));
        }
        self.end_sessions_before_first_factor(ctx, &user, &factors)
            .await?;
        let record = FactorRecord::new(&user.user_id, FactorKind::OtpEmail, self.clock.now());
        let event = self.factor_event(
            ctx,
            mfa::OTP_EMAIL_ADDED,
            &user.user_id,
            factor_message(&record),
        );
        if !self
            .second_factors()?
            .store
            .put_factor(&record, &[event])
            .await?
        {
            return Err(Error::AlreadyExists("otp_email"));
        }
        self.second_factor_enrolled(ctx, &user).await?;
        Ok(())
    }

    #[tracing::instrument(skip_all)]
    pub async fn generate_recovery_codes(
        &self,
        ctx: &CallContext,
        req: GenerateRecoveryCodesRequest,
    ) -> Result<GenerateRecoveryCodesResponse> {
        let (user, factors) = self
            .enrolling_user(ctx, req.user_ids.as_ref(), Some(&req.password))
            .await?;
        self.end_sessions_before_first_factor(ctx, &user, &factors)
            .await?;
        let second = self.second_factors()?;
        let codes: Vec<String> = (0..RECOVERY_CODES).map(|_| new_recovery_code()).collect();
        let hashes: Vec<String> = codes
            .iter()
            .map(|c| {
                second
                    .keys
                    .hash_code(&user.user_id, RECOVERY_PURPOSE, &normalize_recovery_code(c))
            })
            .collect();
        let now = self.clock.now();
        let mut record = FactorRecord::new(&user.user_id, FactorKind::RecoveryCodes, now);
        record.remaining_codes = RECOVERY_CODES as u32;
        let event = self.factor_event(
            ctx,
            mfa::RECOVERY_CODES_GENERATED,
            &user.user_id,
            factor_message(&record),
        );
        second
            .store
            .replace_recovery_codes(&user.user_id, now, &hashes, &[event])
            .await?;
        self.second_factor_enrolled(ctx, &user).await?;
        tracing::info!(user_id = %user.user_id, "recovery codes generated");
        Ok(GenerateRecoveryCodesResponse { codes })
    }

    #[tracing::instrument(skip_all)]
    pub async fn list_authentication_factors(
        &self,
        ctx: &CallContext,
        req: ListAuthenticationFactorsRequest,
    ) -> Result<ListAuthenticationFactorsResponse> {
        let user_id = user_id_of(req.user_ids.as_ref(), "user_ids")?;
        self.authorized_user(ctx, &user_id, Right::UserInfo, false)
            .await?;
        let factors = self
            .second_factors()?
            .store
            .factors(user_id.as_str())
            .await?;
        Ok(ListAuthenticationFactorsResponse {
            factors: factors.iter().map(factor_message).collect(),
        })
    }

    #[tracing::instrument(skip_all)]
    pub async fn list_authentication_method_types(
        &self,
        ctx: &CallContext,
        ids: Option<UserIdentifiers>,
    ) -> Result<ListAuthenticationMethodTypesResponse> {
        let user_id = user_id_of(ids.as_ref(), "user_ids")?;
        self.authorized_user(ctx, &user_id, Right::UserInfo, false)
            .await?;
        let mut types = vec![AuthenticationMethodType::Password as i32];
        for kind in self.active_factor_kinds(user_id.as_str()).await? {
            types.push(method_of(kind) as i32);
        }
        Ok(ListAuthenticationMethodTypesResponse {
            auth_method_types: types,
        })
    }

    // ---- SecondFactorCredentials (internal) --------------------------

    /// The user's active second factors, for the sessions service.
    #[tracing::instrument(skip_all)]
    pub async fn active_second_factors(
        &self,
        ctx: &CallContext,
        ids: UserIdentifiers,
    ) -> Result<ListAuthenticationMethodTypesResponse> {
        ctx.caller.require_cluster()?;
        let user_id = user_id_of(Some(&ids), "")?;
        Ok(ListAuthenticationMethodTypesResponse {
            auth_method_types: self
                .active_factor_kinds(user_id.as_str())
                .await?
                .into_iter()
                .map(|k| method_of(k) as i32)
                .collect(),
        })
    }

    /// Checks a second-factor code for the sessions service and uses it
    /// up; wrong codes count as wrong passwords.
    #[tracing::instrument(skip_all)]
    pub async fn check_second_factor(
        &self,
        ctx: &CallContext,
        req: CheckSecondFactorRequest,
    ) -> Result<CheckSecondFactorResponse> {
        ctx.caller.require_cluster()?;
        let user_id = user_id_of(req.user_ids.as_ref(), "user_ids")?;
        let code = req
            .code
            .ok_or_else(|| roster_core::validation::FieldViolation::new("code", "is required"))?;
        roster_core::validation::max_chars("client_key", &req.client_key, 128)?;
        let user = self
            .store
            .get_user(user_id.as_str())
            .await?
            .filter(|u| u.deleted_at.is_none())
            .ok_or(Error::NotFound("user"))?;
        let counters = Secret::SecondFactor.counters(&req.client_key);
        let state = self
            .store
            .guess_state(&user.user_id, &counters, self.clock.now())
            .await?;
        let throttled = CheckSecondFactorResponse {
            valid: false,
            throttled: true,
            failures: 0,
        };
        if state.locked_until.is_some() || user.lifecycle.suspends_credentials() {
            // The code is looked up all the same, so the answer costs
            // about what a wrong code's does; nothing is used up.
            self.match_code(&user.user_id, &code).await?;
            return Ok(throttled);
        }
        // Counted before it is checked: parallel guesses cannot each be
        // checked before any is counted, so no more than the limit's worth
        // of codes is ever tried in a window. A right one then forgets the
        // counts.
        let counted = self.count_failure(ctx, &user, &counters).await?;
        if counted.locked_until.is_some() && !counted.newly_locked && !counted.client_newly_locked {
            // Another guess locked it since the look above.
            return Ok(throttled);
        }
        let right = match self.match_code(&user.user_id, &code).await? {
            Some(matched) => self.use_code(ctx, &user.user_id, matched).await?,
            None => false,
        };
        if !right {
            return Ok(CheckSecondFactorResponse {
                valid: false,
                throttled: false,
                failures: counted.failures,
            });
        }
        self.store
            .clear_password_failures(&user.user_id, Forget::Guess(&counters))
            .await?;
        Ok(CheckSecondFactorResponse {
            valid: true,
            throttled: false,
            failures: 0,
        })
    }

    /// What `code` matches among the user's active factors, without using
    /// it up.
    async fn match_code(&self, user_id: &str, code: &Code) -> Result<Option<MatchedCode>> {
        let second = self.second_factors()?;
        let factors = second.store.factors(user_id).await?;
        let active = |kind| factors.iter().find(|f| f.kind == kind && f.is_active());
        let now = self.clock.now();
        Ok(match code {
            Code::TotpCode(code) => {
                let Some(factor) = active(FactorKind::Totp) else {
                    return Ok(None);
                };
                let secret = second
                    .keys
                    .open(user_id, factor.secret_sealed.as_deref().unwrap_or_default())
                    .map_err(|e| Error::Internal(e.into()))?;
                let step = totp::step_of(now.timestamp());
                totp::verify(&secret, code, step, factor.last_step).map(MatchedCode::Totp)
            }
            Code::EmailCode(code) => {
                let Some(factor) = active(FactorKind::OtpEmail) else {
                    return Ok(None);
                };
                let (Some(hash), Some(expires_at)) = (&factor.code_hash, factor.code_expires_at)
                else {
                    return Ok(None);
                };
                let right = second
                    .keys
                    .verify_code(user_id, EMAIL_PURPOSE, code.trim(), hash);
                (right && expires_at > now).then(|| MatchedCode::Email(hash.clone()))
            }
            Code::RecoveryCode(code) => {
                let Some(factor) = active(FactorKind::RecoveryCodes) else {
                    return Ok(None);
                };
                let code = normalize_recovery_code(code);
                let mut matched = None;
                // Every unused code is compared, each in constant time.
                for hash in second.store.unused_recovery_codes(user_id).await? {
                    if second
                        .keys
                        .verify_code(user_id, RECOVERY_PURPOSE, &code, &hash)
                    {
                        matched = Some(hash);
                    }
                }
                matched.map(|hash| MatchedCode::Recovery {
                    hash,
                    factor: factor.clone(),
                })
            }
        })
    }

    /// Uses up a matched code; false if a concurrent check used it first.
    async fn use_code(
        &self,
        ctx: &CallContext,
        user_id: &str,
        matched: MatchedCode,
    ) -> Result<bool> {
        let second = self.second_factors()?;
        Ok(match matched {
            MatchedCode::Totp(step) => second.store.accept_totp_step(user_id, step).await?,
            MatchedCode::Email(hash) => second.store.use_email_code(user_id, &hash, &[]).await?,
            MatchedCode::Recovery { hash, factor } => {
                let mut left = factor.clone();
                left.remaining_codes = factor.remaining_codes.saturating_sub(1);
                let event =
                    self.factor_event(ctx, mfa::RECOVERY_CODE_USED, user_id, factor_message(&left));
                second
                    .store
                    .use_recovery_code(user_id, &hash, self.clock.now(), &[event])
                    .await?
            }
        })
    }

    /// Mails a fresh one-time code to a user who uses OTP_EMAIL.
    #[tracing::instrument(skip_all)]
    pub async fn send_second_factor_email_code(
        &self,
        ctx: &CallContext,
        ids: UserIdentifiers,
    ) -> Result<()> {
        ctx.caller.require_cluster()?;
        let user_id = user_id_of(Some(&ids), "")?;
        let user = self
            .store
            .get_user(user_id.as_str())
            .await?
            .filter(|u| u.deleted_at.is_none())
            .ok_or(Error::NotFound("user"))?;
        if user.primary_email_address_validated_at.is_none() {
            return Err(Error::FailedPrecondition(
                "email_not_validated: codes go only to a validated primary email address",
            ));
        }
        let second = self.second_factors()?;
        let code = roster_core::token::random_code(EMAIL_CODE_DIGITS);
        let expires_at =
            self.clock.now() + Duration::seconds(self.config.email_code_ttl_secs as i64);
        let mail = OutgoingMail::new(
            "second_factor_code",
            &user.primary_email_address,
            &user.name,
        )
        .with("user_id", &user.user_id)
        .with("secret_code", code.as_str())
        .with("expires_at", roster_core::mail::format_time(expires_at));
        let hash = second.keys.hash_code(&user.user_id, EMAIL_PURPOSE, &code);
        // One code per user per EMAIL_CODE_INTERVAL_SECS, whoever asks:
        // a pending code younger than that stays, and no mail goes.
        let replace_until = expires_at - Duration::seconds(EMAIL_CODE_INTERVAL_SECS);
        if !second
            .store
            .set_email_code(&user.user_id, &hash, expires_at, replace_until, &[mail])
            .await?
        {
            let uses_mailed_codes = second
                .store
                .factors(&user.user_id)
                .await?
                .iter()
                .any(|f| f.kind == FactorKind::OtpEmail && f.is_active());
            if uses_mailed_codes {
                tracing::info!(user_id = %user.user_id, "a mailed code was asked for too soon");
                return Err(Error::RateLimited);
            }
            return Err(Error::FailedPrecondition(
                "no_otp_email: the user does not use mailed codes",
            ));
        }
        tracing::info!(user_id = %user.user_id, "second-factor code mailed");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovery_codes_carry_80_bits_and_read_back_however_typed() {
        let code = new_recovery_code();
        assert_eq!(code.len(), 19);
        assert_eq!(code.matches('-').count(), 3);
        let typed = code.to_uppercase().replace('-', " ");
        assert_eq!(normalize_recovery_code(&typed), code.replace('-', ""));
    }
}
