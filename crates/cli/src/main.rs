//! `roster`: every public RPC of the `roster.v1` contract from a terminal
//! and from scripts, through the generated gRPC client like any outside
//! client.
//!
//! - [`cli`]: the global flags and nouns; `commands/`: one module per noun;
//! - [`config`]: contexts and stored sessions; [`client`]: connections,
//!   TLS and the credential;
//! - [`output`]: tables, JSON and YAML; [`json`]: the proto3 JSON mapping;
//! - [`error`]: every failure mapped once to an exit code.

mod cli;
mod client;
mod commands;
mod config;
mod docs;
mod error;
mod json;
mod output;

use std::process::ExitCode;

use clap::{CommandFactory as _, Parser as _};

use crate::cli::{Cli, Command};
use crate::client::{Connector, Credential, Target};
use crate::config::{DEFAULT_ADDR, DEFAULT_CONTEXT, Store, Tls, read_token};
use crate::error::{CliError, Result};
use crate::output::Output;

fn main() -> ExitCode {
    // clap prints usage errors itself and exits with 2.
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: start the runtime: {e}");
            return ExitCode::from(error::exit::OTHER);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            if let Some(hint) = hint(&e) {
                eprintln!("hint: {hint}");
            }
            ExitCode::from(e.exit_code())
        }
    }
}

/// A next step for the errors people hit first.
fn hint(error: &CliError) -> Option<&'static str> {
    match error {
        CliError::Status(status) if status.code() == tonic::Code::Unauthenticated => Some(
            "log in with `roster login USER`, or set ROSTER_TOKEN or --token-file to an API key",
        ),
        CliError::NoCredential(_) => Some("log in with `roster login USER`"),
        CliError::Connect { .. } => {
            Some("is rosterd running there? Set the address with --addr or ROSTER_ADDR")
        }
        CliError::Transport(_) => Some(
            "do the address and TLS settings match the server's? (https:// and --tls-ca-file; --tls-cert-file and --tls-key-file where it asks for a client certificate)",
        ),
        _ => None,
    }
}

async fn run(cli: Cli) -> Result<()> {
    let global = cli.global;
    let out = Output::new(if global.json {
        Some(output::Format::Json)
    } else {
        global.output
    });
    let store = Store::open(global.config_dir.clone())?;
    let flag_tls = Tls {
        ca_file: global.tls_ca_file.clone(),
        cert_file: global.tls_cert_file.clone(),
        key_file: global.tls_key_file.clone(),
        server_name: global.tls_server_name.clone(),
    };
    match cli.command {
        Command::Completion { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "roster", &mut script);
            return output::print(&String::from_utf8_lossy(&script));
        }
        Command::Docs => {
            return output::print(&docs::markdown(&Cli::command()));
        }
        Command::Context(command) => {
            let flags = commands::context::Flags {
                addr: global.addr.clone(),
                tls: flag_tls,
                token_file: global.token_file.clone(),
            };
            return commands::context::run(
                &store,
                &out,
                global.context.as_deref(),
                &flags,
                command,
            );
        }
        _ => {}
    }

    let config = store.load()?;
    let context_name = global
        .context
        .clone()
        .or(config.current_context.clone())
        .unwrap_or_else(|| DEFAULT_CONTEXT.to_string());
    let context = match config.contexts.get(&context_name) {
        Some(context) => context.clone(),
        None if context_name == DEFAULT_CONTEXT => config::Context::default(),
        None => {
            return Err(CliError::invalid(format!(
                "no context `{context_name}` (see `roster context list`)"
            )));
        }
    };
    let target = Target {
        addr: global
            .addr
            .clone()
            .or(context.addr.clone())
            .unwrap_or_else(|| DEFAULT_ADDR.to_string()),
        services: context.services.clone(),
        tls: context.tls.merged(&flag_tls),
    };
    let token = credential(&global.token_file, &context, &store, &context_name)?;
    let credential = token.as_deref().map(Credential::new).transpose()?;
    let app = App {
        conn: Connector::new(target, credential),
        out,
        store,
        context: context_name,
    };

    use commands::*;
    // A refused login is about the password, not a missing credential.
    let is_login = matches!(cli.command, Command::Login(_));
    let result = match cli.command {
        Command::Login(args) => auth::login(&app, args).await,
        Command::Logout => auth::logout(&app).await,
        Command::Users(command) => users::run(&app, command).await,
        Command::ApiKeys(command) => api_keys::run(&app, command).await,
        Command::Rights { user_id } => api_keys::rights(&app, &user_id).await,
        Command::LoginTokens(command) => api_keys::login_tokens(&app, command).await,
        Command::Sessions(command) => sessions::run(&app, command).await,
        Command::Factors(command) => factors::run(&app, command).await,
        Command::Invitations(command) => invitations::run(&app, command).await,
        Command::Notifications(command) => notifications::run(&app, command).await,
        Command::Email(command) => email::run(&app, command).await,
        Command::ExternalUsers(command) => external_users::run(&app, command).await,
        Command::Context(_) | Command::Completion { .. } | Command::Docs => Ok(()),
    };
    match result {
        Err(CliError::Status(status))
            if status.code() == tonic::Code::Unauthenticated
                && !app.conn.has_credential()
                && !is_login =>
        {
            Err(CliError::NoCredential(format!(
                "no credential for context `{}` ({})",
                app.context,
                status.message()
            )))
        }
        other => other,
    }
}

/// The credential, first match wins: --token-file, ROSTER_TOKEN, the
/// context's token file, the session stored for the context.
fn credential(
    token_file: &Option<std::path::PathBuf>,
    context: &config::Context,
    store: &Store,
    context_name: &str,
) -> Result<Option<String>> {
    if let Some(path) = token_file {
        return read_token(path)?.map(Some).ok_or_else(|| {
            CliError::NoCredential(format!("the token file {} does not exist", path.display()))
        });
    }
    if let Ok(token) = std::env::var("ROSTER_TOKEN")
        && !token.trim().is_empty()
    {
        return Ok(Some(token.trim().to_string()));
    }
    if let Some(path) = &context.token_file {
        return read_token(path)?.map(Some).ok_or_else(|| {
            CliError::NoCredential(format!(
                "the token file {} of context `{context_name}` does not exist",
                path.display()
            ))
        });
    }
    store.session_token(context_name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }
}
