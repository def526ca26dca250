//! Wire shapes (http-api.md §2): one camelCase shape per entity, every key always present, built from domain
//! records by borrowing so that list responses serialise without copying the records. The same types are the
//! schemas of the OpenAPI document (`ToSchema`), so the document cannot drift from what the handlers send; the
//! `*Request` types document bodies that the handlers validate field by field (`api::validate`) to keep the
//! legacy error wording, and are checked against the server by the schemathesis run.

use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use utoipa::openapi::schema::{Object, ObjectBuilder, SchemaType, Type};

use crate::domain::{access, vocab, Activity, FileRecord, Member, Milestone, Project, Task, Team, User};

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = User)]
pub struct UserDto<'a> {
    pub id: &'a str,
    pub email: &'a str,
    pub name: &'a str,
    pub user_type: &'a str,
    #[schema(required = true)]
    pub avatar: Option<&'a str>,
    #[schema(required = true)]
    pub google_id: Option<&'a str>,
    pub created_at: &'a str,
    #[schema(required = true)]
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

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Member)]
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

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Task)]
pub struct TaskDto<'a> {
    pub id: &'a str,
    pub project_id: &'a str,
    pub title: &'a str,
    #[schema(required = true)]
    pub description: Option<&'a str>,
    pub status: &'a str,
    pub priority: &'a str,
    #[schema(required = true)]
    pub assigned_to: Option<&'a str>,
    #[schema(required = true)]
    pub due_date: Option<&'a str>,
    pub created_by: &'a str,
    pub created_at: &'a str,
    pub updated_at: &'a str,
    #[schema(required = true)]
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

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Milestone)]
pub struct MilestoneDto<'a> {
    pub id: &'a str,
    pub project_id: &'a str,
    pub title: &'a str,
    #[schema(required = true)]
    pub description: Option<&'a str>,
    #[schema(required = true)]
    pub due_date: Option<&'a str>,
    pub status: &'a str,
    #[schema(required = true)]
    pub created_by: Option<&'a str>,
    pub created_at: &'a str,
    pub updated_at: &'a str,
    #[schema(required = true)]
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

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Project)]
pub struct ProjectDto<'a> {
    pub id: &'a str,
    pub name: &'a str,
    #[schema(required = true)]
    pub description: Option<&'a str>,
    #[schema(required = true)]
    pub team_id: Option<&'a str>,
    #[schema(required = true)]
    pub organization_id: Option<&'a str>,
    pub status: &'a str,
    pub priority: &'a str,
    #[schema(required = true)]
    pub start_date: Option<&'a str>,
    #[schema(required = true)]
    pub due_date: Option<&'a str>,
    #[schema(minimum = 0, maximum = 100)]
    pub progress: i64,
    pub created_by: &'a str,
    pub created_at: &'a str,
    #[schema(required = true)]
    pub updated_at: Option<&'a str>,
    pub members: Vec<MemberDto<'a>>,
    pub tasks: Vec<TaskDto<'a>>,
    pub milestones: Vec<MilestoneDto<'a>>,
    /// Always empty: files are listed by `/api/files?projectId=`.
    #[schema(value_type = Vec<Object>)]
    pub files: &'a [Value],
    /// As stored: `null`, `{}` or `{channelId, channelType, linkedAt}`.
    #[schema(required = true, value_type = Option<Object>)]
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

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Activity)]
pub struct ActivityDto<'a> {
    pub id: &'a str,
    pub project_id: &'a str,
    #[serde(rename = "type")]
    pub kind: &'a str,
    #[schema(required = true)]
    pub user_id: Option<&'a str>,
    #[schema(required = true)]
    pub user_name: Option<&'a str>,
    #[schema(required = true)]
    pub user_email: Option<&'a str>,
    #[schema(required = true)]
    pub user_avatar: Option<&'a str>,
    #[schema(required = true)]
    pub entity_type: Option<&'a str>,
    #[schema(required = true)]
    pub entity_id: Option<&'a str>,
    #[schema(required = true)]
    pub entity_title: Option<&'a str>,
    pub action: &'a str,
    #[schema(value_type = Object)]
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

/// A project member as the member routes show it: the entry plus the user's `name` and `email` (`null` when the
/// entry matches no user; a legacy e-mail entry then shows its address as `email`).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MemberDetail {
    pub user_id: String,
    pub role: String,
    pub joined_at: String,
    #[schema(required = true)]
    pub name: Option<String>,
    #[schema(required = true)]
    pub email: Option<String>,
}

