//! `roster factors`: a user's second factors (an authenticator app, mailed
//! codes, recovery codes): add, list, remove.

use clap::Subcommand;
use roster_proto::v1::{
    AddOtpEmailRequest, GenerateRecoveryCodesRequest, ListAuthenticationFactorsRequest,
    ListAuthenticationMethodTypesRequest, RegisterTotpRequest, RemoveAuthenticationFactorRequest,
    VerifyTotpRegistrationRequest,
};

use super::{App, read_secret, user_ids};
use crate::error::Result;
use crate::output::{Kind, View, col};

const FACTORS_VIEW: View = View {
    rows: Some("factors"),
    columns: &[
        col("TYPE", "type", Kind::Text),
        col("READY", "ready", Kind::Bool),
        col("CREATED", "createdAt", Kind::Time),
        col("CODES LEFT", "remainingCodes", Kind::Text),
    ],
};

const METHODS_VIEW: View = View {
    rows: Some("authMethodTypes"),
    columns: &[col("METHOD", "", Kind::Text)],
};

const TOTP_VIEW: View = View {
    rows: None,
    columns: &[
        col("SECRET", "secret", Kind::Text),
        col("URI", "uri", Kind::Text),
    ],
};

const CODES_VIEW: View = View {
    rows: Some("codes"),
    columns: &[col("RECOVERY CODE", "", Kind::Text)],
};

/// Which factor to remove.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Factor {
    Totp,
    OtpEmail,
    RecoveryCodes,
}

/// The password a first factor needs from a credential without
/// RIGHT_USER_ALL on the user (an API key with basic settings rights, a
/// session limited to enrolling).
#[derive(Debug, clap::Args)]
pub struct EnrolPassword {
    /// Send the user's password, asked for: a first factor needs it
    /// unless the credential holds RIGHT_USER_ALL on the user.
    #[arg(long)]
    with_password: bool,
    /// Send the user's password, read from standard input.
    #[arg(long)]
    password_stdin: bool,
}

impl EnrolPassword {
    fn read(&self, user_id: &str) -> Result<String> {
        if self.with_password || self.password_stdin {
            read_secret(
                &format!("Password of {user_id}: "),
                self.password_stdin,
                "--password-stdin",
            )
        } else {
            Ok(String::new())
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum FactorsCommand {
    /// List a user's second factors, without secrets.
    #[command(after_help = "Example:\n  roster factors list alice")]
    List {
        /// The user's ID.
        user_id: String,
    },
    /// The ways a user can log in: the password, then each active factor.
    #[command(after_help = "Example:\n  roster factors methods alice")]
    Methods {
        /// The user's ID.
        user_id: String,
    },
    /// Start adding an authenticator app: prints its secret and
    /// `otpauth://` URI, once. `roster factors verify-totp` activates it.
    #[command(after_help = "Examples:\n  roster factors register-totp alice\n  \
                             roster factors register-totp alice --with-password")]
    RegisterTotp {
        /// The user's ID.
        user_id: String,
        #[command(flatten)]
        password: EnrolPassword,
    },
    /// Activate the authenticator app with its current code.
    #[command(after_help = "Example:\n  roster factors verify-totp alice")]
    VerifyTotp {
        /// The user's ID.
        user_id: String,
        /// Read the code from standard input instead of asking.
        #[arg(long)]
        code_stdin: bool,
    },
    /// Use codes mailed to the validated primary address as a second factor.
    #[command(after_help = "Example:\n  roster factors add-otp-email alice")]
    AddOtpEmail {
        /// The user's ID.
        user_id: String,
        #[command(flatten)]
        password: EnrolPassword,
    },
    /// Make 10 recovery codes, replacing any earlier ones; printed once.
    #[command(after_help = "Example:\n  roster factors generate-recovery-codes alice")]
    GenerateRecoveryCodes {
        /// The user's ID.
        user_id: String,
        #[command(flatten)]
        password: EnrolPassword,
    },
    /// Remove a second factor: with the user's password, or as a full
    /// admin with --without-password.
    #[command(after_help = "Example:\n  roster factors remove alice totp --password-stdin")]
    Remove {
        /// The user's ID.
        user_id: String,
        /// The factor to remove.
        #[arg(value_enum)]
        factor: Factor,
        /// Read the user's password from standard input instead of asking.
        #[arg(long, conflicts_with = "without_password")]
        password_stdin: bool,
        /// Send no password (full admins remove without one).
        #[arg(long)]
        without_password: bool,
    },
}

pub async fn run(app: &App, command: FactorsCommand) -> Result<()> {
    let mut factors = app.conn.factors().await?;
    match command {
        FactorsCommand::List { user_id } => {
            let response = factors
                .list_authentication_factors(ListAuthenticationFactorsRequest {
                    user_ids: user_ids(&user_id),
                })
                .await?;
            app.out.message(response.get_ref(), &FACTORS_VIEW)
        }
        FactorsCommand::Methods { user_id } => {
            let response = factors
                .list_authentication_method_types(ListAuthenticationMethodTypesRequest {
                    user_ids: user_ids(&user_id),
                })
                .await?;
            app.out.message(response.get_ref(), &METHODS_VIEW)
        }
        FactorsCommand::RegisterTotp { user_id, password } => {
            let response = factors
                .register_totp(RegisterTotpRequest {
                    user_ids: user_ids(&user_id),
                    password: password.read(&user_id)?,
                })
                .await?;
            app.out.message(response.get_ref(), &TOTP_VIEW)?;
            if app.out.is_table() {
                eprintln!(
                    "Add it to the authenticator app, then: roster factors verify-totp {user_id}"
                );
            }
            Ok(())
        }
        FactorsCommand::VerifyTotp {
            user_id,
            code_stdin,
        } => {
            let code = read_secret("Authenticator code: ", code_stdin, "--code-stdin")?;
            factors
                .verify_totp_registration(VerifyTotpRegistrationRequest {
                    user_ids: user_ids(&user_id),
                    code,
                })
                .await?;
            app.out
                .done(&format!("The authenticator app of {user_id} is active."))
        }
        FactorsCommand::AddOtpEmail { user_id, password } => {
            factors
                .add_otp_email(AddOtpEmailRequest {
                    user_ids: user_ids(&user_id),
                    password: password.read(&user_id)?,
                })
                .await?;
            app.out
                .done(&format!("{user_id} now logs in with mailed codes too."))
        }
        FactorsCommand::GenerateRecoveryCodes { user_id, password } => {
            let response = factors
                .generate_recovery_codes(GenerateRecoveryCodesRequest {
                    user_ids: user_ids(&user_id),
                    password: password.read(&user_id)?,
                })
                .await?;
            app.out.message(response.get_ref(), &CODES_VIEW)
        }
        FactorsCommand::Remove {
            user_id,
            factor,
            password_stdin,
            without_password,
        } => {
            let password = if without_password {
                String::new()
            } else {
                read_secret(
                    &format!("Password of {user_id}: "),
                    password_stdin,
                    "--password-stdin",
                )?
            };
            let request = RemoveAuthenticationFactorRequest {
                user_ids: user_ids(&user_id),
                password,
            };
            match factor {
                Factor::Totp => factors.remove_totp(request).await?,
                Factor::OtpEmail => factors.remove_otp_email(request).await?,
                Factor::RecoveryCodes => factors.remove_recovery_codes(request).await?,
            };
            app.out
                .done(&format!("Removed the {factor:?} of {user_id}."))
        }
    }
}
