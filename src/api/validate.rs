//! Field validation with the legacy validator's wording (http-api.md §1.8): strings are trimmed, lengths count
//! characters, a wrong JSON type is a 400 naming the field, never a 500.

use serde_json::{Map, Value};

use crate::domain::time;
use crate::domain::vocab::Vocab;
use crate::error::ApiError;

pub type Body = Map<String, Value>;

fn too_long(field: &str, max: usize) -> ApiError {
    ApiError::validation(field, format!("{field} must be {max} characters or less"))
}

fn check_len(field: &str, s: String, max: usize) -> Result<String, ApiError> {
    if s.chars().count() > max {
        return Err(too_long(field, max));
    }
    Ok(s)
}

/// Required non-empty string.
pub fn required_str(body: &Body, key: &str, field: &str, max: usize) -> Result<String, ApiError> {
    match body.get(key) {
        Some(Value::String(s)) if !s.trim().is_empty() => check_len(field, s.trim().to_owned(), max),
        _ => Err(ApiError::validation(field, format!("{field} is required and must be a non-empty string"))),
    }
}

/// Optional string that must be non-empty when present (a title on update).
pub fn optional_nonempty_str(body: &Body, key: &str, field: &str, max: usize) -> Result<Option<String>, ApiError> {
    match body.get(key) {
        None => Ok(None),
        Some(_) => required_str(body, key, field, max).map(Some),
    }
}

/// Optional text: absent → `None`; `null` or `""` → `Some("")` (cleared).
pub fn optional_text(body: &Body, key: &str, field: &str, max: usize) -> Result<Option<String>, ApiError> {
    match body.get(key) {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(String::new())),
        Some(Value::String(s)) => check_len(field, s.trim().to_owned(), max).map(Some),
        Some(_) => Err(ApiError::validation(field, format!("{field} must be a string"))),
    }
}

/// Optional vocabulary value; aliases become canonical.
pub fn optional_enum(body: &Body, key: &str, field: &str, vocab: &Vocab) -> Result<Option<String>, ApiError> {
    match body.get(key) {
        None => Ok(None),
        Some(Value::String(s)) => match vocab.parse(s.trim()) {
            Some(v) => Ok(Some(v.to_owned())),
            None => Err(ApiError::validation(field, format!("{field} must be one of: {}", vocab.list()))),
        },
        Some(Value::Null) => Err(ApiError::validation(field, format!("{field} must be one of: {}", vocab.list()))),
        Some(_) => Err(ApiError::validation(field, format!("{field} must be a string"))),
    }
}

/// Optional date: absent → `None`; `null`/`""` → `Some(None)`; else canonical UTC (http-api.md §1.7).
pub fn optional_date(body: &Body, key: &str, field: &str) -> Result<Option<Option<String>>, ApiError> {
    let bad =
        || ApiError::validation(field, format!("{field} must be in ISO 8601 format (e.g., 2025-10-30T00:00:00Z)"));
    match body.get(key) {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(Some(None)),
        Some(Value::String(s)) => time::parse_client_date(s.trim()).map(|t| Some(Some(t))).ok_or_else(bad),
        Some(_) => Err(bad()),
    }
}

/// Optional id reference: absent → `None`; `null`/`""` → `Some(None)`.
pub fn optional_id(body: &Body, key: &str, field: &str) -> Result<Option<Option<String>>, ApiError> {
    match body.get(key) {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(Some(None)),
        Some(Value::String(s)) => Ok(Some(Some(s.trim().to_owned()))),
        Some(_) => Err(ApiError::validation(field, format!("{field} must be a string"))),
    }
}

/// Path ids: opaque strings; anything over 128 characters, or holding a NUL (which no stored id can: PostgreSQL
/// text cannot hold one), can match no record (http-api.md §1.6).
pub fn path_id_ok(id: &str) -> bool {
    !id.is_empty() && id.len() <= 128 && !id.contains('\0')
}

/// NUL characters are refused in every client string: PostgreSQL text cannot store them, and a lookup by such a
/// value failed there with a 500 while the JSON store accepted it (found by the schemathesis run).
pub fn nul_refused(field: &str) -> ApiError {
    ApiError::validation(field, format!("{field} must not contain NUL characters"))
}

/// A query parameter used as a filter (`?projectId=`, `?userId=`…).
pub fn query_text(q: &std::collections::HashMap<String, String>, key: &str) -> Result<Option<String>, ApiError> {
    match q.get(key) {
        Some(s) if s.contains('\0') => Err(nul_refused(key)),
        other => Ok(other.cloned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body(v: Value) -> Body {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn wrong_types_and_lengths_name_the_field() {
        let b = body(json!({"title": 5, "description": ["x"], "name": "é".repeat(201)}));
        assert_eq!(required_str(&b, "title", "Task title", 500).unwrap_err().field.as_deref(), Some("Task title"));
        assert_eq!(
            optional_text(&b, "description", "Description", 10).unwrap_err().message,
            "Description must be a string"
        );
        assert_eq!(
            required_str(&b, "name", "Project name", 200).unwrap_err().message,
            "Project name must be 200 characters or less"
        );
    }

    #[test]
    fn dates_and_ids_clear_with_null_or_empty() {
        let b = body(json!({"dueDate": "", "startDate": null, "assignedTo": "", "x": "2025-11-30"}));
        assert_eq!(optional_date(&b, "dueDate", "Due date").unwrap(), Some(None));
        assert_eq!(optional_date(&b, "startDate", "Start date").unwrap(), Some(None));
        assert_eq!(optional_id(&b, "assignedTo", "Assigned user").unwrap(), Some(None));
        assert_eq!(optional_date(&b, "x", "X").unwrap(), Some(Some("2025-11-30T00:00:00.000Z".into())));
    }
}
