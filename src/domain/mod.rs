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
#[derive(Clone, Debug)]
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
