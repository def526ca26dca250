//! The OpenAPI document (`/api/openapi.json`) and the Swagger UI (`/api/docs`), http-api.md §14: the document is
//! snapshotted, covers the whole route table, and its error-code enum is the closed list of §1.4.

use std::collections::BTreeSet;
use std::path::Path;

use fluxstudio::error::ERROR_CODES;
use regex::Regex;
use reqwest::Method;
use serde_json::Value;

use crate::support::TestApp;

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

async fn document(app: &TestApp) -> Value {
    let r = app.call(Method::GET, "/api/openapi.json", None, None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.body
}

fn source(rel: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)).unwrap()
}

/// `(method, path)` of every route registered in `api::router`, read from the route table's source: axum cannot
/// list a router's routes, and this is the one place where they are declared. Wildcards (`{*file}`) are written
/// as plain parameters (`{file}`), as OpenAPI has them.
fn route_table() -> BTreeSet<(String, String)> {
    let src = source("src/api/mod.rs");
    let method = Regex::new(r"(?:^|[\s.(])(get|post|put|patch|delete)\(").unwrap();
    let path = Regex::new(r#"^\s*"([^"]+)""#).unwrap();
    let mut routes = BTreeSet::new();
    for (start, _) in src.match_indices(".route(") {
        // The call's arguments, up to the matching parenthesis.
        let args = &src[start + ".route(".len()..];
        let mut depth = 1;
        let end = args
            .char_indices()
            .find_map(|(i, c)| {
                match c {
                    '(' => depth += 1,
                    ')' => depth -= 1,
                    _ => {}
                }
                (depth == 0).then_some(i)
            })
            .expect("balanced .route( call");
        let args = &args[..end];
        let p = path.captures(args).expect("a route path literal")[1].replace("{*", "{");
        for m in method.captures_iter(args) {
            routes.insert((m[1].to_owned(), p.clone()));
        }
    }
    routes
}

fn documented_operations(doc: &Value) -> BTreeSet<(String, String)> {
    let mut ops = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for m in METHODS {
            if item.get(m).is_some() {
                ops.insert((m.to_owned(), path.clone()));
            }
        }
    }
    ops
}

#[tokio::test]
async fn openapi_document_matches_its_snapshot() {
    let app = TestApp::spawn().await;
    let doc = document(&app).await;
    assert_eq!(doc["openapi"], "3.1.0");
    insta::assert_json_snapshot!("openapi_document", doc, { ".info.version" => "[version]" });
}

#[tokio::test]
async fn every_route_of_the_route_table_is_documented_and_served() {
    let table = route_table();
    assert!(table.len() > 40, "the route table parser found only {table:?}");
    let app = TestApp::spawn().await;
    let documented = documented_operations(&document(&app).await);
    let missing: Vec<_> = table.difference(&documented).collect();
    assert!(missing.is_empty(), "routes without a #[utoipa::path] in ApiDoc: {missing:?}");
    let extra: Vec<_> = documented.difference(&table).collect();
    assert!(extra.is_empty(), "documented operations that the route table does not serve: {extra:?}");
    // And the server really routes each one (an unknown route would be 404 `route_not_found`).
    let param = Regex::new(r"\{[^}]+\}").unwrap();
    for (method, path) in &documented {
        let concrete = param.replace_all(path, "x");
        let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let r = app.call(m, &concrete, None, None).await;
        assert_ne!(r.body["code"], "route_not_found", "{method} {path} is documented but not routed");
    }
}

#[tokio::test]
async fn authenticated_routes_carry_the_bearer_scheme_and_document_401() {
    let app = TestApp::spawn().await;
    let doc = document(&app).await;
    assert_eq!(doc["components"]["securitySchemes"]["bearerAuth"]["scheme"], "bearer");
    for (method, path) in documented_operations(&doc) {
        let op = &doc["paths"][&path][&method];
        let secured = op["security"].as_array().is_some_and(|s| !s.is_empty());
        // Every /api route except these public ones needs a token.
        let public = ["/api/health", "/api/csrf-token", "/api/openapi.json", "/api/auth/signup", "/api/auth/login"]
            .contains(&path.as_str())
            || path == "/api/auth/google"
            || path.starts_with("/api/docs")
            || !path.starts_with("/api/");
        assert_eq!(secured, !public, "{method} {path}: security {}", op["security"]);
        if secured {
            assert!(op["responses"]["401"].is_object(), "{method} {path} lacks its 401");
        }
        assert!(op["responses"]["500"].is_object(), "{method} {path} lacks its 500");
    }
}

