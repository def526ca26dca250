//! `/api/projects` and the channel routes (http-api.md §6).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::Response;
use serde_json::{json, Value};

use super::dto::{
    ChannelLinkRequest, ChannelLinkedResponse, ChannelResponse, GetProjectResponse, ProjectCreateRequest, ProjectDto,
    ProjectResponse, ProjectUpdateRequest, ProjectsResponse, SuccessMessageResponse,
};
use super::extract::JsonObject;
use super::json_response;
use super::validate::{self as v, Body};
use crate::app::AppState;
use crate::auth::AuthUser;
use crate::domain::access::{self, Role};
use crate::domain::ops::{NewProject, ProjectPatch};
use crate::domain::{time, vocab, Project, User};
use crate::error::{ApiError, ApiResult, Family, MessageError, SuccessError, SuccessResult};
use crate::store::{DynStore, ProjectAccess};

/// Loads a project the caller is a member of; a non-member gets exactly the answer for a missing project
/// (http-api.md §1.10).
pub async fn member_project(store: &DynStore, id: &str, user: &User, msg_500: &str) -> ApiResult<(Arc<Project>, Role)> {
    if !v::path_id_ok(id) {
        return Err(ApiError::project_not_found());
    }
    let project = store
        .get_project(id)
        .await
        .map_err(|e| ApiError::from_store(e, msg_500))?
        .ok_or_else(ApiError::project_not_found)?;
    let role = access::role_of(&project, user).ok_or_else(ApiError::project_not_found)?;
    Ok((project, role))
}

/// [`member_project`] for a request that needs only the caller's role (and the tasks when `with_tasks`), not the
/// whole project: the PostgreSQL store then reads far less.
pub async fn member_access(
    store: &DynStore,
    id: &str,
    user: &User,
    msg_500: &str,
    with_tasks: bool,
) -> ApiResult<(ProjectAccess, Role)> {
    if !v::path_id_ok(id) {
        return Err(ApiError::project_not_found());
    }
    let project = store
        .get_project_access(id, with_tasks)
        .await
        .map_err(|e| ApiError::from_store(e, msg_500))?
        .ok_or_else(ApiError::project_not_found)?;
    let role = project.role_of(user).ok_or_else(ApiError::project_not_found)?;
    Ok((project, role))
}

/// `teamId`/`organizationId` must name a team record the caller belongs to.
async fn check_team(
    store: &DynStore,
    id: &Option<Option<String>>,
    user: &User,
    field: &str,
    message: &str,
) -> ApiResult<()> {
    let Some(Some(id)) = id else { return Ok(()) };
    let team = store.get_team(id).await.map_err(|e| ApiError::from_store(e, "Server error"))?;
    let belongs =
        team.is_some_and(|t| t.created_by == user.id || t.members.iter().any(|m| access::refers_to(&m.user_id, user)));
    if belongs {
        Ok(())
    } else {
        Err(ApiError::validation(field, message))
    }
}

struct ProjectFields {
    patch: ProjectPatch,
}

async fn read_fields(store: &DynStore, body: &Body, user: &User, creating: bool) -> ApiResult<ProjectFields> {
    let name = if creating {
        Some(v::required_str(body, "name", "Project name", 200)?)
    } else {
        v::optional_nonempty_str(body, "name", "Project name", 200)?
    };
    let patch = ProjectPatch {
        name,
        description: v::optional_text(body, "description", "Description", 2000)?,
        status: v::optional_enum(body, "status", "Status", &vocab::PROJECT_STATUS)?,
        priority: v::optional_enum(body, "priority", "Priority", &vocab::PROJECT_PRIORITY)?,
        team_id: v::optional_id(body, "teamId", "Team ID")?,
        organization_id: v::optional_id(body, "organizationId", "Organization ID")?,
        start_date: v::optional_date(body, "startDate", "Start date")?,
        due_date: v::optional_date(body, "dueDate", "Due date")?,
        channel_metadata: None,
    };
    check_team(store, &patch.team_id, user, "Team ID", "Team ID must be a team you belong to").await?;
    check_team(
        store,
        &patch.organization_id,
        user,
        "Organization ID",
        "Organization ID must be an organization you belong to",
    )
    .await?;
    Ok(ProjectFields { patch })
}

