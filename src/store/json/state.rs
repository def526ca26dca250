//! The JSON store's in-memory state and the journal operations that change it. The same `apply` serves live
//! writes and start-up replay, so a replayed record produces exactly the state the write produced.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use crate::domain::{model::progress_of, Activity, FileRecord, Milestone, Project, Task, Team, User};

/// Records are behind `Arc` so that publishing a snapshot to readers after each group commit costs one pointer
/// copy per record, and a write copies only the records it changes.
#[derive(Clone, Default)]
pub struct State {
    pub users: IndexMap<String, Arc<User>>,
    pub projects: IndexMap<String, Arc<Project>>,
    pub teams: IndexMap<String, Arc<Team>>,
    pub files: IndexMap<String, Arc<FileRecord>>,
    /// Per project, oldest first; the file and the API order is newest first.
    pub activities: HashMap<String, Arc<ActivityLog>>,
}

/// A project's activity history in fixed-size shared chunks. Readers hold the published snapshot, so an append
/// copies only the last chunk and the (short) chunk list instead of the whole history — a plain `Arc<Vec<_>>`
/// made every write cost time proportional to the project's history (bench/README.md).
#[derive(Clone, Default, Debug)]
pub struct ActivityLog {
    chunks: Vec<Arc<Vec<Activity>>>,
    len: usize,
}

const CHUNK: usize = 64;

impl ActivityLog {
    pub fn from_oldest_first(list: Vec<Activity>) -> ActivityLog {
        let len = list.len();
        let chunks = list.chunks(CHUNK).map(|c| Arc::new(c.to_vec())).collect();
        ActivityLog { chunks, len }
    }

    pub fn push(&mut self, a: Activity) {
        match self.chunks.last_mut() {
            Some(last) if last.len() < CHUNK => Arc::make_mut(last).push(a),
            _ => self.chunks.push(Arc::new(vec![a])),
        }
        self.len += 1;
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn oldest_first(&self) -> impl Iterator<Item = &Activity> {
        self.chunks.iter().flat_map(|c| c.iter())
    }

    pub fn newest_first(&self) -> impl Iterator<Item = &Activity> {
        self.chunks.iter().rev().flat_map(|c| c.iter().rev())
    }
}

/// Which legacy file a change lands in; compaction rewrites only these.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FileKey {
    Users,
    Projects,
    Teams,
    Files,
    Activities(String),
}

pub type Dirty = BTreeSet<FileKey>;

/// One change inside a journal record: an after-image or a delete by id. Applying an op twice gives the same
/// state, which is what makes replay idempotent.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "camelCase")]
pub enum Op {
    PutUser {
        rec: User,
    },
    DelUser {
        id: String,
    },
    /// Project fields and members; `rec.tasks`/`rec.milestones` are ignored (they have their own ops).
    PutProject {
        rec: Project,
    },
    DelProject {
        id: String,
    },
    PutTask {
        project: String,
        pos: usize,
        rec: Task,
    },
    DelTask {
        project: String,
        id: String,
    },
    PutMilestone {
        project: String,
        pos: usize,
        rec: Milestone,
    },
    DelMilestone {
        project: String,
        id: String,
    },
    PutTeam {
        rec: Team,
    },
    DelTeam {
        id: String,
    },
    PutFile {
        rec: FileRecord,
    },
    DelFile {
        id: String,
    },
    AddActivity {
        rec: Activity,
    },
}

impl Op {
    /// The project header without embedded children, as `PutProject` journals it.
    pub fn put_project(p: &Project) -> Op {
        let mut rec = p.clone();
        rec.tasks = Vec::new();
        rec.milestones = Vec::new();
        Op::PutProject { rec }
    }
}

fn put_positioned<T: Clone>(list: &mut Vec<T>, pos: usize, rec: &T, same: impl Fn(&T) -> bool) {
    if let Some(existing) = list.iter_mut().find(|t| same(t)) {
        *existing = rec.clone();
    } else {
        list.insert(pos.min(list.len()), rec.clone());
    }
}

