//! `roster invitations`: inviting people by email address.

use clap::Subcommand;
use roster_proto::v1::{
    DeleteInvitationRequest, GetInvitationRequest, ListInvitationsRequest, ResendInvitationRequest,
    SendInvitationRequest,
};

use super::{App, Paging};
use crate::commands::bulk;
use crate::error::{CliError, Result};
use crate::output::{Kind, View, col, wide};

pub const INVITATION_VIEW: View = View {
    rows: None,
    columns: &[
        col("ID", "id", Kind::Text),
        col("EMAIL", "email", Kind::Text),
        col("EXPIRES", "expiresAt", Kind::Time),
        col("ACCEPTED BY", "acceptedBy.userId", Kind::Text),
        wide("SENT BY", "sentBy.userId", Kind::Text),
        wide("CREATED", "createdAt", Kind::Time),
        wide("ACCEPTED", "acceptedAt", Kind::Time),
    ],
};

pub const INVITATIONS_VIEW: View = View {
    rows: Some("invitations"),
    columns: INVITATION_VIEW.columns,
};

/// Most addresses one `Send` takes.
pub const MAX_PER_SEND: usize = 100;

#[derive(Debug, Subcommand)]
pub enum InvitationsCommand {
    /// Invite people by email address (all or nothing), or many from a file.
    #[command(after_help = bulk::SEND_HELP)]
    Send(bulk::SendArgs),
    /// List invitations, newest first with --order -created_at.
    #[command(after_help = "Example:\n  roster invitations list --order -created_at")]
    List {
        #[command(flatten)]
        paging: Paging,
    },
    /// Show one invitation by its ID.
    #[command(
        after_help = "Example:\n  roster invitations get 0193a6c1-8e6d-7c4e-9a43-0f6a8d2b1e55"
    )]
    Get {
        /// The invitation's ID.
        id: String,
    },
    /// Mail a fresh token to an invited address; the old one stops working.
    #[command(after_help = "Example:\n  roster invitations resend carol@example.com")]
    Resend {
        /// The invited address.
        email: String,
    },
    /// End a pending invitation.
    #[command(after_help = "Example:\n  roster invitations delete carol@example.com")]
    Delete {
        /// The invited address.
        email: String,
    },
}

pub async fn run(app: &App, command: InvitationsCommand) -> Result<()> {
    match command {
        InvitationsCommand::Send(args) => send(app, args).await,
        InvitationsCommand::List { paging } => {
            let response = app
                .conn
                .invitations()
                .await?
                .list(ListInvitationsRequest {
                    limit: paging.limit,
                    page: paging.page,
                    order: paging.order,
                })
                .await?;
            app.out.list(response, &INVITATIONS_VIEW)
        }
        InvitationsCommand::Get { id } => {
            let invitation = app
                .conn
                .invitations()
                .await?
                .get(GetInvitationRequest { id })
                .await?;
            app.out.message(invitation.get_ref(), &INVITATION_VIEW)
        }
        InvitationsCommand::Resend { email } => {
            let invitation = app
                .conn
                .invitations()
                .await?
                .resend(ResendInvitationRequest { email })
                .await?;
            app.out.message(invitation.get_ref(), &INVITATION_VIEW)
        }
        InvitationsCommand::Delete { email } => {
            app.conn
                .invitations()
                .await?
                .delete(DeleteInvitationRequest {
                    email: email.clone(),
                })
                .await?;
            app.out.done(&format!("Deleted the invitation of {email}."))
        }
    }
}

async fn send(app: &App, args: bulk::SendArgs) -> Result<()> {
    if args.file.is_some() {
        return bulk::send_invitations(app, args).await;
    }
    if args.emails.is_empty() {
        return Err(CliError::invalid("give the addresses to invite, or --file"));
    }
    if args.emails.len() > MAX_PER_SEND {
        return Err(CliError::invalid(format!(
            "at most {MAX_PER_SEND} addresses at once; use --file for more"
        )));
    }
    if args.bulk.dry_run {
        for email in &args.emails {
            println!("would invite {email}");
        }
        return Ok(());
    }
    let response = app
        .conn
        .invitations()
        .await?
        .send(SendInvitationRequest {
            email: String::new(),
            emails: args.emails,
        })
        .await?;
    app.out.message(response.get_ref(), &INVITATIONS_VIEW)
}
