//! `roster users`: the user registry (create, read, change, delete,
//! passwords), search, the lifecycle (lock, deactivate, required actions,
//! statistics), metadata, and bulk import and export.

use std::collections::HashMap;

use clap::{Args, Subcommand};
use roster_proto::v1::{
    CreateTemporaryPasswordRequest, CreateUserRequest, DeactivateUserRequest,
    EmailNotificationPreferences, GetUserRequest, ListUsersRequest, LockUserRequest,
    NotificationType, SearchUsersRequest, SetRequiredActionsRequest, UpdateUserPasswordRequest,
    UpdateUserRequest, User, UserRequiredAction,
};

use super::{
    App, Paging, field_mask, parse_pair, parse_state, parse_user_type, read_secret, user_ids,
};
use crate::commands::bulk;
use crate::commands::metadata::{self, MetadataCommand};
use crate::error::{CliError, Result};
use crate::json::read_message;
use crate::output::{Kind, View, col, wide};

pub const USER_VIEW: View = View {
    rows: None,
    columns: &[
        col("ID", "ids.userId", Kind::Text),
        col("NAME", "name", Kind::Text),
        col("EMAIL", "primaryEmailAddress", Kind::Text),
        col("STATE", "state", Kind::Enum("STATE_")),
        col("ADMIN", "admin", Kind::Bool),
        col("CREATED", "createdAt", Kind::Time),
        wide("TYPE", "type", Kind::Enum("USER_TYPE_")),
        wide("DESCRIPTION", "description", Kind::Text),
        wide(
            "EMAIL VALIDATED",
            "primaryEmailAddressValidatedAt",
            Kind::Time,
        ),
        wide("UPDATED", "updatedAt", Kind::Time),
        wide("DELETED", "deletedAt", Kind::Time),
    ],
};

pub const USERS_VIEW: View = View {
    rows: Some("users"),
    columns: USER_VIEW.columns,
};

const STATUS_VIEW: View = View {
    rows: None,
    columns: &[
        col("USER", "userIds.userId", Kind::Text),
        col("STATE", "state", Kind::Enum("STATE_")),
        col("LOCKED", "locked", Kind::Bool),
        col("DEACTIVATED", "deactivated", Kind::Bool),
        col(
            "REQUIRED ACTIONS",
            "requiredActions",
            Kind::Enum("USER_REQUIRED_ACTION_"),
        ),
        wide("LOCKED UNTIL", "lockedUntil", Kind::Time),
        wide("LOCK REASON", "lockReason", Kind::Text),
        wide("DEACTIVATION REASON", "deactivationReason", Kind::Text),
        wide(
            "EMAIL VALIDATED",
            "primaryEmailAddressValidatedAt",
            Kind::Time,
        ),
    ],
};

