//! Pure functions that build records and activities from validated input. Every store backend calls these inside
//! its own atomic unit, so the rules (completedAt, progress, activity wording) exist once.

use serde_json::{json, Map, Value};

use super::model::{Activity, Member, Milestone, Project, Task};
use super::{new_id, time, Actor, Timestamp};

#[derive(Clone, Debug, Default)]
pub struct NewProject {
    pub name: String,
    pub description: String,
    pub status: String,
    pub priority: String,
    pub team_id: Option<String>,
    pub organization_id: Option<String>,
    pub start_date: Option<Timestamp>,
    pub due_date: Option<Timestamp>,
}

/// Partial update: `None` leaves a field alone; `Some(None)` clears a nullable one.
#[derive(Clone, Debug, Default)]
pub struct ProjectPatch {
    pub name: Option<String>,
    pub description: Option<String>,
    pub status: Option<String>,
    pub priority: Option<String>,
    pub team_id: Option<Option<String>>,
    pub organization_id: Option<Option<String>>,
    pub start_date: Option<Option<Timestamp>>,
    pub due_date: Option<Option<Timestamp>>,
    pub channel_metadata: Option<Option<Value>>,
}

#[derive(Clone, Debug, Default)]
pub struct NewTask {
    pub title: String,
    pub description: String,
    pub status: String,
    pub priority: String,
    pub assigned_to: Option<String>,
    pub due_date: Option<Timestamp>,
}

#[derive(Clone, Debug, Default)]
pub struct TaskPatch {
    pub title: Option<String>,
    pub description: Option<String>,
    pub status: Option<String>,
    pub priority: Option<String>,
    pub assigned_to: Option<Option<String>>,
    pub due_date: Option<Option<Timestamp>>,
    /// How the new assignee is named in the activity (their name when they are a project member, else the id);
    /// resolved by the caller, which has the user list at hand.
    pub assignee_label: Option<String>,
}

pub fn build_project(input: NewProject, actor: &Actor) -> Project {
    let now = time::now();
    Project {
        id: new_id(),
        name: input.name,
        description: Some(input.description),
        team_id: input.team_id,
        organization_id: input.organization_id,
        status: input.status,
        priority: input.priority,
        start_date: Some(input.start_date.unwrap_or_else(|| now.clone())),
        due_date: input.due_date,
        progress: 0,
        created_by: actor.id.clone(),
        created_at: now.clone(),
        updated_at: Some(now.clone()),
        members: vec![Member { user_id: actor.id.clone(), role: "owner".into(), joined_at: now, extra: Map::new() }],
        tasks: vec![],
        milestones: vec![],
        files: vec![],
        channel_metadata: None,
        extra: Map::new(),
    }
}

pub fn apply_project_patch(p: &mut Project, patch: ProjectPatch) {
    if let Some(v) = patch.name {
        p.name = v;
    }
    if let Some(v) = patch.description {
        p.description = Some(v);
    }
    if let Some(v) = patch.status {
        p.status = v;
    }
    if let Some(v) = patch.priority {
        p.priority = v;
    }
    if let Some(v) = patch.team_id {
        p.team_id = v;
    }
    if let Some(v) = patch.organization_id {
        p.organization_id = v;
    }
    if let Some(v) = patch.start_date {
        p.start_date = v;
    }
    if let Some(v) = patch.due_date {
        p.due_date = v;
    }
    if let Some(v) = patch.channel_metadata {
        p.channel_metadata = v;
    }
    p.updated_at = Some(time::now());
}

pub fn build_task(input: NewTask, actor: &Actor) -> Task {
    let now = time::now();
    let completed_at = (input.status == "completed").then(|| now.clone());
    Task {
        id: new_id(),
        title: input.title,
        description: Some(input.description),
        status: input.status,
        priority: input.priority,
        assigned_to: input.assigned_to,
        due_date: input.due_date,
        created_by: actor.id.clone(),
        created_at: now.clone(),
        updated_at: now,
        completed_at,
        tags: None,
        attachments: None,
        extra: Map::new(),
    }
}

fn activity(
    project_id: &str,
    kind: &str,
    actor: &Actor,
    entity: (&str, &str, &str),
    action: String,
    metadata: Value,
) -> Activity {
    let (entity_type, entity_id, entity_title) = entity;
    Activity {
        id: new_id(),
        project_id: project_id.to_owned(),
        kind: kind.to_owned(),
        user_id: Some(actor.id.clone()),
        user_name: Some(if actor.name.is_empty() { actor.email.clone() } else { actor.name.clone() }),
        user_email: Some(actor.email.clone()),
        user_avatar: actor.avatar.clone(),
        entity_type: Some(entity_type.to_owned()),
        entity_id: Some(entity_id.to_owned()),
        entity_title: Some(entity_title.to_owned()),
        action,
        metadata,
        timestamp: time::now(),
        extra: Map::new(),
    }
}

pub fn task_created_activity(project_id: &str, task: &Task, actor: &Actor) -> Activity {
    activity(
        project_id,
        "task.created",
        actor,
        ("task", &task.id, &task.title),
        format!("created task \"{}\"", task.title),
        json!({ "status": task.status, "priority": task.priority }),
    )
}

