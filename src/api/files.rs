//! `/api/files*` and the public `/uploads/<filename>` (http-api.md §3, §10). Message family; a record is visible
//! only to its uploader.

use std::path::{Path as FsPath, PathBuf};

use axum::body::Body as HttpBody;
use axum::extract::multipart::MultipartRejection;
use axum::extract::{Multipart, Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::Value;
use std::collections::HashMap;
use tokio::io::AsyncWriteExt;

use super::dto::{FileDto, FileUpdateRequest, FileUploadForm, FilesResponse, FilesUploadedResponse, MessageResponse};
use super::extract::JsonObject;
use super::json_response;
use super::projects::member_access;
use crate::app::AppState;
use crate::auth::AuthUser;
use crate::domain::ops::FilePatch;
use crate::domain::{new_id, time, FileRecord};
use crate::error::{ApiError, ApiResult, MessageError};

/// Allowed extensions and their MIME types (http-api.md §10); the first type is the canonical one.
const ALLOWED: &[(&str, &[&str])] = &[
    ("jpg", &["image/jpeg"]),
    ("jpeg", &["image/jpeg"]),
    ("png", &["image/png"]),
    ("gif", &["image/gif"]),
    ("webp", &["image/webp"]),
    ("svg", &["image/svg+xml"]),
    ("pdf", &["application/pdf"]),
    ("doc", &["application/msword"]),
    ("docx", &["application/vnd.openxmlformats-officedocument.wordprocessingml.document"]),
    ("txt", &["text/plain"]),
    ("zip", &["application/zip", "application/x-zip-compressed"]),
    ("mp4", &["video/mp4"]),
    ("mov", &["video/quicktime"]),
    ("avi", &["video/x-msvideo", "video/avi"]),
];

fn types_for(ext: &str) -> Option<&'static [&'static str]> {
    ALLOWED.iter().find(|(e, _)| *e == ext).map(|(_, t)| *t)
}

/// The stored MIME type for a declared type and file name, or `None` when the pair is not allowed.
pub fn allowed_type(original_name: &str, declared: &str) -> Option<(&'static str, &'static str)> {
    let ext = original_name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase())?;
    let (ext, types) = ALLOWED.iter().find(|(e, _)| *e == ext)?;
    let declared = declared.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    if declared == "application/octet-stream" {
        return Some((ext, types[0]));
    }
    types.iter().find(|t| **t == declared).map(|t| (*ext, *t))
}

/// Keeps only the last path component of a client-supplied name (no directories, no control characters).
fn clean_name(raw: &str) -> String {
    let base = raw.rsplit(['/', '\\']).next().unwrap_or("");
    let cleaned: String = base.chars().filter(|c| !c.is_control()).collect();
    let trimmed = cleaned.trim();
    trimmed.chars().take(255).collect()
}

fn too_large(state: &AppState) -> ApiError {
    let mib = state.config.upload_max_file as f64 / (1024.0 * 1024.0);
    ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", format!("File too large (max {mib} MiB)"))
}

/// Removes the bytes written by a request that did not complete, so a failed upload leaves nothing behind.
struct Written(Vec<PathBuf>);

impl Written {
    async fn discard(&mut self) {
        for p in self.0.drain(..) {
            let _ = tokio::fs::remove_file(&p).await;
        }
    }
}