impl MemberDetail {
    pub fn new(m: &Member, user: Option<&User>) -> Self {
        MemberDetail {
            user_id: m.user_id.clone(),
            role: m.role.clone(),
            joined_at: m.joined_at.clone(),
            name: user.map(|u| u.name.clone()),
            email: user.map(|u| u.email.clone()).or_else(|| m.user_id.contains('@').then(|| m.user_id.clone())),
        }
    }
}

/// The legacy file record plus the keys the client's file list needs (http-api.md §2).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = FileRecord)]
pub struct FileDto<'a> {
    pub id: &'a str,
    pub original_name: &'a str,
    /// Same as `originalName`.
    pub name: &'a str,
    pub filename: &'a str,
    /// `uploads/<filename>`, relative to the data directory.
    pub path: String,
    pub url: &'a str,
    /// Bytes.
    pub size: i64,
    pub mimetype: &'a str,
    /// Same as `mimetype`.
    #[serde(rename = "type")]
    pub kind: &'a str,
    pub is_image: bool,
    pub is_video: bool,
    #[schema(required = true)]
    pub project_id: Option<&'a str>,
    pub uploaded_by: &'a str,
    pub uploaded_at: &'a str,
    #[schema(required = true)]
    pub updated_at: Option<&'a str>,
    pub tags: &'a [String],
    pub description: &'a str,
    pub is_public: bool,
}

impl<'a> From<&'a FileRecord> for FileDto<'a> {
    fn from(f: &'a FileRecord) -> Self {
        FileDto {
            id: &f.id,
            original_name: &f.original_name,
            name: &f.original_name,
            filename: &f.filename,
            path: format!("uploads/{}", f.filename),
            url: &f.url,
            size: f.size,
            mimetype: &f.mimetype,
            kind: &f.mimetype,
            is_image: f.mimetype.starts_with("image/"),
            is_video: f.mimetype.starts_with("video/"),
            project_id: f.project_id.as_deref(),
            uploaded_by: &f.uploaded_by,
            uploaded_at: &f.uploaded_at,
            updated_at: f.updated_at.as_deref(),
            tags: &f.tags,
            description: &f.description,
            is_public: f.is_public,
        }
    }
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Team)]
pub struct TeamDto<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub description: &'a str,
    pub created_by: &'a str,
    pub created_at: &'a str,
    #[schema(required = true)]
    pub updated_at: Option<&'a str>,
    pub members: Vec<MemberDto<'a>>,
    /// Returned as stored.
    #[schema(value_type = Vec<Object>)]
    pub invites: &'a [Value],
}

impl<'a> From<&'a Team> for TeamDto<'a> {
    fn from(t: &'a Team) -> Self {
        TeamDto {
            id: &t.id,
            name: &t.name,
            description: &t.description,
            created_by: &t.created_by,
            created_at: &t.created_at,
            updated_at: t.updated_at.as_deref(),
            members: t.members.iter().map(MemberDto::from).collect(),
            invites: &t.invites,
        }
    }
}

/// A team record seen as an organization (http-api.md §2).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Organization)]
pub struct OrganizationDto<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub description: &'a str,
    /// The caller's member role, or `member`.
    pub role: &'a str,
    pub created_at: &'a str,
    pub member_count: usize,
}

impl<'a> OrganizationDto<'a> {
    pub fn new(t: &'a Team, caller: &User) -> Self {
        OrganizationDto {
            id: &t.id,
            name: &t.name,
            description: &t.description,
            role: access::team_role(t, caller).unwrap_or("member"),
            created_at: &t.created_at,
            member_count: t.members.len(),
        }
    }
}

// -------------------------------------------------------------------------------------------------------------
// Response envelopes (http-api.md §3–§12). `success` is always `true` where present; it comes first, as the
// legacy server wrote it.

#[derive(Serialize, ToSchema)]
pub struct MessageResponse {
    pub message: &'static str,
}

#[derive(Serialize, ToSchema)]
pub struct SuccessMessageResponse {
    pub success: bool,
    pub message: &'static str,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CsrfTokenResponse {
    /// Always empty: no CSRF token is issued or checked (authentication is bearer-only).
    pub csrf_token: &'static str,
}

#[derive(Serialize, ToSchema)]
pub struct HealthStore {
    pub mode: &'static str,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HealthDatabase {
    pub use_postgres: bool,
    pub dual_write_enabled: bool,
}

