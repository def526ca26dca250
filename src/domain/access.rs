//! Project membership and role rights (http-api.md §1.10), identical in every store mode.

use super::model::{Member, Project, User};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Viewer,
    Member,
    Admin,
    Owner,
}

impl Role {
    /// Legacy spellings (`manager`, `contributor`, `reviewer`) carry the rights of `member` (data-model.md §8).
    pub fn from_stored(role: &str) -> Role {
        match role {
            "owner" => Role::Owner,
            "admin" => Role::Admin,
            "viewer" => Role::Viewer,
            _ => Role::Member,
        }
    }
    pub fn can_write(self) -> bool {
        self >= Role::Member
    }
    pub fn is_manager(self) -> bool {
        self >= Role::Admin
    }
    pub fn is_owner(self) -> bool {
        self == Role::Owner
    }
}

/// Does a member entry's `userId` (an id, or an e-mail in legacy data) refer to this user?
pub fn refers_to(member_ref: &str, user: &User) -> bool {
    member_ref == user.id || (member_ref.contains('@') && member_ref.to_lowercase() == user.email.to_lowercase())
}

/// The caller's effective role, or `None` for a non-member. The creator always counts as an owner; when several
/// entries match (an id entry and a legacy e-mail entry) the strongest wins.
pub fn role_of(project: &Project, user: &User) -> Option<Role> {
    role_from(&project.created_by, &project.members, user)
}

/// [`role_of`] from the two parts of a project it depends on.
pub fn role_from(created_by: &str, members: &[Member], user: &User) -> Option<Role> {
    if created_by == user.id {
        return Some(Role::Owner);
    }
    members.iter().filter(|m| refers_to(&m.user_id, user)).map(|m| Role::from_stored(&m.role)).max()
}

pub fn is_member(project: &Project, user: &User) -> bool {
    role_of(project, user).is_some()
}

/// Team and organization membership: a member entry refers to the user (teams have no implicit creator rights).
pub fn team_role<'a>(team: &'a super::model::Team, user: &User) -> Option<&'a str> {
    team.members.iter().find(|m| refers_to(&m.user_id, user)).map(|m| m.role.as_str())
}