#[utoipa::path(post, path = "/api/projects", tag = "projects", security(("bearerAuth" = [])),
    request_body = ProjectCreateRequest, responses(
    (status = 200, description = "Created; the caller is its owner", body = ProjectResponse),
    (status = 400, description = "`validation_failed`", body = SuccessError),
    (status = 500, body = SuccessError), (status = 503, body = SuccessError),
))]
pub async fn create_project(
    State(state): State<AppState>,
    auth: AuthUser,
    JsonObject(body): JsonObject,
) -> SuccessResult<Response> {
    let store = state.store();
    let ProjectFields { patch } = read_fields(&store, &body, &auth.0, true).await?;
    let input = NewProject {
        name: patch.name.unwrap_or_default(),
        description: patch.description.unwrap_or_default(),
        status: patch.status.unwrap_or_else(|| "planning".into()),
        priority: patch.priority.unwrap_or_else(|| "medium".into()),
        team_id: patch.team_id.flatten(),
        organization_id: patch.organization_id.flatten(),
        start_date: patch.start_date.flatten(),
        due_date: patch.due_date.flatten(),
    };
    let project = store
        .insert_project(input, &auth.actor())
        .await
        .map_err(|e| ApiError::from_store(e, "Error creating project"))?;
    let body = ProjectResponse {
        success: true,
        message: "Project created successfully",
        project: ProjectDto::from(&*project),
    };
    Ok(json_response(&body))
}

#[utoipa::path(get, path = "/api/projects", tag = "projects", security(("bearerAuth" = [])), responses(
    (status = 200, description = "The projects the caller is a member of, in creation order", body = ProjectsResponse),
    (status = 500, body = SuccessError), (status = 503, body = SuccessError),
))]
pub async fn list_projects(State(state): State<AppState>, auth: AuthUser) -> SuccessResult<Response> {
    let projects = state
        .store()
        .list_projects_for(&auth.0)
        .await
        .map_err(|e| ApiError::from_store(e, "Error retrieving projects"))?;
    let body = ProjectsResponse { success: true, projects: projects.iter().map(|p| ProjectDto::from(&**p)).collect() };
    Ok(json_response(&body))
}

#[utoipa::path(get, path = "/api/projects/{id}", tag = "projects", security(("bearerAuth" = [])),
    params(("id" = String, Path, description = "Project id")), responses(
    (status = 200, body = GetProjectResponse),
    (status = 404, description = "`project_not_found` (also for a project the caller is not a member of)",
     body = SuccessError),
    (status = 500, body = SuccessError), (status = 503, body = SuccessError),
))]
pub async fn get_project(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(id): Path<String>,
) -> SuccessResult<Response> {
    let (project, _) = member_project(&state.store(), &id, &auth.0, "Error retrieving project").await?;
    Ok(json_response(&GetProjectResponse { success: true, project: ProjectDto::from(&*project) }))
}

/// Field errors are answered in the success family, everything else in the message family (http-api.md §1.3
/// rule 2).
#[utoipa::path(put, path = "/api/projects/{id}", tag = "projects", security(("bearerAuth" = [])),
    params(("id" = String, Path, description = "Project id")), request_body = Option<ProjectUpdateRequest>, responses(
    (status = 200, description = "Updated (partial)", body = ProjectResponse),
    (status = 400, description = "`validation_failed` (success family)", body = SuccessError),
    (status = 403, description = "`permission_denied`: not an owner or admin", body = MessageError),
    (status = 404, description = "`project_not_found`", body = MessageError),
))]
pub async fn update_project(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(id): Path<String>,
    JsonObject(body): JsonObject,
) -> ApiResult<Response> {
    let store = state.store();
    let (_, role) = member_access(&store, &id, &auth.0, "Error updating project", false).await?;
    if !role.is_manager() {
        return Err(ApiError::permission_denied("Permission denied"));
    }
    // Field errors keep the legacy validator's success family (http-api.md §1.3 rule 2).
    let fields = read_fields(&store, &body, &auth.0, false).await.map_err(|e| {
        if e.code == "validation_failed" {
            e.in_family(Family::Success)
        } else {
            e
        }
    })?;
    let project =
        store.update_project(&id, fields.patch).await.map_err(|e| ApiError::from_store(e, "Error updating project"))?;
    let body = ProjectResponse {
        success: true,
        message: "Project updated successfully",
        project: ProjectDto::from(&*project),
    };
    Ok(json_response(&body))
}

