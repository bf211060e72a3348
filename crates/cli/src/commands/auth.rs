//! `roster login` and `roster logout`: a session for this context, kept
//! in the config folder (mode 0600) until logout.

use clap::Args;
use roster_proto::v1::{LoginRequest, LoginWithTokenRequest};

use super::{App, read_secret, user_ids};
use crate::error::{CliError, Result};
use crate::output::{Kind, View, col, wide};

const LOGIN_VIEW: View = View {
    rows: None,
    columns: &[
        col("USER", "sessionIds.userIds.userId", Kind::Text),
        col("SESSION", "sessionIds.sessionId", Kind::Text),
        col("EXPIRES", "expiresAt", Kind::Time),
        wide(
            "PASSWORD UPDATE REQUIRED",
            "passwordUpdateRequired",
            Kind::Bool,
        ),
    ],
};

#[derive(Debug, Args)]
pub struct LoginArgs {
    /// The user to log in as (not with --login-token-stdin).
    #[arg(required_unless_present = "login_token_stdin")]
    pub user_id: Option<String>,
    /// Read the password from standard input instead of asking.
    #[arg(long, conflicts_with = "login_token_stdin")]
    pub password_stdin: bool,
    /// Log in with a login token (from `roster login-tokens create` or its
    /// mail), read from standard input.
    #[arg(long)]
    pub login_token_stdin: bool,
}

pub async fn login(app: &App, args: LoginArgs) -> Result<()> {
    let mut auth = app.conn.authentication().await?;
    let response = if args.login_token_stdin {
        let token = read_secret("Login token: ", true, "--login-token-stdin")?;
        auth.login_with_token(LoginWithTokenRequest { token })
            .await?
    } else {
        let user_id = args.user_id.unwrap_or_default();
        let password = read_secret(
            &format!("Password for {user_id}: "),
            args.password_stdin,
            "--password-stdin",
        )?;
        auth.login(LoginRequest {
            user_ids: user_ids(&user_id),
            password,
        })
        .await?
    };
    let mut session = response.into_inner();
    let path = app
        .store
        .store_session_token(&app.context, &session.token)?;
    // The token stays in the file; it is never printed.
    session.token.clear();
    app.out.message(&session, &LOGIN_VIEW)?;
    if app.out.is_table() {
        eprintln!(
            "Logged in; the session is stored in {} for context `{}`.",
            path.display(),
            app.context
        );
    }
    Ok(())
}

/// Ends the stored session of this context on the server and forgets it.
pub async fn logout(app: &App) -> Result<()> {
    let Some(token) = app.store.session_token(&app.context)? else {
        return Err(CliError::NoCredential(format!(
            "not logged in in context `{}`",
            app.context
        )));
    };
    let session = app.conn.with_token(&token)?;
    let result = session.authentication().await?.logout(()).await;
    // Forget the token even when the server no longer knew the session:
    // it cannot be used again either way.
    app.store.remove_session_token(&app.context)?;
    match result {
        Ok(_) => app.out.done("Logged out."),
        Err(status) if status.code() == tonic::Code::Unauthenticated => {
            app.out.done("The session had already ended; forgot it.")
        }
        Err(status) => Err(status.into()),
    }
}
