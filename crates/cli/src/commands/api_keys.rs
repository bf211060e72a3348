//! `roster api-keys`, `roster rights` and `roster login-tokens`: the
//! access service.

use clap::Subcommand;
use roster_proto::v1::{
    ApiKey, CreateLoginTokenRequest, CreateUserApiKeyRequest, DeleteUserApiKeyRequest,
    GetUserApiKeyRequest, ListUserApiKeysRequest, Right, UpdateUserApiKeyRequest,
};

use super::{App, Paging, parse_right, parse_time, user_ids};
use crate::error::{CliError, Result};
use crate::json::read_message;
use crate::output::{Kind, View, col, wide};

const KEY_VIEW: View = View {
    rows: None,
    columns: &[
        col("ID", "id", Kind::Text),
        col("NAME", "name", Kind::Text),
        col("RIGHTS", "rights", Kind::Enum("RIGHT_")),
        col("EXPIRES", "expiresAt", Kind::Time),
        wide("CREATED", "createdAt", Kind::Time),
        wide("UPDATED", "updatedAt", Kind::Time),
    ],
};

/// The answer of `create`, the one time the key is shown.
const NEW_KEY_VIEW: View = View {
    rows: None,
    columns: &[
        col("ID", "id", Kind::Text),
        col("NAME", "name", Kind::Text),
        col("RIGHTS", "rights", Kind::Enum("RIGHT_")),
        col("EXPIRES", "expiresAt", Kind::Time),
        col("KEY", "key", Kind::Text),
    ],
};

const KEYS_VIEW: View = View {
    rows: Some("apiKeys"),
    columns: KEY_VIEW.columns,
};

const RIGHTS_VIEW: View = View {
    rows: None,
    columns: &[col("RIGHTS", "rights", Kind::Enum("RIGHT_"))],
};

const LOGIN_TOKEN_VIEW: View = View {
    rows: None,
    columns: &[col("TOKEN", "token", Kind::Text)],
};

#[derive(Debug, Subcommand)]
pub enum ApiKeysCommand {
    /// Create an API key; the key is shown this once.
    #[command(
        after_help = "Example:\n  roster api-keys create alice --name ci --rights RIGHT_USER_INFO,RIGHT_USER_LIST --expires 90d\n  roster api-keys create alice --name ci --rights user_all -o json | jq -r .key > ci.key"
    )]
    Create {
        /// The user's ID.
        user_id: String,
        /// The key's name (at most 50 characters).
        #[arg(long)]
        name: Option<String>,
        /// Rights, comma-separated (RIGHT_USER_INFO or user_info).
        #[arg(long, value_delimiter = ',', value_parser = parse_right)]
        rights: Vec<Right>,
        /// When the key stops working: RFC 3339, or from now (90d, 12h).
        #[arg(long, value_parser = parse_time)]
        expires: Option<prost_types::Timestamp>,
        /// A CreateUserAPIKeyRequest in proto3 JSON (file or `-`); flags override it.
        #[arg(long, value_name = "FILE")]
        from_json: Option<String>,
    },
    /// List a user's API keys (never their secrets).
    #[command(after_help = "Example:\n  roster api-keys list alice --order -created_at")]
    List {
        /// The user's ID.
        user_id: String,
        #[command(flatten)]
        paging: Paging,
    },
    /// Show one API key.
    #[command(after_help = "Example:\n  roster api-keys get alice rn7pgoo5bjd55s5trjill3m5")]
    Get {
        /// The user's ID.
        user_id: String,
        /// The API key's ID.
        key_id: String,
    },
    /// Change an API key's name, rights or expiry.
    #[command(
        after_help = "Example:\n  roster api-keys update alice rn7pgoo5bjd55s5trjill3m5 --rights RIGHT_USER_INFO --name read-only"
    )]
    Update {
        /// The user's ID.
        user_id: String,
        /// The API key's ID.
        key_id: String,
        /// The key's name (at most 50 characters).
        #[arg(long)]
        name: Option<String>,
        /// The new rights, comma-separated.
        #[arg(long, value_delimiter = ',', value_parser = parse_right)]
        rights: Option<Vec<Right>>,
        /// RFC 3339, or from now (90d, 12h).
        #[arg(long, value_parser = parse_time)]
        expires: Option<prost_types::Timestamp>,
    },
    /// Delete an API key; it stops working at once.
    #[command(after_help = "Example:\n  roster api-keys delete alice rn7pgoo5bjd55s5trjill3m5")]
    Delete {
        /// The user's ID.
        user_id: String,
        /// The API key's ID.
        key_id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum LoginTokensCommand {
    /// Create a login token (mailed to the user unless --skip-email).
    #[command(
        after_help = "Example:\n  roster login-tokens create alice\n  roster login-tokens create alice --skip-email -o json | jq -r .token"
    )]
    Create {
        /// The user's ID.
        user_id: String,
        /// Do not mail it (admins only); the answer carries it.
        #[arg(long)]
        skip_email: bool,
    },
}

