//! [`CachedUserStore`]: a [`UserStore`] in front of another that serves
//! the answer reads ([`UserStore::read_user`],
//! [`UserStore::read_user_and_lock`]) from a [`UserCache`] and forgets a
//! user on every write of this process.
//!
//! Every other method goes to the store underneath. Each that writes
//! forgets the user it writes and every user its events name, once it
//! returns *or* is dropped half-way (a cancelled request may have
//! committed): so no write path of this process leaves a stale entry,
//! and a method added to the trait that writes a user only has to name
//! it. Writes of other processes reach the cache as their events
//! ([`crate::worker`]); the TTL bounds what a lost event leaves.
//!
//! What is never served from memory: the rows a change starts from
//! (`get_user`, read-modify-write), password hashes and checks (the
//! cached users carry no secrets at all), the lock after wrong passwords,
//! and second factors (their own tables).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use roster_core::mail::OutgoingMail;
use roster_core::metrics::user_cache_read::{CHECKED, GET};
use roster_core::metrics::{self, user_cache_result};
use roster_proto::v1::Event;

use super::cache::UserCache;
use super::{
    ExternalUserRecord, FailureEvents, MetadataRecord, StoreError, UserCounts, UserQuery,
    UserRecord, UserStore,
};
use crate::lockout::{Counters, FailurePolicy, Failures, Forget as LockoutForget, GuessState};

/// A [`UserStore`] that keeps users as answers show them in memory.
pub struct CachedUserStore {
    inner: Arc<dyn UserStore>,
    cache: Arc<UserCache>,
}

impl CachedUserStore {
    pub fn new(inner: Arc<dyn UserStore>, cache: Arc<UserCache>) -> Self {
        Self { inner, cache }
    }

    /// Forgets `user_id` and the users `events` name when the returned
    /// guard goes: after the write it is held across, or when that write
    /// is cancelled.
    fn forgetting(&self, user_id: Option<&str>, events: &[Event]) -> Forget {
        let mut users: Vec<String> = events
            .iter()
            .flat_map(roster_core::events::user_ids)
            .collect();
        users.extend(user_id.map(str::to_string));
        Forget {
            cache: self.cache.clone(),
            users,
            done: false,
        }
    }
}

/// Forgets its users when dropped: after the write it is held [`around`]
/// completes, or when that write is cancelled.
///
/// [`around`]: Forget::around
struct Forget {
    cache: Arc<UserCache>,
    users: Vec<String>,
    done: bool,
}

/// How long after a cancelled write its users are forgotten once more: a
/// write dropped after it sent COMMIT may still land, and a reader that
/// missed in between may have kept the row from before it.
const AFTER_CANCELLED_WRITE: std::time::Duration = std::time::Duration::from_secs(1);

impl Forget {
    /// Runs `write`, then forgets.
    async fn around<T>(mut self, write: impl Future<Output = T>) -> T {
        let written = write.await;
        self.done = true;
        written
    }
}

impl Drop for Forget {
    fn drop(&mut self) {
        for user in &self.users {
            self.cache.forget(user);
        }
        if self.done {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (cache, users) = (self.cache.clone(), std::mem::take(&mut self.users));
        runtime.spawn(async move {
            tokio::time::sleep(AFTER_CANCELLED_WRITE).await;
            for user in &users {
                cache.forget(user);
            }
        });
    }
}

#[async_trait::async_trait]
impl UserStore for CachedUserStore {
    async fn read_user(&self, user_id: &str) -> Result<Option<Arc<UserRecord>>, StoreError> {
        if let Some(user) = self.cache.get(user_id) {
            metrics::user_cache(GET, user_cache_result::HIT);
            return Ok(Some(user));
        }
        metrics::user_cache(GET, user_cache_result::MISS);
        let seen = self.cache.generation(user_id);
        let user = self.inner.read_user(user_id).await?;
        if let Some(user) = &user {
            self.cache.insert(user.clone(), seen);
        }
        Ok(user)
    }