#[derive(Serialize, ToSchema)]
pub struct HealthResponse {
    pub status: &'static str,
    pub service: &'static str,
    pub timestamp: String,
    /// Seconds since start.
    pub uptime: f64,
    pub version: &'static str,
    pub store: HealthStore,
    pub database: HealthDatabase,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReadyCheck {
    pub ok: bool,
    pub latency_ms: f64,
    /// Only on a failed check: a short reason, never a path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OutboxSummary {
    pub depth: u64,
    #[schema(required = true)]
    pub oldest_pending_age_seconds: Option<f64>,
}

/// `/health/ready`: 200 with `status` `ready` (or `degraded`), 503 with `not_ready` plus `message` and `code`.
#[derive(Serialize, ToSchema)]
pub struct ReadyResponse {
    pub status: &'static str,
    pub mode: &'static str,
    /// One entry per backend the live mode uses (`json`, `postgres`).
    pub checks: indexmap::IndexMap<&'static str, ReadyCheck>,
    pub outbox: OutboxSummary,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<crate::error::ErrorCode>)]
    pub code: Option<&'static str>,
}

#[derive(Serialize, ToSchema)]
pub struct AuthResponse<'a> {
    /// Session token (HS256 JWT, valid 7 days); send it as `Authorization: Bearer <token>`.
    pub token: String,
    pub user: UserDto<'a>,
}

#[derive(Serialize, ToSchema)]
pub struct ProjectResponse<'a> {
    pub success: bool,
    pub message: &'static str,
    pub project: ProjectDto<'a>,
}

#[derive(Serialize, ToSchema)]
pub struct GetProjectResponse<'a> {
    pub success: bool,
    pub project: ProjectDto<'a>,
}

#[derive(Serialize, ToSchema)]
pub struct ProjectsResponse<'a> {
    pub success: bool,
    pub projects: Vec<ProjectDto<'a>>,
}

#[derive(Serialize, ToSchema)]
pub struct ChannelLinkedResponse<'a> {
    pub message: &'static str,
    pub project: ProjectDto<'a>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChannelResponse<'a> {
    /// As stored: `null`, `{}` or `{channelId, channelType, linkedAt}`.
    #[schema(required = true, value_type = Option<Object>)]
    pub channel_metadata: Option<&'a Value>,
    /// True only when `channelMetadata` holds a non-empty `channelId`.
    pub has_channel: bool,
}

#[derive(Serialize, ToSchema)]
pub struct MembersResponse {
    pub success: bool,
    pub members: Vec<MemberDetail>,
}

#[derive(Serialize, ToSchema)]
pub struct MemberResponse {
    pub success: bool,
    pub message: &'static str,
    pub member: MemberDetail,
}

#[derive(Serialize, ToSchema)]
pub struct TaskResponse<'a> {
    pub success: bool,
    pub message: &'static str,
    pub task: TaskDto<'a>,
}

#[derive(Serialize, ToSchema)]
pub struct GetTaskResponse<'a> {
    pub success: bool,
    pub task: TaskDto<'a>,
}

#[derive(Serialize, ToSchema)]
pub struct TasksResponse<'a> {
    pub success: bool,
    pub tasks: Vec<TaskDto<'a>>,
}

/// The body of `GET /api/projects/:id/tasks`, serialised as [`TasksResponse`] (same fields, same order, same bytes)
/// without first collecting a `Vec<TaskDto>`: each task's view is made as it is written.
#[derive(Serialize)]
pub struct TasksBody<'a> {
    pub success: bool,
    pub tasks: TaskList<'a>,
}

/// A project's tasks written as `TaskDto`s, in order.
pub struct TaskList<'a> {
    pub project_id: &'a str,
    pub tasks: &'a [std::sync::Arc<Task>],
}

impl Serialize for TaskList<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.tasks.iter().map(|t| TaskDto::new(self.project_id, t)))
    }
}

