//! The per-request user lookup's cache (auth.md §1: "a short cache (at most 5 s)"). Every authenticated request
//! needs its caller's stored record; without a cache that is a database round trip before any real work. This
//! instance's own user writes drop the entry at once; a write made elsewhere (another instance, an operator tool on
//! the database) shows once the entry is older than [`USER_CACHE_TTL`].

use std::time::Instant;

use crate::domain::User;
use crate::store::USER_CACHE_TTL;

/// Bounded (least recently used entries go first), so a flood of distinct valid tokens cannot grow it.
const CAPACITY: usize = 10_000;

pub(crate) struct UserCache(quick_cache::sync::Cache<String, (Instant, User)>);

impl Default for UserCache {
    fn default() -> Self {
        UserCache(quick_cache::sync::Cache::new(CAPACITY))
    }
}

impl UserCache {
    /// The cached record when it is younger than the TTL.
    pub(crate) fn get_fresh(&self, id: &str) -> Option<User> {
        let (at, user) = self.0.get(id)?;
        (at.elapsed() < USER_CACHE_TTL).then_some(user)
    }

    pub(crate) fn put(&self, id: &str, user: User) {
        self.0.insert(id.to_owned(), (Instant::now(), user));
    }

    pub(crate) fn forget(&self, id: &str) {
        self.0.remove(id);
    }

    /// Drops every entry (after a bulk write of users, such as an import).
    pub(crate) fn clear(&self) {
        self.0.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: &str, active: bool) -> User {
        serde_json::from_value(serde_json::json!({
            "id": id, "email": format!("{id}@example.com"), "name": id, "userType": "client",
            "createdAt": "2026-01-01T00:00:00.000Z", "isActive": active
        }))
        .unwrap()
    }

    #[test]
    fn a_cached_user_is_served_until_forgotten() {
        let cache = UserCache::default();
        assert!(cache.get_fresh("u1").is_none());
        cache.put("u1", user("u1", true));
        assert_eq!(cache.get_fresh("u1").map(|u| u.is_active), Some(true));
        cache.forget("u1");
        assert!(cache.get_fresh("u1").is_none());
        cache.put("u2", user("u2", true));
        cache.clear();
        assert!(cache.get_fresh("u2").is_none());
    }

    #[test]
    fn an_entry_older_than_the_ttl_is_not_served() {
        let cache = UserCache::default();
        let old = Instant::now().checked_sub(USER_CACHE_TTL).expect("the clock is past the TTL");
        cache.0.insert("u1".into(), (old, user("u1", true)));
        assert!(cache.get_fresh("u1").is_none());
    }
}
