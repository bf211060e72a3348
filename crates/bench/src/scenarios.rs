//! The requests each scenario sends, and the checks on each answer: a
//! request counts as successful only when the answer is the one asked for.
//!
//! Inputs are derived from the request index and `--seed` alone, so two
//! runs with the same options send the same requests.

use std::future::Future;

use roster_core::list::TOTAL_COUNT_HEADER;
use roster_core::rights::RightSet;
use roster_proto::v1::authentication_client::AuthenticationClient;
use roster_proto::v1::entity_access_client::EntityAccessClient;
use roster_proto::v1::entity_registry_search_client::EntityRegistrySearchClient;
use roster_proto::v1::user_registry_client::UserRegistryClient;
use roster_proto::v1::{
    AuthInfoRequest, CreateUserRequest, GetUserRequest, LoginRequest, SearchUsersRequest, State,
    User, UserIdentifiers,
};
use roster_test_support::{with_cluster_key, with_token};
use tonic::transport::Channel;

use crate::load::Outcome;
use crate::seed::{SEED_PASSWORD, Seeded};
use crate::services::ADMIN_ID;

/// The password of created users: it passes the default policy.
const PASSWORD: &str = "Bench-Passw0rd";
/// The page size of searches.
pub const SEARCH_LIMIT: u32 = 20;
/// Shortest and longest search text.
const QUERY_CHARS: (usize, usize) = (3, 6);

/// The scenarios, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    Create,
    Login,
    AuthInfo,
    Get,
    /// Get while background clients log in (see [`Scenario::Login`]).
    GetDuringLogins,
    GetSession,
    GetUncached,
    Search,
    /// Login of a seeded user with a TOTP: the password, then
    /// `Authentication.CompleteLogin` with the current code. Each request
    /// logs in a user of its own (a code is accepted once), enrolled just
    /// before the scenario by [`Target::enrol_totp`].
    LoginTotp,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Create => "Create",
            Scenario::Login => "Login",
            Scenario::AuthInfo => "AuthInfo",
            Scenario::Get => "Get (API key, cached)",
            Scenario::GetDuringLogins => "Get (API key, during logins)",
            Scenario::GetSession => "Get (session, cached)",
            Scenario::GetUncached => "Get (API key, uncached)",
            Scenario::Search => "SearchUsers",
            Scenario::LoginTotp => "Login with TOTP",
        }
    }

    /// Keeps the random streams of the scenarios apart. The Get scenarios
    /// share one, so they read the same users and differ only in the
    /// credential, how it is resolved, or what else runs.
    fn stream(self) -> u64 {
        match self {
            Scenario::Create => 1,
            Scenario::Get
            | Scenario::GetDuringLogins
            | Scenario::GetSession
            | Scenario::GetUncached => 2,
            Scenario::Search => 3,
            Scenario::AuthInfo => 4,
            Scenario::Login => 5,
            Scenario::LoginTotp => 6,
        }
    }

    /// Whether requests carry a credential of the admin (its API key or its
    /// session), which the serving Authenticator resolves (or finds in its
    /// cache).
    pub fn authenticated(self) -> bool {
        matches!(
            self,
            Scenario::Get
                | Scenario::GetDuringLogins
                | Scenario::GetSession
                | Scenario::GetUncached
                | Scenario::Search
        )
    }

    /// Whether requests go to the server whose Authenticator caches
    /// nothing.
    pub fn uncached(self) -> bool {
        self == Scenario::GetUncached
    }
}

/// What every request needs: channels to spread requests over (to the
/// server that serves all three services with the default credential cache,
/// and to the one that serves the user registry without it), the admin's
/// API key and session token, the seeded users and the seed of the inputs.
#[derive(Clone)]
pub struct Target {
    pub channels: Vec<Channel>,
    pub uncached_channels: Vec<Channel>,
    pub api_key: String,
    pub session_token: String,
    pub seeded: Seeded,
    pub seed: u64,
    /// The TOTP secrets of the users of [`Scenario::LoginTotp`], by request
    /// index.
    pub totp_secrets: std::sync::Arc<Vec<Vec<u8>>>,
}

impl Target {
    fn channel(&self, i: usize) -> Channel {
        self.channels[i % self.channels.len()].clone()
    }

