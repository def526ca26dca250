//! `fluxstudio user …` (cli.md §8). The same `execute` runs in the CLI process (no server holds the data dir)
//! and inside the server behind the control socket (one does), so both paths apply identical rules.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::auth::password::{check_policy, Passwords};
use crate::domain::{new_user, User};
use crate::store::{DynStore, StoreError, UserPatch};

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum UserRequest {
    Create { email: String, name: String, user_type: String, password: Option<String> },
    GrantAdmin { email: String },
    RevokeAdmin { email: String, user_type: String },
    SetPassword { email: String, password: String },
    Disable { email: String },
    Enable { email: String },
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct UserReply {
    pub exit_code: i32,
    pub message: String,
}

fn reply(exit_code: i32, message: impl Into<String>) -> UserReply {
    UserReply { exit_code, message: message.into() }
}

fn store_failure(e: StoreError) -> UserReply {
    match e {
        StoreError::Unavailable(m) => reply(3, format!("store unavailable: {m}")),
        StoreError::Conflict { message, .. } => reply(1, message),
        other => reply(1, other.to_string()),
    }
}

pub async fn execute(store: &DynStore, passwords: &Arc<Passwords>, req: UserRequest) -> UserReply {
    match run(store, passwords, req).await {
        Ok(r) | Err(r) => r,
    }
}

async fn find(store: &DynStore, email: &str) -> Result<User, UserReply> {
    store
        .get_user_by_email(email.trim())
        .await
        .map_err(store_failure)?
        .ok_or_else(|| reply(1, format!("no user with e-mail {}", email.trim())))
}

async fn run(store: &DynStore, passwords: &Arc<Passwords>, req: UserRequest) -> Result<UserReply, UserReply> {
    let backend = store.backend();
    match req {
        UserRequest::Create { email, name, user_type, password } => {
            let email = email.trim().to_owned();
            if !crate::api::auth::valid_email(&email) {
                return Err(reply(2, "invalid e-mail address"));
            }
            if name.trim().is_empty() || name.trim().chars().count() > 255 {
                return Err(reply(2, "name must be 1-255 characters"));
            }
            if !matches!(user_type.as_str(), "client" | "designer" | "admin") {
                return Err(reply(2, "type must be client, designer or admin"));
            }
            let hash = match password {
                Some(p) => {
                    check_policy(&p).map_err(|m| reply(2, m))?;
                    Some(passwords.hash(&p).await.map_err(|e| reply(1, e))?)
                }
                None => None,
            };
            let user = new_user(&email, name.trim(), &user_type, hash);
            let user = store.insert_user(user).await.map_err(|e| match e {
                StoreError::Conflict { .. } => reply(1, format!("an account with e-mail {email} already exists")),
                other => store_failure(other),
            })?;
            Ok(reply(0, format!("created user {} {} ({}) in {backend} store", user.id, user.email, user.user_type)))
        }
        UserRequest::GrantAdmin { email } => set_type(store, &email, "admin").await,
        UserRequest::RevokeAdmin { email, user_type } => {
            if !matches!(user_type.as_str(), "client" | "designer") {
                return Err(reply(2, "type must be client or designer"));
            }
            set_type(store, &email, &user_type).await
        }
        UserRequest::SetPassword { email, password } => {
            check_policy(&password).map_err(|m| reply(2, m))?;
            let user = find(store, &email).await?;
            let hash = passwords.hash(&password).await.map_err(|e| reply(1, e))?;
            let patch = UserPatch { password: Some(Some(hash)), touch_updated_at: true, ..Default::default() };
            store.update_user(&user.id, patch).await.map_err(store_failure)?;
            Ok(reply(0, format!("{} ({}): password set", user.email, user.id)))
        }
        UserRequest::Disable { email } => set_active(store, &email, false).await,
        UserRequest::Enable { email } => set_active(store, &email, true).await,
    }
}

async fn set_type(store: &DynStore, email: &str, new_type: &str) -> Result<UserReply, UserReply> {
    let user = find(store, email).await?;
    if user.user_type == new_type {
        return Ok(reply(0, format!("{} ({}): already {new_type}", user.email, user.id)));
    }
    let patch = UserPatch { user_type: Some(new_type.to_owned()), touch_updated_at: true, ..Default::default() };
    store.update_user(&user.id, patch).await.map_err(store_failure)?;
    Ok(reply(0, format!("{} ({}): {} -> {new_type}", user.email, user.id, user.user_type)))
}

async fn set_active(store: &DynStore, email: &str, active: bool) -> Result<UserReply, UserReply> {
    let user = find(store, email).await?;
    let word = if active { "enabled" } else { "disabled" };
    if user.is_active == active {
        return Ok(reply(0, format!("{} ({}): already {word}", user.email, user.id)));
    }
    let patch = UserPatch { is_active: Some(active), touch_updated_at: true, ..Default::default() };
    store.update_user(&user.id, patch).await.map_err(store_failure)?;
    let detail = if active { "" } else { " (login 403 account_disabled, tokens 401)" };
    Ok(reply(0, format!("{} ({}): {word}{detail}", user.email, user.id)))
}
