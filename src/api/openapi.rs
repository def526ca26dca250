//! The OpenAPI 3.1 document (`GET /api/openapi.json`) and the Swagger UI that renders it (`GET /api/docs`),
//! http-api.md §14. The document is generated from the `#[utoipa::path]` annotation beside each handler and the
//! `ToSchema` wire types in `dto.rs` and `error.rs`; what every route shares (401, 413, 415, 429, 500, 503 and the
//! bearer scheme) is added once here by [`SharedResponses`] instead of being repeated on thirty handlers.

use std::sync::{Arc, LazyLock};

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::Operation;
use utoipa::openapi::schema::{Object, SchemaType, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi as Document, Ref, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi};
use utoipa_swagger_ui::Config;

use super::{admin, auth, files, health, members, milestones, ops, projects, tasks, teams};
use crate::error::{EitherError, ErrorCode, MessageError, SuccessError};

pub const OPENAPI_PATH: &str = "/api/openapi.json";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Flux Studio API",
        description = "REST API of the Flux Studio server (contract: http-api.md). Errors come in two families \
            (`MessageError`, `SuccessError`), both with a stable `code`; which one a route uses is part of its \
            contract. Authenticated routes take `Authorization: Bearer <token>` from sign-up, login or Google sign-in.",
        license(name = "MIT"),
    ),
    paths(
        health::health,
        health::api_health,
        ops::ready,
        ops::metrics_on_main_port,
        health::csrf_token,
        openapi_json,
        docs_page,
        docs_asset,
        auth::signup,
        auth::login,
        auth::me,
        auth::logout,
        auth::google,
        projects::list_projects,
        projects::create_project,
        projects::get_project,
        projects::update_project,
        projects::delete_project,
        projects::get_channel,
        projects::link_channel,
        tasks::list_tasks,
        tasks::create_task,
        tasks::get_task,
        tasks::update_task,
        tasks::delete_task,
        tasks::list_activities,
        members::list_members,
        members::add_member,
        members::update_member,
        members::remove_member,
        milestones::create_milestone,
        milestones::update_milestone,
        files::upload_files,
        files::list_files,
        files::get_file,
        files::update_file,
        files::delete_file,
        files::serve_upload,
        teams::list_teams,
        teams::create_team,
        teams::get_team,
        teams::list_organizations,
        teams::create_organization,
        teams::get_organization,
        admin::get_store,
        admin::put_store,
    ),
    components(schemas(ErrorCode, MessageError, SuccessError, EitherError)),
    modifiers(&SharedResponses),
    tags(
        (name = "ops", description = "Liveness, readiness, metrics, this document"),
        (name = "auth", description = "Sign-up and sign-in; message family"),
        (name = "projects", description = "Projects and their channel link"),
        (name = "members", description = "Project members; success family"),
        (name = "tasks", description = "Tasks and the activity feed; success family"),
        (name = "milestones", description = "Milestones (read embedded in the project); success family"),
        (name = "files", description = "Uploads, visible to their uploader only; message family"),
        (name = "teams", description = "Teams and organizations (one collection); message family"),
        (name = "admin", description = "Store mode status and live switch (stored userType admin); message family"),
    )
)]
pub struct ApiDoc;

/// The document, built once: it depends only on the code.
pub fn document() -> &'static Document {
    static DOC: LazyLock<Document> = LazyLock::new(ApiDoc::openapi);
    &DOC
}

/// The routes under the global limiter (configuration.md §7); the others never answer 429.
fn rate_limited(path: &str) -> bool {
    path.starts_with("/api/") && path != "/api/health"
}

fn error_ref(name: &str) -> RefOr<utoipa::openapi::schema::Schema> {
    RefOr::Ref(Ref::from_schema_name(name))
}

/// Adds `status` answered in the message family. When the route already answers that status in the success family
/// (its handler's own errors), the body becomes `EitherError`: errors raised outside the handler (authentication,
/// body parsing, rate limits, timeouts, caught panics) always use the message family (http-api.md §1.3 rule 1).
fn add_message_error(op: &mut Operation, status: &str, description: &str) {
    let responses = &mut op.responses.responses;
    match responses.get_mut(status) {
        None => {
            let content = ContentBuilder::new().schema(Some(error_ref("MessageError"))).build();
            let resp = ResponseBuilder::new().description(description).content("application/json", content).build();
            responses.insert(status.to_owned(), RefOr::T(resp));
        }
        Some(RefOr::T(resp)) => {
            let Some(content) = resp.content.get_mut("application/json") else { return };
            let is_success_family =
                matches!(&content.schema, Some(RefOr::Ref(r)) if r.ref_location.ends_with("/SuccessError"));
            if is_success_family {
                content.schema = Some(error_ref("EitherError"));
            }
            if !resp.description.contains(description) {
                resp.description = if resp.description.is_empty() {
                    description.to_owned()
                } else {
                    format!("{}; {description}", resp.description)
                };
            }
        }
        Some(RefOr::Ref(_)) => {}
    }
}

/// A partial update's body may be absent (it counts as `{}`), which utoipa can only express as
/// `request_body = Option<T>`; that also makes the schema `oneOf [null, T]`, but a `null` body is 400
/// `invalid_json`. Keeps `required: false` and the plain `T`.
fn optional_body_is_not_null(body: &mut utoipa::openapi::request_body::RequestBody) {
    use utoipa::openapi::schema::Schema;
    for content in body.content.values_mut() {
        let Some(RefOr::T(Schema::OneOf(one_of))) = &content.schema else { continue };
        let non_null: Vec<_> = one_of
            .items
            .iter()
            .filter(
                |item| !matches!(item, RefOr::T(Schema::Object(o)) if o.schema_type == SchemaType::Type(Type::Null)),
            )
            .cloned()
            .collect();
        if let [only] = non_null.as_slice() {
            content.schema = Some(only.clone());
        }
    }
}