    fn uncached_channel(&self, i: usize) -> Channel {
        self.uncached_channels[i % self.uncached_channels.len()].clone()
    }

    /// The `draw`-th random number of request `i` of `scenario`.
    fn random(&self, scenario: Scenario, i: usize, draw: u64) -> u64 {
        splitmix64(
            self.seed
                ^ scenario.stream().wrapping_mul(0x9e37_79b9_7f4a_7c15)
                ^ (i as u64).wrapping_mul(0xbf58_476d_1ce4_e5b9)
                ^ draw.wrapping_mul(0x94d0_49bb_1331_11eb),
        )
    }

    /// A seeded user number, uniform over `1..=count`.
    fn seeded_user(&self, scenario: Scenario, i: usize) -> u64 {
        1 + self.random(scenario, i, 0) % self.seeded.count
    }

    /// Request `i` of `scenario`, as a future the load generator can run.
    pub fn request(
        &self,
        scenario: Scenario,
        i: usize,
    ) -> impl Future<Output = Outcome> + Send + use<> {
        let target = self.clone();
        async move {
            match scenario {
                Scenario::Create => target.create(i).await,
                Scenario::Login => target.login(i).await,
                Scenario::AuthInfo => target.auth_info(i).await,
                Scenario::Get | Scenario::GetDuringLogins => {
                    let channel = target.channel(i);
                    target.get(scenario, channel, &target.api_key, i).await
                }
                Scenario::GetSession => {
                    let channel = target.channel(i);
                    target
                        .get(scenario, channel, &target.session_token, i)
                        .await
                }
                Scenario::GetUncached => {
                    let channel = target.uncached_channel(i);
                    target.get(scenario, channel, &target.api_key, i).await
                }
                Scenario::Search => target.search(i).await,
                Scenario::LoginTotp => target.login_totp(i).await,
            }
        }
    }

    /// Self-registration: no credential, as a new user signs up.
    async fn create(&self, i: usize) -> Outcome {
        let user_id = format!("bench-{i:06}");
        let request = CreateUserRequest {
            user: Some(User {
                ids: Some(user_ids(&user_id)),
                primary_email_address: format!("{user_id}@bench.example.com"),
                password: PASSWORD.into(),
                name: format!("Bench User {i}"),
                ..Default::default()
            }),
            invitation_token: String::new(),
        };
        let user = UserRegistryClient::new(self.channel(i))
            .create(request)
            .await
            .map_err(status_text)?
            .into_inner();
        expect_user(&user, &user_id)?;
        Ok(None)
    }

    /// A random seeded user logging in with its password: one Argon2id
    /// verification in the user registry (`UserCredentials.CheckPassword`),
    /// then a new session with its `user.login` event.
    async fn login(&self, i: usize) -> Outcome {
        let user_id = self.seeded.user_id(self.seeded_user(Scenario::Login, i));
        let request = LoginRequest {
            user_ids: Some(user_ids(&user_id)),
            password: SEED_PASSWORD.into(),
        };
        let login = AuthenticationClient::new(self.channel(i))
            .login(request)
            .await
            .map_err(status_text)?
            .into_inner();
        let got = login
            .session_ids
            .as_ref()
            .and_then(|ids| ids.user_ids.as_ref())
            .map_or("", |ids| ids.user_id.as_str());
        if got != user_id || login.token.is_empty() || login.password_update_required {
            return Err(format!(
                "Login of {user_id}: session of {got:?}, token given {}, \
                 password update required {}",
                !login.token.is_empty(),
                login.password_update_required
            ));
        }
        Ok(None)
    }

    /// The seeded user of request `i` of [`Scenario::LoginTotp`]: one per
    /// request, counting down from the last seeded user.
    fn totp_user(&self, i: usize) -> String {
        self.seeded.user_id(self.seeded.count - i as u64)
    }

