//! Who is in a project room: users (not sockets), earliest join first (realtime.md §7). Rebuilt from live
//! connections; nothing is stored.
//!
//! In postgres mode the rooms also hold other instances' entries (realtime.md §8). Each local change is announced
//! while the lock is held, so announcements leave in the order the changes happened and a receiver that applies
//! them in order (snapshots replacing everything the sender said before) ends up with the sender's state.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde_json::{json, Value};
use tokio::sync::mpsc::{self, UnboundedReceiver, UnboundedSender};

use crate::domain::events::{PresenceEntry, PresenceMsg};

struct Entry {
    /// The instance holding the socket; `None` for this one.
    origin: Option<Arc<str>>,
    socket: String,
    user_id: String,
    name: String,
    joined_at: String,
}

impl Entry {
    fn shared(&self, project_id: &str) -> PresenceEntry {
        PresenceEntry {
            project_id: project_id.to_owned(),
            socket: self.socket.clone(),
            user_id: self.user_id.clone(),
            name: self.name.clone(),
            joined_at: self.joined_at.clone(),
        }
    }
}

#[derive(Default)]
struct Inner {
    rooms: HashMap<String, Vec<Entry>>,
    /// When each other instance was last heard from.
    heard: HashMap<Arc<str>, Instant>,
    /// This instance's id and where its announcements go, once presence is shared (postgres mode).
    cluster: Option<(String, UnboundedSender<PresenceMsg>)>,
}

#[derive(Default)]
pub struct Presence {
    inner: Mutex<Inner>,
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

/// What clients are told about: who is there and under which name.
fn user_set(entries: &[Entry]) -> BTreeSet<(String, String)> {
    users_of(entries).into_iter().map(|(id, name, _)| (id, name)).collect()
}

fn payload(project_id: &str, entries: &[Entry]) -> Value {
    let users: Vec<Value> =
        users_of(entries).into_iter().map(|(id, name, at)| json!({ "id": id, "name": name, "joinedAt": at })).collect();
    json!({ "projectId": project_id, "users": users })
}

impl Inner {
    fn announce(&self, msg: PresenceMsg) {
        if let Some((_, tx)) = &self.cluster {
            let _ = tx.send(msg);
        }
    }

    fn set_of(&self, project_id: &str) -> BTreeSet<(String, String)> {
        self.rooms.get(project_id).map(|es| user_set(es)).unwrap_or_default()
    }

    fn list(&self, project_id: &str) -> Value {
        payload(project_id, self.rooms.get(project_id).map(Vec::as_slice).unwrap_or(&[]))
    }

    /// Applies `change` and reports the rooms among `touched` whose user set it changed, with their new lists.
    fn changing(&mut self, touched: BTreeSet<String>, change: impl FnOnce(&mut Self)) -> Vec<(String, Value)> {
        let before: Vec<_> = touched.iter().map(|p| self.set_of(p)).collect();
        change(self);
        self.rooms.retain(|_, es| !es.is_empty());
        let mut out = Vec::new();
        for (project_id, was) in touched.into_iter().zip(before) {
            if self.set_of(&project_id) != was {
                let list = self.list(&project_id);
                out.push((project_id, list));
            }
        }
        out
    }

    fn rooms_of(&self, origin: &str) -> BTreeSet<String> {
        self.rooms
            .iter()
            .filter(|(_, es)| es.iter().any(|e| e.origin.as_deref() == Some(origin)))
            .map(|(p, _)| p.clone())
            .collect()
    }

    fn drop_origin(&mut self, origin: &str) {
        for es in self.rooms.values_mut() {
            es.retain(|e| e.origin.as_deref() != Some(origin));
        }
    }

    fn snapshot(&self) -> PresenceMsg {
        let entries = self
            .rooms
            .iter()
            .flat_map(|(p, es)| es.iter().filter(|e| e.origin.is_none()).map(move |e| e.shared(p)))
            .collect();
        PresenceMsg::Snapshot { entries }
    }
}

impl Presence {
    /// Shares presence with other instances from now on: this instance's announcements come out of the receiver.
    pub fn enable_cluster(&self, instance_id: &str) -> UnboundedReceiver<PresenceMsg> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.inner.lock().cluster = Some((instance_id.to_owned(), tx));
        rx
    }

    /// Records a join of a local socket; true when the set of users changed (a first socket of that user).
    pub fn join(&self, project_id: &str, socket: &str, user_id: &str, name: &str, at: &str) -> bool {
        let mut inner = self.inner.lock();
        let entries = inner.rooms.entry(project_id.to_owned()).or_default();
        if entries.iter().any(|e| e.origin.is_none() && e.socket == socket) {
            return false;
        }
        let new_user = !entries.iter().any(|e| e.user_id == user_id);
        let entry = Entry {
            origin: None,
            socket: socket.into(),
            user_id: user_id.into(),
            name: name.into(),
            joined_at: at.into(),
        };
        let shared = entry.shared(project_id);
        entries.push(entry);
        inner.announce(PresenceMsg::Join(shared));
        new_user
    }