fn add_header(op: &mut Operation, status: &str, name: &str, kind: Type, description: &str) {
    if let Some(RefOr::T(resp)) = op.responses.responses.get_mut(status) {
        let header = HeaderBuilder::new().schema(Object::with_type(kind)).description(Some(description)).build();
        resp.headers.entry(name.to_owned()).or_insert(header);
    }
}

/// The responses every route shares, and the bearer scheme.
pub struct SharedResponses;

impl Modify for SharedResponses {
    fn modify(&self, openapi: &mut Document) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearerAuth",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build()),
        );
        for (path, item) in openapi.paths.paths.iter_mut() {
            let ops = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
                &mut item.head,
                &mut item.options,
                &mut item.trace,
            ];
            for op in ops.into_iter().flatten() {
                if op.security.as_ref().is_some_and(|s| !s.is_empty()) {
                    add_message_error(op, "401", "`auth_required`, `invalid_token` or `token_expired`");
                }
                if let Some(body) = op.request_body.as_mut() {
                    optional_body_is_not_null(body);
                    add_message_error(op, "400", "`invalid_json`: the body is not a JSON object");
                    add_message_error(op, "413", "`payload_too_large`");
                    add_message_error(op, "415", "`unsupported_media_type`");
                }
                if rate_limited(path) {
                    add_message_error(op, "429", "`rate_limited`");
                }
                add_message_error(op, "500", "`internal`: a server fault");
                add_message_error(op, "503", "`store_unavailable` or `timeout`");
                add_header(
                    op,
                    "401",
                    "WWW-Authenticate",
                    Type::String,
                    "`Bearer`, or `Bearer error=\"invalid_token\"`",
                );
                add_header(op, "429", "Retry-After", Type::Integer, "Seconds until a request is admitted again (≥ 1)");
                add_header(op, "503", "Retry-After", Type::Integer, "Seconds to wait before retrying (5)");
            }
        }
    }
}

/// The Swagger UI configuration: the one document, no third-party validator badge (it would load an image from
/// another origin, which the page's CSP refuses anyway).
static SWAGGER_CONFIG: LazyLock<Arc<Config<'static>>> =
    LazyLock::new(|| Arc::new(Config::new([OPENAPI_PATH]).validator_url("none").persist_authorization(true)));

/// The docs page's CSP: the API's own policy (`middleware::SECURITY_HEADERS`) without `upgrade-insecure-requests`,
/// which would make the browser fetch the page's own scripts over HTTPS when the server is reached over plain
/// HTTP, and without `https:` for styles and fonts (the UI's assets are all served from here). Swagger UI needs no
/// inline script (its initializer is a file) and no `eval`; it sets inline styles and uses `data:` images.
const DOCS_CSP: &str = "default-src 'self';base-uri 'self';font-src 'self' data:;form-action 'self';\
    frame-ancestors 'self';img-src 'self' data:;object-src 'none';script-src 'self';script-src-attr 'none';\
    style-src 'self' 'unsafe-inline';connect-src 'self'";

#[utoipa::path(get, path = "/api/openapi.json", tag = "ops", responses(
    (status = 200, description = "This document (OpenAPI 3.1)", content_type = "application/json", body = Object),
))]
pub async fn openapi_json() -> Response {
    super::json_response(document())
}

#[utoipa::path(get, path = "/api/docs", tag = "ops", responses(
    (status = 200, description = "Swagger UI rendering `/api/openapi.json`", content_type = "text/html", body = String),
))]
pub async fn docs_page() -> Response {
    serve_docs_file("index.html", true)
}

#[utoipa::path(get, path = "/api/docs/{file}", tag = "ops",
    params(("file" = String, Path, description = "A Swagger UI asset (`swagger-ui.css`, `swagger-ui-bundle.js`, …)")),
    responses(
        (status = 200, description = "The asset (HTML, CSS, JS, PNG)", content_type = "*/*", body = String),
        (status = 404, description = "No such asset", content_type = "text/plain", body = String),
    )
)]
pub async fn docs_asset(Path(file): Path<String>) -> Response {
    serve_docs_file(&file, false)
}

/// Serves a file of the Swagger UI distribution that `utoipa-swagger-ui` embeds in the binary at build time
/// (`vendored`: nothing is downloaded at build or run time). The page is served at `/api/docs` itself rather than
/// behind a redirect to `/api/docs/`, so it gets a `<base>` under which its relative asset links resolve.
fn serve_docs_file(file: &str, page: bool) -> Response {
    let not_found = || (StatusCode::NOT_FOUND, "Not Found").into_response();
    let swagger_file = match utoipa_swagger_ui::serve(file, SWAGGER_CONFIG.clone()) {
        Ok(Some(f)) => f,
        Ok(None) => return not_found(),
        Err(e) => {
            tracing::error!(error = %e, "swagger ui asset could not be prepared");
            return crate::error::ApiError::internal("Internal server error").into_response();
        }
    };
    let bytes = if page {
        String::from_utf8_lossy(&swagger_file.bytes)
            .replacen("<head>", "<head>\n    <base href=\"/api/docs/\">", 1)
            .into_bytes()
    } else {
        swagger_file.bytes.into_owned()
    };
    let mut resp = (StatusCode::OK, bytes).into_response();
    let headers = resp.headers_mut();
    if let Ok(ct) = HeaderValue::from_str(&swagger_file.content_type) {
        headers.insert(header::CONTENT_TYPE, ct);
    }
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(DOCS_CSP));
    resp
}
