//! `/api/projects/:id/members` (http-api.md §6, member management). Success family; managers change members,
//! only owners touch owners.

use axum::extract::{Path, State};
use axum::Json;
use serde_json::Value;

use super::dto::{
    MemberAddRequest, MemberDetail, MemberResponse, MemberUpdateRequest, MembersResponse, SuccessMessageResponse,
};
use super::extract::JsonObject;
use super::projects::{member_access, member_project};
use super::validate::Body;
use crate::app::AppState;
use crate::auth::AuthUser;
use crate::domain::{access, vocab, Member, Project, User};
use crate::error::{ApiError, ApiResult, SuccessError, SuccessResult};
use crate::store::DynStore;

/// The user a member entry refers to: an id, or (legacy data) an e-mail resolved like a login lookup.
async fn resolve(store: &DynStore, entry: &str) -> ApiResult<Option<User>> {
    let err = |e| ApiError::from_store(e, "Error retrieving members");
    if let Some(u) = store.get_user(entry).await.map_err(err)? {
        return Ok(Some(u));
    }
    if entry.contains('@') {
        return store.get_user_by_email(entry).await.map_err(err);
    }
    Ok(None)
}

fn label(user: Option<&User>, entry: &str) -> String {
    user.map(|u| if u.name.is_empty() { u.email.clone() } else { u.name.clone() }).unwrap_or_else(|| entry.to_owned())
}

#[utoipa::path(get, path = "/api/projects/{id}/members", tag = "members", security(("bearerAuth" = [])),
    params(("id" = String, Path, description = "Project id")), responses(
    (status = 200, description = "By `joinedAt`, ties by user id", body = MembersResponse),
    (status = 404, description = "`project_not_found`", body = SuccessError),
    (status = 500, body = SuccessError), (status = 503, body = SuccessError),
))]
pub async fn list_members(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(id): Path<String>,
) -> SuccessResult<Json<MembersResponse>> {
    let store = state.store();
    let (project, _) = member_project(&store, &id, &auth.0, "Error retrieving members").await?;
    let mut members = Vec::with_capacity(project.members.len());
    for m in &project.members {
        let user = resolve(&store, &m.user_id).await?;
        members.push(MemberDetail::new(m, user.as_ref()));
    }
    members.sort_by(|a, b| a.joined_at.cmp(&b.joined_at).then_with(|| a.user_id.cmp(&b.user_id)));
    Ok(Json(MembersResponse { success: true, members }))
}

fn read_role(body: &Body, required: bool) -> ApiResult<Option<String>> {
    let invalid = || ApiError::validation("Role", format!("Role must be one of: {}", vocab::MEMBER_ROLE.list()));
    match body.get("role") {
        None if required => Err(invalid()),
        None => Ok(None),
        Some(Value::String(s)) => vocab::MEMBER_ROLE.parse(s.trim()).map(|r| Some(r.to_owned())).ok_or_else(invalid),
        Some(_) => Err(invalid()),
    }
}

fn manager_check(role: access::Role) -> ApiResult<()> {
    if role.is_manager() {
        Ok(())
    } else {
        Err(ApiError::permission_denied("Permission denied"))
    }
}

#[utoipa::path(post, path = "/api/projects/{id}/members", tag = "members", security(("bearerAuth" = [])),
    params(("id" = String, Path, description = "Project id")), request_body = MemberAddRequest, responses(
    (status = 200, body = MemberResponse),
    (status = 400, description = "`validation_failed`", body = SuccessError),
    (status = 403, description = "`permission_denied`: managers only; only owners grant `owner`", body = SuccessError),
    (status = 404, description = "`project_not_found` or `user_not_found`", body = SuccessError),
    (status = 409, description = "`already_member`", body = SuccessError),
    (status = 500, body = SuccessError), (status = 503, body = SuccessError),
))]
pub async fn add_member(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(id): Path<String>,
    JsonObject(body): JsonObject,
) -> SuccessResult<Json<MemberResponse>> {
    let store = state.store();
    let (_, caller_role) = member_access(&store, &id, &auth.0, "Error adding member", false).await?;
    manager_check(caller_role)?;
    let str_field = |k: &str| body.get(k).and_then(Value::as_str).map(str::trim).filter(|s| !s.is_empty());
    let target = match (str_field("userId"), str_field("email")) {
        (Some(uid), None) => store.get_user(uid).await,
        (None, Some(email)) => store.get_user_by_email(email).await,
        _ => return Err(ApiError::validation("User", "User ID or email is required").into()),
    };
    let role = read_role(&body, false)?.unwrap_or_else(|| "member".into());
    if role == "owner" && !caller_role.is_owner() {
        return Err(ApiError::permission_denied("Only project owners can change owners").into());
    }
    let user = target
        .map_err(|e| ApiError::from_store(e, "Error adding member"))?
        .ok_or_else(|| ApiError::new(axum::http::StatusCode::NOT_FOUND, "user_not_found", "User not found"))?;
    let (member, _activity) = store
        .add_member(&id, &user, &role, &auth.actor())
        .await
        .map_err(|e| ApiError::from_store(e, "Error adding member"))?;
    Ok(Json(MemberResponse {
        success: true,
        message: "Member added successfully",
        member: MemberDetail::new(&member, Some(&user)),
    }))
}

