//! `roster email`: validating a user's primary email address.

use clap::Subcommand;
use roster_proto::v1::{SendEmailValidationRequest, ValidateEmailRequest};

use super::{App, user_ids};
use crate::error::Result;
use crate::output::{Kind, View, col};

const SENT_VIEW: View = View {
    rows: None,
    columns: &[
        col("CODE", "code", Kind::Text),
        col("EXPIRES", "expiresAt", Kind::Time),
    ],
};

const VALIDATED_VIEW: View = View {
    rows: None,
    columns: &[
        col("USER", "userIds.userId", Kind::Text),
        col("VALIDATED", "primaryEmailAddressValidatedAt", Kind::Time),
    ],
};

#[derive(Debug, Subcommand)]
pub enum EmailCommand {
    /// Mail a user a fresh validation link for the primary address.
    #[command(
        after_help = "Example:\n  roster email send-validation alice\n  roster email send-validation alice --return-code -o json"
    )]
    SendValidation {
        /// The user's ID.
        user_id: String,
        /// Also answer the code (admins only), for flows without mail.
        #[arg(long)]
        return_code: bool,
    },
    /// Validate a user's primary address with the code from the mail.
    #[command(after_help = "Example:\n  roster email validate alice 3q7mzexample")]
    Validate {
        /// The user's ID.
        user_id: String,
        /// The code from the validation mail.
        code: String,
    },
}

pub async fn run(app: &App, command: EmailCommand) -> Result<()> {
    let mut lifecycle = app.conn.lifecycle().await?;
    match command {
        EmailCommand::SendValidation {
            user_id,
            return_code,
        } => {
            let response = lifecycle
                .send_email_validation(SendEmailValidationRequest {
                    user_ids: user_ids(&user_id),
                    return_code,
                })
                .await?;
            if response.get_ref().code.is_empty() && app.out.is_table() {
                return app
                    .out
                    .done(&format!("A validation mail is on its way to {user_id}."));
            }
            app.out.message(response.get_ref(), &SENT_VIEW)
        }
        EmailCommand::Validate { user_id, code } => {
            let response = lifecycle
                .validate_email(ValidateEmailRequest {
                    user_ids: user_ids(&user_id),
                    code,
                })
                .await?;
            app.out.message(response.get_ref(), &VALIDATED_VIEW)
        }
    }
}
