//! Public ids ↔ storage ids (data-model.md §7).
//!
//! A public id is the string a client holds. When it is a UUID in canonical form (lower-case, hyphenated) it is its
//! own storage id; anything else (the legacy millisecond ids such as `"1756887342317"`) is stored under the
//! deterministic UUIDv5 of `"<entity>:<public id>"`, and the pair is recorded in `legacy_ids`.
//!
//! Public → storage never needs the database: it is a pure function. Storage → public needs to know which UUIDs
//! stand for a legacy id, which is what [`IdMap`] holds in memory (loaded once, extended by this instance's own
//! writes, and refreshed on a miss), so that reads translate at the boundary without joining `legacy_ids` per row.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::{Mutex, RwLock};
use uuid::Uuid;

/// The namespace of every legacy-id UUIDv5 (data-model.md §7). Changing it would orphan every migrated legacy row.
pub const LEGACY_NAMESPACE: Uuid = Uuid::from_u128(0x4f1c7a52_9d3e_5b8a_a6c1_2e7d9b0f3c85);

/// The `entity` part of a v5 name and of a `legacy_ids` row.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Entity {
    User,
    Project,
    Task,
    Milestone,
    Team,
    File,
    Activity,
}

impl Entity {
    pub fn as_str(self) -> &'static str {
        match self {
            Entity::User => "user",
            Entity::Project => "project",
            Entity::Task => "task",
            Entity::Milestone => "milestone",
            Entity::Team => "team",
            Entity::File => "file",
            Entity::Activity => "activity",
        }
    }
}

/// `Some` only for the canonical spelling: an upper-case or brace-wrapped UUID is a different public id, and
/// treating it as its own storage id would read back as a different string.
pub fn canonical_uuid(public: &str) -> Option<Uuid> {
    let u = Uuid::parse_str(public).ok()?;
    (u.hyphenated().to_string() == public).then_some(u)
}

/// The storage id of a public id. Total: an id that names nothing still maps to a UUID, which then finds no row.
pub fn storage_id(entity: Entity, public: &str) -> Uuid {
    canonical_uuid(public).unwrap_or_else(|| legacy_uuid(entity, public))
}

pub fn legacy_uuid(entity: Entity, public: &str) -> Uuid {
    Uuid::new_v5(&LEGACY_NAMESPACE, format!("{}:{}", entity.as_str(), public).as_bytes())
}

/// Storage → public for the legacy ids. Only UUIDv5 values can be legacy storage ids, so only those are looked up.
#[derive(Default)]
pub struct IdMap {
    by_storage: RwLock<HashMap<Uuid, String>>,
    /// v5 UUIDs known not to be legacy storage ids (a client may legitimately use a v5 UUID as its id), so that a
    /// miss queries `legacy_ids` once, not on every read.
    genuine: RwLock<HashSet<Uuid>>,
    loaded: AtomicBool,
}

impl IdMap {
    pub fn is_loaded(&self) -> bool {
        self.loaded.load(Ordering::Acquire)
    }

    /// Replaces the whole map (start-up, or a `flux_legacy_ids` notification).
    pub fn replace(&self, pairs: impl IntoIterator<Item = (Uuid, String)>) {
        let map: HashMap<Uuid, String> = pairs.into_iter().collect();
        *self.by_storage.write() = map;
        self.genuine.write().clear();
        self.loaded.store(true, Ordering::Release);
    }

    pub fn insert(&self, storage: Uuid, public: String) {
        self.genuine.write().remove(&storage);
        self.by_storage.write().insert(storage, public);
    }

    pub fn mark_genuine(&self, ids: impl IntoIterator<Item = Uuid>) {
        self.genuine.write().extend(ids);
    }

    pub fn len(&self) -> usize {
        self.by_storage.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One translation pass: storage → public through the map, noting v5 UUIDs the map does not know yet so that the
/// caller can consult `legacy_ids` and translate again (another instance or a `fluxstudio migrate` run may have
/// added them since this instance loaded the map).
pub struct Ids<'a> {
    map: &'a IdMap,
    misses: Mutex<Vec<Uuid>>,
}

impl<'a> Ids<'a> {
    pub fn new(map: &'a IdMap) -> Ids<'a> {
        Ids { map, misses: Mutex::new(Vec::new()) }
    }

    pub fn public(&self, storage: Uuid) -> String {
        if storage.get_version_num() == 5 {
            if let Some(p) = self.map.by_storage.read().get(&storage) {
                return p.clone();
            }
            if !self.map.genuine.read().contains(&storage) {
                self.misses.lock().push(storage);
            }
        }
        storage.hyphenated().to_string()
    }

    pub fn public_opt(&self, storage: Option<Uuid>) -> Option<String> {
        storage.map(|s| self.public(s))
    }

    pub fn into_misses(self) -> Vec<Uuid> {
        let mut m = self.misses.into_inner();
        m.sort_unstable();
        m.dedup();
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_ids_map_to_the_documented_v5() {
        let u = storage_id(Entity::User, "1756887342317");
        assert_eq!(u.get_version_num(), 5);
        assert_eq!(u, Uuid::new_v5(&LEGACY_NAMESPACE, b"user:1756887342317"));
        assert_ne!(u, storage_id(Entity::Project, "1756887342317"));
    }

    #[test]
    fn only_canonical_uuids_are_their_own_storage_id() {
        let s = "aaaaaaaa-0000-4000-8000-000000000001";
        assert_eq!(storage_id(Entity::User, s).to_string(), s);
        assert!(canonical_uuid(&s.to_uppercase()).is_none());
        assert!(canonical_uuid("aaaaaaaa000040008000000000000001").is_none());
    }

    #[test]
    fn misses_are_reported_once() {
        let map = IdMap::default();
        let legacy = legacy_uuid(Entity::User, "1");
        let ids = Ids::new(&map);
        assert_eq!(ids.public(legacy), legacy.to_string());
        assert_eq!(ids.public(legacy), legacy.to_string());
        assert_eq!(ids.into_misses(), vec![legacy]);
        map.insert(legacy, "1".into());
        let ids = Ids::new(&map);
        assert_eq!(ids.public(legacy), "1");
        assert!(ids.into_misses().is_empty());
    }
}