const STATS_VIEW: View = View {
    rows: None,
    columns: &[
        col("TOTAL", "total", Kind::Count),
        col("ADMINS", "admins", Kind::Count),
        col("DELETED", "deleted", Kind::Count),
        col("LOCKED", "locked", Kind::Count),
        col("DEACTIVATED", "deactivated", Kind::Count),
        col("EMAIL UNVALIDATED", "emailUnvalidated", Kind::Count),
        col("MACHINES", "machines", Kind::Count),
        wide("COMPUTED", "computedAt", Kind::Time),
    ],
};

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Create a user (an admin creates anyone; others register themselves).
    #[command(
        after_help = "Example:\n  roster users create alice --email alice@example.com --name 'Alice Liddell'\n  echo \"$PASSWORD\" | roster users create bob --email bob@example.com --password-stdin --admin\n  roster users create ci-bot --machine --name 'CI'\n  roster api-keys create ci-bot --name deploy --rights user_info --expires 90d"
    )]
    Create(CreateArgs),
    /// Show one user.
    #[command(
        after_help = "Example:\n  roster users get alice\n  roster users get alice -o json --fields name,state"
    )]
    Get {
        /// The user's ID.
        user_id: String,
        /// Only these fields (a field mask, comma-separated: `name,state`).
        #[arg(long, value_delimiter = ',')]
        fields: Vec<String>,
    },
    /// List users, a page at a time.
    #[command(
        after_help = "Example:\n  roster users list --limit 50 --page 2 --order -created_at\n  roster users list --limit 50 --page-token <the token the last page printed>\n  roster users list --metadata tenant=eu-1"
    )]
    List {
        #[command(flatten)]
        paging: Paging,
        /// Continue after the page that printed this token (faster than
        /// --page when paging deep, and stable while users are added).
        #[arg(long, default_value = "", conflicts_with = "page")]
        page_token: String,
        /// List soft-deleted users instead.
        #[arg(long)]
        deleted: bool,
        /// Only users with this metadata entry, `key` or `key=value`;
        /// repeatable (all must hold).
        #[arg(long = "metadata", value_parser = metadata::parse_filter)]
        metadata: Vec<roster_proto::v1::UserMetadataFilter>,
        /// Only users of these types (human, machine), comma-separated.
        #[arg(long = "type", value_delimiter = ',', value_parser = parse_user_type)]
        types: Vec<roster_proto::v1::UserType>,
        /// Only these fields (a field mask, comma-separated).
        #[arg(long, value_delimiter = ',')]
        fields: Vec<String>,
    },
    /// Search users by text, ID, name, description, attributes and state.
    #[command(
        after_help = "Example:\n  roster users search alice\n  roster users search --name-contains Smith --state approved,requested"
    )]
    Search(SearchArgs),
    /// Change fields of a user; only the fields given are changed.
    #[command(
        after_help = "Example:\n  roster users update alice --name 'Alice L.' --state suspended --state-description 'left the team'\n  roster users update alice --from-json changes.json"
    )]
    Update(UpdateArgs),
    /// Delete a user (restorable for a while; see `restore`).
    #[command(after_help = "Example:\n  roster users delete alice")]
    Delete {
        /// The user's ID.
        user_id: String,
    },
    /// Restore a deleted user.
    #[command(after_help = "Example:\n  roster users restore alice")]
    Restore {
        /// The user's ID.
        user_id: String,
    },
    /// Remove a user for good, with everything it owns.
    #[command(after_help = "Example:\n  roster users purge alice")]
    Purge {
        /// The user's ID.
        user_id: String,
    },
    /// Set a password, or ask for a temporary one.
    #[command(subcommand)]
    Password(PasswordCommand),
    /// Create users from a CSV or JSON-lines file.
    #[command(after_help = bulk::IMPORT_HELP)]
    Import(bulk::ImportArgs),
    /// Print every user, page by page, as JSON lines.
    #[command(
        after_help = "Example:\n  roster users export > users.jsonl\n  roster users export --deleted | jq -r .ids.userId"
    )]
    Export(bulk::ExportArgs),
    #[command(flatten)]
    Lifecycle(LifecycleCommand),
    /// Set, list and delete a user's metadata entries.
    #[command(subcommand)]
    Metadata(MetadataCommand),
    /// Counts of users by state, admins, locked and more.
    #[command(after_help = "Example:\n  roster users stats -o json")]
    Stats,
}