#[utoipa::path(delete, path = "/api/projects/{id}", tag = "projects", security(("bearerAuth" = [])),
    params(("id" = String, Path, description = "Project id")), responses(
    (status = 200, description = "Deleted with its members, tasks, milestones and activities",
     body = SuccessMessageResponse),
    (status = 403, description = "`permission_denied`: only owners delete projects", body = SuccessError),
    (status = 404, description = "`project_not_found`", body = SuccessError),
    (status = 500, body = SuccessError), (status = 503, body = SuccessError),
))]
pub async fn delete_project(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(id): Path<String>,
) -> SuccessResult<axum::Json<SuccessMessageResponse>> {
    let store = state.store();
    let (_, role) = member_access(&store, &id, &auth.0, "Error deleting project", false).await?;
    if !role.is_owner() {
        return Err(ApiError::permission_denied("Only project owners can delete projects").into());
    }
    store.delete_project(&id).await.map_err(|e| ApiError::from_store(e, "Error deleting project"))?;
    Ok(axum::Json(SuccessMessageResponse { success: true, message: "Project deleted successfully" }))
}

#[utoipa::path(post, path = "/api/projects/{id}/channel", tag = "projects", security(("bearerAuth" = [])),
    params(("id" = String, Path, description = "Project id")), request_body = ChannelLinkRequest, responses(
    (status = 200, body = ChannelLinkedResponse),
    (status = 400, description = "`validation_failed`", body = MessageError),
    (status = 403, description = "`permission_denied`: viewers cannot link", body = MessageError),
    (status = 404, description = "`project_not_found`", body = MessageError),
))]
pub async fn link_channel(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(id): Path<String>,
    JsonObject(body): JsonObject,
) -> ApiResult<Response> {
    let store = state.store();
    let (_, role) = member_access(&store, &id, &auth.0, "Error linking channel", false).await?;
    if !role.can_write() {
        return Err(ApiError::permission_denied("Permission denied"));
    }
    let channel_id = match body.get("channelId") {
        Some(Value::String(s)) if !s.trim().is_empty() => {
            let s = s.trim();
            if s.chars().count() > 255 {
                return Err(ApiError::validation("Channel ID", "Channel ID must be 255 characters or less"));
            }
            s.to_owned()
        }
        _ => return Err(ApiError::validation("Channel ID", "Channel ID is required")),
    };
    let metadata = json!({ "channelId": channel_id, "channelType": "project", "linkedAt": time::now() });
    let patch = ProjectPatch { channel_metadata: Some(Some(metadata)), ..Default::default() };
    let project =
        store.update_project(&id, patch).await.map_err(|e| ApiError::from_store(e, "Error linking channel"))?;
    let body = ChannelLinkedResponse { message: "Channel linked successfully", project: ProjectDto::from(&*project) };
    Ok(json_response(&body))
}

#[utoipa::path(get, path = "/api/projects/{id}/channel", tag = "projects", security(("bearerAuth" = [])),
    params(("id" = String, Path, description = "Project id")), responses(
    (status = 200, body = ChannelResponse),
    (status = 404, description = "`project_not_found`", body = MessageError),
))]
pub async fn get_channel(State(state): State<AppState>, auth: AuthUser, Path(id): Path<String>) -> ApiResult<Response> {
    let (project, _) = member_project(&state.store(), &id, &auth.0, "Error retrieving channel").await?;
    let has_channel = project
        .channel_metadata
        .as_ref()
        .and_then(|m| m.get("channelId"))
        .and_then(Value::as_str)
        .is_some_and(|s| !s.is_empty());
    Ok(json_response(&ChannelResponse { channel_metadata: project.channel_metadata.as_ref(), has_channel }))
}
