//! Machine users (`UserType::Machine`): accounts for services and scripts,
//! created by admins, with neither password nor primary email address.
//! They authenticate with personal access tokens, which are the access
//! service's API keys; what only a person can use refuses them here.

use chrono::DateTime;
use roster_core::auth::CallContext;
use roster_core::validation::FieldViolation;
use roster_proto::v1::{Right, State, User, UserType};

use super::{
    UserRegistryService, encode_picture, notification_types, rights_of, state_of, user_id_of,
};
use crate::convert::{self, now};
use crate::domain::{Attributes, Description, Name, StateDescription};
use crate::error::{Error, Result};
use crate::events::USER_CREATE;
use crate::store::UserRecord;

/// Update paths about a password or an address, which a machine has not.
pub(super) const HUMAN_ONLY_PATHS: &[&str] = &[
    "primary_email_address",
    "primary_email_address_validated_at",
    "require_password_update",
    "temporary_password",
    "email_notification_preferences",
];

/// FAILED_PRECONDITION `machine_user` for a machine; for an authenticated
/// caller who may see the user (unauthenticated paths answer as for an
/// unknown user instead).
pub(super) fn refuse_machine(user: &UserRecord) -> Result<()> {
    if user.is_machine() {
        return Err(Error::FailedPrecondition(
            "machine_user: a machine user has no password, email address or login",
        ));
    }
    Ok(())
}

/// The type filter of a List or SearchUsers (field `types`).
pub(super) fn types_of(types: &[i32]) -> Result<Vec<i32>> {
    let mut out = Vec::with_capacity(types.len());
    for (i, t) in types.iter().enumerate() {
        if UserType::try_from(*t).is_err() {
            return Err(FieldViolation::new(format!("types[{i}]"), "unknown user type").into());
        }
        if !out.contains(t) {
            out.push(*t);
        }
    }
    Ok(out)
}

/// The fields a machine cannot have, each with whether `user` sets it.
fn human_fields_set(user: &User) -> Option<&'static str> {
    [
        ("password", !user.password.is_empty()),
        (
            "primary_email_address",
            !user.primary_email_address.is_empty(),
        ),
        ("temporary_password", !user.temporary_password.is_empty()),
        ("require_password_update", user.require_password_update),
        (
            "primary_email_address_validated_at",
            user.primary_email_address_validated_at.is_some(),
        ),
        (
            "email_notification_preferences",
            user.email_notification_preferences
                .as_ref()
                .is_some_and(|p| !p.types.is_empty()),
        ),
    ]
    .into_iter()
    .find_map(|(field, set)| set.then_some(field))
}

impl UserRegistryService {
    /// Creates a machine user: admins only (a credential with
    /// RIGHT_USER_CREATE on every user; only a full admin sets admin-only
    /// fields, checked by the caller), approved unless the admin says
    /// otherwise. No password is hashed and no mail is owed.
    pub(super) async fn create_machine(&self, ctx: &CallContext, input: User) -> Result<User> {
        ctx.caller.require_authenticated()?;
        if !ctx.caller.universal_rights().contains(Right::UserCreate) {
            return Err(Error::PermissionDenied(
                "machine_user: only admins create machine users".into(),
            ));
        }
        let user_id = user_id_of(input.ids.as_ref(), "user.ids")?;
        if let Some(field) = human_fields_set(&input) {
            return Err(FieldViolation::new(
                format!("user.{field}"),
                "must be empty for a machine user",
            )
            .into());
        }
        let state = match state_of(input.state, "user.state")? {
            // The zero value: not set, so approved (as for a human an
            // admin creates).
            State::Requested => State::Approved,
            other => other,
        };
        let at = now();
        let record = UserRecord {
            user_id: user_id.into_string(),
            name: Name::parse(&input.name)
                .map_err(|v| v.under("user"))?
                .into_string(),
            description: Description::parse(&input.description)
                .map_err(|v| v.under("user"))?
                .into_string(),
            attributes: Attributes::parse(&input.attributes)
                .map_err(|v| v.under("user"))?
                .into_map(),
            primary_email_address: String::new(),
            email_normalized: String::new(),
            primary_email_address_validated_at: None,
            // Verifies nothing: a machine's logins answer as no user's.
            password_hash: String::new(),
            password_updated_at: at,
            require_password_update: false,
            state: state as i32,
            state_description: StateDescription::parse(&input.state_description)
                .map_err(|v| v.under("user"))?
                .into_string(),
            admin: input.admin,
            temporary_password_hash: None,
            temporary_password_created_at: None,
            temporary_password_expires_at: None,
            email_validation_hash: None,
            email_validation_expires_at: None,
            profile_picture: encode_picture(input.profile_picture.as_ref())?,
            email_notification_types: notification_types(None)?,
            universal_rights: rights_of(input.universal_rights.as_ref(), "user.universal_rights")?,
            created_at: at,
            updated_at: at,
            deleted_at: None::<DateTime<chrono::Utc>>,
            lifecycle: Default::default(),
            user_type: UserType::Machine as i32,
        };
        let event = self.event(ctx, USER_CREATE, &record, Vec::new(), false);
        self.store.insert_user(&record, &[event]).await?;
        tracing::info!(user_id = %record.user_id, "machine user created");
        Ok(convert::user_full(&record))
    }
}