    pub fn list(&self, project_id: &str) -> Value {
        self.inner.lock().list(project_id)
    }

    /// Removes one local socket from one room; the new list when the set of users changed.
    pub fn leave(&self, project_id: &str, socket: &str) -> Option<Value> {
        let mut inner = self.inner.lock();
        let entries = inner.rooms.get_mut(project_id)?;
        let idx = entries.iter().position(|e| e.origin.is_none() && e.socket == socket)?;
        let gone = entries.remove(idx);
        let changed = !entries.iter().any(|e| e.user_id == gone.user_id);
        let out = changed.then(|| payload(project_id, entries));
        if entries.is_empty() {
            inner.rooms.remove(project_id);
        }
        inner.announce(PresenceMsg::Leave { project_id: project_id.to_owned(), socket: socket.to_owned() });
        out
    }

    /// Removes a closed local socket everywhere; the rooms whose user set changed, with their new lists.
    pub fn drop_socket(&self, socket: &str) -> Vec<(String, Value)> {
        let projects: Vec<String> = {
            let inner = self.inner.lock();
            inner
                .rooms
                .iter()
                .filter(|(_, es)| es.iter().any(|e| e.origin.is_none() && e.socket == socket))
                .map(|(p, _)| p.clone())
                .collect()
        };
        projects.into_iter().filter_map(|p| self.leave(&p, socket).map(|v| (p, v))).collect()
    }

    /// Empties a deleted project's room. Every instance hears of the deletion and clears it, so nothing is
    /// announced.
    pub fn clear(&self, project_id: &str) {
        self.inner.lock().rooms.remove(project_id);
    }

    /// Publishes this instance's full presence (every 15 s, and when another instance asks).
    pub fn announce_snapshot(&self) {
        let inner = self.inner.lock();
        inner.announce(inner.snapshot());
    }

    /// Applies another instance's announcement; the rooms whose user set changed, with their new lists, for this
    /// instance's sockets in them. A `Sync` (from anyone, this instance's own listener included) is answered with
    /// a snapshot.
    pub fn remote(&self, origin: &str, msg: PresenceMsg) -> Vec<(String, Value)> {
        let mut inner = self.inner.lock();
        let own = inner.cluster.as_ref().map(|(id, _)| id.as_str());
        if let PresenceMsg::Sync = msg {
            inner.announce(inner.snapshot());
        }
        if own == Some(origin) || own.is_none() {
            return Vec::new();
        }
        let key: Arc<str> = match inner.heard.get_key_value(origin) {
            Some((k, _)) => k.clone(),
            None => origin.into(),
        };
        inner.heard.insert(key.clone(), Instant::now());
        match msg {
            PresenceMsg::Sync => Vec::new(),
            PresenceMsg::Join(e) => {
                let touched = BTreeSet::from([e.project_id.clone()]);
                inner.changing(touched, |inner| {
                    let entries = inner.rooms.entry(e.project_id).or_default();
                    if !entries.iter().any(|x| x.origin.as_deref() == Some(origin) && x.socket == e.socket) {
                        entries.push(Entry {
                            origin: Some(key),
                            socket: e.socket,
                            user_id: e.user_id,
                            name: e.name,
                            joined_at: e.joined_at,
                        });
                    }
                })
            }
            PresenceMsg::Leave { project_id, socket } => {
                let touched = BTreeSet::from([project_id.clone()]);
                inner.changing(touched, |inner| {
                    if let Some(es) = inner.rooms.get_mut(&project_id) {
                        es.retain(|x| !(x.origin.as_deref() == Some(origin) && x.socket == socket));
                    }
                })
            }
            PresenceMsg::Snapshot { entries } => {
                let mut touched = inner.rooms_of(origin);
                touched.extend(entries.iter().map(|e| e.project_id.clone()));
                inner.changing(touched, |inner| {
                    inner.drop_origin(origin);
                    for e in entries {
                        inner.rooms.entry(e.project_id).or_default().push(Entry {
                            origin: Some(key.clone()),
                            socket: e.socket,
                            user_id: e.user_id,
                            name: e.name,
                            joined_at: e.joined_at,
                        });
                    }
                })
            }
        }
    }