    /// Enrols a TOTP for the users of requests `0..n` with the cluster key
    /// and returns their secrets. Each registration is verified with the
    /// code of the step before the current one, so the scenario's codes,
    /// of the current step, are fresh.
    pub async fn enrol_totp(&self, n: usize) -> anyhow::Result<Vec<Vec<u8>>> {
        use roster_proto::v1::user_authentication_factors_client::UserAuthenticationFactorsClient;
        use roster_proto::v1::{RegisterTotpRequest, VerifyTotpRegistrationRequest};
        use roster_user_registry::totp;
        anyhow::ensure!(
            n as u64 <= self.seeded.count,
            "Login with TOTP needs a seeded user per request: {n} requests, {} users",
            self.seeded.count
        );
        let mut secrets = Vec::with_capacity(n);
        for i in 0..n {
            let user_id = self.totp_user(i);
            let mut client = UserAuthenticationFactorsClient::new(self.channel(i));
            let registered = client
                .register_totp(with_cluster_key(RegisterTotpRequest {
                    user_ids: Some(user_ids(&user_id)),
                    ..Default::default()
                }))
                .await?
                .into_inner();
            let secret = data_encoding::BASE32_NOPAD.decode(registered.secret.as_bytes())?;
            let step = totp::step_of(chrono::Utc::now().timestamp()) - 1;
            client
                .verify_totp_registration(with_cluster_key(VerifyTotpRegistrationRequest {
                    user_ids: Some(user_ids(&user_id)),
                    code: totp::code_at(&secret, step),
                }))
                .await?;
            secrets.push(secret);
        }
        Ok(secrets)
    }

    /// A seeded user with a TOTP logging in: the password (one Argon2id
    /// verification) answers with a challenge, which the current code
    /// completes (the sealed secret opened, the code checked and used up,
    /// the session stored as the challenge goes).
    async fn login_totp(&self, i: usize) -> Outcome {
        use roster_proto::v1::{CompleteLoginRequest, complete_login_request};
        use roster_user_registry::totp;
        let user_id = self.totp_user(i);
        let secret = self
            .totp_secrets
            .get(i)
            .ok_or_else(|| format!("no TOTP enrolled for request {i}"))?;
        let mut client = AuthenticationClient::new(self.channel(i));
        let first = client
            .login(LoginRequest {
                user_ids: Some(user_ids(&user_id)),
                password: SEED_PASSWORD.into(),
            })
            .await
            .map_err(status_text)?
            .into_inner();
        if !first.second_factor_required || first.challenge.is_empty() {
            return Err(format!("Login of {user_id}: no second factor asked"));
        }
        let code = totp::code_at(secret, totp::step_of(chrono::Utc::now().timestamp()));
        let done = client
            .complete_login(CompleteLoginRequest {
                challenge: first.challenge,
                code: Some(complete_login_request::Code::TotpCode(code)),
            })
            .await
            .map_err(status_text)?
            .into_inner();
        if done.token.is_empty() {
            return Err(format!("CompleteLogin of {user_id}: no session"));
        }
        Ok(None)
    }

    /// A service resolving the admin's API key, as every service's
    /// Authenticator does on a cache miss: the key lookup, the user
    /// registry's answer about its user, the rights.
    async fn auth_info(&self, i: usize) -> Outcome {
        let request = AuthInfoRequest {
            token: self.api_key.clone(),
        };
        let info = EntityAccessClient::new(self.channel(i))
            .auth_info(with_cluster_key(request))
            .await
            .map_err(status_text)?
            .into_inner();
        let user_id = info
            .user_ids
            .as_ref()
            .map_or("", |ids| ids.user_id.as_str());
        let universal = info
            .universal_rights
            .as_ref()
            .map(|r| RightSet::from_i32s(&r.rights))
            .unwrap_or_default();
        if user_id != ADMIN_ID
            || !info.is_admin
            || info.state != State::Approved as i32
            || !universal.contains_all(RightSet::all())
        {
            return Err(format!(
                "AuthInfo: {user_id:?}, admin {}, state {}, universal rights {:?}",
                info.is_admin, info.state, universal
            ));
        }
        Ok(None)
    }

    /// An admin reading a random seeded user with `token` (an API key or a
    /// session token), every readable field, on `channel`.
    async fn get(&self, scenario: Scenario, channel: Channel, token: &str, i: usize) -> Outcome {
        let user_id = self.seeded.user_id(self.seeded_user(scenario, i));
        let request = GetUserRequest {
            user_ids: Some(user_ids(&user_id)),
            field_mask: None,
        };
        let user = UserRegistryClient::new(channel)
            .get(with_token(request, token))
            .await
            .map_err(status_text)?
            .into_inner();
        expect_user(&user, &user_id)?;
        Ok(None)
    }