#[tokio::test]
async fn error_code_enum_is_exactly_the_closed_list_of_the_spec() {
    let app = TestApp::spawn().await;
    let doc = document(&app).await;
    let documented: Vec<&str> = doc["components"]["schemas"]["ErrorCode"]["enum"]
        .as_array()
        .expect("ErrorCode is an enum")
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(documented, ERROR_CODES);
    for family in ["MessageError", "SuccessError"] {
        assert_eq!(
            doc["components"]["schemas"][family]["properties"]["code"]["$ref"],
            "#/components/schemas/ErrorCode"
        );
    }
    // The §1.4 table of the contract, minus the codes it marks as Socket.IO-only (status "—").
    let spec = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/spec/http-api.md"))
        .expect("the shared spec sits beside the repository");
    let section = spec.split("### 1.4 Error codes").nth(1).unwrap().split("### 1.5").next().unwrap();
    let code = Regex::new(r"`([a-z_]+)`").unwrap();
    let mut from_spec = BTreeSet::new();
    for row in section.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = row.split('|').collect();
        if cells[2].trim() == "—" {
            continue;
        }
        from_spec.extend(code.captures_iter(cells[1]).map(|c| c[1].to_owned()));
    }
    let listed: BTreeSet<String> = ERROR_CODES.iter().map(|c| c.to_string()).collect();
    assert_eq!(listed, from_spec);
}

/// Every code the server can put in an error body is on the list: the literals handed to `ApiError`, the store's
/// errors and rejections, and the readiness body. A duplicate key the contract has no code for (`conflict`,
/// raised by the PostgreSQL store) becomes 500 `internal` in `ApiError::from_store`.
#[test]
fn every_error_code_in_the_sources_is_on_the_list() {
    let patterns = [
        r#"\bcode: "([a-z_]+)""#,
        r#"ApiError::new\(\s*(?:axum::http::)?StatusCode::[A-Z_]+,\s*"([a-z_]+)""#,
        r#"(?:invalid_token|unavailable)\(\s*"([a-z_]+)""#,
        r#"code = Some\("([a-z_]+)"\)"#,
    ]
    .map(|p| Regex::new(p).unwrap());
    let mut found = BTreeSet::new();
    let mut stack = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("src")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let p = entry.unwrap().path();
            // Socket.IO errors are events with their own codes (realtime.md), not HTTP bodies.
            if p.is_dir() && !p.ends_with("realtime") {
                stack.push(p);
            } else if p.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&p).unwrap();
                for re in &patterns {
                    found.extend(re.captures_iter(&text).map(|c| c[1].to_owned()));
                }
            }
        }
    }
    assert!(found.len() > 20, "the scan found too few codes: {found:?}");
    let unlisted: Vec<_> = found.iter().filter(|c| !ERROR_CODES.contains(&c.as_str()) && *c != "conflict").collect();
    assert!(unlisted.is_empty(), "error codes missing from ERROR_CODES (and so from the document): {unlisted:?}");
}

#[tokio::test]
async fn swagger_ui_is_served_from_the_binary_with_its_own_csp() {
    let app = TestApp::spawn().await;
    let page = app.client.get(format!("{}/api/docs", app.base)).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    let csp = page.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-eval"), "{csp}");
    assert!(!csp.contains("upgrade-insecure-requests"), "{csp}");
    assert_eq!(page.headers()["x-content-type-options"], "nosniff");
    let html = page.text().await.unwrap();
    assert!(html.contains("swagger-ui"), "{html}");
    // Served without a trailing slash, the page's relative links resolve through its <base>.
    assert!(html.contains(r#"<base href="/api/docs/">"#), "{html}");
    for link in Regex::new(r#"(?:href|src)="([^"]+)""#).unwrap().captures_iter(&html) {
        let url = format!("{}/api/docs/{}", app.base, link[1].trim_start_matches("./"));
        if link[1].starts_with("/api/docs/") {
            continue;
        }
        let r = app.client.get(&url).send().await.unwrap();
        assert_eq!(r.status(), 200, "{url}");
    }
    // The initializer points the UI at our document.
    let init = app.client.get(format!("{}/api/docs/swagger-initializer.js", app.base)).send().await.unwrap();
    assert_eq!(init.status(), 200);
    assert!(init.text().await.unwrap().contains("/api/openapi.json"));
    let bundle = app.client.get(format!("{}/api/docs/swagger-ui-bundle.js", app.base)).send().await.unwrap();
    assert_eq!(bundle.status(), 200);
    assert!(bundle.headers()["content-type"].to_str().unwrap().contains("javascript"));
    let missing = app.client.get(format!("{}/api/docs/nope.js", app.base)).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    // The API's other responses keep the strict policy.
    let health = app.client.get(format!("{}/api/health", app.base)).send().await.unwrap();
    assert!(health.headers()["content-security-policy"].to_str().unwrap().contains("upgrade-insecure-requests"));
}