/// The `UserLifecycle` verbs, which all answer the lifecycle status.
#[derive(Debug, Subcommand)]
pub enum LifecycleCommand {
    /// Show a user's lifecycle status: locked, deactivated, required actions.
    #[command(after_help = "Example:\n  roster users status alice")]
    Status {
        /// The user's ID.
        user_id: String,
    },
    /// Lock a user out until an admin unlocks it.
    #[command(after_help = "Example:\n  roster users lock alice --reason 'suspicious logins'")]
    Lock {
        /// The user's ID.
        user_id: String,
        /// Why, for the record.
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Unlock a locked user.
    #[command(after_help = "Example:\n  roster users unlock alice")]
    Unlock {
        /// The user's ID.
        user_id: String,
    },
    /// Deactivate a user.
    #[command(after_help = "Example:\n  roster users deactivate alice --reason 'on leave'")]
    Deactivate {
        /// The user's ID.
        user_id: String,
        /// Why, for the record.
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Reactivate a deactivated user.
    #[command(after_help = "Example:\n  roster users reactivate alice")]
    Reactivate {
        /// The user's ID.
        user_id: String,
    },
    /// Set what a user must do before anything else; the list replaces
    /// the pending actions (`--clear` removes them all).
    #[command(
        after_help = "Example:\n  roster users required-actions alice update_password\n  roster users required-actions alice --clear"
    )]
    RequiredActions {
        /// The user's ID.
        user_id: String,
        /// `update_password` or `validate_email` (or their full names,
        /// `USER_REQUIRED_ACTION_UPDATE_PASSWORD`, …).
        #[arg(value_parser = parse_required_action, required_unless_present = "clear")]
        actions: Vec<UserRequiredAction>,
        /// Remove every pending action.
        #[arg(long, conflicts_with = "actions")]
        clear: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum PasswordCommand {
    /// Change a password, proven by the current or a temporary password
    /// (both asked without echo, or read from stdin).
    #[command(
        after_help = "Example:\n  roster users password set alice\n  printf '%s\\n%s\\n' \"$CURRENT\" \"$NEW\" | roster users password set alice --password-stdin"
    )]
    Set {
        /// The user's ID.
        user_id: String,
        /// Read the current (or temporary) password, then the new one,
        /// from standard input, one a line.
        #[arg(long)]
        password_stdin: bool,
        /// End every session and API key of the user too.
        #[arg(long)]
        revoke_all_access: bool,
    },
    /// Mail the user a temporary password ("forgot my password").
    #[command(after_help = "Example:\n  roster users password forgot alice")]
    Forgot {
        /// The user's ID.
        user_id: String,
    },
}

/// The fields of a user that have flags of their own.
#[derive(Debug, Args)]
pub struct UserFields {
    /// Display name.
    #[arg(long)]
    pub name: Option<String>,
    /// Free text about the user.
    #[arg(long)]
    pub description: Option<String>,
    /// Primary email address.
    #[arg(long)]
    pub email: Option<String>,
    /// Make the user an admin (`--admin=false` to take it away).
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub admin: Option<bool>,
    /// requested, approved, rejected, flagged or suspended.
    #[arg(long, value_parser = parse_state)]
    pub state: Option<roster_proto::v1::State>,
    /// Why the state is what it is.
    #[arg(long)]
    pub state_description: Option<String>,
    /// An attribute `key=value`; repeat for more (replaces all attributes).
    #[arg(long = "attribute", value_parser = parse_pair)]
    pub attributes: Vec<(String, String)>,
    /// Whether the user must change the password at next login.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub require_password_update: Option<bool>,
    /// Notification types also mailed to the user, comma-separated
    /// (API_KEY_CREATED,PASSWORD_CHANGED); `none` for none.
    #[arg(long, value_delimiter = ',')]
    pub email_notifications: Option<Vec<String>>,
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The user's ID.
    pub user_id: String,
    #[command(flatten)]
    pub fields: UserFields,
    /// Read the password from standard input (else it is asked on the terminal).
    #[arg(long, conflicts_with = "machine")]
    pub password_stdin: bool,
    /// Create a machine user (admins): no password, no email address; it
    /// authenticates with API keys (`roster api-keys create`).
    #[arg(long, conflicts_with_all = ["email", "invitation_token"])]
    pub machine: bool,
    /// An invitation token, for self-registration by invitation.
    #[arg(long)]
    pub invitation_token: Option<String>,
    /// A CreateUserRequest in proto3 JSON (file or `-`); flags override it.
    #[arg(long, value_name = "FILE")]
    pub from_json: Option<String>,
}

#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// The user's ID.
    pub user_id: String,
    #[command(flatten)]
    pub fields: UserFields,
    /// Give the user a temporary password (admins), read from standard
    /// input; the user logs in with it and must choose a new one.
    #[arg(long)]
    pub temporary_password_stdin: bool,
    /// An UpdateUserRequest in proto3 JSON (file or `-`), with its
    /// `fieldMask`; flags add to it.
    #[arg(long, value_name = "FILE")]
    pub from_json: Option<String>,
}