/// Finds the entry that `:userId` names: the entry's stored `userId`, or the id of the user it resolves to.
async fn find_entry(store: &DynStore, project: &Project, param: &str) -> ApiResult<(Member, Option<User>)> {
    if let Some(m) = project.members.iter().find(|m| m.user_id == param) {
        return Ok((m.clone(), resolve(store, &m.user_id).await?));
    }
    for m in &project.members {
        if let Some(u) = resolve(store, &m.user_id).await? {
            if u.id == param {
                return Ok((m.clone(), Some(u)));
            }
        }
    }
    Err(ApiError::new(axum::http::StatusCode::NOT_FOUND, "member_not_found", "Member not found"))
}

#[utoipa::path(patch, path = "/api/projects/{id}/members/{user_id}", tag = "members", security(("bearerAuth" = [])),
    params(
        ("id" = String, Path, description = "Project id"),
        ("user_id" = String, Path, description = "The member entry's `userId`, or the id of the user it resolves to"),
    ),
    request_body = MemberUpdateRequest, responses(
    (status = 200, body = MemberResponse),
    (status = 400, description = "`validation_failed`", body = SuccessError),
    (status = 403, description = "`permission_denied`", body = SuccessError),
    (status = 404, description = "`project_not_found` or `member_not_found`", body = SuccessError),
    (status = 409, description = "`last_owner`", body = SuccessError),
    (status = 500, body = SuccessError), (status = 503, body = SuccessError),
))]
pub async fn update_member(
    State(state): State<AppState>,
    auth: AuthUser,
    Path((id, user_param)): Path<(String, String)>,
    JsonObject(body): JsonObject,
) -> SuccessResult<Json<MemberResponse>> {
    let store = state.store();
    let (project, caller_role) = member_project(&store, &id, &auth.0, "Error updating member").await?;
    manager_check(caller_role)?;
    let role = read_role(&body, true)?.unwrap_or_default();
    let (entry, user) = find_entry(&store, &project, &user_param).await?;
    let (member, _activity) = store
        .update_member_role(
            &id,
            &entry.user_id,
            &label(user.as_ref(), &entry.user_id),
            &role,
            caller_role.is_owner(),
            &auth.actor(),
        )
        .await
        .map_err(|e| ApiError::from_store(e, "Error updating member"))?;
    Ok(Json(MemberResponse {
        success: true,
        message: "Member updated successfully",
        member: MemberDetail::new(&member, user.as_ref()),
    }))
}

#[utoipa::path(delete, path = "/api/projects/{id}/members/{user_id}", tag = "members", security(("bearerAuth" = [])),
    params(
        ("id" = String, Path, description = "Project id"),
        ("user_id" = String, Path, description = "The member entry's `userId`, or the id of the user it resolves to"),
    ),
    responses(
    (status = 200, body = SuccessMessageResponse),
    (status = 403, description = "`permission_denied`", body = SuccessError),
    (status = 404, description = "`project_not_found` or `member_not_found`", body = SuccessError),
    (status = 409, description = "`last_owner`", body = SuccessError),
    (status = 500, body = SuccessError), (status = 503, body = SuccessError),
))]
pub async fn remove_member(
    State(state): State<AppState>,
    auth: AuthUser,
    Path((id, user_param)): Path<(String, String)>,
) -> SuccessResult<Json<SuccessMessageResponse>> {
    let store = state.store();
    let (project, caller_role) = member_project(&store, &id, &auth.0, "Error removing member").await?;
    manager_check(caller_role)?;
    let (entry, user) = find_entry(&store, &project, &user_param).await?;
    store
        .remove_member(
            &id,
            &entry.user_id,
            &label(user.as_ref(), &entry.user_id),
            caller_role.is_owner(),
            &auth.actor(),
        )
        .await
        .map_err(|e| ApiError::from_store(e, "Error removing member"))?;
    Ok(Json(SuccessMessageResponse { success: true, message: "Member removed successfully" }))
}
