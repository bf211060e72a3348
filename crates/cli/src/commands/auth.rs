//! `roster login` and `roster logout`: a session for this context, kept
//! in the config folder (mode 0600) until logout.

use clap::{Args, ValueEnum};
use roster_proto::v1::{
    AuthenticationMethodType, CompleteLoginRequest, LoginRequest, LoginResponse,
    LoginWithTokenRequest, SendLoginEmailCodeRequest, complete_login_request,
};

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
    /// When the user has a second factor: the one to give (default: the
    /// first the server offers of totp, email, recovery). `email` mails a
    /// code first.
    #[arg(long, value_enum)]
    pub second_factor: Option<SecondFactor>,
    /// Read the second factor's code from standard input (after the
    /// password, on its own line) instead of asking.
    #[arg(long)]
    pub code_stdin: bool,
}

/// A second factor to complete a login with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SecondFactor {
    /// The current code of an authenticator app.
    Totp,
    /// A code mailed to the primary address.
    Email,
    /// One of the recovery codes.
    Recovery,
}

impl SecondFactor {
    fn method(self) -> AuthenticationMethodType {
        match self {
            Self::Totp => AuthenticationMethodType::Totp,
            Self::Email => AuthenticationMethodType::OtpEmail,
            Self::Recovery => AuthenticationMethodType::RecoveryCode,
        }
    }
}

/// Completes a login the server answered with a challenge: mails a code
/// when asked to, reads the code and sends it.
async fn complete(app: &App, args: &LoginArgs, first: LoginResponse) -> Result<LoginResponse> {
    let offered = |f: SecondFactor| first.second_factor_methods.contains(&(f.method() as i32));
    let factor = match args.second_factor {
        Some(f) if offered(f) => f,
        Some(f) => {
            return Err(CliError::invalid(format!(
                "--second-factor {f:?}: this login cannot be completed with it"
            )));
        }
        None => [
            SecondFactor::Totp,
            SecondFactor::Email,
            SecondFactor::Recovery,
        ]
        .into_iter()
        .find(|f| offered(*f))
        .ok_or_else(|| CliError::invalid("the server offered no second factor"))?,
    };
    let mut auth = app.conn.authentication().await?;
    if factor == SecondFactor::Email {
        auth.send_login_email_code(SendLoginEmailCodeRequest {
            challenge: first.challenge.clone(),
        })
        .await?;
        eprintln!("A code was mailed to the account's address.");
    }
    let prompt = match factor {
        SecondFactor::Totp => "Authenticator code: ",
        SecondFactor::Email => "Mailed code: ",
        SecondFactor::Recovery => "Recovery code: ",
    };
    let code = read_secret(prompt, args.code_stdin, "--code-stdin")?;
    let code = match factor {
        SecondFactor::Totp => complete_login_request::Code::TotpCode(code),
        SecondFactor::Email => complete_login_request::Code::EmailCode(code),
        SecondFactor::Recovery => complete_login_request::Code::RecoveryCode(code),
    };
    Ok(auth
        .complete_login(CompleteLoginRequest {
            challenge: first.challenge,
            code: Some(code),
        })
        .await?
        .into_inner())
}

pub async fn login(app: &App, args: LoginArgs) -> Result<()> {
    let mut auth = app.conn.authentication().await?;
    let response = if args.login_token_stdin {
        let token = read_secret("Login token: ", true, "--login-token-stdin")?;
        auth.login_with_token(LoginWithTokenRequest { token })
            .await?
    } else {
        let user_id = args.user_id.clone().unwrap_or_default();
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
    if session.second_factor_required {
        session = complete(app, &args, session).await?;
    }
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
