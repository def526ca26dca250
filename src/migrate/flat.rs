//! Both sides of a comparison as flat per-entity maps `id → camelCase object`, built the same way from the JSON
//! store's state and from a PostgreSQL export (data-model.md §11). Records go through the mapping first, so that
//! representation-only differences (a legacy `name` for a milestone title, a date-only timestamp, a project
//! without `updatedAt`) compare equal, exactly as they would after a migrate.
//!
//! Children are entities of their own: `team_members`/`project_members` keyed `<parent>/<resolved user>`, tasks and
//! milestones keyed by id with their `projectId` and `position` (list order) as fields. Unknown keys are named
//! `extra.<key>`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::Serialize;
use serde_json::{Map, Value};

use super::Kind;
use crate::domain::model::Extra;
use crate::domain::{Member, Project};
use crate::store::json::state::State;
use crate::store::postgres::ids::{canonical_uuid, storage_id, Entity, IdMap, Ids};
use crate::store::postgres::mapping;

pub type Records = BTreeMap<String, Map<String, Value>>;

/// Per entity, `id → record`; `parent` maps a child's id to its parent record's id (for pending checks).
pub struct Flat {
    pub records: HashMap<Kind, Records>,
    pub parent: HashMap<String, String>,
}

impl Flat {
    pub fn get(&self, kind: Kind) -> &Records {
        static EMPTY: Records = BTreeMap::new();
        self.records.get(&kind).unwrap_or(&EMPTY)
    }
}

fn object<T: Serialize>(rec: &T, extra: &Extra, drop: &[&str]) -> Map<String, Value> {
    let Ok(Value::Object(mut m)) = serde_json::to_value(rec) else {
        return Map::new();
    };
    for k in drop {
        m.remove(*k);
    }
    for k in extra.keys() {
        if let Some(v) = m.remove(k) {
            m.insert(format!("extra.{k}"), v);
        }
    }
    m
}

/// Legacy (non-UUID) public ids of every record in `state`, so that a mapping round trip gives them back.
fn legacy_map(state: &State) -> IdMap {
    let map = IdMap::default();
    let add = |e: Entity, id: &str| {
        if canonical_uuid(id).is_none() {
            map.insert(storage_id(e, id), id.to_owned());
        }
    };
    for u in state.users.values() {
        add(Entity::User, &u.id);
    }
    for t in state.teams.values() {
        add(Entity::Team, &t.id);
    }
    for p in state.projects.values() {
        add(Entity::Project, &p.id);
        p.tasks.iter().for_each(|t| add(Entity::Task, &t.id));
        p.milestones.iter().for_each(|m| add(Entity::Milestone, &m.id));
    }
    for f in state.files.values() {
        add(Entity::File, &f.id);
    }
    for log in state.activities.values() {
        log.oldest_first().for_each(|a| add(Entity::Activity, &a.id));
    }
    map
}

/// The project as PostgreSQL would hand it back: header defaults applied, tasks and milestones through their rows.
fn through_mapping(p: &Project, ids: &Ids) -> Project {
    let mut p = p.clone();
    if p.updated_at.is_none() {
        p.updated_at = Some(p.created_at.clone());
    }
    for (i, t) in p.tasks.iter_mut().enumerate() {
        if let Ok(row) = mapping::task_to_row(t, i as i32) {
            *t = Arc::new(mapping::task_from_row(&row, ids));
        }
    }
    for (i, m) in p.milestones.iter_mut().enumerate() {
        if let Ok(row) = mapping::milestone_to_row(m, i as i32) {
            *m = mapping::milestone_from_row(&row, ids);
        }
    }
    p
}

fn members(out: &mut Records, parent_map: &mut HashMap<String, String>, state: &State, parent: &str, list: &[Member]) {
    for (i, m) in list.iter().enumerate() {
        // A member stored by e-mail is the user it resolves to (data-model.md §11: "resolved user").
        let user = if mapping::member_is_email(&m.user_id) {
            state.user_by_email(&m.user_id).map(|u| u.id.clone()).unwrap_or_else(|| m.user_id.clone())
        } else {
            m.user_id.clone()
        };
        let key = format!("{parent}/{user}");
        if out.contains_key(&key) {
            continue;
        }
        let mut rec = object(m, &m.extra, &[]);
        rec.insert("position".into(), Value::from(i));
        parent_map.insert(key.clone(), parent.to_owned());
        out.insert(key, rec);
    }
}