impl TasksBody<'_> {
    /// The body as serde_json writes it (the tests hold the two byte-identical), but with `rawjson`'s writer: the
    /// GET tasks list is the largest body the API sends, and its serialisation was a quarter of the request's cost.
    pub fn to_json(&self) -> Vec<u8> {
        use super::rawjson::{write_opt_str, write_str};
        // ~350 bytes a usual task; a longer one grows the buffer.
        let mut out = Vec::with_capacity(64 + 384 * self.tasks.tasks.len());
        out.extend_from_slice(if self.success {
            b"{\"success\":true,\"tasks\":["
        } else {
            b"{\"success\":false,\"tasks\":["
        });
        for (i, t) in self.tasks.tasks.iter().enumerate() {
            out.extend_from_slice(if i == 0 { b"{\"id\":" } else { b",{\"id\":" });
            write_str(&mut out, &t.id);
            // `TaskDto`'s keys in its order, each with the comma before it; a required string is never `null`.
            // Straight-line calls rather than a loop over a table of fields: the table cost ~440 instructions a task.
            let mut field = |key: &[u8], value: Option<&str>| {
                out.extend_from_slice(key);
                write_opt_str(&mut out, value);
            };
            field(b",\"projectId\":", Some(self.tasks.project_id));
            field(b",\"title\":", Some(&t.title));
            field(b",\"description\":", t.description.as_deref());
            field(b",\"status\":", Some(&t.status));
            field(b",\"priority\":", Some(&t.priority));
            field(b",\"assignedTo\":", t.assigned_to.as_deref());
            field(b",\"dueDate\":", t.due_date.as_deref());
            field(b",\"createdBy\":", Some(&t.created_by));
            field(b",\"createdAt\":", Some(&t.created_at));
            field(b",\"updatedAt\":", Some(&t.updated_at));
            field(b",\"completedAt\":", t.completed_at.as_deref());
            out.push(b'}');
        }
        out.extend_from_slice(b"]}");
        out
    }
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ActivitiesResponse<'a> {
    pub success: bool,
    /// Newest first.
    pub activities: Vec<ActivityDto<'a>>,
    /// Number of activities matching the filters.
    pub total: usize,
    /// `offset + activities.length < total`.
    pub has_more: bool,
}

#[derive(Serialize, ToSchema)]
pub struct MilestoneResponse<'a> {
    pub success: bool,
    pub message: &'static str,
    pub milestone: MilestoneDto<'a>,
}

#[derive(Serialize, ToSchema)]
pub struct FilesUploadedResponse<'a> {
    pub message: &'static str,
    pub files: Vec<FileDto<'a>>,
}

#[derive(Serialize, ToSchema)]
pub struct FilesResponse<'a> {
    pub files: Vec<FileDto<'a>>,
}

#[derive(Serialize, ToSchema)]
pub struct TeamCreatedResponse<'a> {
    pub message: &'static str,
    pub team: TeamDto<'a>,
}

#[derive(Serialize, ToSchema)]
pub struct TeamsResponse<'a> {
    pub teams: Vec<TeamDto<'a>>,
}

#[derive(Serialize, ToSchema)]
pub struct TeamResponse<'a> {
    pub team: TeamDto<'a>,
}

#[derive(Serialize, ToSchema)]
pub struct OrganizationsResponse<'a> {
    pub success: bool,
    pub organizations: Vec<OrganizationDto<'a>>,
}

#[derive(Serialize, ToSchema)]
pub struct OrganizationResponse<'a> {
    pub success: bool,
    pub organization: OrganizationDto<'a>,
}

// -------------------------------------------------------------------------------------------------------------
// Request bodies. The handlers read these fields one by one (api::validate) so that each failure keeps the legacy
// message and `field`; these types state the same rules for the document. Strings are trimmed before the checks,
// so a required string must hold a non-blank character (`pattern: \S`).

fn vocab_schema(v: &vocab::Vocab) -> Object {
    let values = v.values.iter().chain(v.aliases.iter().map(|(alias, _)| alias));
    ObjectBuilder::new()
        .schema_type(SchemaType::Type(Type::String))
        .enum_values(Some(values.copied()))
        .description(Some(format!("One of: {} (aliases are stored in canonical form)", v.list())))
        .build()
}

fn signup_user_type() -> Object {
    ObjectBuilder::new().schema_type(SchemaType::Type(Type::String)).enum_values(Some(["client", "designer"])).build()
}
fn project_status() -> Object {
    vocab_schema(&vocab::PROJECT_STATUS)
}
fn project_priority() -> Object {
    vocab_schema(&vocab::PROJECT_PRIORITY)
}
fn task_status() -> Object {
    vocab_schema(&vocab::TASK_STATUS)
}
fn task_priority() -> Object {
    vocab_schema(&vocab::TASK_PRIORITY)
}
fn milestone_status() -> Object {
    vocab_schema(&vocab::MILESTONE_STATUS)
}
fn member_role() -> Object {
    vocab_schema(&vocab::MEMBER_ROLE)
}

