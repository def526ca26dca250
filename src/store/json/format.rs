//! Reading and writing the legacy files exactly as the legacy server did: `JSON.stringify(data, null, 2)` — two
//! spaces, `"key": value`, raw UTF-8, no trailing newline (data-model.md §1).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::state::{FileKey, State};
use crate::domain::{Activity, FileRecord, Normalize, Project, Team, User};

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{path}: {msg}")]
    Corrupt { path: PathBuf, msg: String },
    #[error("{path}: {err}")]
    Io { path: PathBuf, err: std::io::Error },
}

#[derive(Deserialize, Serialize)]
struct UsersFile<T> {
    users: T,
}
#[derive(Deserialize, Serialize)]
struct ProjectsFile<T> {
    projects: T,
}
#[derive(Deserialize, Serialize)]
struct TeamsFile<T> {
    teams: T,
}
#[derive(Deserialize, Serialize)]
struct FilesFile<T> {
    files: T,
}
#[derive(Deserialize, Serialize)]
struct ActivitiesFile<T> {
    activities: T,
}

pub fn path_of(data_dir: &Path, key: &FileKey) -> PathBuf {
    match key {
        FileKey::Users => data_dir.join("users.json"),
        FileKey::Projects => data_dir.join("projects.json"),
        FileKey::Teams => data_dir.join("teams.json"),
        FileKey::Files => data_dir.join("files.json"),
        FileKey::Activities(pid) => activities_dir(data_dir).join(format!("{pid}.json")),
    }
}

pub fn activities_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("data").join("activities")
}

fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, LoadError> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(LoadError::Io { path: path.to_owned(), err }),
    }
}

fn parse<T: DeserializeOwned>(path: &Path, bytes: &[u8]) -> Result<T, LoadError> {
    serde_json::from_slice(bytes).map_err(|e| LoadError::Corrupt {
        path: path.to_owned(),
        msg: format!("line {}, column {}: {}", e.line(), e.column(), e),
    })
}

fn load_list<W, T>(path: &Path, unwrap: impl Fn(W) -> Vec<T>) -> Result<Vec<T>, LoadError>
where
    W: DeserializeOwned,
    T: Normalize,
{
    let Some(bytes) = read_optional(path)? else {
        return Ok(Vec::new());
    };
    let mut list = unwrap(parse::<W>(path, &bytes)?);
    list.iter_mut().for_each(Normalize::normalize);
    Ok(list)
}

/// Loads every legacy file; a missing file is empty, a file that does not parse is an error naming it.
pub fn load_state(data_dir: &Path) -> Result<State, LoadError> {
    let mut state = State::default();
    let users: Vec<User> = load_list(&data_dir.join("users.json"), |f: UsersFile<Vec<User>>| f.users)?;
    let projects: Vec<Project> =
        load_list(&data_dir.join("projects.json"), |f: ProjectsFile<Vec<Project>>| f.projects)?;
    let teams: Vec<Team> = load_list(&data_dir.join("teams.json"), |f: TeamsFile<Vec<Team>>| f.teams)?;
    let files: Vec<FileRecord> = load_list(&data_dir.join("files.json"), |f: FilesFile<Vec<FileRecord>>| f.files)?;
    state.users = users.into_iter().map(|u| (u.id.clone(), Arc::new(u))).collect();
    state.projects = projects.into_iter().map(|p| (p.id.clone(), Arc::new(p))).collect();
    state.teams = teams.into_iter().map(|t| (t.id.clone(), Arc::new(t))).collect();
    state.files = files.into_iter().map(|f| (f.id.clone(), Arc::new(f))).collect();

    let dir = activities_dir(data_dir);
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(pid) = name.strip_suffix(".json") else {
                continue;
            };
            if name.starts_with('.') {
                continue;
            }
            let mut list: Vec<Activity> = load_list(&path, |f: ActivitiesFile<Vec<Activity>>| f.activities)?;
            list.reverse();
            state.activities.insert(pid.to_owned(), Arc::new(super::state::ActivityLog::from_oldest_first(list)));
        }
    }
    Ok(state)
}

/// Pretty-prints like `JSON.stringify(value, null, 2)`: serde_json's two-space pretty printer produces the same
/// bytes (`": "`, `[]`/`{}` for empties, lower-case `\u00xx` control escapes, raw non-ASCII, unescaped `/`).
pub fn to_legacy_json<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(4096);
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"  ");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
    value.serialize(&mut ser).expect("serialising in-memory records cannot fail");
    out
}

struct ArcSlice<'a, T>(Vec<&'a T>);
impl<T: Serialize> Serialize for ArcSlice<'_, T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter())
    }
}

/// The bytes of one legacy file for the given state, or `None` when the file should not exist (the activity
/// file of a deleted project).
pub fn render(state: &State, key: &FileKey) -> Option<Vec<u8>> {
    Some(match key {
        FileKey::Users => to_legacy_json(&UsersFile { users: ArcSlice(state.users.values().map(|a| &**a).collect()) }),
        FileKey::Projects => {
            to_legacy_json(&ProjectsFile { projects: ArcSlice(state.projects.values().map(|a| &**a).collect()) })
        }
        FileKey::Teams => to_legacy_json(&TeamsFile { teams: ArcSlice(state.teams.values().map(|a| &**a).collect()) }),
        FileKey::Files => to_legacy_json(&FilesFile { files: ArcSlice(state.files.values().map(|a| &**a).collect()) }),
        FileKey::Activities(pid) => {
            let list = state.activities.get(pid)?;
            to_legacy_json(&ActivitiesFile { activities: ArcSlice(list.newest_first().collect()) })
        }
    })
}