    /// Drops the entries of instances not heard from within `max_age` (an instance that died); the rooms whose
    /// user set changed, with their new lists.
    pub fn expire(&self, max_age: Duration) -> Vec<(String, Value)> {
        let mut inner = self.inner.lock();
        let stale: Vec<Arc<str>> =
            inner.heard.iter().filter(|(_, at)| at.elapsed() > max_age).map(|(o, _)| o.clone()).collect();
        let mut out = Vec::new();
        for origin in stale {
            inner.heard.remove(&origin);
            let touched = inner.rooms_of(&origin);
            out.extend(inner.changing(touched, |inner| inner.drop_origin(&origin)));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(project: &str, socket: &str, user: &str, at: &str) -> PresenceEntry {
        PresenceEntry {
            project_id: project.into(),
            socket: socket.into(),
            user_id: user.into(),
            name: user.to_uppercase(),
            joined_at: at.into(),
        }
    }

    fn ids(list: &Value) -> Vec<String> {
        list["users"].as_array().unwrap().iter().map(|u| u["id"].as_str().unwrap().to_owned()).collect()
    }

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

    #[test]
    fn local_changes_are_announced_in_order_once_presence_is_shared() {
        let p = Presence::default();
        p.join("p", "s0", "u0", "Zed", "2026-01-01T00:00:00.000Z");
        let mut rx = p.enable_cluster("a");
        p.join("p", "s1", "u1", "Una", "2026-01-01T00:00:01.000Z");
        p.drop_socket("s1");
        p.announce_snapshot();
        let join = rx.try_recv().unwrap();
        assert!(matches!(&join, PresenceMsg::Join(e) if e.socket == "s1" && e.project_id == "p"), "{join:?}");
        assert_eq!(rx.try_recv().unwrap(), PresenceMsg::Leave { project_id: "p".into(), socket: "s1".into() });
        let PresenceMsg::Snapshot { entries } = rx.try_recv().unwrap() else { panic!("snapshot expected") };
        assert_eq!(entries.iter().map(|e| e.socket.as_str()).collect::<Vec<_>>(), ["s0"]);
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn another_instances_users_are_listed_and_removed_with_their_last_socket() {
        let p = Presence::default();
        let _rx = p.enable_cluster("a");
        p.join("p", "s1", "x", "X", "2026-01-01T00:00:01.000Z");
        let changed = p.remote("b", PresenceMsg::Join(entry("p", "t1", "y", "2026-01-01T00:00:00.000Z")));
        assert_eq!(changed.len(), 1);
        assert_eq!(ids(&changed[0].1), ["y", "x"], "ordered by joinedAt across instances");
        assert!(p.remote("b", PresenceMsg::Join(entry("p", "t2", "y", "2026-01-01T00:00:03.000Z"))).is_empty());
        assert!(p.remote("b", PresenceMsg::Leave { project_id: "p".into(), socket: "t1".into() }).is_empty());
        let gone = p.remote("b", PresenceMsg::Leave { project_id: "p".into(), socket: "t2".into() });
        assert_eq!(ids(&gone[0].1), ["x"]);
        // A local user's last socket leaving while the same user is present elsewhere changes nothing.
        p.remote("b", PresenceMsg::Join(entry("p", "t3", "x", "2026-01-01T00:00:05.000Z")));
        assert!(p.leave("p", "s1").is_none());
        assert_eq!(ids(&p.list("p")), ["x"]);
    }

    #[test]
    fn a_snapshot_replaces_everything_its_sender_said_before() {
        let p = Presence::default();
        let _rx = p.enable_cluster("a");
        p.remote("b", PresenceMsg::Join(entry("p", "t1", "y", "2026-01-01T00:00:00.000Z")));
        p.remote("b", PresenceMsg::Join(entry("q", "t2", "z", "2026-01-01T00:00:00.000Z")));
        p.remote("c", PresenceMsg::Join(entry("q", "u1", "w", "2026-01-01T00:00:00.000Z")));
        let changed =
            p.remote("b", PresenceMsg::Snapshot { entries: vec![entry("p", "t1", "y", "2026-01-01T00:00:00.000Z")] });
        assert_eq!(changed.len(), 1, "only q lost a user: {changed:?}");
        assert_eq!(changed[0].0, "q");
        assert_eq!(ids(&changed[0].1), ["w"], "the other instance's entries stay");
        assert_eq!(ids(&p.list("p")), ["y"]);
    }

    #[test]
    fn an_instance_not_heard_from_is_expired_and_a_sync_is_answered_with_a_snapshot() {
        let p = Presence::default();
        let mut rx = p.enable_cluster("a");
        p.join("p", "s1", "x", "X", "2026-01-01T00:00:01.000Z");
        p.remote("b", PresenceMsg::Join(entry("p", "t1", "y", "2026-01-01T00:00:00.000Z")));
        assert!(p.expire(Duration::from_secs(45)).is_empty(), "b was just heard from");
        std::thread::sleep(Duration::from_millis(20));
        let changed = p.expire(Duration::from_millis(10));
        assert_eq!(ids(&changed[0].1), ["x"]);
        while rx.try_recv().is_ok() {}
        assert!(p.remote("c", PresenceMsg::Sync).is_empty());
        assert!(matches!(rx.try_recv(), Ok(PresenceMsg::Snapshot { entries }) if entries.len() == 1));
    }

    #[test]
    fn announcements_from_this_instance_itself_are_not_applied_twice() {
        let p = Presence::default();
        let _rx = p.enable_cluster("a");
        p.join("p", "s1", "x", "X", "2026-01-01T00:00:01.000Z");
        assert!(p.remote("a", PresenceMsg::Join(entry("p", "s9", "y", "2026-01-01T00:00:00.000Z"))).is_empty());
        assert_eq!(ids(&p.list("p")), ["x"]);
    }
}