#[utoipa::path(post, path = "/api/files/upload", tag = "files", security(("bearerAuth" = [])),
    request_body(content = FileUploadForm, content_type = "multipart/form-data"), responses(
    (status = 200, body = FilesUploadedResponse),
    (status = 400, description = "`validation_failed` (no file, a file part not named `files`, a malformed body) or \
     `too_many_files`", body = MessageError),
    (status = 404, description = "`project_not_found`: `projectId` names no project of the caller", body = MessageError),
    (status = 413, description = "`payload_too_large`: a file over 50 MiB", body = MessageError),
    (status = 415, description = "`unsupported_media_type` (not multipart) or `unsupported_file_type`",
     body = MessageError),
))]
pub async fn upload_files(
    State(state): State<AppState>,
    auth: AuthUser,
    multipart: Result<Multipart, MultipartRejection>,
) -> ApiResult<Response> {
    let mut multipart = multipart.map_err(|_| {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "Content-Type must be multipart/form-data",
        )
    })?;
    let mut written = Written(Vec::new());
    let result = receive(&state, &auth, &mut multipart, &mut written).await;
    match result {
        Ok(records) => {
            let stored = state.store().insert_files(records).await;
            match stored {
                Ok(files) => {
                    let files = files.iter().map(FileDto::from).collect();
                    Ok(json_response(&FilesUploadedResponse { message: "Files uploaded successfully", files }))
                }
                Err(e) => {
                    written.discard().await;
                    Err(ApiError::from_store(e, "Error uploading files"))
                }
            }
        }
        Err(e) => {
            written.discard().await;
            Err(e)
        }
    }
}

async fn receive(
    state: &AppState,
    auth: &AuthUser,
    multipart: &mut Multipart,
    written: &mut Written,
) -> ApiResult<Vec<FileRecord>> {
    let cfg = &state.config;
    let bad_body = |_| ApiError::new(StatusCode::BAD_REQUEST, "validation_failed", "Malformed multipart body");
    let mut records = Vec::new();
    let mut project_id: Option<String> = None;
    while let Some(mut field) = multipart.next_field().await.map_err(bad_body)? {
        let name = field.name().unwrap_or("").to_owned();
        if field.file_name().is_none() {
            if name == "projectId" {
                let text = field.text().await.map_err(bad_body)?;
                let text = text.trim();
                if text.len() > 128 {
                    return Err(ApiError::project_not_found());
                }
                project_id = (!text.is_empty()).then(|| text.to_owned());
            }
            continue;
        }
        if name != "files" {
            return Err(ApiError::validation("files", "Files must be sent in the 'files' field"));
        }
        if records.len() >= cfg.upload_max_files {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "too_many_files",
                format!("Too many files (max {})", cfg.upload_max_files),
            ));
        }
        let original = clean_name(field.file_name().unwrap_or(""));
        let declared = field.content_type().unwrap_or("application/octet-stream").to_owned();
        let Some((ext, mimetype)) = allowed_type(&original, &declared) else {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_file_type",
                "File type not allowed",
            ));
        };
        let stored_name = format!("{}-{}.{ext}", new_id(), chrono::Utc::now().timestamp_millis());
        let path = cfg.upload_dir.join(&stored_name);
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .await
            .map_err(|e| upload_io(e, "creating"))?;
        written.0.push(path.clone());
        let mut size: u64 = 0;
        // A stream error here is the request-wide size bound cutting the body off.
        while let Some(chunk) = field.chunk().await.map_err(|_| too_large(state))? {
            size += chunk.len() as u64;
            if size > cfg.upload_max_file {
                return Err(too_large(state));
            }
            file.write_all(&chunk).await.map_err(|e| upload_io(e, "writing"))?;
        }
        file.sync_all().await.map_err(|e| upload_io(e, "syncing"))?;
        records.push(FileRecord {
            id: new_id(),
            original_name: original,
            filename: stored_name.clone(),
            path: Some(format!("uploads/{stored_name}")),
            url: format!("/uploads/{stored_name}"),
            size: size as i64,
            mimetype: mimetype.to_owned(),
            uploaded_by: auth.0.id.clone(),
            uploaded_at: time::now(),
            tags: vec![],
            description: String::new(),
            is_public: false,
            updated_at: None,
            project_id: None,
            extra: Default::default(),
        });
    }
    if records.is_empty() {
        return Err(ApiError::validation("files", "No files uploaded"));
    }
    if let Some(pid) = project_id {
        // Same answer for an unknown project and a foreign one (http-api.md §1.10).
        member_access(&state.store(), &pid, &auth.0, "Error uploading files", false).await?;
        for r in &mut records {
            r.project_id = Some(pid.clone());
        }
    }
    Ok(records)
}

