//! `roster sessions`: a user's sessions, and ending one.

use clap::Subcommand;
use roster_proto::v1::{ListUserSessionsRequest, UserSessionIdentifiers};

use super::{App, Paging, user_ids};
use crate::error::Result;
use crate::output::{Kind, View, col, wide};

const SESSIONS_VIEW: View = View {
    rows: Some("sessions"),
    columns: &[
        col("ID", "sessionId", Kind::Text),
        col("CREATED", "createdAt", Kind::Time),
        col("EXPIRES", "expiresAt", Kind::Time),
        col("EXPIRED", "expired", Kind::Bool),
        col("REMOTE IP", "remoteIp", Kind::Text),
        wide("USER AGENT", "userAgent", Kind::Text),
        wide("UPDATED", "updatedAt", Kind::Time),
    ],
};

#[derive(Debug, Subcommand)]
pub enum SessionsCommand {
    /// List a user's sessions.
    #[command(after_help = "Example:\n  roster sessions list alice --order -created_at")]
    List {
        /// The user's ID.
        user_id: String,
        #[command(flatten)]
        paging: Paging,
    },
    /// End a session; its token stops working.
    #[command(after_help = "Example:\n  roster sessions delete alice 01JEXAMPLESESSION")]
    Delete {
        /// The user's ID.
        user_id: String,
        /// The session's ID.
        session_id: String,
    },
}

pub async fn run(app: &App, command: SessionsCommand) -> Result<()> {
    let mut sessions = app.conn.sessions().await?;
    match command {
        SessionsCommand::List { user_id, paging } => {
            let response = sessions
                .list(ListUserSessionsRequest {
                    user_ids: user_ids(&user_id),
                    order: paging.order,
                    limit: paging.limit,
                    page: paging.page,
                })
                .await?;
            app.out.list(response, &SESSIONS_VIEW)
        }
        SessionsCommand::Delete {
            user_id,
            session_id,
        } => {
            sessions
                .delete(UserSessionIdentifiers {
                    user_ids: user_ids(&user_id),
                    session_id: session_id.clone(),
                })
                .await?;
            app.out.done(&format!("Ended session {session_id}."))
        }
    }
}
