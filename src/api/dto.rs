//! Wire shapes (http-api.md §2): one camelCase shape per entity, every key always present, built from domain
//! records by borrowing so that list responses serialise without copying the records.

use serde::Serialize;
use serde_json::Value;

use crate::domain::{Activity, Member, Milestone, Project, Task, User};

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UserDto<'a> {
    pub id: &'a str,
    pub email: &'a str,
    pub name: &'a str,
    pub user_type: &'a str,
    pub avatar: Option<&'a str>,
    pub google_id: Option<&'a str>,
    pub created_at: &'a str,
    pub updated_at: Option<&'a str>,
}

impl<'a> From<&'a User> for UserDto<'a> {
    fn from(u: &'a User) -> Self {
        UserDto {
            id: &u.id,
            email: &u.email,
            name: &u.name,
            user_type: &u.user_type,
            avatar: u.avatar.as_deref(),
            google_id: u.google_id.as_deref(),
            created_at: &u.created_at,
            updated_at: u.updated_at.as_deref(),
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MemberDto<'a> {
    pub user_id: &'a str,
    pub role: &'a str,
    pub joined_at: &'a str,
}

impl<'a> From<&'a Member> for MemberDto<'a> {
    fn from(m: &'a Member) -> Self {
        MemberDto { user_id: &m.user_id, role: &m.role, joined_at: &m.joined_at }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskDto<'a> {
    pub id: &'a str,
    pub project_id: &'a str,
    pub title: &'a str,
    pub description: Option<&'a str>,
    pub status: &'a str,
    pub priority: &'a str,
    pub assigned_to: Option<&'a str>,
    pub due_date: Option<&'a str>,
    pub created_by: &'a str,
    pub created_at: &'a str,
    pub updated_at: &'a str,
    pub completed_at: Option<&'a str>,
}

impl<'a> TaskDto<'a> {
    pub fn new(project_id: &'a str, t: &'a Task) -> Self {
        TaskDto {
            id: &t.id,
            project_id,
            title: &t.title,
            description: t.description.as_deref(),
            status: &t.status,
            priority: &t.priority,
            assigned_to: t.assigned_to.as_deref(),
            due_date: t.due_date.as_deref(),
            created_by: &t.created_by,
            created_at: &t.created_at,
            updated_at: &t.updated_at,
            completed_at: t.completed_at.as_deref(),
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MilestoneDto<'a> {
    pub id: &'a str,
    pub project_id: &'a str,
    pub title: &'a str,
    pub description: Option<&'a str>,
    pub due_date: Option<&'a str>,
    pub status: &'a str,
    pub created_by: Option<&'a str>,
    pub created_at: &'a str,
    pub updated_at: &'a str,
    pub completed_at: Option<&'a str>,
}

impl<'a> MilestoneDto<'a> {
    pub fn new(project_id: &'a str, m: &'a Milestone) -> Self {
        MilestoneDto {
            id: &m.id,
            project_id,
            title: &m.title,
            description: m.description.as_deref(),
            due_date: m.due_date.as_deref(),
            status: &m.status,
            created_by: m.created_by.as_deref(),
            created_at: &m.created_at,
            updated_at: &m.updated_at,
            completed_at: m.completed_at.as_deref(),
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProjectDto<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub description: Option<&'a str>,
    pub team_id: Option<&'a str>,
    pub organization_id: Option<&'a str>,
    pub status: &'a str,
    pub priority: &'a str,
    pub start_date: Option<&'a str>,
    pub due_date: Option<&'a str>,
    pub progress: i64,
    pub created_by: &'a str,
    pub created_at: &'a str,
    pub updated_at: Option<&'a str>,
    pub members: Vec<MemberDto<'a>>,
    pub tasks: Vec<TaskDto<'a>>,
    pub milestones: Vec<MilestoneDto<'a>>,
    pub files: &'a [Value],
    pub channel_metadata: Option<&'a Value>,
}

impl<'a> From<&'a Project> for ProjectDto<'a> {
    fn from(p: &'a Project) -> Self {
        ProjectDto {
            id: &p.id,
            name: &p.name,
            description: p.description.as_deref(),
            team_id: p.team_id.as_deref(),
            organization_id: p.organization_id.as_deref(),
            status: &p.status,
            priority: &p.priority,
            start_date: p.start_date.as_deref(),
            due_date: p.due_date.as_deref(),
            progress: p.computed_progress(),
            created_by: &p.created_by,
            created_at: &p.created_at,
            updated_at: p.updated_at.as_deref(),
            members: p.members.iter().map(MemberDto::from).collect(),
            tasks: p.tasks.iter().map(|t| TaskDto::new(&p.id, t)).collect(),
            milestones: p.milestones.iter().map(|m| MilestoneDto::new(&p.id, m)).collect(),
            files: &p.files,
            channel_metadata: p.channel_metadata.as_ref(),
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ActivityDto<'a> {
    pub id: &'a str,
    pub project_id: &'a str,
    #[serde(rename = "type")]
    pub kind: &'a str,
    pub user_id: Option<&'a str>,
    pub user_name: Option<&'a str>,
    pub user_email: Option<&'a str>,
    pub user_avatar: Option<&'a str>,
    pub entity_type: Option<&'a str>,
    pub entity_id: Option<&'a str>,
    pub entity_title: Option<&'a str>,
    pub action: &'a str,
    pub metadata: &'a Value,
    pub timestamp: &'a str,
}

impl<'a> From<&'a Activity> for ActivityDto<'a> {
    fn from(a: &'a Activity) -> Self {
        ActivityDto {
            id: &a.id,
            project_id: &a.project_id,
            kind: &a.kind,
            user_id: a.user_id.as_deref(),
            user_name: a.user_name.as_deref(),
            user_email: a.user_email.as_deref(),
            user_avatar: a.user_avatar.as_deref(),
            entity_type: a.entity_type.as_deref(),
            entity_id: a.entity_id.as_deref(),
            entity_title: a.entity_title.as_deref(),
            action: &a.action,
            metadata: &a.metadata,
            timestamp: &a.timestamp,
        }
    }
}