#[derive(Debug, Args)]
pub struct SearchArgs {
    /// Text matched against ID, name, description and email.
    pub query: Option<String>,
    /// Continue after the page that printed this token.
    #[arg(long, default_value = "", conflicts_with = "page")]
    pub page_token: String,
    /// Only users whose ID contains this.
    #[arg(long)]
    pub id_contains: Option<String>,
    /// Only users whose name contains this.
    #[arg(long)]
    pub name_contains: Option<String>,
    /// Only users whose description contains this.
    #[arg(long)]
    pub description_contains: Option<String>,
    /// An attribute that must contain a value, `key=value`; repeatable.
    #[arg(long = "attribute", value_parser = parse_pair)]
    pub attributes: Vec<(String, String)>,
    /// Only users in these states, comma-separated.
    #[arg(long, value_delimiter = ',', value_parser = parse_state)]
    pub state: Vec<roster_proto::v1::State>,
    /// Only users with this metadata entry, `key` or `key=value`;
    /// repeatable (all must hold).
    #[arg(long = "metadata", value_parser = metadata::parse_filter)]
    pub metadata: Vec<roster_proto::v1::UserMetadataFilter>,
    /// Only users of these types (human, machine), comma-separated.
    #[arg(long = "type", value_delimiter = ',', value_parser = parse_user_type)]
    pub types: Vec<roster_proto::v1::UserType>,
    #[command(flatten)]
    pub paging: Paging,
    /// Search soft-deleted users instead.
    #[arg(long)]
    pub deleted: bool,
    /// Only these fields (a field mask, comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub fields: Vec<String>,
}

fn parse_required_action(text: &str) -> Result<UserRequiredAction, String> {
    let upper = text.trim().to_ascii_uppercase();
    let name = if upper.starts_with("USER_REQUIRED_ACTION_") {
        upper
    } else {
        format!("USER_REQUIRED_ACTION_{upper}")
    };
    UserRequiredAction::from_str_name(&name)
        .filter(|a| *a != UserRequiredAction::Unspecified)
        .ok_or_else(|| {
            format!("unknown required action `{text}` (update_password, validate_email)")
        })
}

fn parse_notification_type(text: &str) -> Result<i32> {
    NotificationType::from_str_name(&text.trim().to_ascii_uppercase())
        .filter(|t| *t != NotificationType::Unknown)
        .map(|t| t as i32)
        .ok_or_else(|| {
            CliError::invalid(format!(
                "--email-notifications: unknown notification type `{text}` (for example API_KEY_CREATED)"
            ))
        })
}

/// Writes the given fields into `user`; returns the field-mask paths set.
pub fn apply_fields(user: &mut User, fields: &UserFields) -> Result<Vec<String>> {
    let mut paths = Vec::new();
    let mut set = |path: &str| paths.push(path.to_string());
    if let Some(name) = &fields.name {
        user.name = name.clone();
        set("name");
    }
    if let Some(description) = &fields.description {
        user.description = description.clone();
        set("description");
    }
    if let Some(email) = &fields.email {
        user.primary_email_address = email.clone();
        set("primary_email_address");
    }
    if let Some(admin) = fields.admin {
        user.admin = admin;
        set("admin");
    }
    if let Some(state) = fields.state {
        user.state = state as i32;
        set("state");
    }
    if let Some(description) = &fields.state_description {
        user.state_description = description.clone();
        set("state_description");
    }
    if !fields.attributes.is_empty() {
        user.attributes = fields.attributes.iter().cloned().collect::<HashMap<_, _>>();
        set("attributes");
    }
    if let Some(required) = fields.require_password_update {
        user.require_password_update = required;
        set("require_password_update");
    }
    if let Some(types) = &fields.email_notifications {
        let types = if types.len() == 1 && types[0].eq_ignore_ascii_case("none") {
            Vec::new()
        } else {
            types
                .iter()
                .map(|t| parse_notification_type(t))
                .collect::<Result<_>>()?
        };
        user.email_notification_preferences = Some(EmailNotificationPreferences { types });
        set("email_notification_preferences");
    }
    Ok(paths)
}

