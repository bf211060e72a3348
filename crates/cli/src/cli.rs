//! The command line: global flags and the nouns. Each noun's verbs and
//! their flags live beside their handlers in `commands/`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::commands::api_keys::{ApiKeysCommand, LoginTokensCommand};
use crate::commands::auth::LoginArgs;
use crate::commands::context::ContextCommand;
use crate::commands::email::EmailCommand;
use crate::commands::external_users::ExternalUsersCommand;
use crate::commands::factors::FactorsCommand;
use crate::commands::invitations::InvitationsCommand;
use crate::commands::notifications::NotificationsCommand;
use crate::commands::sessions::SessionsCommand;
use crate::commands::users::UsersCommand;
use crate::output::Format;

const ABOUT: &str = "Manage Roster's users, API keys, sessions, invitations and notifications.";

const LONG_ABOUT: &str = "\
Manage Roster's users, API keys, sessions, invitations and notifications.

Credentials, first match wins: --token-file (or ROSTER_TOKEN_FILE), the
ROSTER_TOKEN environment variable (an API key `rak.…` or a session token
`rst.…`), the context's token file, then the session `roster login` stored
for the context.

The address, first match wins: --addr (or ROSTER_ADDR), the context's
address, then http://127.0.0.1:8884.";

const EXAMPLES: &str = "\
Examples:
  roster login ops
  roster users list
  roster users create alice --email alice@example.com --name Alice
  roster api-keys create alice --name ci --rights RIGHT_USER_INFO
  ROSTER_TOKEN=$(cat ci.key) roster users get alice -o json | jq .state

Exit codes: 0 ok, 1 other error, 2 invalid input, 3 not found,
4 unauthenticated or permission denied, 5 unavailable, 6 conflict,
7 not implemented by the server, 8 some items of a bulk command failed.";

#[derive(Debug, Parser)]
#[command(
    name = "roster",
    version,
    about = ABOUT,
    long_about = LONG_ABOUT,
    after_help = EXAMPLES,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every command takes.
#[derive(Debug, Args)]
pub struct Global {
    /// Where Roster listens: http://host:port, https://host:port or host:port.
    #[arg(long, global = true, env = "ROSTER_ADDR")]
    pub addr: Option<String>,
    /// The context to use instead of the current one.
    #[arg(long, global = true, env = "ROSTER_CONTEXT")]
    pub context: Option<String>,
    /// A file holding the credential to use (an API key, for automation).
    #[arg(long, global = true, env = "ROSTER_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// PEM CA certificates that the server's certificate must chain to.
    #[arg(long, global = true, env = "ROSTER_TLS_CA_FILE")]
    pub tls_ca_file: Option<PathBuf>,
    /// PEM client certificate, for servers that require one (mutual TLS).
    #[arg(long, global = true, env = "ROSTER_TLS_CERT_FILE")]
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key of --tls-cert-file.
    #[arg(long, global = true, env = "ROSTER_TLS_KEY_FILE")]
    pub tls_key_file: Option<PathBuf>,
    /// The name checked on the server's certificate (default: the host).
    #[arg(long, global = true, env = "ROSTER_TLS_SERVER_NAME")]
    pub tls_server_name: Option<String>,
    /// Output format (default: table on a terminal, json otherwise).
    #[arg(short, long, global = true, env = "ROSTER_OUTPUT", value_enum)]
    pub output: Option<Format>,
    /// Short for `-o json`.
    #[arg(long, global = true, conflicts_with = "output")]
    pub json: bool,
    /// Folder of contexts and stored sessions (default: the user's config
    /// folder, ~/.config/roster on Linux).
    #[arg(long, global = true, env = "ROSTER_CONFIG_DIR")]
    pub config_dir: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Log in with a password (asked without echo) and store the session.
    #[command(
        after_help = "Example:\n  roster login ops\n  echo \"$PASSWORD\" | roster login ops --password-stdin"
    )]
    Login(LoginArgs),
    /// End the stored session of the context and forget it.
    #[command(after_help = "Example:\n  roster logout")]
    Logout,
    /// Users: create, get, list, search, update, delete, passwords, import, export.
    #[command(subcommand)]
    Users(UsersCommand),
    /// API keys of a user.
    #[command(subcommand)]
    ApiKeys(ApiKeysCommand),
    /// The rights the caller holds on a user.
    #[command(after_help = "Example:\n  roster rights alice")]
    Rights {
        /// The user's ID.
        user_id: String,
    },
    /// Login tokens: one-time links to log in without a password.
    #[command(subcommand)]
    LoginTokens(LoginTokensCommand),
    /// A user's sessions.
    #[command(subcommand)]
    Sessions(SessionsCommand),
    /// A user's second factors: authenticator app, mailed codes, recovery codes.
    #[command(subcommand)]
    Factors(FactorsCommand),
    /// Invitations by email address.
    #[command(subcommand)]
    Invitations(InvitationsCommand),
    /// A user's notifications: list, mark, watch.
    #[command(subcommand)]
    Notifications(NotificationsCommand),
    /// Validation of a user's primary email address.
    #[command(subcommand)]
    Email(EmailCommand),
    /// Links to accounts at external authentication providers.
    #[command(subcommand)]
    ExternalUsers(ExternalUsersCommand),
    /// Named deployments: address, TLS settings, credential.
    #[command(subcommand)]
    Context(ContextCommand),
    /// Print a shell completion script.
    #[command(
        after_help = "Example:\n  roster completion bash > /etc/bash_completion.d/roster\n  roster completion zsh > \"${fpath[1]}/_roster\"\n  roster completion fish > ~/.config/fish/completions/roster.fish"
    )]
    Completion {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the command reference as Markdown (docs/cli.md).
    #[command(hide = true)]
    Docs,
}
