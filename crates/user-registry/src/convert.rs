//! Between stored records and `roster.v1` messages: timestamps, the
//! public and full views of a user, and field masks on output.

use prost::Message;
use roster_core::list::FieldMask;
use roster_proto::v1::{
    ContactInfo, ContactMethod, ContactType, EmailNotificationPreferences, ExternalUser, Picture,
    Rights, User, UserIdentifiers,
};

use crate::store::{ExternalUserRecord, UserRecord};

/// Every path of `User` that can be read.
pub const READABLE_PATHS: &[&str] = &[
    "ids",
    "created_at",
    "updated_at",
    "deleted_at",
    "name",
    "description",
    "attributes",
    "contact_info",
    "primary_email_address",
    "primary_email_address_validated_at",
    "password_updated_at",
    "require_password_update",
    "state",
    "state_description",
    "admin",
    "temporary_password_created_at",
    "temporary_password_expires_at",
    "profile_picture",
    "email_notification_preferences",
    "universal_rights",
    "type",
];

/// Write-only paths, refused in read masks.
pub const WRITE_ONLY_PATHS: &[&str] = &["password", "temporary_password"];

/// What callers without RIGHT_USER_INFO may see of another user.
pub const PUBLIC_PATHS: &[&str] = &["name", "description", "state", "admin", "profile_picture"];

pub use roster_core::time::{from_timestamp, now, opt_timestamp, timestamp};

/// The user without embedded picture bytes (URLs by size stay).
pub fn without_embedded_picture(mut user: User) -> User {
    if let Some(picture) = user.profile_picture.as_mut() {
        picture.embedded = None;
    }
    user
}

/// The full user (no secrets), every readable field set.
pub fn user_full(r: &UserRecord) -> User {
    User {
        ids: Some(UserIdentifiers {
            user_id: r.user_id.clone(),
            email: String::new(),
        }),
        created_at: Some(timestamp(r.created_at)),
        updated_at: Some(timestamp(r.updated_at)),
        deleted_at: opt_timestamp(r.deleted_at),
        name: r.name.clone(),
        description: r.description.clone(),
        attributes: r.attributes.clone().into_iter().collect(),
        // A machine has no address, so no way to be contacted.
        contact_info: if r.primary_email_address.is_empty() {
            Vec::new()
        } else {
            vec![ContactInfo {
                contact_type: ContactType::Other as i32,
                contact_method: ContactMethod::Email as i32,
                value: r.primary_email_address.clone(),
                public: false,
                validated_at: opt_timestamp(r.primary_email_address_validated_at),
            }]
        },
        primary_email_address: r.primary_email_address.clone(),
        primary_email_address_validated_at: opt_timestamp(r.primary_email_address_validated_at),
        password: String::new(),
        // A machine has no password.
        password_updated_at: (!r.is_machine()).then(|| timestamp(r.password_updated_at)),
        require_password_update: r.require_password_update,
        state: r.state,
        state_description: r.state_description.clone(),
        admin: r.admin,
        temporary_password: String::new(),
        temporary_password_created_at: opt_timestamp(r.temporary_password_created_at),
        temporary_password_expires_at: opt_timestamp(r.temporary_password_expires_at),
        profile_picture: r
            .profile_picture
            .as_deref()
            .and_then(|b| Picture::decode(b).ok()),
        email_notification_preferences: Some(EmailNotificationPreferences {
            types: r.email_notification_types.clone(),
        }),
        universal_rights: r.universal_rights.as_ref().map(|rights| Rights {
            rights: rights.clone(),
        }),
        r#type: r.user_type,
    }
}

/// Keeps the fields of `user` that are in `mask` (every readable field for
/// an empty mask) and in `visible`; ids and timestamps always stay.
pub fn apply_mask(user: User, mask: &FieldMask, visible: &[&str]) -> User {
    let keep = |path: &str| visible.contains(&path) && (mask.is_empty() || mask.contains(path));
    let mut out = User {
        ids: user.ids,
        created_at: user.created_at,
        updated_at: user.updated_at,
        deleted_at: user.deleted_at,
        ..Default::default()
    };
    macro_rules! copy {
        ($($field:ident),*) => {
            $( if keep(stringify!($field)) { out.$field = user.$field; } )*
        };
    }
    copy!(
        name,
        description,
        attributes,
        contact_info,
        primary_email_address,
        primary_email_address_validated_at,
        password_updated_at,
        require_password_update,
        state,
        state_description,
        admin,
        temporary_password_created_at,
        temporary_password_expires_at,
        profile_picture,
        email_notification_preferences,
        universal_rights
    );
    if keep("type") {
        out.r#type = user.r#type;
    }
    out
}

pub fn external_user(r: &ExternalUserRecord) -> ExternalUser {
    ExternalUser {
        user_ids: Some(UserIdentifiers {
            user_id: r.user_id.clone(),
            email: String::new(),
        }),
        provider_ids: Some(roster_proto::v1::AuthenticationProviderIdentifiers {
            provider_id: r.provider_id.clone(),
        }),
        created_at: Some(timestamp(r.created_at)),
        updated_at: Some(timestamp(r.updated_at)),
        external_id: r.external_id.clone(),
    }
}
