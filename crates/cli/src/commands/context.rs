//! `roster context`: named deployments (address, TLS settings, which
//! credential to use) and the one in use.

use std::path::PathBuf;

use clap::Subcommand;
use serde_json::json;

use super::parse_pair;
use crate::client::Service;
use crate::config::{Context, DEFAULT_ADDR, DEFAULT_CONTEXT, Store, Tls};
use crate::error::{CliError, Result};
use crate::output::{Kind, Output, View, col, wide};

const CONTEXTS_VIEW: View = View {
    rows: Some("contexts"),
    columns: &[
        col("CURRENT", "current", Kind::Text),
        col("NAME", "name", Kind::Text),
        col("ADDRESS", "addr", Kind::Text),
        col("LOGGED IN", "loggedIn", Kind::Bool),
        wide("TOKEN FILE", "tokenFile", Kind::Text),
        wide("CA FILE", "tls.caFile", Kind::Text),
        wide("CLIENT CERT", "tls.certFile", Kind::Text),
    ],
};

const CURRENT_VIEW: View = View {
    rows: None,
    columns: &[col("NAME", "name", Kind::Text)],
};

#[derive(Debug, Subcommand)]
pub enum ContextCommand {
    /// Add a context, or replace one of the same name.
    ///
    /// The context keeps the connection flags given with it: --addr,
    /// --tls-ca-file, --tls-cert-file, --tls-key-file, --tls-server-name and
    /// --token-file.
    #[command(
        after_help = "Example:\n  roster context add prod --addr https://roster.example.com:8884 --tls-ca-file ca.pem --use\n  roster context add ci --addr 127.0.0.1:8884 --token-file /run/secrets/roster.key\n  roster context add split --addr https://roster:8884 --service-addr access=https://access:8884"
    )]
    Add {
        /// The context's name.
        name: String,
        /// The address of one service in a split deployment,
        /// `service=address`; repeatable.
        #[arg(long = "service-addr", value_parser = parse_service_addr)]
        services: Vec<(String, String)>,
        /// Also make it the current context.
        #[arg(long = "use")]
        use_it: bool,
    },
    /// Make a context the current one.
    #[command(after_help = "Example:\n  roster context use prod")]
    Use {
        /// The context's name.
        name: String,
    },
    /// List the contexts.
    #[command(after_help = "Example:\n  roster context list")]
    List,
    /// Print the name of the context in use.
    #[command(after_help = "Example:\n  roster context current")]
    Current,
    /// Remove a context and its stored session.
    #[command(after_help = "Example:\n  roster context delete old-staging")]
    Delete {
        /// The context's name.
        name: String,
    },
}

fn parse_service_addr(text: &str) -> Result<(String, String), String> {
    let (service, addr) = parse_pair(text)?;
    if Service::NAMES.contains(&service.as_str()) {
        Ok((service, addr))
    } else {
        Err(format!(
            "unknown service `{service}` (one of {})",
            Service::NAMES.join(", ")
        ))
    }
}

/// The connection flags of the command line, which `context add` keeps.
pub struct Flags {
    pub addr: Option<String>,
    pub tls: Tls,
    pub token_file: Option<PathBuf>,
}

pub fn run(
    store: &Store,
    out: &Output,
    current: Option<&str>,
    flags: &Flags,
    command: ContextCommand,
) -> Result<()> {
    let mut config = store.load()?;
    match command {
        ContextCommand::Add {
            name,
            services,
            use_it,
        } => {
            if name.is_empty() || name.contains(['/', '\\']) || name.starts_with('.') {
                return Err(CliError::invalid(format!(
                    "invalid context name `{name}`: no slashes, no leading dot"
                )));
            }
            let context = Context {
                addr: flags.addr.clone(),
                services: services.into_iter().collect(),
                tls: Tls {
                    ca_file: flags.tls.ca_file.clone().map(absolute).transpose()?,
                    cert_file: flags.tls.cert_file.clone().map(absolute).transpose()?,
                    key_file: flags.tls.key_file.clone().map(absolute).transpose()?,
                    server_name: flags.tls.server_name.clone(),
                },
                token_file: flags.token_file.clone().map(absolute).transpose()?,
            };
            config.contexts.insert(name.clone(), context);
            if use_it || config.current_context.is_none() {
                config.current_context = Some(name.clone());
            }
            store.save(&config)?;
            out.done(&format!("Added context `{name}`."))
        }
        ContextCommand::Use { name } => {
            if !config.contexts.contains_key(&name) && name != DEFAULT_CONTEXT {
                return Err(CliError::invalid(format!(
                    "no context `{name}` (see `roster context list`)"
                )));
            }
            config.current_context = Some(name.clone());
            store.save(&config)?;
            out.done(&format!("Using context `{name}`."))
        }
        ContextCommand::List => {
            let current = current
                .map(str::to_string)
                .or(config.current_context.clone())
                .unwrap_or_else(|| DEFAULT_CONTEXT.to_string());
            let mut rows = Vec::new();
            if !config.contexts.contains_key(DEFAULT_CONTEXT) {
                rows.push(json!({
                    "name": DEFAULT_CONTEXT,
                    "current": if current == DEFAULT_CONTEXT { "*" } else { "" },
                    "addr": DEFAULT_ADDR,
                    "loggedIn": store.session_token(DEFAULT_CONTEXT)?.is_some(),
                }));
            }
            for (name, context) in &config.contexts {
                let mut row = serde_json::to_value(context).map_err(anyhow::Error::from)?;
                row["name"] = json!(name);
                row["current"] = json!(if *name == current { "*" } else { "" });
                row["addr"] = json!(context.addr.as_deref().unwrap_or(DEFAULT_ADDR));
                row["loggedIn"] = json!(store.session_token(name)?.is_some());
                if let Some(tls) = row.get_mut("tls") {
                    *tls = json!({
                        "caFile": context.tls.ca_file,
                        "certFile": context.tls.cert_file,
                        "keyFile": context.tls.key_file,
                        "serverName": context.tls.server_name,
                    });
                }
                if let Some(file) = row.as_object_mut().and_then(|o| o.remove("token_file")) {
                    row["tokenFile"] = file;
                }
                rows.push(row);
            }
            out.value(&json!({ "contexts": rows }), &CONTEXTS_VIEW)
        }
        ContextCommand::Current => {
            let name = current
                .map(str::to_string)
                .or(config.current_context.clone())
                .unwrap_or_else(|| DEFAULT_CONTEXT.to_string());
            out.value(&json!({ "name": name }), &CURRENT_VIEW)
        }
        ContextCommand::Delete { name } => {
            if config.contexts.remove(&name).is_none() {
                return Err(CliError::invalid(format!("no context `{name}`")));
            }
            if config.current_context.as_deref() == Some(name.as_str()) {
                config.current_context = None;
            }
            store.save(&config)?;
            store.remove_session_token(&name)?;
            out.done(&format!("Deleted context `{name}`."))
        }
    }
}

/// Paths are kept absolute, so the context works from any folder.
fn absolute(path: PathBuf) -> Result<PathBuf> {
    std::path::absolute(&path).map_err(|e| CliError::invalid(format!("{}: {e}", path.display())))
}