fn upload_io(e: std::io::Error, what: &str) -> ApiError {
    tracing::error!(error = %e, "upload failed while {what} a file");
    ApiError::unavailable("store_unavailable", "Upload storage unavailable, please retry")
}

/// The caller's own file record, or the 404 a stranger gets.
async fn own_file(state: &AppState, auth: &AuthUser, id: &str, msg_500: &str) -> ApiResult<FileRecord> {
    let not_found = || ApiError::new(StatusCode::NOT_FOUND, "file_not_found", "File not found");
    if !super::validate::path_id_ok(id) {
        return Err(not_found());
    }
    let f = state.store().get_file(id).await.map_err(|e| ApiError::from_store(e, msg_500))?.ok_or_else(not_found)?;
    if f.uploaded_by != auth.0.id {
        return Err(not_found());
    }
    Ok(f)
}

#[utoipa::path(get, path = "/api/files", tag = "files", security(("bearerAuth" = [])),
    params(("projectId" = Option<String>, Query, description = "Only files uploaded to this project")), responses(
    (status = 200, description = "The caller's files, in upload order", body = FilesResponse),
    (status = 400, description = "`validation_failed`: a NUL in `projectId`", body = MessageError),
))]
pub async fn list_files(
    State(state): State<AppState>,
    auth: AuthUser,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    let project_id = super::validate::query_text(&q, "projectId")?;
    let files = state
        .store()
        .list_files_for(&auth.0.id, project_id.as_deref())
        .await
        .map_err(|e| ApiError::from_store(e, "Error retrieving files"))?;
    Ok(json_response(&FilesResponse { files: files.iter().map(FileDto::from).collect() }))
}

#[utoipa::path(get, path = "/api/files/{id}", tag = "files", security(("bearerAuth" = [])),
    params(("id" = String, Path, description = "File record id")), responses(
    (status = 200, description = "The record, bare", body = FileDto),
    (status = 404, description = "`file_not_found` (also another user's file)", body = MessageError),
))]
pub async fn get_file(State(state): State<AppState>, auth: AuthUser, Path(id): Path<String>) -> ApiResult<Response> {
    let f = own_file(&state, &auth, &id, "Error retrieving file").await?;
    Ok(json_response(&FileDto::from(&f)))
}

#[utoipa::path(put, path = "/api/files/{id}", tag = "files", security(("bearerAuth" = [])),
    params(("id" = String, Path, description = "File record id")), request_body = Option<FileUpdateRequest>, responses(
    (status = 200, description = "Updated (partial); the record, bare", body = FileDto),
    (status = 400, description = "`validation_failed`", body = MessageError),
    (status = 404, description = "`file_not_found`", body = MessageError),
))]
pub async fn update_file(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(id): Path<String>,
    JsonObject(body): JsonObject,
) -> ApiResult<Response> {
    own_file(&state, &auth, &id, "Error updating file").await?;
    let mut patch = FilePatch::default();
    match body.get("description") {
        None => {}
        Some(Value::Null) => patch.description = Some(String::new()),
        Some(Value::String(s)) if s.trim().chars().count() <= 2000 => patch.description = Some(s.trim().to_owned()),
        Some(Value::String(_)) => {
            return Err(ApiError::validation("Description", "Description must be 2000 characters or less"))
        }
        Some(_) => return Err(ApiError::validation("Description", "Description must be a string")),
    }
    match body.get("tags") {
        None => {}
        Some(Value::Array(items)) if items.len() <= 50 => {
            let mut tags = Vec::with_capacity(items.len());
            for t in items {
                match t.as_str().map(str::trim) {
                    Some(s) if (1..=50).contains(&s.chars().count()) => tags.push(s.to_owned()),
                    _ => return Err(ApiError::validation("Tags", "Each tag must be a string of 1-50 characters")),
                }
            }
            patch.tags = Some(tags);
        }
        Some(_) => return Err(ApiError::validation("Tags", "Tags must be an array of at most 50 strings")),
    }
    match body.get("isPublic") {
        None => {}
        Some(Value::Bool(b)) => patch.is_public = Some(*b),
        Some(_) => return Err(ApiError::validation("Is public", "Is public must be a boolean")),
    }
    let f = state.store().update_file(&id, patch).await.map_err(|e| ApiError::from_store(e, "Error updating file"))?;
    Ok(json_response(&FileDto::from(&f)))
}