pub fn task_deleted_activity(project_id: &str, task: &Task, actor: &Actor) -> Activity {
    activity(
        project_id,
        "task.deleted",
        actor,
        ("task", &task.id, &task.title),
        format!("deleted task \"{}\"", task.title),
        json!({}),
    )
}

/// Applies a partial update and returns the activity it causes (http-api.md §7 PUT).
pub fn apply_task_patch(project_id: &str, task: &mut Task, patch: TaskPatch, actor: &Actor) -> Activity {
    let old = task.clone();
    let now = time::now();
    if let Some(v) = patch.title {
        task.title = v;
    }
    if let Some(v) = patch.description {
        task.description = Some(v);
    }
    if let Some(v) = patch.status {
        task.status = v;
    }
    if let Some(v) = patch.priority {
        task.priority = v;
    }
    if let Some(v) = patch.assigned_to {
        task.assigned_to = v;
    }
    if let Some(v) = patch.due_date {
        task.due_date = v;
    }
    let entering_completed = task.status == "completed" && old.status != "completed";
    if entering_completed {
        task.completed_at = Some(now.clone());
    } else if task.status != "completed" && old.status == "completed" {
        task.completed_at = None;
    }
    task.updated_at = now;

    let entity = ("task", task.id.as_str(), task.title.as_str());
    if entering_completed {
        return activity(
            project_id,
            "task.completed",
            actor,
            entity,
            format!("completed task \"{}\"", task.title),
            json!({}),
        );
    }
    let metadata = if old.status != task.status {
        json!({ "field": "status", "oldValue": old.status, "newValue": task.status })
    } else if old.priority != task.priority {
        json!({ "field": "priority", "oldValue": old.priority, "newValue": task.priority })
    } else if old.assigned_to != task.assigned_to {
        let old_label = old.assigned_to.clone().unwrap_or_else(|| "Unassigned".into());
        let new_label = match &task.assigned_to {
            None => "Unassigned".to_owned(),
            Some(id) => patch.assignee_label.clone().unwrap_or_else(|| id.clone()),
        };
        json!({ "field": "assignedTo", "oldValue": old_label, "newValue": new_label })
    } else {
        json!({})
    };
    activity(project_id, "task.updated", actor, entity, format!("updated task \"{}\"", task.title), metadata)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn actor() -> Actor {
        Actor { id: "u1".into(), name: "Una".into(), email: "una@example.com".into(), avatar: None }
    }

    #[test]
    fn completing_sets_and_reopening_clears_completed_at() {
        let a = actor();
        let mut t = build_task(
            NewTask { title: "T".into(), status: "todo".into(), priority: "low".into(), ..Default::default() },
            &a,
        );
        let act =
            apply_task_patch("p", &mut t, TaskPatch { status: Some("completed".into()), ..Default::default() }, &a);
        assert_eq!(act.kind, "task.completed");
        assert!(t.completed_at.is_some());
        let act = apply_task_patch("p", &mut t, TaskPatch { status: Some("todo".into()), ..Default::default() }, &a);
        assert_eq!(act.kind, "task.updated");
        assert_eq!(act.metadata["field"], "status");
        assert!(t.completed_at.is_none());
    }

    #[test]
    fn assignee_change_is_labelled() {
        let a = actor();
        let mut t = build_task(
            NewTask { title: "T".into(), status: "todo".into(), priority: "low".into(), ..Default::default() },
            &a,
        );
        let act = apply_task_patch(
            "p",
            &mut t,
            TaskPatch { assigned_to: Some(Some("u2".into())), assignee_label: Some("Bo".into()), ..Default::default() },
            &a,
        );
        assert_eq!(act.metadata, json!({"field": "assignedTo", "oldValue": "Unassigned", "newValue": "Bo"}));
    }
}

/// A domain rule refused a change that was decided inside the store's atomic unit (the rule needs the current
/// state, e.g. "the last owner cannot be demoted").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    pub status: u16,
    pub code: &'static str,
    pub message: &'static str,
}

const LAST_OWNER: Rejection =
    Rejection { status: 409, code: "last_owner", message: "A project must keep at least one owner" };
const OWNERS_ONLY: Rejection =
    Rejection { status: 403, code: "permission_denied", message: "Only project owners can change owners" };
const MEMBER_NOT_FOUND: Rejection = Rejection { status: 404, code: "member_not_found", message: "Member not found" };
const ALREADY_MEMBER: Rejection =
    Rejection { status: 409, code: "already_member", message: "User is already a member of this project" };

fn owner_count(members: &[Member]) -> usize {
    members.iter().filter(|m| m.role == "owner").count()
}

fn member_activity(
    p: &Project,
    kind: &str,
    verb: &str,
    user_ref: &str,
    label: &str,
    actor: &Actor,
    metadata: Value,
) -> Activity {
    activity(&p.id, kind, actor, ("member", user_ref, label), format!("{verb} \"{label}\""), metadata)
}

