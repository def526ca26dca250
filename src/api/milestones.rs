//! `/api/projects/:id/milestones` (http-api.md §8). Milestones are read embedded in the project.

use axum::extract::{Path, State};
use axum::response::Response;

use super::dto::{MilestoneCreateRequest, MilestoneDto, MilestoneResponse, MilestoneUpdateRequest};
use super::extract::JsonObject;
use super::json_response;
use super::projects::{member_access, member_project};
use super::validate as v;
use crate::app::AppState;
use crate::auth::AuthUser;
use crate::domain::ops::{MilestonePatch, NewMilestone};
use crate::domain::vocab;
use crate::error::{ApiError, SuccessError, SuccessResult};

#[utoipa::path(post, path = "/api/projects/{id}/milestones", tag = "milestones", security(("bearerAuth" = [])),
    params(("id" = String, Path, description = "Project id")), request_body = MilestoneCreateRequest, responses(
    (status = 200, description = "Created with status `pending`, appended at the end", body = MilestoneResponse),
    (status = 400, description = "`validation_failed`", body = SuccessError),
    (status = 403, description = "`permission_denied`: viewers cannot modify milestones", body = SuccessError),
    (status = 404, description = "`project_not_found`", body = SuccessError),
    (status = 500, body = SuccessError), (status = 503, body = SuccessError),
))]
pub async fn create_milestone(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(id): Path<String>,
    JsonObject(body): JsonObject,
) -> SuccessResult<Response> {
    let store = state.store();
    let (_, role) = member_access(&store, &id, &auth.0, "Error creating milestone", false).await?;
    if !role.can_write() {
        return Err(ApiError::permission_denied("Viewers cannot modify milestones").into());
    }
    let input = NewMilestone {
        title: v::required_str(&body, "title", "Milestone title", 300)?,
        description: v::optional_text(&body, "description", "Description", 3000)?.unwrap_or_default(),
        due_date: v::optional_date(&body, "dueDate", "Due date")?.flatten(),
    };
    let (m, _activity) = store
        .insert_milestone(&id, input, &auth.actor())
        .await
        .map_err(|e| ApiError::from_store(e, "Error creating milestone"))?;
    let body = MilestoneResponse {
        success: true,
        message: "Milestone created successfully",
        milestone: MilestoneDto::new(&id, &m),
    };
    Ok(json_response(&body))
}

#[utoipa::path(put, path = "/api/projects/{id}/milestones/{milestone_id}", tag = "milestones",
    security(("bearerAuth" = [])),
    params(
        ("id" = String, Path, description = "Project id"),
        ("milestone_id" = String, Path, description = "Milestone id"),
    ),
    request_body = Option<MilestoneUpdateRequest>, responses(
    (status = 200, description = "Updated (partial)", body = MilestoneResponse),
    (status = 400, description = "`validation_failed`", body = SuccessError),
    (status = 403, description = "`permission_denied`: viewers cannot modify milestones", body = SuccessError),
    (status = 404, description = "`project_not_found` or `milestone_not_found`", body = SuccessError),
    (status = 500, body = SuccessError), (status = 503, body = SuccessError),
))]
pub async fn update_milestone(
    State(state): State<AppState>,
    auth: AuthUser,
    Path((id, milestone_id)): Path<(String, String)>,
    JsonObject(body): JsonObject,
) -> SuccessResult<Response> {
    let store = state.store();
    let (project, role) = member_project(&store, &id, &auth.0, "Error updating milestone").await?;
    if !role.can_write() {
        return Err(ApiError::permission_denied("Viewers cannot modify milestones").into());
    }
    if !project.milestones.iter().any(|m| m.id == milestone_id) {
        return Err(
            ApiError::new(axum::http::StatusCode::NOT_FOUND, "milestone_not_found", "Milestone not found").into()
        );
    }
    let patch = MilestonePatch {
        title: v::optional_nonempty_str(&body, "title", "Milestone title", 300)?,
        description: v::optional_text(&body, "description", "Description", 3000)?,
        due_date: v::optional_date(&body, "dueDate", "Due date")?,
        status: v::optional_enum(&body, "status", "Milestone status", &vocab::MILESTONE_STATUS)?,
    };
    let (m, _activity) = store
        .update_milestone(&id, &milestone_id, patch, &auth.actor())
        .await
        .map_err(|e| ApiError::from_store(e, "Error updating milestone"))?;
    let body = MilestoneResponse {
        success: true,
        message: "Milestone updated successfully",
        milestone: MilestoneDto::new(&id, &m),
    };
    Ok(json_response(&body))
}
