//! [`UserCache`]: users as answers show them (no secrets), kept in memory
//! for `Get` and checked `GetWithStatus` answers, bounded in bytes and in
//! age.
//!
//! The race it is built against: a reader loads a user's old row, a
//! writer commits a change and forgets the user, and only then does the
//! reader put the old row in. So every user falls in one of
//! [`STRIPES`] stripes with a generation that each forget of one of its
//! users moves on; a reader takes the generation
//! ([`UserCache::generation`]) *before* it reads the row, and
//! [`UserCache::insert`] ignores a row read under an older generation.
//! Stripes rather than one counter, so that changes to other users rarely
//! cost a reader its insert; rather than one counter per user, so that
//! forgetting a user that is not cached keeps no memory.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::UserRecord;

/// How many generation stripes the users fall in.
pub const STRIPES: usize = 64;

/// What a cached entry costs beyond its own bytes: the map's slot, the
/// eviction queue's, the `Arc` and the entry's bookkeeping.
const ENTRY_OVERHEAD: usize = 160;

/// What each attribute costs beyond its key and value (the tree's node).
const ATTRIBUTE_OVERHEAD: usize = 64;

/// A user larger than this fraction of the budget is not cached: one large
/// profile picture should not push out many small users.
const LARGEST_SHARE: usize = 8;

/// The generation of a user's stripe, as a reader saw it before reading
/// the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Generation {
    stripe: usize,
    value: u64,
    /// When it was taken: the age of a row read after it counts from
    /// here, so a slow read does not stretch the TTL.
    at: Instant,
}

/// Users kept in memory, at most `max_bytes` of them (as
/// [`weight`] counts) and each for at most `ttl`.
pub struct UserCache {
    max_bytes: usize,
    ttl: Duration,
    hasher: RandomState,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    entries: HashMap<String, Entry>,
    /// Keys in insertion order, each with the sequence number of its
    /// insert; a key whose entry was replaced or forgotten since is
    /// skipped when it comes up.
    order: VecDeque<(String, u64)>,
    bytes: usize,
    next_seq: u64,
    generations: Vec<u64>,
}

struct Entry {
    user: Arc<UserRecord>,
    at: Instant,
    bytes: usize,
    seq: u64,
}