pub async fn run(app: &App, command: ApiKeysCommand) -> Result<()> {
    let mut access = app.conn.access().await?;
    match command {
        ApiKeysCommand::Create {
            user_id,
            name,
            rights,
            expires,
            from_json,
        } => {
            let mut request: CreateUserApiKeyRequest = match &from_json {
                Some(path) => read_message(path)?,
                None => CreateUserApiKeyRequest::default(),
            };
            request.user_ids = user_ids(&user_id);
            if let Some(name) = name {
                request.name = name;
            }
            if !rights.is_empty() {
                request.rights = rights.into_iter().map(|r| r as i32).collect();
            }
            if expires.is_some() {
                request.expires_at = expires;
            }
            if request.rights.is_empty() {
                return Err(CliError::invalid(
                    "--rights: give at least one right (for example RIGHT_USER_INFO)",
                ));
            }
            let key = access.create_api_key(request).await?;
            app.out.message(key.get_ref(), &NEW_KEY_VIEW)?;
            if app.out.is_table() {
                eprintln!("Copy the key now: Roster keeps only a hash of it.");
            }
            Ok(())
        }
        ApiKeysCommand::List { user_id, paging } => {
            let response = access
                .list_api_keys(ListUserApiKeysRequest {
                    user_ids: user_ids(&user_id),
                    order: paging.order,
                    limit: paging.limit,
                    page: paging.page,
                })
                .await?;
            app.out.list(response, &KEYS_VIEW)
        }
        ApiKeysCommand::Get { user_id, key_id } => {
            let key = access
                .get_api_key(GetUserApiKeyRequest {
                    user_ids: user_ids(&user_id),
                    key_id,
                })
                .await?;
            app.out.message(key.get_ref(), &KEY_VIEW)
        }
        ApiKeysCommand::Update {
            user_id,
            key_id,
            name,
            rights,
            expires,
        } => {
            let mut key = ApiKey {
                id: key_id,
                ..ApiKey::default()
            };
            let mut paths = Vec::new();
            if let Some(name) = name {
                key.name = name;
                paths.push("name".to_string());
            }
            if let Some(rights) = rights {
                key.rights = rights.into_iter().map(|r| r as i32).collect();
                paths.push("rights".to_string());
            }
            if expires.is_some() {
                key.expires_at = expires;
                paths.push("expires_at".to_string());
            }
            if paths.is_empty() {
                return Err(CliError::invalid(
                    "nothing to update: give --name, --rights or --expires",
                ));
            }
            let key = access
                .update_api_key(UpdateUserApiKeyRequest {
                    user_ids: user_ids(&user_id),
                    api_key: Some(key),
                    field_mask: Some(prost_types::FieldMask { paths }),
                })
                .await?;
            app.out.message(key.get_ref(), &KEY_VIEW)
        }
        ApiKeysCommand::Delete { user_id, key_id } => {
            access
                .delete_api_key(DeleteUserApiKeyRequest {
                    user_ids: user_ids(&user_id),
                    key_id: key_id.clone(),
                })
                .await?;
            app.out.done(&format!("Deleted API key {key_id}."))
        }
    }
}

/// `roster rights USER`: the caller's rights on a user.
pub async fn rights(app: &App, user_id: &str) -> Result<()> {
    let rights = app
        .conn
        .access()
        .await?
        .list_rights(user_ids(user_id).unwrap_or_default())
        .await?;
    app.out.message(rights.get_ref(), &RIGHTS_VIEW)
}

pub async fn login_tokens(app: &App, command: LoginTokensCommand) -> Result<()> {
    match command {
        LoginTokensCommand::Create {
            user_id,
            skip_email,
        } => {
            let response = app
                .conn
                .access()
                .await?
                .create_login_token(CreateLoginTokenRequest {
                    user_ids: user_ids(&user_id),
                    skip_email,
                })
                .await?;
            if response.get_ref().token.is_empty() && app.out.is_table() {
                return app
                    .out
                    .done(&format!("A login token is on its way to {user_id}."));
            }
            app.out.message(response.get_ref(), &LOGIN_TOKEN_VIEW)
        }
    }
}