/// Appends `user` with `role` (http-api.md §6 POST members). `label` names the user in the activity.
pub fn add_member(
    p: &Project,
    user: &crate::domain::User,
    role: &str,
    actor: &Actor,
) -> Result<(Vec<Member>, Member, Activity), Rejection> {
    if super::access::is_member(p, user) {
        return Err(ALREADY_MEMBER);
    }
    let member = Member { user_id: user.id.clone(), role: role.to_owned(), joined_at: time::now(), extra: Map::new() };
    let mut members = p.members.clone();
    members.push(member.clone());
    let label = if user.name.is_empty() { user.email.clone() } else { user.name.clone() };
    let act = member_activity(p, "member.added", "added member", &user.id, &label, actor, json!({ "role": role }));
    Ok((members, member, act))
}

/// Changes the role of the entry whose stored `userId` is `entry`; `None` activity when nothing changed.
pub fn set_member_role(
    p: &Project,
    entry: &str,
    label: &str,
    role: &str,
    caller_is_owner: bool,
    actor: &Actor,
) -> Result<(Vec<Member>, Member, Option<Activity>), Rejection> {
    let mut members = p.members.clone();
    let idx = members.iter().position(|m| m.user_id == entry).ok_or(MEMBER_NOT_FOUND)?;
    let old = members[idx].role.clone();
    if old == role {
        return Ok((members.clone(), members[idx].clone(), None));
    }
    if (old == "owner" || role == "owner") && !caller_is_owner {
        return Err(OWNERS_ONLY);
    }
    members[idx].role = role.to_owned();
    if owner_count(&p.members) > 0 && owner_count(&members) == 0 {
        return Err(LAST_OWNER);
    }
    let act = member_activity(
        p,
        "member.updated",
        "changed role of member",
        entry,
        label,
        actor,
        json!({ "field": "role", "oldValue": old, "newValue": role }),
    );
    Ok((members.clone(), members[idx].clone(), Some(act)))
}

pub fn remove_member(
    p: &Project,
    entry: &str,
    label: &str,
    caller_is_owner: bool,
    actor: &Actor,
) -> Result<(Vec<Member>, Activity), Rejection> {
    let idx = p.members.iter().position(|m| m.user_id == entry).ok_or(MEMBER_NOT_FOUND)?;
    let removed = &p.members[idx];
    if removed.role == "owner" && !caller_is_owner {
        return Err(OWNERS_ONLY);
    }
    let mut members = p.members.clone();
    members.remove(idx);
    if owner_count(&p.members) > 0 && owner_count(&members) == 0 {
        return Err(LAST_OWNER);
    }
    let act =
        member_activity(p, "member.removed", "removed member", entry, label, actor, json!({ "role": removed.role }));
    Ok((members, act))
}

#[derive(Clone, Debug, Default)]
pub struct NewMilestone {
    pub title: String,
    pub description: String,
    pub due_date: Option<Timestamp>,
}

#[derive(Clone, Debug, Default)]
pub struct MilestonePatch {
    pub title: Option<String>,
    pub description: Option<String>,
    pub due_date: Option<Option<Timestamp>>,
    pub status: Option<String>,
}

pub fn build_milestone(input: NewMilestone, actor: &Actor) -> Milestone {
    let now = time::now();
    Milestone {
        id: new_id(),
        title: input.title,
        legacy_name: None,
        description: Some(input.description),
        due_date: input.due_date,
        status: "pending".into(),
        created_by: Some(actor.id.clone()),
        created_at: now.clone(),
        updated_at: now,
        completed_at: None,
        progress: None,
        order_index: None,
        extra: Map::new(),
    }
}

pub fn milestone_created_activity(project_id: &str, m: &Milestone, actor: &Actor) -> Activity {
    activity(
        project_id,
        "milestone.created",
        actor,
        ("milestone", &m.id, &m.title),
        format!("created milestone \"{}\"", m.title),
        json!({}),
    )
}

pub fn apply_milestone_patch(project_id: &str, m: &mut Milestone, patch: MilestonePatch, actor: &Actor) -> Activity {
    let now = time::now();
    let was_completed = m.status == "completed";
    if let Some(v) = patch.title {
        m.title = v;
    }
    if let Some(v) = patch.description {
        m.description = Some(v);
    }
    if let Some(v) = patch.due_date {
        m.due_date = v;
    }
    if let Some(v) = patch.status {
        m.status = v;
    }
    let entering = m.status == "completed" && !was_completed;
    if entering {
        m.completed_at = Some(now.clone());
    } else if was_completed && m.status != "completed" {
        m.completed_at = None;
    }
    m.updated_at = now;
    let (kind, verb) = if entering { ("milestone.completed", "completed") } else { ("milestone.updated", "updated") };
    activity(
        project_id,
        kind,
        actor,
        ("milestone", &m.id, &m.title),
        format!("{verb} milestone \"{}\"", m.title),
        json!({}),
    )
}

#[derive(Clone, Debug, Default)]
pub struct FilePatch {
    pub description: Option<String>,
    pub tags: Option<Vec<String>>,
    pub is_public: Option<bool>,
}