#[derive(ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SignupRequest {
    /// `local@domain` with a dot inside the domain, no whitespace.
    #[schema(max_length = 254, pattern = r"^\s*[^\s@]+@[^\s@.][^\s@]*\.[^\s@]*[^\s@.]\s*$")]
    pub email: String,
    /// 8 characters to 72 bytes of UTF-8.
    #[schema(min_length = 8)]
    pub password: String,
    #[schema(max_length = 255, pattern = r"\S")]
    pub name: String,
    /// `client` (default) or `designer`; `admin` is refused with 403 `admin_signup_forbidden`.
    #[schema(schema_with = signup_user_type)]
    pub user_type: Option<String>,
}

#[derive(ToSchema)]
pub struct LoginRequest {
    pub email: String,
    pub password: String,
}

#[derive(ToSchema)]
pub struct GoogleLoginRequest {
    /// A Google ID token.
    #[schema(pattern = r"\S")]
    pub credential: String,
}

/// Date fields accept `YYYY-MM-DD` or an ISO 8601 date-time with `Z` or an offset; `null` or `""` clears.
#[derive(ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProjectCreateRequest {
    #[schema(max_length = 200, pattern = r"\S")]
    pub name: String,
    #[schema(max_length = 2000)]
    pub description: Option<String>,
    #[schema(schema_with = project_status)]
    pub status: Option<String>,
    #[schema(schema_with = project_priority)]
    pub priority: Option<String>,
    /// A team the caller belongs to.
    pub team_id: Option<String>,
    /// An organization the caller belongs to.
    pub organization_id: Option<String>,
    pub start_date: Option<String>,
    pub due_date: Option<String>,
}

/// Partial: only the fields present change.
#[derive(ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProjectUpdateRequest {
    #[schema(max_length = 200, pattern = r"\S", nullable = false)]
    pub name: Option<String>,
    #[schema(max_length = 2000)]
    pub description: Option<String>,
    #[schema(schema_with = project_status)]
    pub status: Option<String>,
    #[schema(schema_with = project_priority)]
    pub priority: Option<String>,
    pub team_id: Option<String>,
    pub organization_id: Option<String>,
    pub start_date: Option<String>,
    pub due_date: Option<String>,
}

#[derive(ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChannelLinkRequest {
    #[schema(max_length = 255, pattern = r"\S")]
    pub channel_id: String,
}

#[derive(ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TaskCreateRequest {
    #[schema(max_length = 500, pattern = r"\S")]
    pub title: String,
    #[schema(max_length = 5000)]
    pub description: Option<String>,
    #[schema(schema_with = task_status)]
    pub status: Option<String>,
    #[schema(schema_with = task_priority)]
    pub priority: Option<String>,
    /// An existing user's id.
    pub assigned_to: Option<String>,
    pub due_date: Option<String>,
}

/// Partial: only these six fields are read; `{}` only bumps `updatedAt`.
#[derive(ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TaskUpdateRequest {
    #[schema(max_length = 500, pattern = r"\S", nullable = false)]
    pub title: Option<String>,
    #[schema(max_length = 5000)]
    pub description: Option<String>,
    #[schema(schema_with = task_status)]
    pub status: Option<String>,
    #[schema(schema_with = task_priority)]
    pub priority: Option<String>,
    pub assigned_to: Option<String>,
    pub due_date: Option<String>,
}

#[derive(ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MilestoneCreateRequest {
    #[schema(max_length = 300, pattern = r"\S")]
    pub title: String,
    #[schema(max_length = 3000)]
    pub description: Option<String>,
    pub due_date: Option<String>,
}

#[derive(ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MilestoneUpdateRequest {
    #[schema(max_length = 300, pattern = r"\S", nullable = false)]
    pub title: Option<String>,
    #[schema(max_length = 3000)]
    pub description: Option<String>,
    pub due_date: Option<String>,
    #[schema(schema_with = milestone_status)]
    pub status: Option<String>,
}

