//! `roster external-users`: links between Roster users and accounts at
//! external authentication providers.

use clap::Subcommand;
use roster_proto::v1::{
    AuthenticationProviderIdentifiers, CreateExternalUserRequest, DeleteExternalUserRequest,
    ExternalUser, GetExternalUserByExternalIdRequest, GetExternalUserByUserIdRequest,
};

use super::{App, user_ids};
use crate::error::Result;
use crate::output::{Kind, View, col, wide};

const VIEW: View = View {
    rows: None,
    columns: &[
        col("USER", "userIds.userId", Kind::Text),
        col("PROVIDER", "providerIds.providerId", Kind::Text),
        col("EXTERNAL ID", "externalId", Kind::Text),
        col("CREATED", "createdAt", Kind::Time),
        wide("UPDATED", "updatedAt", Kind::Time),
    ],
};

fn provider(provider_id: String) -> Option<AuthenticationProviderIdentifiers> {
    Some(AuthenticationProviderIdentifiers { provider_id })
}

#[derive(Debug, Subcommand)]
pub enum ExternalUsersCommand {
    /// Link a user to an account at a provider.
    #[command(
        after_help = "Example:\n  roster external-users create alice --provider github --external-id 583231"
    )]
    Create {
        /// The user's ID.
        user_id: String,
        /// The provider's ID (for example `github`).
        #[arg(long)]
        provider: String,
        /// The account's ID at the provider.
        #[arg(long)]
        external_id: String,
    },
    /// Show the link of a user, or of an external account.
    #[command(
        after_help = "Example:\n  roster external-users get --provider github --user alice\n  roster external-users get --provider github --external-id 583231"
    )]
    Get {
        /// The provider's ID (for example `github`).
        #[arg(long)]
        provider: String,
        /// The Roster user's ID.
        #[arg(
            long,
            required_unless_present = "external_id",
            conflicts_with = "external_id"
        )]
        user: Option<String>,
        /// The account's ID at the provider.
        #[arg(long)]
        external_id: Option<String>,
    },
    /// Remove the link of an external account.
    #[command(
        after_help = "Example:\n  roster external-users delete --provider github --external-id 583231"
    )]
    Delete {
        /// The provider's ID (for example `github`).
        #[arg(long)]
        provider: String,
        /// The account's ID at the provider.
        #[arg(long)]
        external_id: String,
    },
}

pub async fn run(app: &App, command: ExternalUsersCommand) -> Result<()> {
    let mut registry = app.conn.external_users().await?;
    match command {
        ExternalUsersCommand::Create {
            user_id,
            provider: provider_id,
            external_id,
        } => {
            let linked = registry
                .create(CreateExternalUserRequest {
                    external_user: Some(ExternalUser {
                        user_ids: user_ids(&user_id),
                        provider_ids: provider(provider_id),
                        external_id,
                        ..ExternalUser::default()
                    }),
                })
                .await?;
            app.out.message(linked.get_ref(), &VIEW)
        }
        ExternalUsersCommand::Get {
            provider: provider_id,
            user,
            external_id,
        } => {
            let linked = match (user, external_id) {
                (Some(user), _) => {
                    registry
                        .get_by_user_id(GetExternalUserByUserIdRequest {
                            provider_ids: provider(provider_id),
                            user_ids: user_ids(&user),
                        })
                        .await?
                }
                (None, external_id) => {
                    registry
                        .get_by_external_id(GetExternalUserByExternalIdRequest {
                            provider_ids: provider(provider_id),
                            external_id: external_id.unwrap_or_default(),
                        })
                        .await?
                }
            };
            app.out.message(linked.get_ref(), &VIEW)
        }
        ExternalUsersCommand::Delete {
            provider: provider_id,
            external_id,
        } => {
            registry
                .delete(DeleteExternalUserRequest {
                    provider_ids: provider(provider_id),
                    external_id: external_id.clone(),
                })
                .await?;
            app.out.done(&format!("Removed the link of {external_id}."))
        }
    }
}