    /// From memory only after the row's `updated_at`, read in the
    /// statement that reads the lock, says the cached user is the stored
    /// one: an answer that decides credentials is never staler than the
    /// table.
    async fn read_user_and_lock(
        &self,
        user_id: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<(Arc<UserRecord>, Option<DateTime<Utc>>)>, StoreError> {
        let result = match self.cache.get(user_id) {
            None => user_cache_result::MISS,
            Some(user) => match self.inner.user_version_and_lock(user_id, now).await? {
                None => {
                    // Gone (purged): so is the copy, for `Get` too.
                    self.cache.forget(user_id);
                    return Ok(None);
                }
                Some((updated_at, lock)) if updated_at == user.updated_at => {
                    metrics::user_cache(CHECKED, user_cache_result::HIT);
                    return Ok(Some((user, lock)));
                }
                Some(_) => {
                    // Changed: the copy goes whether or not the row read
                    // next may be kept.
                    self.cache.forget(user_id);
                    user_cache_result::CHANGED
                }
            },
        };
        metrics::user_cache(CHECKED, result);
        let seen = self.cache.generation(user_id);
        let found = self.inner.read_user_and_lock(user_id, now).await?;
        if let Some((user, _)) = &found {
            self.cache.insert(user.clone(), seen);
        }
        Ok(found)
    }

    async fn user_version_and_lock(
        &self,
        user_id: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<(DateTime<Utc>, Option<DateTime<Utc>>)>, StoreError> {
        self.inner.user_version_and_lock(user_id, now).await
    }

    async fn insert_user_mailing(
        &self,
        user: &UserRecord,
        events: &[Event],
        mails: &[OutgoingMail],
    ) -> Result<(), StoreError> {
        self.forgetting(Some(&user.user_id), events)
            .around(self.inner.insert_user_mailing(user, events, mails))
            .await
    }

    async fn get_user(&self, user_id: &str) -> Result<Option<UserRecord>, StoreError> {
        self.inner.get_user(user_id).await
    }

    async fn get_user_and_lock(
        &self,
        user_id: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<(UserRecord, Option<DateTime<Utc>>)>, StoreError> {
        self.inner.get_user_and_lock(user_id, now).await
    }

    async fn find_live_by_email(&self, normalized: &str) -> Result<Option<UserRecord>, StoreError> {
        self.inner.find_live_by_email(normalized).await
    }

    async fn update_user_mailing(
        &self,
        user: &UserRecord,
        previous_updated_at: DateTime<Utc>,
        guard_last_admin: bool,
        events: &[Event],
        mails: &[OutgoingMail],
    ) -> Result<(), StoreError> {
        self.forgetting(Some(&user.user_id), events)
            .around(self.inner.update_user_mailing(
                user,
                previous_updated_at,
                guard_last_admin,
                events,
                mails,
            ))
            .await
    }

    async fn purge_user(
        &self,
        user_id: &str,
        guard_last_admin: bool,
        events: &[Event],
    ) -> Result<(), StoreError> {
        self.forgetting(Some(user_id), events)
            .around(self.inner.purge_user(user_id, guard_last_admin, events))
            .await
    }

    async fn search_users(&self, query: &UserQuery) -> Result<(Vec<UserRecord>, u64), StoreError> {
        self.inner.search_users(query).await
    }

    async fn count_effective_admins(&self) -> Result<u64, StoreError> {
        self.inner.count_effective_admins().await
    }

    async fn user_counts(&self, now: DateTime<Utc>) -> Result<UserCounts, StoreError> {
        self.inner.user_counts(now).await
    }

    async fn append_mailing(
        &self,
        events: &[Event],
        mails: &[OutgoingMail],
    ) -> Result<(), StoreError> {
        self.forgetting(None, events)
            .around(self.inner.append_mailing(events, mails))
            .await
    }

    async fn guess_state(
        &self,
        user_id: &str,
        counters: &Counters,
        now: DateTime<Utc>,
    ) -> Result<GuessState, StoreError> {
        self.inner.guess_state(user_id, counters, now).await
    }

    async fn record_password_failure(
        &self,
        user_id: &str,
        counters: &Counters,
        policy: &FailurePolicy,
        events: FailureEvents<'_>,
    ) -> Result<Failures, StoreError> {
        self.forgetting(Some(user_id), &[])
            .around(
                self.inner
                    .record_password_failure(user_id, counters, policy, events),
            )
            .await
    }

    async fn clear_password_failures(
        &self,
        user_id: &str,
        forget: LockoutForget<'_>,
    ) -> Result<(), StoreError> {
        self.forgetting(Some(user_id), &[])
            .around(self.inner.clear_password_failures(user_id, forget))
            .await
    }

    async fn set_metadata(
        &self,
        user_id: &str,
        entries: &[(String, Vec<u8>)],
        at: DateTime<Utc>,
        max_entries: u64,
        events: &[Event],
    ) -> Result<(), StoreError> {
        self.forgetting(Some(user_id), events)
            .around(
                self.inner
                    .set_metadata(user_id, entries, at, max_entries, events),
            )
            .await
    }

    async fn list_metadata(
        &self,
        user_id: &str,
        key_prefix: &str,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<MetadataRecord>, u64), StoreError> {
        self.inner
            .list_metadata(user_id, key_prefix, limit, offset)
            .await
    }

    async fn delete_metadata(
        &self,
        user_id: &str,
        keys: &[String],
        events: &[Event],
    ) -> Result<(), StoreError> {
        self.forgetting(Some(user_id), events)
            .around(self.inner.delete_metadata(user_id, keys, events))
            .await
    }

    async fn insert_external_user(
        &self,
        link: &ExternalUserRecord,
        events: &[Event],
    ) -> Result<(), StoreError> {
        self.forgetting(Some(&link.user_id), events)
            .around(self.inner.insert_external_user(link, events))
            .await
    }

    async fn get_external_user_by_user_id(
        &self,
        provider_id: &str,
        user_id: &str,
    ) -> Result<Option<ExternalUserRecord>, StoreError> {
        self.inner
            .get_external_user_by_user_id(provider_id, user_id)
            .await
    }

    async fn get_external_user_by_external_id(
        &self,
        provider_id: &str,
        external_id: &str,
    ) -> Result<Option<ExternalUserRecord>, StoreError> {
        self.inner
            .get_external_user_by_external_id(provider_id, external_id)
            .await
    }

    async fn delete_external_user(
        &self,
        provider_id: &str,
        external_id: &str,
        events: &[Event],
    ) -> Result<bool, StoreError> {
        self.forgetting(None, events)
            .around(
                self.inner
                    .delete_external_user(provider_id, external_id, events),
            )
            .await
    }
}