impl UserCache {
    /// A cache of at most `max_bytes`, keeping users for `ttl`.
    pub fn new(max_bytes: usize, ttl: Duration) -> Self {
        Self {
            max_bytes,
            ttl,
            hasher: RandomState::new(),
            state: Mutex::new(State {
                generations: vec![0; STRIPES],
                ..State::default()
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn stripe(&self, user_id: &str) -> usize {
        (self.hasher.hash_one(user_id) % STRIPES as u64) as usize
    }

    /// The user, if cached and younger than the TTL.
    pub fn get(&self, user_id: &str) -> Option<Arc<UserRecord>> {
        let mut state = self.lock();
        let entry = state.entries.get(user_id)?;
        if entry.at.elapsed() < self.ttl {
            return Some(entry.user.clone());
        }
        state.remove(user_id);
        None
    }

    /// The generation to hand to [`insert`](Self::insert) with a row of
    /// `user_id` read after this call.
    pub fn generation(&self, user_id: &str) -> Generation {
        let stripe = self.stripe(user_id);
        Generation {
            stripe,
            value: self.lock().generations[stripe],
            at: Instant::now(),
        }
    }

    /// Keeps `user`, read after `seen` was taken, unless a user of its
    /// stripe was forgotten since (the row may predate that change) or it
    /// is too large. Older entries go to make room. Says whether it kept
    /// it.
    pub fn insert(&self, user: Arc<UserRecord>, seen: Generation) -> bool {
        let bytes = weight(&user);
        if bytes > self.max_bytes / LARGEST_SHARE {
            return false;
        }
        let mut state = self.lock();
        if state.generations[seen.stripe] != seen.value {
            return false;
        }
        state.drop_expired(self.ttl);
        while state.bytes + bytes > self.max_bytes && state.evict_oldest() {}
        state.put(user, bytes, seen.at);
        true
    }

    /// Forgets `user_id` and moves its stripe's generation on, so that a
    /// row of it being read now is not kept.
    pub fn forget(&self, user_id: &str) {
        let stripe = self.stripe(user_id);
        let mut state = self.lock();
        state.generations[stripe] += 1;
        state.remove(user_id);
    }

    /// Forgets every user (an event that names none, a lost subscription).
    pub fn forget_all(&self) {
        let mut state = self.lock();
        for generation in &mut state.generations {
            *generation += 1;
        }
        state.entries.clear();
        state.order.clear();
        state.bytes = 0;
    }

    /// How many users are cached.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// Whether no user is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bytes the cached users count for ([`weight`]).
    pub fn bytes(&self) -> usize {
        self.lock().bytes
    }

    /// The most bytes the cache holds.
    pub fn max_bytes(&self) -> usize {
        self.max_bytes
    }
}

impl State {
    fn put(&mut self, user: Arc<UserRecord>, bytes: usize, at: Instant) {
        let key = user.user_id.clone();
        self.remove(&key);
        let seq = self.next_seq;
        self.next_seq += 1;
        self.order.push_back((key.clone(), seq));
        self.bytes += bytes;
        self.entries.insert(
            key,
            Entry {
                user,
                at,
                bytes,
                seq,
            },
        );
        self.compact();
    }

    fn remove(&mut self, user_id: &str) {
        if let Some(entry) = self.entries.remove(user_id) {
            self.bytes -= entry.bytes;
        }
    }

    /// Removes the oldest entry; false when there is none.
    fn evict_oldest(&mut self) -> bool {
        while let Some((key, seq)) = self.order.pop_front() {
            if self.entries.get(&key).is_some_and(|e| e.seq == seq) {
                self.remove(&key);
                return true;
            }
        }
        false
    }

    /// Removes the entries past `ttl` from the front of the queue (every
    /// entry gets the same TTL, so the oldest expire first).
    fn drop_expired(&mut self, ttl: Duration) {
        while let Some((key, seq)) = self.order.front() {
            let live = self.entries.get(key).filter(|e| e.seq == *seq);
            if live.is_some_and(|e| e.at.elapsed() < ttl) {
                return;
            }
            let key = key.clone();
            self.order.pop_front();
            if live.is_some() {
                self.remove(&key);
            }
        }
    }

    /// Drops the queue's keys of replaced or forgotten entries once they
    /// outnumber the live ones, so the queue stays within twice the map.
    fn compact(&mut self) {
        if self.order.len() <= 2 * self.entries.len() + 64 {
            return;
        }
        let entries = &self.entries;
        self.order
            .retain(|(key, seq)| entries.get(key).is_some_and(|e| e.seq == *seq));
    }
}

/// What a user counts for in the cache's budget: its text, attributes,
/// picture and lists, the record itself and the entry's bookkeeping (the
/// key counted twice: the map's and the queue's copies).
pub fn weight(user: &UserRecord) -> usize {
    let text = [
        &user.user_id,
        &user.user_id,
        &user.user_id,
        &user.name,
        &user.description,
        &user.primary_email_address,
        &user.email_normalized,
        &user.password_hash,
        &user.state_description,
        &user.lifecycle.lock_reason,
        &user.lifecycle.deactivation_reason,
    ]
    .iter()
    .map(|s| s.len())
    .sum::<usize>();
    let optional_text = [&user.temporary_password_hash, &user.email_validation_hash]
        .iter()
        .map(|s| s.as_ref().map_or(0, String::len))
        .sum::<usize>();
    let attributes = user
        .attributes
        .iter()
        .map(|(k, v)| k.len() + v.len() + ATTRIBUTE_OVERHEAD)
        .sum::<usize>();
    let ints = user.email_notification_types.len()
        + user.universal_rights.as_ref().map_or(0, Vec::len)
        + user.lifecycle.required_actions.len();
    std::mem::size_of::<UserRecord>()
        + ENTRY_OVERHEAD
        + text
        + optional_text
        + attributes
        + user.profile_picture.as_ref().map_or(0, Vec::len)
        + ints * std::mem::size_of::<i32>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Lifecycle;
    use chrono::Utc;

    fn user(id: &str, name: &str) -> Arc<UserRecord> {
        let at = Utc::now();
        Arc::new(UserRecord {
            user_id: id.into(),
            name: name.into(),
            description: String::new(),
            attributes: Default::default(),
            primary_email_address: format!("{id}@example.com"),
            email_normalized: format!("{id}@example.com"),
            primary_email_address_validated_at: None,
            password_hash: String::new(),
            password_updated_at: at,
            require_password_update: false,
            state: 1,
            state_description: String::new(),
            admin: false,
            temporary_password_hash: None,
            temporary_password_created_at: None,
            temporary_password_expires_at: None,
            email_validation_hash: None,
            email_validation_expires_at: None,
            profile_picture: None,
            email_notification_types: Vec::new(),
            universal_rights: None,
            created_at: at,
            updated_at: at,
            deleted_at: None,
            lifecycle: Lifecycle::default(),
            user_type: 0,
        })
    }

    fn with_picture(id: &str, bytes: usize) -> Arc<UserRecord> {
        let mut record = (*user(id, "pictured")).clone();
        record.profile_picture = Some(vec![7; bytes]);
        Arc::new(record)
    }

    fn cache() -> UserCache {
        UserCache::new(1 << 20, Duration::from_secs(60))
    }

    fn put(cache: &UserCache, record: Arc<UserRecord>) -> bool {
        let seen = cache.generation(&record.user_id);
        cache.insert(record, seen)
    }

    #[test]
    fn a_kept_user_is_served_until_forgotten() {
        let cache = cache();
        assert!(put(&cache, user("alice", "Alice")));
        assert_eq!(cache.get("alice").unwrap().name, "Alice");
        cache.forget("alice");
        assert!(cache.get("alice").is_none());
        assert_eq!(cache.bytes(), 0);
    }

    #[test]
    fn a_row_read_before_a_change_is_not_kept_after_the_change_forgot_the_user() {
        let cache = cache();
        // The reader takes the generation, then reads the old row...
        let seen = cache.generation("alice");
        let old = user("alice", "Old name");
        // ...while the writer commits and forgets alice...
        cache.forget("alice");
        // ...so the old row the reader now offers is ignored.
        assert!(!cache.insert(old, seen));
        assert!(cache.get("alice").is_none());
        // A reader that starts after the change keeps the new row.
        assert!(put(&cache, user("alice", "New name")));
        assert_eq!(cache.get("alice").unwrap().name, "New name");
    }

    #[test]
    fn forgetting_every_user_also_refuses_rows_read_before() {
        let cache = cache();
        let seen = cache.generation("bob");
        assert!(put(&cache, user("alice", "Alice")));
        cache.forget_all();
        assert!(cache.is_empty());
        assert!(!cache.insert(user("bob", "Bob"), seen));
    }

    #[test]
    fn a_user_past_the_ttl_is_not_served() {
        let cache = UserCache::new(1 << 20, Duration::from_millis(20));
        assert!(put(&cache, user("alice", "Alice")));
        std::thread::sleep(Duration::from_millis(30));
        assert!(cache.get("alice").is_none());
        assert_eq!(cache.bytes(), 0);
    }

    #[test]
    fn the_cache_never_holds_more_bytes_than_its_budget_and_evicts_the_oldest() {
        let budget = 64 * 1024;
        let cache = UserCache::new(budget, Duration::from_secs(60));
        let one = weight(&user("user-00000", "Some Name"));
        for i in 0..1000 {
            assert!(put(&cache, user(&format!("user-{i:05}"), "Some Name")));
            assert!(cache.bytes() <= budget, "{} > {budget}", cache.bytes());
        }
        assert_eq!(cache.len(), budget / one);
        assert!(cache.get("user-00999").is_some(), "the newest stays");
        assert!(cache.get("user-00000").is_none(), "the oldest went");
    }

    #[test]
    fn a_user_larger_than_an_eighth_of_the_budget_is_not_kept() {
        let budget = 1 << 20;
        let cache = UserCache::new(budget, Duration::from_secs(60));
        assert!(put(&cache, with_picture("small", 64 * 1024)));
        assert!(!put(&cache, with_picture("large", 256 * 1024)));
        assert!(cache.get("large").is_none());
        assert!(cache.get("small").is_some());
    }

    #[test]
    fn weight_counts_the_picture_and_the_attributes() {
        let plain = user("alice", "Alice");
        let mut rich = (*plain).clone();
        rich.profile_picture = Some(vec![0; 1000]);
        rich.attributes.insert("team".into(), "blue".into());
        assert_eq!(
            weight(&rich),
            weight(&plain) + 1000 + "team".len() + "blue".len() + ATTRIBUTE_OVERHEAD
        );
    }

    #[test]
    fn replacing_and_forgetting_users_keeps_the_queue_bounded() {
        let cache = cache();
        for i in 0..10_000 {
            assert!(put(&cache, user("alice", &format!("name {i}"))));
            cache.forget("bob");
        }
        let state = cache.lock();
        assert_eq!(state.entries.len(), 1);
        assert!(state.order.len() <= 2 * state.entries.len() + 65);
        assert_eq!(state.bytes, weight(&user("alice", "name 9999")));
    }
}