pub async fn run(app: &App, command: UsersCommand) -> Result<()> {
    match command {
        UsersCommand::Create(args) => create(app, args).await,
        UsersCommand::Get { user_id, fields } => {
            let user = app
                .conn
                .users()
                .await?
                .get(GetUserRequest {
                    user_ids: user_ids(&user_id),
                    field_mask: field_mask(&fields),
                })
                .await?;
            app.out.message(user.get_ref(), &USER_VIEW)
        }
        UsersCommand::List {
            paging,
            page_token,
            deleted,
            metadata,
            types,
            fields,
        } => {
            let response = app
                .conn
                .users()
                .await?
                .list(ListUsersRequest {
                    field_mask: field_mask(&fields),
                    order: paging.order,
                    limit: paging.limit,
                    page: paging.page,
                    deleted,
                    page_token,
                    metadata,
                    types: types.into_iter().map(|t| t as i32).collect(),
                })
                .await?;
            app.out.list(response, &USERS_VIEW)
        }
        UsersCommand::Search(args) => {
            let response = app
                .conn
                .search()
                .await?
                .search_users(SearchUsersRequest {
                    query: args.query.unwrap_or_default(),
                    id_contains: args.id_contains.unwrap_or_default(),
                    name_contains: args.name_contains.unwrap_or_default(),
                    description_contains: args.description_contains.unwrap_or_default(),
                    attributes_contain: args.attributes.into_iter().collect(),
                    state: args.state.into_iter().map(|s| s as i32).collect(),
                    field_mask: field_mask(&args.fields),
                    order: args.paging.order,
                    limit: args.paging.limit,
                    page: args.paging.page,
                    deleted: args.deleted,
                    page_token: args.page_token,
                    metadata: args.metadata,
                    types: args.types.into_iter().map(|t| t as i32).collect(),
                })
                .await?;
            app.out.list(response, &USERS_VIEW)
        }
        UsersCommand::Update(args) => update(app, args).await,
        UsersCommand::Delete { user_id } => {
            app.conn
                .users()
                .await?
                .delete(user_ids(&user_id).unwrap_or_default())
                .await?;
            app.out.done(&format!("Deleted user {user_id}."))
        }
        UsersCommand::Restore { user_id } => {
            app.conn
                .users()
                .await?
                .restore(user_ids(&user_id).unwrap_or_default())
                .await?;
            app.out.done(&format!("Restored user {user_id}."))
        }
        UsersCommand::Purge { user_id } => {
            app.conn
                .users()
                .await?
                .purge(user_ids(&user_id).unwrap_or_default())
                .await?;
            app.out.done(&format!("Purged user {user_id}."))
        }
        UsersCommand::Password(command) => password(app, command).await,
        UsersCommand::Import(args) => bulk::import_users(app, args).await,
        UsersCommand::Export(args) => bulk::export_users(app, args).await,
        UsersCommand::Lifecycle(command) => lifecycle(app, command).await,
        UsersCommand::Metadata(command) => metadata::run(app, command).await,
        UsersCommand::Stats => {
            let stats = app.conn.lifecycle().await?.get_user_statistics(()).await?;
            app.out.message(stats.get_ref(), &STATS_VIEW)
        }
    }
}

