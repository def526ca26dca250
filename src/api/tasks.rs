//! `/api/projects/:projectId/tasks` and the activity feed (http-api.md §7, §9). Success family throughout.

use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::Json;
use std::collections::HashMap;

use super::dto::{
    ActivitiesResponse, ActivityDto, GetTaskResponse, SuccessMessageResponse, TaskCreateRequest, TaskDto, TaskList,
    TaskResponse, TaskUpdateRequest, TasksBody, TasksResponse,
};
use super::extract::JsonObject;
use super::projects::member_access;
use super::validate::{self as v, Body};
use super::{json_bytes_response, json_response};
use crate::app::AppState;
use crate::auth::AuthUser;
use crate::domain::ops::{NewTask, TaskPatch};
use crate::domain::{time, vocab, Task};
use crate::error::{ApiError, ApiResult, SuccessError, SuccessResult};
use crate::store::{ActivityQuery, DynStore, ProjectAccess};

/// `assignedTo` must be an existing user; returns how the activity names them (their name when they belong
/// to the project, else their id).
async fn check_assignee(
    store: &DynStore,
    project: &ProjectAccess,
    id: &Option<Option<String>>,
) -> ApiResult<Option<String>> {
    let Some(Some(id)) = id else { return Ok(None) };
    let user = store
        .get_user(id)
        .await
        .map_err(|e| ApiError::from_store(e, "Error updating task"))?
        .ok_or_else(|| ApiError::validation("Assigned user", "Assigned user must be an existing user"))?;
    Ok(Some(if project.role_of(&user).is_some() { user.name } else { user.id }))
}

fn read_patch(body: &Body, creating: bool) -> ApiResult<TaskPatch> {
    let title = if creating {
        Some(v::required_str(body, "title", "Task title", 500)?)
    } else {
        v::optional_nonempty_str(body, "title", "Task title", 500)?
    };
    Ok(TaskPatch {
        title,
        description: v::optional_text(body, "description", "Description", 5000)?,
        status: v::optional_enum(body, "status", "Task status", &vocab::TASK_STATUS)?,
        priority: v::optional_enum(body, "priority", "Task priority", &vocab::TASK_PRIORITY)?,
        assigned_to: v::optional_id(body, "assignedTo", "Assigned user")?,
        due_date: v::optional_date(body, "dueDate", "Due date")?,
        assignee_label: None,
    })
}

#[utoipa::path(get, path = "/api/projects/{id}/tasks", tag = "tasks", security(("bearerAuth" = [])),
    params(("id" = String, Path, description = "Project id")), responses(
    (status = 200, description = "In position order", body = TasksResponse),
    (status = 404, description = "`project_not_found`", body = SuccessError),
    (status = 500, body = SuccessError), (status = 503, body = SuccessError),
))]
pub async fn list_tasks(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(project_id): Path<String>,
) -> SuccessResult<Response> {
    let (project, _) = member_access(&state.store(), &project_id, &auth.0, "Error fetching tasks", true).await?;
    let body = TasksBody { success: true, tasks: TaskList { project_id: &project.id, tasks: &project.tasks } };
    Ok(json_bytes_response(body.to_json()))
}

#[utoipa::path(get, path = "/api/projects/{id}/tasks/{task_id}", tag = "tasks", security(("bearerAuth" = [])),
    params(("id" = String, Path, description = "Project id"), ("task_id" = String, Path, description = "Task id")),
    responses(
    (status = 200, body = GetTaskResponse),
    (status = 404, description = "`project_not_found` or `task_not_found`", body = SuccessError),
    (status = 500, body = SuccessError), (status = 503, body = SuccessError),
))]
pub async fn get_task(
    State(state): State<AppState>,
    auth: AuthUser,
    Path((project_id, task_id)): Path<(String, String)>,
) -> SuccessResult<Response> {
    let (project, _) = member_access(&state.store(), &project_id, &auth.0, "Error fetching task", true).await?;
    let task = project.tasks.iter().find(|t| t.id == task_id).ok_or_else(ApiError::task_not_found)?;
    Ok(json_response(&GetTaskResponse { success: true, task: TaskDto::new(&project.id, task) }))
}