#[utoipa::path(delete, path = "/api/files/{id}", tag = "files", security(("bearerAuth" = [])),
    params(("id" = String, Path, description = "File record id")), responses(
    (status = 200, description = "The record and its bytes are removed", body = MessageResponse),
    (status = 404, description = "`file_not_found`", body = MessageError),
))]
pub async fn delete_file(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(id): Path<String>,
) -> ApiResult<Json<MessageResponse>> {
    own_file(&state, &auth, &id, "Error deleting file").await?;
    let f = state.store().delete_file(&id).await.map_err(|e| ApiError::from_store(e, "Error deleting file"))?;
    if let Some(path) = stored_path(&state.config.upload_dir, &f.filename) {
        if let Err(e) = tokio::fs::remove_file(&path).await {
            tracing::warn!(error = %e, file = %f.filename, "file record deleted but its bytes could not be removed");
        }
    }
    Ok(Json(MessageResponse { message: "File deleted successfully" }))
}

/// `<upload dir>/<filename>` for a name that is a plain file name (no separators, no `..`).
fn stored_path(dir: &FsPath, filename: &str) -> Option<PathBuf> {
    let ok = !filename.is_empty()
        && filename.len() <= 255
        && !filename.starts_with('.')
        && filename.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    ok.then(|| dir.join(filename))
}

/// Public download: unguessable names, MIME type from the extension allow-list, `nosniff`, and a sandboxing CSP
/// for SVG so an uploaded image cannot run script on our origin.
#[utoipa::path(get, path = "/uploads/{filename}", tag = "files",
    params(("filename" = String, Path, description = "The stored name (`filename` of a file record)")), responses(
    (status = 200, description = "The bytes, typed from the extension allow-list (§10), `nosniff`; SVG with a \
     sandboxing CSP", content_type = "*/*", body = String),
    (status = 404, description = "No such file", content_type = "text/plain", body = String),
))]
pub async fn serve_upload(State(state): State<AppState>, Path(filename): Path<String>) -> Response {
    let not_found = || (StatusCode::NOT_FOUND, "Not Found").into_response();
    let Some(path) = stored_path(&state.config.upload_dir, &filename) else { return not_found() };
    let Ok(file) = tokio::fs::File::open(&path).await else { return not_found() };
    let ext = filename.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase()).unwrap_or_default();
    let mime = types_for(&ext).map(|t| t[0]).unwrap_or("application/octet-stream");
    let len = file.metadata().await.map(|m| m.len()).ok();
    let body = HttpBody::from_stream(tokio_util::io::ReaderStream::new(file));
    let mut resp = (StatusCode::OK, body).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(mime));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    if let Some(len) = len {
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    }
    if ext == "svg" {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'; sandbox"),
        );
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_rules() {
        assert_eq!(allowed_type("a.PNG", "image/png"), Some(("png", "image/png")));
        assert_eq!(allowed_type("a.png", "application/octet-stream"), Some(("png", "image/png")));
        assert_eq!(allowed_type("a.png", "image/jpeg"), None);
        assert_eq!(allowed_type("a.exe", "application/octet-stream"), None);
        assert_eq!(allowed_type("noext", "image/png"), None);
        assert_eq!(allowed_type("a.avi", "video/avi"), Some(("avi", "video/avi")));
    }

    #[test]
    fn names_and_paths_are_sanitised() {
        assert_eq!(clean_name("../../etc/passwd.txt"), "passwd.txt");
        assert_eq!(clean_name("C:\\Users\\x\\photo.jpg"), "photo.jpg");
        assert!(stored_path(FsPath::new("/u"), "../x").is_none());
        assert!(stored_path(FsPath::new("/u"), ".hidden").is_none());
        assert!(stored_path(FsPath::new("/u"), "a/b").is_none());
        assert!(stored_path(FsPath::new("/u"), "abc-123.png").is_some());
    }
}
