//! `/api/teams` and `/api/organizations` (http-api.md §11, §12): one collection of team records, two views.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::Value;

use super::dto::{
    OrganizationDto, OrganizationResponse, OrganizationsResponse, TeamCreateRequest, TeamCreatedResponse, TeamDto,
    TeamResponse, TeamsResponse,
};
use super::extract::JsonObject;
use super::json_response;
use super::validate::Body;
use crate::app::AppState;
use crate::auth::AuthUser;
use crate::domain::{access, new_id, time, Member, Team, User};
use crate::error::{ApiError, ApiResult, MessageError};

/// `name` (1–200) and `description` (≤ 2000) of a new team or organization.
fn read_team_fields(body: &Body, field: &str) -> ApiResult<(String, String)> {
    let name = match body.get("name") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.trim().to_owned(),
        Some(Value::String(_)) | None | Some(Value::Null) => {
            return Err(ApiError::validation(field, format!("{field} is required")))
        }
        Some(_) => return Err(ApiError::validation(field, format!("{field} must be a string"))),
    };
    if name.chars().count() > 200 {
        return Err(ApiError::validation(field, format!("{field} must be 200 characters or less")));
    }
    let description = super::validate::optional_text(body, "description", "Description", 2000)?.unwrap_or_default();
    Ok((name, description))
}

fn new_team(name: String, description: String, creator: &User, role: &str, organization: bool) -> Team {
    let now = time::now();
    Team {
        id: new_id(),
        name,
        description,
        created_by: creator.id.clone(),
        created_at: now.clone(),
        updated_at: organization.then(|| now.clone()),
        members: vec![Member {
            user_id: creator.id.clone(),
            role: role.into(),
            joined_at: now,
            extra: Default::default(),
        }],
        invites: vec![],
        extra: Default::default(),
    }
}

#[utoipa::path(post, path = "/api/teams", tag = "teams", security(("bearerAuth" = [])),
    request_body = TeamCreateRequest, responses(
    (status = 200, description = "Created; the caller is its owner", body = TeamCreatedResponse),
    (status = 400, description = "`validation_failed`", body = MessageError),
))]
pub async fn create_team(
    State(state): State<AppState>,
    auth: AuthUser,
    JsonObject(body): JsonObject,
) -> ApiResult<Response> {
    let (name, description) = read_team_fields(&body, "Team name")?;
    let team = state
        .store()
        .insert_team(new_team(name, description, &auth.0, "owner", false))
        .await
        .map_err(|e| ApiError::from_store(e, "Error creating team"))?;
    Ok(json_response(&TeamCreatedResponse { message: "Team created successfully", team: TeamDto::from(&team) }))
}

#[utoipa::path(get, path = "/api/teams", tag = "teams", security(("bearerAuth" = [])), responses(
    (status = 200, description = "Every team record the caller is a member of", body = TeamsResponse),
))]
pub async fn list_teams(State(state): State<AppState>, auth: AuthUser) -> ApiResult<Response> {
    let teams =
        state.store().list_teams_for(&auth.0).await.map_err(|e| ApiError::from_store(e, "Error retrieving teams"))?;
    Ok(json_response(&TeamsResponse { teams: teams.iter().map(TeamDto::from).collect() }))
}

/// A team record the caller belongs to: 404 when it does not exist, 403 `access_denied` when they are not in it.
async fn member_team(
    state: &AppState,
    user: &User,
    id: &str,
    not_found: (&'static str, &str),
    msg_500: &str,
) -> ApiResult<Team> {
    let nf = || ApiError::new(StatusCode::NOT_FOUND, not_found.0, not_found.1);
    if !super::validate::path_id_ok(id) {
        return Err(nf());
    }
    let team = state.store().get_team(id).await.map_err(|e| ApiError::from_store(e, msg_500))?.ok_or_else(nf)?;
    if access::team_role(&team, user).is_none() {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "access_denied", "Access denied"));
    }
    Ok(team)
}

#[utoipa::path(get, path = "/api/teams/{id}", tag = "teams", security(("bearerAuth" = [])),
    params(("id" = String, Path, description = "Team id")), responses(
    (status = 200, body = TeamResponse),
    (status = 403, description = "`access_denied`: not a member", body = MessageError),
    (status = 404, description = "`team_not_found`", body = MessageError),
))]
pub async fn get_team(State(state): State<AppState>, auth: AuthUser, Path(id): Path<String>) -> ApiResult<Response> {
    let team = member_team(&state, &auth.0, &id, ("team_not_found", "Team not found"), "Error retrieving team").await?;
    Ok(json_response(&TeamResponse { team: TeamDto::from(&team) }))
}

#[utoipa::path(get, path = "/api/organizations", tag = "teams", security(("bearerAuth" = [])), responses(
    (status = 200, description = "Every team record the caller is a member of, as organizations",
     body = OrganizationsResponse),
))]
pub async fn list_organizations(State(state): State<AppState>, auth: AuthUser) -> ApiResult<Response> {
    let teams = state
        .store()
        .list_teams_for(&auth.0)
        .await
        .map_err(|e| ApiError::from_store(e, "Failed to fetch organizations"))?;
    let organizations = teams.iter().map(|t| OrganizationDto::new(t, &auth.0)).collect();
    Ok(json_response(&OrganizationsResponse { success: true, organizations }))
}

#[utoipa::path(post, path = "/api/organizations", tag = "teams", security(("bearerAuth" = [])),
    request_body = TeamCreateRequest, responses(
    (status = 201, description = "Created; the caller is its admin", body = OrganizationResponse),
    (status = 400, description = "`validation_failed`", body = MessageError),
))]
pub async fn create_organization(
    State(state): State<AppState>,
    auth: AuthUser,
    JsonObject(body): JsonObject,
) -> ApiResult<Response> {
    let (name, description) = read_team_fields(&body, "Organization name")?;
    let team = state
        .store()
        .insert_team(new_team(name, description, &auth.0, "admin", true))
        .await
        .map_err(|e| ApiError::from_store(e, "Failed to create organization"))?;
    let mut resp =
        json_response(&OrganizationResponse { success: true, organization: OrganizationDto::new(&team, &auth.0) });
    *resp.status_mut() = StatusCode::CREATED;
    Ok(resp)
}

#[utoipa::path(get, path = "/api/organizations/{id}", tag = "teams", security(("bearerAuth" = [])),
    params(("id" = String, Path, description = "Organization id")), responses(
    (status = 200, body = OrganizationResponse),
    (status = 403, description = "`access_denied`: not a member", body = MessageError),
    (status = 404, description = "`organization_not_found`", body = MessageError),
))]
pub async fn get_organization(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let team = member_team(
        &state,
        &auth.0,
        &id,
        ("organization_not_found", "Organization not found"),
        "Failed to fetch organization",
    )
    .await?;
    Ok(json_response(&OrganizationResponse { success: true, organization: OrganizationDto::new(&team, &auth.0) }))
}
