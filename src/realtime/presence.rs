//! Who is in a project room: users (not sockets), earliest join first (realtime.md §7). Rebuilt from live
//! connections; nothing is stored.

use std::collections::HashMap;

use parking_lot::Mutex;
use serde_json::{json, Value};

struct Entry {
    socket: String,
    user_id: String,
    name: String,
    joined_at: String,
}

#[derive(Default)]
pub struct Presence {
    rooms: Mutex<HashMap<String, Vec<Entry>>>,
}

fn users_of(entries: &[Entry]) -> Vec<(String, String, String)> {
    let mut by_user: HashMap<&str, (&str, &str)> = HashMap::new();
    for e in entries {
        let slot = by_user.entry(&e.user_id).or_insert((&e.name, &e.joined_at));
        if e.joined_at.as_str() < slot.1 {
            *slot = (&e.name, &e.joined_at);
        }
    }
    let mut users: Vec<(String, String, String)> =
        by_user.into_iter().map(|(id, (name, at))| (id.to_owned(), name.to_owned(), at.to_owned())).collect();
    users.sort_by(|a, b| a.2.cmp(&b.2).then_with(|| a.0.cmp(&b.0)));
    users
}

fn payload(project_id: &str, entries: &[Entry]) -> Value {
    let users: Vec<Value> =
        users_of(entries).into_iter().map(|(id, name, at)| json!({ "id": id, "name": name, "joinedAt": at })).collect();
    json!({ "projectId": project_id, "users": users })
}

impl Presence {
    /// Records a join; true when the set of users changed (a first socket of that user).
    pub fn join(&self, project_id: &str, socket: &str, user_id: &str, name: &str, at: &str) -> bool {
        let mut rooms = self.rooms.lock();
        let entries = rooms.entry(project_id.to_owned()).or_default();
        if entries.iter().any(|e| e.socket == socket) {
            return false;
        }
        let new_user = !entries.iter().any(|e| e.user_id == user_id);
        entries.push(Entry { socket: socket.into(), user_id: user_id.into(), name: name.into(), joined_at: at.into() });
        new_user
    }

    pub fn list(&self, project_id: &str) -> Value {
        let rooms = self.rooms.lock();
        payload(project_id, rooms.get(project_id).map(Vec::as_slice).unwrap_or(&[]))
    }

    /// Removes one socket from one room; the new list when the set of users changed.
    pub fn leave(&self, project_id: &str, socket: &str) -> Option<Value> {
        let mut rooms = self.rooms.lock();
        let entries = rooms.get_mut(project_id)?;
        let idx = entries.iter().position(|e| e.socket == socket)?;
        let gone = entries.remove(idx);
        let changed = !entries.iter().any(|e| e.user_id == gone.user_id);
        let out = changed.then(|| payload(project_id, entries));
        if entries.is_empty() {
            rooms.remove(project_id);
        }
        out
    }

    /// Removes a closed socket everywhere; the rooms whose user set changed, with their new lists.
    pub fn drop_socket(&self, socket: &str) -> Vec<(String, Value)> {
        let projects: Vec<String> = {
            let rooms = self.rooms.lock();
            rooms.iter().filter(|(_, es)| es.iter().any(|e| e.socket == socket)).map(|(p, _)| p.clone()).collect()
        };
        projects.into_iter().filter_map(|p| self.leave(&p, socket).map(|v| (p, v))).collect()
    }

    pub fn clear(&self, project_id: &str) {
        self.rooms.lock().remove(project_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_tabs_count_once_and_the_last_one_leaving_removes_the_user() {
        let p = Presence::default();
        assert!(p.join("p", "s1", "u1", "Una", "2026-01-01T00:00:01.000Z"));
        assert!(!p.join("p", "s2", "u1", "Una", "2026-01-01T00:00:00.500Z"));
        assert!(p.join("p", "s3", "u2", "Bo", "2026-01-01T00:00:02.000Z"));
        let list = p.list("p");
        assert_eq!(list["users"].as_array().unwrap().len(), 2);
        assert_eq!(list["users"][0]["joinedAt"], "2026-01-01T00:00:00.500Z", "earliest live join");
        assert!(p.leave("p", "s1").is_none(), "u1 still has a tab");
        let after = p.drop_socket("s2");
        assert_eq!(after.len(), 1);
        assert_eq!(after[0].1["users"].as_array().unwrap().len(), 1);
    }
}
