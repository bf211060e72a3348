//! `roster notifications`: what a user was told, marking it seen or
//! archived, and watching new ones arrive.

use clap::Subcommand;
use roster_proto::v1::{
    CreateNotificationRequest, ListNotificationsRequest, NotificationStatus,
    SubscribeNotificationsRequest, UpdateNotificationStatusRequest,
};

use super::{App, user_ids};
use crate::error::{CliError, Result};
use crate::json::read_message;
use crate::output::{Kind, View, col, wide};

const NOTIFICATION_VIEW: View = View {
    rows: None,
    columns: &[
        col("ID", "id", Kind::Text),
        col("CREATED", "createdAt", Kind::Time),
        col("TYPE", "notificationType", Kind::Enum("")),
        col("STATUS", "status", Kind::Enum("NOTIFICATION_STATUS_")),
        col("ABOUT", "entityIds.userIds.userId", Kind::Text),
        wide("SENDER", "senderIds.userId", Kind::Text),
        wide("MAILED", "email", Kind::Bool),
    ],
};

const NOTIFICATIONS_VIEW: View = View {
    rows: Some("notifications"),
    columns: NOTIFICATION_VIEW.columns,
};

const CREATED_VIEW: View = View {
    rows: None,
    columns: &[col("ID", "id", Kind::Text)],
};

fn parse_status(text: &str) -> Result<NotificationStatus, String> {
    let upper = text.trim().to_ascii_uppercase();
    let name = if upper.starts_with("NOTIFICATION_STATUS_") {
        upper
    } else {
        format!("NOTIFICATION_STATUS_{upper}")
    };
    NotificationStatus::from_str_name(&name)
        .ok_or_else(|| format!("unknown status `{text}` (unseen, seen, archived)"))
}

#[derive(Debug, Subcommand)]
pub enum NotificationsCommand {
    /// List a user's notifications, newest first.
    #[command(after_help = "Example:\n  roster notifications list alice --status unseen")]
    List {
        /// The user's ID.
        user_id: String,
        /// Only these statuses, comma-separated (unseen, seen, archived).
        #[arg(long, value_delimiter = ',', value_parser = parse_status)]
        status: Vec<NotificationStatus>,
        #[arg(long, default_value_t = 0)]
        limit: u32,
        #[arg(long, default_value_t = 0)]
        page: u32,
    },
    /// Mark notifications seen or archived.
    #[command(
        after_help = "Example:\n  roster notifications mark alice --status seen 0193a6c1-8e6d-7c4e-9a43-0f6a8d2b1e55"
    )]
    Mark {
        /// The user's ID.
        user_id: String,
        /// seen or archived.
        #[arg(long, value_parser = parse_status)]
        status: NotificationStatus,
        /// The notification IDs (at most 1000).
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Print a user's new notifications as they are made, until interrupted.
    #[command(
        after_help = "Example:\n  roster notifications watch alice\n  roster notifications watch alice -o json | jq .notificationType"
    )]
    Watch {
        /// The user's ID.
        user_id: String,
    },
    /// Create a notification (services and admins), from proto3 JSON.
    #[command(after_help = "Example:\n  roster notifications create --from-json notification.json")]
    Create {
        /// A CreateNotificationRequest in proto3 JSON (file or `-`).
        #[arg(long, value_name = "FILE")]
        from_json: String,
    },
}

pub async fn run(app: &App, command: NotificationsCommand) -> Result<()> {
    let mut notifications = app.conn.notifications().await?;
    match command {
        NotificationsCommand::List {
            user_id,
            status,
            limit,
            page,
        } => {
            let response = notifications
                .list(ListNotificationsRequest {
                    receiver_ids: user_ids(&user_id),
                    status: status.into_iter().map(|s| s as i32).collect(),
                    limit,
                    page,
                })
                .await?;
            app.out.list(response, &NOTIFICATIONS_VIEW)
        }
        NotificationsCommand::Mark {
            user_id,
            status,
            ids,
        } => {
            let count = ids.len();
            notifications
                .update_status(UpdateNotificationStatusRequest {
                    receiver_ids: user_ids(&user_id),
                    ids,
                    status: status as i32,
                })
                .await?;
            app.out.done(&format!(
                "Marked {} {}.",
                super::plural(count, "notification", "notifications"),
                status
                    .as_str_name()
                    .trim_start_matches("NOTIFICATION_STATUS_")
                    .to_ascii_lowercase()
            ))
        }
        NotificationsCommand::Watch { user_id } => {
            let mut stream = notifications
                .subscribe(SubscribeNotificationsRequest {
                    receiver_ids: user_ids(&user_id),
                })
                .await?
                .into_inner();
            eprintln!("Watching the notifications of {user_id}; Ctrl-C to stop.");
            let mut first = true;
            while let Some(notification) = stream.message().await? {
                let json = app.out.json(&notification)?;
                if !app.out.stream_item(&json, &NOTIFICATION_VIEW, first)? {
                    return Ok(());
                }
                first = false;
            }
            Err(CliError::Status(tonic::Status::unavailable(
                "the server ended the stream",
            )))
        }
        NotificationsCommand::Create { from_json } => {
            let request: CreateNotificationRequest = read_message(&from_json)?;
            let created = notifications.create(request).await?;
            app.out.message(created.get_ref(), &CREATED_VIEW)
        }
    }
}