#[utoipa::path(post, path = "/api/projects/{id}/tasks", tag = "tasks", security(("bearerAuth" = [])),
    params(("id" = String, Path, description = "Project id")), request_body = TaskCreateRequest, responses(
    (status = 200, description = "Created, appended at the end", body = TaskResponse),
    (status = 400, description = "`validation_failed`", body = SuccessError),
    (status = 403, description = "`permission_denied`: viewers cannot modify tasks", body = SuccessError),
    (status = 404, description = "`project_not_found`", body = SuccessError),
    (status = 500, body = SuccessError), (status = 503, body = SuccessError),
))]
pub async fn create_task(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(project_id): Path<String>,
    JsonObject(body): JsonObject,
) -> SuccessResult<Response> {
    let store = state.store();
    let patch = read_patch(&body, true);
    // A valid body without an assignee: one statement checks that the caller can write and inserts. When it did not
    // insert, the regular path below answers as it always does (404, then 403, then 400).
    if let Ok(p) = &patch {
        if v::path_id_ok(&project_id) && !matches!(p.assigned_to, Some(Some(_))) {
            let done = store
                .insert_task_as_writer(&project_id, new_task(p), &auth.actor(), &auth.0)
                .await
                .map_err(|e| ApiError::from_store(e, "Error creating task"))?;
            if let Some((task, _activity)) = done {
                return Ok(task_created(&project_id, &task));
            }
        }
    }
    let (project, role) = member_access(&store, &project_id, &auth.0, "Error creating task", false).await?;
    if !role.can_write() {
        return Err(ApiError::permission_denied("Viewers cannot modify tasks").into());
    }
    let patch = patch?;
    check_assignee(&store, &project, &patch.assigned_to).await?;
    let (task, _activity) = store
        .insert_task(&project_id, new_task(&patch), &auth.actor())
        .await
        .map_err(|e| ApiError::from_store(e, "Error creating task"))?;
    Ok(task_created(&project_id, &task))
}

fn new_task(patch: &TaskPatch) -> NewTask {
    NewTask {
        title: patch.title.clone().unwrap_or_default(),
        description: patch.description.clone().unwrap_or_default(),
        status: patch.status.clone().unwrap_or_else(|| "todo".into()),
        priority: patch.priority.clone().unwrap_or_else(|| "medium".into()),
        assigned_to: patch.assigned_to.clone().flatten(),
        due_date: patch.due_date.clone().flatten(),
    }
}

fn task_created(project_id: &str, task: &Task) -> Response {
    json_response(&TaskResponse {
        success: true,
        message: "Task created successfully",
        task: TaskDto::new(project_id, task),
    })
}

#[utoipa::path(put, path = "/api/projects/{id}/tasks/{task_id}", tag = "tasks", security(("bearerAuth" = [])),
    params(("id" = String, Path, description = "Project id"), ("task_id" = String, Path, description = "Task id")),
    request_body = Option<TaskUpdateRequest>, responses(
    (status = 200, description = "Updated (partial); the task as stored", body = TaskResponse),
    (status = 400, description = "`validation_failed`", body = SuccessError),
    (status = 403, description = "`permission_denied`: viewers cannot modify tasks", body = SuccessError),
    (status = 404, description = "`project_not_found` or `task_not_found`", body = SuccessError),
    (status = 500, body = SuccessError), (status = 503, body = SuccessError),
))]
pub async fn update_task(
    State(state): State<AppState>,
    auth: AuthUser,
    Path((project_id, task_id)): Path<(String, String)>,
    JsonObject(body): JsonObject,
) -> SuccessResult<Response> {
    let store = state.store();
    let (project, role) = member_access(&store, &project_id, &auth.0, "Error updating task", true).await?;
    if !role.can_write() {
        return Err(ApiError::permission_denied("Viewers cannot modify tasks").into());
    }
    if !project.tasks.iter().any(|t| t.id == task_id) {
        return Err(ApiError::task_not_found().into());
    }
    let mut patch = read_patch(&body, false)?;
    patch.assignee_label = check_assignee(&store, &project, &patch.assigned_to).await?;
    let (task, _activity) = store
        .update_task(&project_id, &task_id, patch, &auth.actor())
        .await
        .map_err(|e| ApiError::from_store(e, "Error updating task"))?;
    let body =
        TaskResponse { success: true, message: "Task updated successfully", task: TaskDto::new(&project_id, &task) };
    Ok(json_response(&body))
}

