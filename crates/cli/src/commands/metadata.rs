//! `roster users metadata`: a user's metadata entries (`UserMetadata`), and
//! the `--metadata` filter of `users list` and `users search`.

use clap::Subcommand;
use roster_proto::v1::{
    DeleteUserMetadataRequest, ListUserMetadataRequest, SetUserMetadataRequest, UserMetadataEntry,
    UserMetadataFilter,
};

use super::{App, user_ids};
use crate::error::Result;
use crate::output::{Kind, View, col, wide};

/// Values are bytes: JSON output has them in base64, as proto3 JSON does.
const METADATA_VIEW: View = View {
    rows: Some("metadata"),
    columns: &[
        col("KEY", "key", Kind::Text),
        col("VALUE (BASE64)", "value", Kind::Text),
        col("UPDATED", "updatedAt", Kind::Time),
        wide("CREATED", "createdAt", Kind::Time),
    ],
};

#[derive(Debug, Subcommand)]
pub enum MetadataCommand {
    /// Set metadata entries of a user, all or none; other keys stay.
    #[command(
        after_help = "Example:\n  roster users metadata set alice tenant=eu-1 employee-number=4711"
    )]
    Set {
        /// The user's ID.
        user_id: String,
        /// An entry `key=value` (the value as UTF-8 text); repeatable.
        #[arg(required = true, value_parser = super::parse_pair)]
        entries: Vec<(String, String)>,
    },
    /// List a user's metadata entries, ordered by key.
    #[command(after_help = "Example:\n  roster users metadata list alice --prefix hr/")]
    List {
        /// The user's ID.
        user_id: String,
        /// Only keys that start with this.
        #[arg(long, default_value = "")]
        prefix: String,
        /// Most entries per page (the server's default when 0).
        #[arg(long, default_value_t = 0)]
        limit: u32,
        /// Page to show, from 1.
        #[arg(long, default_value_t = 0)]
        page: u32,
    },
    /// Delete metadata entries of a user, all or none.
    #[command(after_help = "Example:\n  roster users metadata delete alice tenant employee-number")]
    Delete {
        /// The user's ID.
        user_id: String,
        /// The keys to delete.
        #[arg(required = true)]
        keys: Vec<String>,
    },
}

/// A `--metadata` filter: `key` (any value) or `key=value` (exactly that
/// value, as UTF-8 text).
pub fn parse_filter(text: &str) -> std::result::Result<UserMetadataFilter, String> {
    Ok(match text.split_once('=') {
        Some((key, value)) => UserMetadataFilter {
            key: key.to_string(),
            value: Some(value.as_bytes().to_vec()),
        },
        None => UserMetadataFilter {
            key: text.to_string(),
            value: None,
        },
    })
}

pub async fn run(app: &App, command: MetadataCommand) -> Result<()> {
    let mut client = app.conn.metadata().await?;
    match command {
        MetadataCommand::Set { user_id, entries } => {
            let count = entries.len();
            client
                .set_user_metadata(SetUserMetadataRequest {
                    user_ids: user_ids(&user_id),
                    metadata: entries
                        .into_iter()
                        .map(|(key, value)| UserMetadataEntry {
                            key,
                            value: value.into_bytes(),
                            ..Default::default()
                        })
                        .collect(),
                })
                .await?;
            app.out
                .done(&format!("Set {count} metadata entries of {user_id}."))
        }
        MetadataCommand::List {
            user_id,
            prefix,
            limit,
            page,
        } => {
            let response = client
                .list_user_metadata(ListUserMetadataRequest {
                    user_ids: user_ids(&user_id),
                    key_prefix: prefix,
                    limit,
                    page,
                })
                .await?;
            app.out.list(response, &METADATA_VIEW)
        }
        MetadataCommand::Delete { user_id, keys } => {
            let count = keys.len();
            client
                .delete_user_metadata(DeleteUserMetadataRequest {
                    user_ids: user_ids(&user_id),
                    keys,
                })
                .await?;
            app.out
                .done(&format!("Deleted {count} metadata entries of {user_id}."))
        }
    }
}