/// Exactly one of `userId` and `email` (both or neither → 400 `validation_failed`).
#[derive(ToSchema)]
#[serde(untagged)]
pub enum MemberAddRequest {
    #[serde(rename_all = "camelCase")]
    ById {
        /// A user id (legacy ids accepted).
        #[schema(pattern = r"\S")]
        user_id: String,
        /// Default `member`.
        #[schema(schema_with = member_role)]
        role: Option<String>,
    },
    ByEmail {
        /// Looked up like a login: the exact address, else a unique case-insensitive match.
        #[schema(pattern = r"\S")]
        email: String,
        /// Default `member`.
        #[schema(schema_with = member_role)]
        role: Option<String>,
    },
}

#[derive(ToSchema)]
pub struct MemberUpdateRequest {
    #[schema(schema_with = member_role)]
    pub role: String,
}

/// `multipart/form-data`.
#[derive(ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FileUploadForm {
    /// Up to `FLUX_UPLOAD_MAX_FILES` (10) parts named `files`, each at most 50 MiB, of an allowed type.
    #[schema(value_type = Vec<String>, format = Binary)]
    pub files: Vec<Vec<u8>>,
    /// A project the caller is a member of.
    pub project_id: Option<String>,
}

/// Partial.
#[derive(ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FileUpdateRequest {
    /// `null` or `""` clears it.
    #[schema(max_length = 2000)]
    pub description: Option<String>,
    /// Each 1–50 characters after trimming.
    #[schema(max_items = 50, nullable = false)]
    pub tags: Option<Vec<String>>,
    #[schema(nullable = false)]
    pub is_public: Option<bool>,
}

#[derive(ToSchema)]
pub struct TeamCreateRequest {
    #[schema(max_length = 200, pattern = r"\S")]
    pub name: String,
    #[schema(max_length = 2000)]
    pub description: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn the_hand_written_task_list_is_byte_identical_to_serde_json_on_random_tasks() {
        use rand::{Rng, SeedableRng};
        const PIECES: &[&str] = &["a", "Z", "-", " ", "\"", "\\", "\n", "\u{1}", "\u{7f}", "é", "𝄞", "12345678"];
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        let text = |rng: &mut rand::rngs::StdRng| -> String {
            let n = rng.random_range(0..24);
            (0..n).map(|_| PIECES[rng.random_range(0..PIECES.len())]).collect()
        };
        for round in 0..300 {
            let tasks: Vec<Arc<Task>> = (0..round % 7)
                .map(|_| {
                    let opt = |rng: &mut rand::rngs::StdRng| rng.random_bool(0.5).then(|| text(rng));
                    Arc::new(Task {
                        id: text(&mut rng),
                        title: text(&mut rng),
                        description: opt(&mut rng),
                        status: text(&mut rng),
                        priority: text(&mut rng),
                        assigned_to: opt(&mut rng),
                        due_date: opt(&mut rng),
                        created_by: text(&mut rng),
                        created_at: text(&mut rng),
                        updated_at: text(&mut rng),
                        completed_at: opt(&mut rng),
                        tags: None,
                        attachments: None,
                        extra: Default::default(),
                    })
                })
                .collect();
            let project = text(&mut rng);
            let body = TasksBody { success: true, tasks: TaskList { project_id: &project, tasks: &tasks } };
            assert_eq!(serde_json::to_vec(&body).unwrap(), body.to_json());
        }
    }

    #[test]
    fn the_streamed_task_list_is_byte_identical_to_tasks_response() {
        let task = |id: &str, title: &str, assigned: Option<&str>| {
            Arc::new(Task {
                id: id.into(),
                title: title.into(),
                description: Some("line \"one\"\n\u{e9}\u{1}".into()),
                status: "todo".into(),
                priority: "high".into(),
                assigned_to: assigned.map(Into::into),
                due_date: None,
                created_by: "u1".into(),
                created_at: "2026-11-27T10:00:00.000Z".into(),
                updated_at: "2026-11-27T10:00:01.000Z".into(),
                completed_at: Some("2026-11-27T10:00:02.000Z".into()),
                tags: Some(vec!["a".into()]),
                attachments: None,
                extra: Default::default(),
            })
        };
        for tasks in [vec![], vec![task("t1", "First", None), task("t2", "Sec\\ond", Some("u2"))]] {
            let old = TasksResponse { success: true, tasks: tasks.iter().map(|t| TaskDto::new("p1", t)).collect() };
            let new = TasksBody { success: true, tasks: TaskList { project_id: "p1", tasks: &tasks } };
            assert_eq!(serde_json::to_vec(&old).unwrap(), serde_json::to_vec(&new).unwrap());
            assert_eq!(serde_json::to_vec(&old).unwrap(), new.to_json());
        }
    }
}