#[utoipa::path(delete, path = "/api/projects/{id}/tasks/{task_id}", tag = "tasks", security(("bearerAuth" = [])),
    params(("id" = String, Path, description = "Project id"), ("task_id" = String, Path, description = "Task id")),
    responses(
    (status = 200, body = SuccessMessageResponse),
    (status = 403, description = "`permission_denied`: only owners and admins delete tasks", body = SuccessError),
    (status = 404, description = "`project_not_found` or `task_not_found`", body = SuccessError),
    (status = 500, body = SuccessError), (status = 503, body = SuccessError),
))]
pub async fn delete_task(
    State(state): State<AppState>,
    auth: AuthUser,
    Path((project_id, task_id)): Path<(String, String)>,
) -> SuccessResult<Json<SuccessMessageResponse>> {
    let store = state.store();
    let (project, role) = member_access(&store, &project_id, &auth.0, "Error deleting task", true).await?;
    if !project.tasks.iter().any(|t| t.id == task_id) {
        return Err(ApiError::task_not_found().into());
    }
    if !role.is_manager() {
        return Err(ApiError::permission_denied("Only project owners and admins can delete tasks").into());
    }
    store
        .delete_task(&project_id, &task_id, &auth.actor())
        .await
        .map_err(|e| ApiError::from_store(e, "Error deleting task"))?;
    Ok(Json(SuccessMessageResponse { success: true, message: "Task deleted successfully" }))
}

fn query_int(
    q: &HashMap<String, String>,
    key: &str,
    field: &str,
    default: usize,
    min: usize,
    max: usize,
) -> ApiResult<usize> {
    match q.get(key) {
        None => Ok(default),
        Some(s) => match s.trim().parse::<usize>() {
            Ok(n) if (min..=max).contains(&n) => Ok(n),
            _ => Err(ApiError::validation(field, format!("{field} must be an integer between {min} and {max}"))),
        },
    }
}

fn query_date(q: &HashMap<String, String>, key: &str, field: &str) -> ApiResult<Option<String>> {
    match q.get(key) {
        None => Ok(None),
        Some(s) => time::parse_client_date(s.trim()).map(Some).ok_or_else(|| {
            ApiError::validation(field, format!("{field} must be in ISO 8601 format (e.g., 2025-10-30T00:00:00Z)"))
        }),
    }
}

#[utoipa::path(get, path = "/api/projects/{id}/activities", tag = "tasks", security(("bearerAuth" = [])),
    params(
        ("id" = String, Path, description = "Project id"),
        ("limit" = Option<i64>, Query, minimum = 1, maximum = 200, description = "Page size, default 50"),
        ("offset" = Option<i64>, Query, minimum = 0, description = "Default 0"),
        ("type" = Option<String>, Query, description = "Exact `type`, e.g. `task.updated`"),
        ("userId" = Option<String>, Query, description = "Exact actor id"),
        ("dateFrom" = Option<String>, Query, description = "Inclusive lower bound on `timestamp` (ISO 8601)"),
        ("dateTo" = Option<String>, Query, description = "Inclusive upper bound on `timestamp` (ISO 8601)"),
    ),
    responses(
    (status = 200, description = "Newest first, filters applied before paging", body = ActivitiesResponse),
    (status = 400, description = "`validation_failed`: bad `limit`, `offset`, date, or a NUL in a filter",
     body = SuccessError),
    (status = 404, description = "`project_not_found`", body = SuccessError),
    (status = 500, body = SuccessError), (status = 503, body = SuccessError),
))]
pub async fn list_activities(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(project_id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> SuccessResult<Response> {
    let store = state.store();
    member_access(&store, &project_id, &auth.0, "Error fetching activities", false).await?;
    let query = ActivityQuery {
        limit: query_int(&q, "limit", "Limit", 50, 1, 200)?,
        offset: query_int(&q, "offset", "Offset", 0, 0, usize::MAX)?,
        kind: v::query_text(&q, "type")?,
        user_id: v::query_text(&q, "userId")?,
        date_from: query_date(&q, "dateFrom", "Date from")?,
        date_to: query_date(&q, "dateTo", "Date to")?,
    };
    let page = store
        .list_activities(&project_id, &query)
        .await
        .map_err(|e| ApiError::from_store(e, "Error fetching activities"))?;
    let has_more = query.offset + page.activities.len() < page.total;
    let activities: Vec<ActivityDto> = page.activities.iter().map(ActivityDto::from).collect();
    Ok(json_response(&ActivitiesResponse { success: true, activities, total: page.total, has_more }))
}