impl State {
    pub fn apply(&mut self, op: &Op, dirty: &mut Dirty) {
        match op {
            Op::PutUser { rec } => {
                self.users.insert(rec.id.clone(), Arc::new(rec.clone()));
                dirty.insert(FileKey::Users);
            }
            Op::DelUser { id } => {
                self.users.shift_remove(id);
                dirty.insert(FileKey::Users);
            }
            Op::PutProject { rec } => {
                match self.projects.get_mut(&rec.id) {
                    Some(existing) => {
                        let p = Arc::make_mut(existing);
                        let tasks = std::mem::take(&mut p.tasks);
                        let milestones = std::mem::take(&mut p.milestones);
                        *p = rec.clone();
                        p.tasks = tasks;
                        p.milestones = milestones;
                        p.progress = progress_of(&p.tasks);
                    }
                    None => {
                        self.projects.insert(rec.id.clone(), Arc::new(rec.clone()));
                    }
                }
                dirty.insert(FileKey::Projects);
            }
            Op::DelProject { id } => {
                self.projects.shift_remove(id);
                self.activities.remove(id);
                dirty.insert(FileKey::Activities(id.clone()));
                dirty.insert(FileKey::Projects);
            }
            Op::PutTask { project, pos, rec } => {
                if let Some(p) = self.projects.get_mut(project) {
                    let p = Arc::make_mut(p);
                    put_positioned(&mut p.tasks, *pos, &Arc::new(rec.clone()), |t| t.id == rec.id);
                    p.progress = progress_of(&p.tasks);
                    dirty.insert(FileKey::Projects);
                }
            }
            Op::DelTask { project, id } => {
                if let Some(p) = self.projects.get_mut(project) {
                    let p = Arc::make_mut(p);
                    p.tasks.retain(|t| &t.id != id);
                    p.progress = progress_of(&p.tasks);
                    dirty.insert(FileKey::Projects);
                }
            }
            Op::PutMilestone { project, pos, rec } => {
                if let Some(p) = self.projects.get_mut(project) {
                    put_positioned(&mut Arc::make_mut(p).milestones, *pos, rec, |m| m.id == rec.id);
                    dirty.insert(FileKey::Projects);
                }
            }
            Op::DelMilestone { project, id } => {
                if let Some(p) = self.projects.get_mut(project) {
                    Arc::make_mut(p).milestones.retain(|m| &m.id != id);
                    dirty.insert(FileKey::Projects);
                }
            }
            Op::PutTeam { rec } => {
                self.teams.insert(rec.id.clone(), Arc::new(rec.clone()));
                dirty.insert(FileKey::Teams);
            }
            Op::DelTeam { id } => {
                self.teams.shift_remove(id);
                dirty.insert(FileKey::Teams);
            }
            Op::PutFile { rec } => {
                self.files.insert(rec.id.clone(), Arc::new(rec.clone()));
                dirty.insert(FileKey::Files);
            }
            Op::DelFile { id } => {
                self.files.shift_remove(id);
                dirty.insert(FileKey::Files);
            }
            Op::AddActivity { rec } => {
                // A replayed activity whose project was deleted later in the journal must not resurrect a file.
                if !self.projects.contains_key(&rec.project_id) {
                    return;
                }
                let log = Arc::make_mut(self.activities.entry(rec.project_id.clone()).or_default());
                if !log.newest_first().take(64).any(|a| a.id == rec.id) {
                    log.push(rec.clone());
                }
                dirty.insert(FileKey::Activities(rec.project_id.clone()));
            }
        }
    }

    /// Login lookup: the exact address, else a unique case-insensitive match (auth.md §4.2).
    pub fn user_by_email(&self, email: &str) -> Option<&Arc<User>> {
        if let Some(u) = self.users.values().find(|u| u.email == email) {
            return Some(u);
        }
        let lower = email.to_lowercase();
        let mut matches = self.users.values().filter(|u| u.email.to_lowercase() == lower);
        let first = matches.next()?;
        matches.next().is_none().then_some(first)
    }

    pub fn email_taken(&self, email: &str) -> bool {
        let lower = email.to_lowercase();
        self.users.values().any(|u| u.email.to_lowercase() == lower)
    }
}
