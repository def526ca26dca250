//! Canonical vocabularies and the aliases accepted on input (http-api.md §1.9, data-model.md §8).

pub struct Vocab {
    pub values: &'static [&'static str],
    pub aliases: &'static [(&'static str, &'static str)],
}

impl Vocab {
    /// Input rule: a canonical value or an alias, matched exactly; returns the canonical spelling.
    pub fn parse(&self, s: &str) -> Option<&'static str> {
        if let Some(v) = self.values.iter().find(|v| **v == s) {
            return Some(v);
        }
        self.aliases.iter().find(|(a, _)| *a == s).map(|(_, c)| *c)
    }

    /// Reader rule: legacy data may hold anything; aliases become canonical, unknown values stay as they are.
    pub fn canonical(&self, s: &str) -> String {
        self.parse(s).map(str::to_owned).unwrap_or_else(|| s.to_owned())
    }

    pub fn list(&self) -> String {
        self.values.join(", ")
    }
}

pub const TASK_STATUS: Vocab = Vocab {
    values: &["todo", "in_progress", "review", "blocked", "completed"],
    aliases: &[("in-progress", "in_progress")],
};
pub const TASK_PRIORITY: Vocab = Vocab { values: &["low", "medium", "high", "critical"], aliases: &[] };
pub const PROJECT_STATUS: Vocab = Vocab {
    values: &["planning", "in_progress", "on_hold", "completed", "cancelled"],
    aliases: &[("in-progress", "in_progress"), ("active", "in_progress"), ("on-hold", "on_hold")],
};
pub const PROJECT_PRIORITY: Vocab = Vocab { values: &["low", "medium", "high", "urgent"], aliases: &[] };
pub const MILESTONE_STATUS: Vocab =
    Vocab { values: &["pending", "in_progress", "completed", "cancelled"], aliases: &[("in-progress", "in_progress")] };
pub const MEMBER_ROLE: Vocab = Vocab { values: &["owner", "admin", "member", "viewer"], aliases: &[] };
pub const USER_TYPE: Vocab = Vocab { values: &["client", "designer", "admin"], aliases: &[] };

/// What a stored project member role may be: the canonical four plus the legacy spellings kept verbatim
/// (data-model.md §8; the PostgreSQL CHECK accepts the same seven).
pub const PROJECT_MEMBER_ROLE_VALUES: &[&str] =
    &["owner", "admin", "member", "viewer", "manager", "contributor", "reviewer"];
/// Team member roles (organization creators are `admin`).
pub const TEAM_ROLE_VALUES: &[&str] = &["owner", "admin", "member"];
