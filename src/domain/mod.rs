//! The domain: records, vocabularies, membership rules and the pure functions that turn a request into a change.
//! Nothing here knows about HTTP or about a particular store.

pub mod access;
pub mod events;
pub mod model;
pub mod ops;
pub mod time;
pub mod vocab;

pub use model::*;
pub use time::Timestamp;

/// The authenticated caller as activities and ownership fields need it.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Actor {
    pub id: String,
    pub name: String,
    pub email: String,
    pub avatar: Option<String>,
}

impl Actor {
    pub fn from_user(u: &User) -> Actor {
        Actor { id: u.id.clone(), name: u.name.clone(), email: u.email.clone(), avatar: u.avatar.clone() }
    }
}

pub fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// A new account as signup, Google sign-in and `fluxstudio user create` make it: a fresh UUID, created now,
/// active, no avatar.
pub fn new_user(email: &str, name: &str, user_type: &str, password: Option<String>) -> User {
    User {
        id: new_id(),
        email: email.to_owned(),
        name: name.to_owned(),
        user_type: user_type.to_owned(),
        password,
        google_id: None,
        oauth_provider: None,
        avatar: None,
        created_at: time::now(),
        updated_at: None,
        is_active: true,
        extra: Default::default(),
    }
}