/// Flattens `state`. `json_side` applies the mapping round trip that PostgreSQL records have already been through.
pub fn flatten(state: &State, json_side: bool) -> Flat {
    let map = legacy_map(state);
    let ids = Ids::new(&map);
    let mut records: HashMap<Kind, Records> = HashMap::new();
    let mut parent = HashMap::new();
    let mut r = |k: Kind| -> Records { records.remove(&k).unwrap_or_default() };
    let (mut users, mut teams, mut team_members, mut projects, mut project_members) =
        (r(Kind::Users), r(Kind::Teams), r(Kind::TeamMembers), r(Kind::Projects), r(Kind::ProjectMembers));
    let (mut tasks, mut milestones, mut files, mut activities) =
        (r(Kind::Tasks), r(Kind::Milestones), r(Kind::Files), r(Kind::Activities));

    for u in state.users.values() {
        users.insert(u.id.clone(), object(&**u, &u.extra, &[]));
    }
    for t in state.teams.values() {
        teams.insert(t.id.clone(), object(&**t, &t.extra, &["members"]));
        members(&mut team_members, &mut parent, state, &t.id, &t.members);
    }
    for p in state.projects.values() {
        let p = if json_side { through_mapping(p, &ids) } else { (**p).clone() };
        projects.insert(p.id.clone(), object(&p, &p.extra, &["members", "tasks", "milestones"]));
        members(&mut project_members, &mut parent, state, &p.id, &p.members);
        for (i, t) in p.tasks.iter().enumerate() {
            let mut rec = object(&**t, &t.extra, &[]);
            rec.insert("projectId".into(), Value::from(p.id.clone()));
            rec.insert("position".into(), Value::from(i));
            parent.insert(t.id.clone(), p.id.clone());
            tasks.insert(t.id.clone(), rec);
        }
        for (i, m) in p.milestones.iter().enumerate() {
            let mut rec = object(m, &m.extra, &[]);
            rec.insert("projectId".into(), Value::from(p.id.clone()));
            rec.insert("position".into(), Value::from(i));
            parent.insert(m.id.clone(), p.id.clone());
            milestones.insert(m.id.clone(), rec);
        }
    }
    for f in state.files.values() {
        files.insert(f.id.clone(), object(&**f, &f.extra, &[]));
    }
    for log in state.activities.values() {
        for a in log.oldest_first() {
            activities.insert(a.id.clone(), object(a, &a.extra, &[]));
        }
    }
    let records = HashMap::from([
        (Kind::Users, users),
        (Kind::Teams, teams),
        (Kind::TeamMembers, team_members),
        (Kind::Projects, projects),
        (Kind::ProjectMembers, project_members),
        (Kind::Tasks, tasks),
        (Kind::Milestones, milestones),
        (Kind::Files, files),
        (Kind::Activities, activities),
    ]);
    Flat { records, parent }
}

/// The fields whose values differ (absent equals null), in the source record's key order then the other's.
pub fn differing_fields(a: &Map<String, Value>, b: &Map<String, Value>) -> Vec<String> {
    let mut out = Vec::new();
    for (k, v) in a {
        if b.get(k).unwrap_or(&Value::Null) != v {
            out.push(k.clone());
        }
    }
    for (k, v) in b {
        if !a.contains_key(k) && !v.is_null() {
            out.push(k.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn absent_equals_null_and_unknown_keys_are_named_extra() {
        let a = json!({"title": "x", "dueDate": null, "extra.labels": ["a"]});
        let b = json!({"title": "x", "extra.labels": ["b"], "tags": null});
        let fields = differing_fields(a.as_object().unwrap(), b.as_object().unwrap());
        assert_eq!(fields, vec!["extra.labels".to_string()]);
    }
}