/// The lifecycle verbs, which all answer the user's lifecycle status.
async fn lifecycle(app: &App, command: LifecycleCommand) -> Result<()> {
    let mut lifecycle = app.conn.lifecycle().await?;
    let ids = |user_id: &str| user_ids(user_id).unwrap_or_default();
    let status = match command {
        LifecycleCommand::Status { user_id } => lifecycle.get_status(ids(&user_id)).await?,
        LifecycleCommand::Lock { user_id, reason } => {
            let user_ids = user_ids(&user_id);
            lifecycle
                .lock_user(LockUserRequest { user_ids, reason })
                .await?
        }
        LifecycleCommand::Unlock { user_id } => lifecycle.unlock_user(ids(&user_id)).await?,
        LifecycleCommand::Deactivate { user_id, reason } => {
            let user_ids = user_ids(&user_id);
            let request = DeactivateUserRequest { user_ids, reason };
            lifecycle.deactivate_user(request).await?
        }
        LifecycleCommand::Reactivate { user_id } => {
            lifecycle.reactivate_user(ids(&user_id)).await?
        }
        // `clear` conflicts with any action, so the list is empty with it.
        LifecycleCommand::RequiredActions {
            user_id,
            actions,
            clear: _,
        } => {
            let request = SetRequiredActionsRequest {
                user_ids: user_ids(&user_id),
                actions: actions.into_iter().map(|a| a as i32).collect(),
            };
            lifecycle.set_required_actions(request).await?
        }
    };
    app.out.message(status.get_ref(), &STATUS_VIEW)
}

async fn create(app: &App, args: CreateArgs) -> Result<()> {
    let mut request: CreateUserRequest = match &args.from_json {
        Some(path) => read_message(path)?,
        None => CreateUserRequest::default(),
    };
    let user = request.user.get_or_insert_with(User::default);
    user.ids = user_ids(&args.user_id);
    apply_fields(user, &args.fields)?;
    if args.machine {
        user.r#type = roster_proto::v1::UserType::Machine as i32;
    }
    let machine = user.r#type == roster_proto::v1::UserType::Machine as i32;
    if args.password_stdin || (!machine && user.password.is_empty() && args.from_json.is_none()) {
        user.password = read_secret(
            &format!("Password for {}: ", args.user_id),
            args.password_stdin,
            "--password-stdin",
        )?;
    }
    if let Some(token) = args.invitation_token {
        request.invitation_token = token;
    }
    let user = app.conn.users().await?.create(request).await?;
    app.out.message(user.get_ref(), &USER_VIEW)
}

async fn update(app: &App, args: UpdateArgs) -> Result<()> {
    let mut request: UpdateUserRequest = match &args.from_json {
        Some(path) => read_message(path)?,
        None => UpdateUserRequest::default(),
    };
    let user = request.user.get_or_insert_with(User::default);
    user.ids = user_ids(&args.user_id);
    let mut paths = apply_fields(user, &args.fields)?;
    if args.temporary_password_stdin {
        user.temporary_password = read_secret("", true, "--temporary-password-stdin")?;
        paths.push("temporary_password".to_string());
    }
    let mask = request.field_mask.get_or_insert_with(Default::default);
    mask.paths.extend(paths);
    if mask.paths.is_empty() {
        return Err(CliError::invalid(
            "nothing to update: give a field flag (--name, --email, --state, …) or --from-json with a fieldMask",
        ));
    }
    let user = app.conn.users().await?.update(request).await?;
    app.out.message(user.get_ref(), &USER_VIEW)
}

async fn password(app: &App, command: PasswordCommand) -> Result<()> {
    match command {
        PasswordCommand::Set {
            user_id,
            password_stdin,
            revoke_all_access,
        } => {
            let old = read_secret(
                "Current or temporary password: ",
                password_stdin,
                "--password-stdin",
            )?;
            let new = read_secret("New password: ", password_stdin, "--password-stdin")?;
            app.conn
                .users()
                .await?
                .update_password(UpdateUserPasswordRequest {
                    user_ids: user_ids(&user_id),
                    new,
                    old,
                    revoke_all_access,
                })
                .await?;
            app.out.done(&format!("Set the password of {user_id}."))
        }
        PasswordCommand::Forgot { user_id } => {
            app.conn
                .users()
                .await?
                .create_temporary_password(CreateTemporaryPasswordRequest {
                    user_ids: user_ids(&user_id),
                })
                .await?;
            app.out
                .done(&format!("A temporary password is on its way to {user_id}."))
        }
    }
}