    /// An admin typing part of an ID or a name into a search box.
    async fn search(&self, i: usize) -> Outcome {
        let query = self.search_text(i);
        let request = SearchUsersRequest {
            query: query.clone(),
            limit: SEARCH_LIMIT,
            ..Default::default()
        };
        let response = EntityRegistrySearchClient::new(self.channel(i))
            .search_users(with_token(request, &self.api_key))
            .await
            .map_err(status_text)?;
        let total: u64 = response
            .metadata()
            .get(TOTAL_COUNT_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("search {query:?}: no valid {TOTAL_COUNT_HEADER} header"))?;
        let found = response.into_inner().users.len() as u64;
        // The text comes from a seeded user, so at least that user matches.
        if found == 0 || found > u64::from(SEARCH_LIMIT) || total < found {
            return Err(format!(
                "search {query:?}: {found} users with {TOTAL_COUNT_HEADER} {total}"
            ));
        }
        Ok(Some(total))
    }

    /// A random 3 to 6 character substring of a seeded user's ID or name.
    fn search_text(&self, i: usize) -> String {
        let n = self.seeded_user(Scenario::Search, i);
        let source = if self.random(Scenario::Search, i, 1) & 1 == 0 {
            self.seeded.user_id(n)
        } else {
            self.seeded.name(n)
        };
        let (shortest, longest) = QUERY_CHARS;
        let span = (longest - shortest + 1) as u64;
        let len =
            (shortest + (self.random(Scenario::Search, i, 2) % span) as usize).min(source.len());
        let start =
            (self.random(Scenario::Search, i, 3) % (source.len() - len + 1) as u64) as usize;
        // IDs and names are ASCII, so byte offsets are character offsets.
        source[start..start + len].to_string()
    }
}

fn user_ids(user_id: &str) -> UserIdentifiers {
    UserIdentifiers {
        user_id: user_id.into(),
        email: String::new(),
    }
}

fn expect_user(user: &User, user_id: &str) -> Result<(), String> {
    let got = user.ids.as_ref().map_or("", |ids| ids.user_id.as_str());
    if got != user_id {
        return Err(format!("asked for {user_id}, got {got:?}"));
    }
    Ok(())
}

fn status_text(status: tonic::Status) -> String {
    format!("{:?}: {}", status.code(), status.message())
}

/// SplitMix64: a fast, well-mixed hash of a counter, plenty for picking
/// inputs and cheaper than seeding a generator per request.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> Target {
        Target {
            // Never connected: only input generation is tested here.
            channels: Vec::new(),
            uncached_channels: Vec::new(),
            api_key: String::new(),
            session_token: String::new(),
            seeded: Seeded::new(100_000),
            seed: 1,
            totp_secrets: std::sync::Arc::default(),
        }
    }

    #[test]
    fn each_totp_login_has_a_seeded_user_of_its_own() {
        let target = target();
        assert_eq!(target.totp_user(0), target.seeded.user_id(100_000));
        assert_ne!(target.totp_user(1), target.totp_user(0));
    }

    #[test]
    fn search_texts_are_substrings_of_seeded_users() {
        let target = target();
        for i in 0..1000 {
            let text = target.search_text(i);
            assert!((3..=6).contains(&text.len()), "{text:?}");
            let n = target.seeded_user(Scenario::Search, i);
            let id = target.seeded.user_id(n);
            let name = target.seeded.name(n);
            assert!(id.contains(&text) || name.contains(&text), "{text:?}");
        }
    }

    #[test]
    fn inputs_are_reproducible_and_vary() {
        let target = target();
        assert_eq!(target.search_text(5), target.search_text(5));
        let picks: std::collections::BTreeSet<u64> = (0..100)
            .map(|i| target.seeded_user(Scenario::Get, i))
            .collect();
        assert!(picks.len() > 90);
        assert!(picks.iter().all(|n| (1..=100_000).contains(n)));
    }
}
