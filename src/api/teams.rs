//! `/api/teams` and `/api/organizations` (http-api.md §11, §12): one collection of team records, two views.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use serde_json::{json, Value};

use super::extract::JsonObject;
use super::validate::Body;
use crate::app::AppState;
use crate::auth::AuthUser;
use crate::domain::{access, new_id, time, Member, Team, User};
use crate::error::{ApiError, ApiResult};

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TeamDto<'a> {
    id: &'a str,
    name: &'a str,
    description: &'a str,
    created_by: &'a str,
    created_at: &'a str,
    updated_at: Option<&'a str>,
    members: Vec<super::dto::MemberDto<'a>>,
    invites: &'a [Value],
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
            members: t.members.iter().map(super::dto::MemberDto::from).collect(),
            invites: &t.invites,
        }
    }
}

fn organization_view(t: &Team, user: &User) -> Value {
    json!({
        "id": t.id,
        "name": t.name,
        "description": t.description,
        "role": access::team_role(t, user).unwrap_or("member"),
        "createdAt": t.created_at,
        "memberCount": t.members.len(),
    })
}

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

pub async fn create_team(
    State(state): State<AppState>,
    auth: AuthUser,
    JsonObject(body): JsonObject,
) -> ApiResult<Json<Value>> {
    let (name, description) = read_team_fields(&body, "Team name")?;
    let team = state
        .store()
        .insert_team(new_team(name, description, &auth.0, "owner", false))
        .await
        .map_err(|e| ApiError::from_store(e, "Error creating team"))?;
    Ok(Json(json!({ "message": "Team created successfully", "team": TeamDto::from(&team) })))
}

pub async fn list_teams(State(state): State<AppState>, auth: AuthUser) -> ApiResult<Json<Value>> {
    let teams =
        state.store().list_teams_for(&auth.0).await.map_err(|e| ApiError::from_store(e, "Error retrieving teams"))?;
    let dtos: Vec<TeamDto> = teams.iter().map(TeamDto::from).collect();
    Ok(Json(json!({ "teams": dtos })))
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

pub async fn get_team(State(state): State<AppState>, auth: AuthUser, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let team = member_team(&state, &auth.0, &id, ("team_not_found", "Team not found"), "Error retrieving team").await?;
    Ok(Json(json!({ "team": TeamDto::from(&team) })))
}

pub async fn list_organizations(State(state): State<AppState>, auth: AuthUser) -> ApiResult<Json<Value>> {
    let teams = state
        .store()
        .list_teams_for(&auth.0)
        .await
        .map_err(|e| ApiError::from_store(e, "Failed to fetch organizations"))?;
    let orgs: Vec<Value> = teams.iter().map(|t| organization_view(t, &auth.0)).collect();
    Ok(Json(json!({ "success": true, "organizations": orgs })))
}

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
    let body = json!({ "success": true, "organization": organization_view(&team, &auth.0) });
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

pub async fn get_organization(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let team = member_team(
        &state,
        &auth.0,
        &id,
        ("organization_not_found", "Organization not found"),
        "Failed to fetch organization",
    )
    .await?;
    Ok(Json(json!({ "success": true, "organization": organization_view(&team, &auth.0) })))
}
