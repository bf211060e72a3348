//! `UserMetadata`: free key → bytes entries of a user, beside the user
//! resource. Reading needs RIGHT_USER_INFO on the user, writing
//! RIGHT_USER_SETTINGS_BASIC; each change is all or nothing and emits one
//! `user.metadata.*` event that names the keys, never the values.

use roster_core::auth::CallContext;
use roster_core::events::{metadata, new_event, pack};
use roster_core::list::Page;
use roster_proto::v1::{
    DeleteUserMetadataRequest, DeleteUserMetadataResponse, Event, ListUserMetadataRequest, Right,
    SetUserMetadataRequest, SetUserMetadataResponse, UserIdentifiers, UserMetadataEntries,
    UserMetadataEntry, UserMetadataEventData, UserMetadataFilter,
};

use super::{UserRegistryService, user_id_of, user_ids_event};
use crate::convert::{now, timestamp};
use crate::domain::{
    MAX_METADATA_FILTERS, MetadataEntries, MetadataKey, MetadataKeys, UserId, check_metadata_value,
};
use crate::error::{Error, Result};
use crate::store::{MetadataFilter, MetadataRecord, StoreError};
use roster_core::validation::FieldViolation;

/// The metadata filters of a List or SearchUsers (field `metadata`): at
/// most [`MAX_METADATA_FILTERS`], keys and values as for SetUserMetadata.
/// A filter on a value tells whether a guess is right, so filtering needs
/// what reading the values needs: RIGHT_USER_INFO on every user.
pub(super) fn metadata_filters(
    ctx: &CallContext,
    filters: &[UserMetadataFilter],
    max_value_bytes: usize,
) -> Result<Vec<MetadataFilter>> {
    if !filters.is_empty() {
        ctx.caller
            .require_universal(roster_proto::v1::Right::UserInfo)?;
    }
    if filters.len() > MAX_METADATA_FILTERS {
        return Err(FieldViolation::new(
            "metadata",
            format!("must have at most {MAX_METADATA_FILTERS} filters"),
        )
        .into());
    }
    let mut out = Vec::with_capacity(filters.len());
    for (i, filter) in filters.iter().enumerate() {
        let key = MetadataKey::parse(&format!("metadata[{i}].key"), &filter.key)?;
        if let Some(value) = &filter.value {
            check_metadata_value(&format!("metadata[{i}].value"), value, max_value_bytes)?;
        }
        out.push(MetadataFilter {
            key: key.into_string(),
            value: filter.value.clone(),
        });
    }
    Ok(out)
}

fn entry_of(record: MetadataRecord) -> UserMetadataEntry {
    UserMetadataEntry {
        key: record.key,
        value: record.value,
        created_at: Some(timestamp(record.created_at)),
        updated_at: Some(timestamp(record.updated_at)),
    }
}

impl UserRegistryService {
    /// A `user.metadata.*` event naming `keys`, stamped with the caller.
    fn metadata_event(
        &self,
        ctx: &CallContext,
        name: &str,
        user_id: &UserId,
        keys: Vec<String>,
    ) -> Event {
        let data = UserMetadataEventData {
            user_ids: Some(UserIdentifiers {
                user_id: user_id.as_str().to_string(),
                email: String::new(),
            }),
            keys,
        };
        let mut event = new_event(name, user_ids_event(user_id.as_str()), Some(pack(&data)));
        ctx.stamp(&mut event);
        event
    }

    /// A user gone between the rights check and the write answers as an
    /// unknown user would have.
    fn gone(&self, ctx: &CallContext, err: StoreError) -> Error {
        match err {
            StoreError::Conflict if ctx.caller.is_admin() => Error::NotFound("user"),
            StoreError::Conflict => {
                Error::PermissionDenied("missing right RIGHT_USER_SETTINGS_BASIC".into())
            }
            other => other.into(),
        }
    }

    /// Sets the entries, all or none.
    #[tracing::instrument(skip_all)]
    pub async fn set_metadata(
        &self,
        ctx: &CallContext,
        req: SetUserMetadataRequest,
    ) -> Result<SetUserMetadataResponse> {
        let user_id = user_id_of(req.user_ids.as_ref(), "user_ids")?;
        let raw: Vec<(&str, &[u8])> = req
            .metadata
            .iter()
            .map(|e| (e.key.as_str(), e.value.as_slice()))
            .collect();
        let entries = MetadataEntries::parse(
            &raw,
            self.config.metadata_max_entries,
            self.config.metadata_max_value_bytes,
        )?;
        self.authorized_user(ctx, &user_id, Right::UserSettingsBasic, false)
            .await?;
        let at = now();
        let event = self.metadata_event(ctx, metadata::SET, &user_id, entries.keys());
        self.store
            .set_metadata(
                user_id.as_str(),
                entries.as_slice(),
                at,
                self.config.metadata_max_entries,
                &[event],
            )
            .await
            .map_err(|e| self.gone(ctx, e))?;
        tracing::info!(user_id = %user_id, keys = entries.as_slice().len(), "metadata set");
        Ok(SetUserMetadataResponse {
            set_at: Some(timestamp(at)),
        })
    }

    /// A page of the entries, and how many match.
    #[tracing::instrument(skip_all)]
    pub async fn list_metadata(
        &self,
        ctx: &CallContext,
        req: ListUserMetadataRequest,
    ) -> Result<(UserMetadataEntries, u64)> {
        let user_id = user_id_of(req.user_ids.as_ref(), "user_ids")?;
        if !req.key_prefix.is_empty() {
            MetadataKey::parse("key_prefix", &req.key_prefix)?;
        }
        let page = Page::parse(req.limit, req.page)?;
        self.authorized_user(ctx, &user_id, Right::UserInfo, false)
            .await?;
        let (records, total) = self
            .store
            .list_metadata(
                user_id.as_str(),
                &req.key_prefix,
                page.limit(),
                page.offset(),
            )
            .await?;
        let metadata = records.into_iter().map(entry_of).collect();
        Ok((UserMetadataEntries { metadata }, total))
    }

    /// Deletes the entries, all or none.
    #[tracing::instrument(skip_all)]
    pub async fn delete_metadata(
        &self,
        ctx: &CallContext,
        req: DeleteUserMetadataRequest,
    ) -> Result<DeleteUserMetadataResponse> {
        let user_id = user_id_of(req.user_ids.as_ref(), "user_ids")?;
        let keys = MetadataKeys::parse(&req.keys, self.config.metadata_max_entries)?;
        self.authorized_user(ctx, &user_id, Right::UserSettingsBasic, false)
            .await?;
        let at = now();
        let event = self.metadata_event(ctx, metadata::DELETED, &user_id, keys.as_slice().to_vec());
        self.store
            .delete_metadata(user_id.as_str(), keys.as_slice(), &[event])
            .await
            .map_err(|e| self.gone(ctx, e))?;
        tracing::info!(user_id = %user_id, keys = keys.as_slice().len(), "metadata deleted");
        Ok(DeleteUserMetadataResponse {
            deleted_at: Some(timestamp(at)),
        })
    }
}
