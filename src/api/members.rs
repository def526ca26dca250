//! `/api/projects/:id/members` (http-api.md §6, member management). Success family; managers change members,
//! only owners touch owners.

use axum::extract::{Path, State};
use axum::Json;
use serde::Serialize;
use serde_json::{json, Value};

use super::extract::JsonObject;
use super::projects::{member_access, member_project};
use super::validate::Body;
use crate::app::AppState;
use crate::auth::AuthUser;
use crate::domain::{access, vocab, Member, Project, User};
use crate::error::{success_json, ApiError, ApiResult, SuccessResult};
use crate::store::DynStore;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MemberView {
    user_id: String,
    role: String,
    joined_at: String,
    name: Option<String>,
    email: Option<String>,
}

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

fn view(m: &Member, user: Option<&User>) -> MemberView {
    MemberView {
        user_id: m.user_id.clone(),
        role: m.role.clone(),
        joined_at: m.joined_at.clone(),
        name: user.map(|u| u.name.clone()),
        email: user.map(|u| u.email.clone()).or_else(|| m.user_id.contains('@').then(|| m.user_id.clone())),
    }
}

fn label(user: Option<&User>, entry: &str) -> String {
    user.map(|u| if u.name.is_empty() { u.email.clone() } else { u.name.clone() }).unwrap_or_else(|| entry.to_owned())
}

pub async fn list_members(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(id): Path<String>,
) -> SuccessResult<Json<Value>> {
    let store = state.store();
    let (project, _) = member_project(&store, &id, &auth.0, "Error retrieving members").await?;
    let mut members = Vec::with_capacity(project.members.len());
    for m in &project.members {
        let user = resolve(&store, &m.user_id).await?;
        members.push(view(m, user.as_ref()));
    }
    members.sort_by(|a, b| a.joined_at.cmp(&b.joined_at).then_with(|| a.user_id.cmp(&b.user_id)));
    Ok(success_json(json!({ "members": members })))
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

pub async fn add_member(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(id): Path<String>,
    JsonObject(body): JsonObject,
) -> SuccessResult<Json<Value>> {
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
    Ok(success_json(json!({ "message": "Member added successfully", "member": view(&member, Some(&user)) })))
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

pub async fn update_member(
    State(state): State<AppState>,
    auth: AuthUser,
    Path((id, user_param)): Path<(String, String)>,
    JsonObject(body): JsonObject,
) -> SuccessResult<Json<Value>> {
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
    Ok(success_json(json!({ "message": "Member updated successfully", "member": view(&member, user.as_ref()) })))
}

pub async fn remove_member(
    State(state): State<AppState>,
    auth: AuthUser,
    Path((id, user_param)): Path<(String, String)>,
) -> SuccessResult<Json<Value>> {
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
    Ok(success_json(json!({ "message": "Member removed successfully" })))
}
