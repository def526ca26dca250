//! The PostgreSQL store against a real PostgreSQL (never a mock): every test creates its own database on the server
//! named by `TEST_DATABASE_URL`, else `DATABASE_URL`, else `postgres://postgres@127.0.0.1:5432/postgres`, runs the
//! embedded migrations and drops the database at the end (also when the test fails).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fluxstudio::store::postgres;
use fluxstudio::{domain, store};

use domain::ops::{FilePatch, MilestonePatch, NewMilestone, NewProject, NewTask, ProjectPatch, TaskPatch};
use domain::{time, Actor, FileRecord, Member, Team, User};
use postgres::{PgOptions, PostgresStore, SEED_INDEXES};
use serde_json::{json, Value};
use sqlx::{Connection, PgConnection};
use store::json::{JsonOptions, JsonStore};
use store::{ActivityQuery, Store, StoreError};

// ------------------------------------------------------------------------------------------------------ harness

fn server_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .or_else(|_| std::env::var("DATABASE_URL"))
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// The same server URL with another database name (keeps user, password, host, port and query parameters).
fn with_database(url: &str, db: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("database URL has a scheme");
    let (before_query, query) = match rest.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (rest, None),
    };
    let authority = before_query.split('/').next().unwrap();
    let mut out = format!("{scheme}://{authority}/{db}");
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// A fresh database, dropped (with its connections) when the value goes away.
struct TestDb {
    name: String,
    url: String,
}

impl TestDb {
    async fn new() -> TestDb {
        let name = format!("flux_test_{}", uuid::Uuid::new_v4().simple());
        let mut admin = PgConnection::connect(&server_url())
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL must be running for these tests ({}): {e}", server_url()));
        // The name is generated above (hex only), never input: the one place test code builds SQL text.
        sqlx::query(sqlx::AssertSqlSafe(format!("create database {name}"))).execute(&mut admin).await.unwrap();
        let _ = admin.close().await;
        TestDb { url: with_database(&server_url(), &name), name }
    }

    fn options(&self) -> PgOptions {
        PgOptions::new(self.url.clone())
    }

    async fn store(&self) -> PostgresStore {
        PostgresStore::connect(self.options()).await.expect("connect")
    }

    /// A migrated store.
    async fn migrated(&self) -> PostgresStore {
        let s = self.store().await;
        s.migrate().await.expect("migrate");
        s
    }

    async fn conn(&self) -> PgConnection {
        PgConnection::connect(&self.url).await.unwrap()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let (url, name) = (server_url(), self.name.clone());
        // Drop runs inside the test's runtime; a thread with its own runtime can block on the async client.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                if let Ok(mut c) = PgConnection::connect(&url).await {
                    let sql = format!("drop database if exists {name} with (force)");
                    let _ = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut c).await;
                    let _ = c.close().await;
                }
            });
        })
        .join();
    }
}

fn user(id: &str, email: &str, name: &str, created_at: &str) -> User {
    User {
        id: id.into(),
        email: email.into(),
        name: name.into(),
        user_type: "designer".into(),
        password: Some("$2b$10$Ao4eY6nqaeGPZ7CFmHaFquaVh4rLPVZzkA53fl8kQzJDkyVdV6onu".into()),
        google_id: None,
        oauth_provider: None,
        avatar: None,
        created_at: created_at.into(),
        updated_at: None,
        is_active: true,
        extra: Default::default(),
    }
}

const A: &str = "aaaaaaaa-0000-4000-8000-00000000000a";
const B: &str = "aaaaaaaa-0000-4000-8000-00000000000b";
const C: &str = "aaaaaaaa-0000-4000-8000-00000000000c";
const LEGACY: &str = "1756887342317";

/// Users A, B, C and the legacy-id user, in that creation order.
async fn seed_users(s: &dyn Store) -> (User, User, User, User) {
    let a = s.insert_user(user(A, "ann@example.com", "Ann", "2025-09-01T00:00:00.000Z")).await.unwrap();
    let b = s.insert_user(user(B, "bo@example.com", "Bo", "2025-09-02T00:00:00.000Z")).await.unwrap();
    let c = s.insert_user(user(C, "cy@example.com", "", "2025-09-03T00:00:00.000Z")).await.unwrap();
    let l = s
        .insert_user(user(LEGACY, "marten.oberg@example.com", "Mårten Öberg", "2025-09-03T08:15:42.317Z"))
        .await
        .unwrap();
    (a, b, c, l)
}

fn project_input(name: &str) -> NewProject {
    NewProject { name: name.into(), status: "planning".into(), priority: "medium".into(), ..Default::default() }
}

fn task_input(title: &str) -> NewTask {
    NewTask { title: title.into(), status: "todo".into(), priority: "low".into(), ..Default::default() }
}

fn code(e: &StoreError) -> &'static str {
    match e {
        StoreError::NotFound { code } | StoreError::Conflict { code, .. } => code,
        StoreError::Rejected(r) => r.code,
        StoreError::Unavailable(_) => "unavailable",
        StoreError::Other(_) => "other",
    }
}

fn all_activities() -> ActivityQuery {
    ActivityQuery { limit: 1000, ..Default::default() }
}

async fn count(db: &TestDb, sql: &'static str) -> i64 {
    let mut c = db.conn().await;
    let n = sqlx::query_scalar(sql).fetch_one(&mut c).await.unwrap();
    let _ = c.close().await;
    n
}

fn fixtures_dir() -> PathBuf {
    let beside = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/fixtures/legacy"));
    if beside.exists() {
        beside
    } else {
        PathBuf::from("/work/shared/fixtures/legacy")
    }
}

fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &target);
        } else if e.path().extension().is_some_and(|x| x == "json") {
            std::fs::write(&target, std::fs::read(e.path()).unwrap()).unwrap();
        }
    }
}

// ------------------------------------------------------------------------------------------------------ schema

#[tokio::test]
async fn migrations_create_the_schema_once() {
    let db = TestDb::new().await;
    let s = db.store().await;

    let before = s.check().await;
    assert_eq!(before.connect_error, None);
    assert_eq!(before.pending.len(), 5, "{before}");
    assert_eq!(before.exit_code(), 1, "pending migrations make db check exit 1");

    let first = s.migrate().await.unwrap();
    assert_eq!(first.applied.iter().map(|m| m.version).collect::<Vec<_>>(), vec![1, 2, 3, 4, 5]);
    let second = s.migrate().await.unwrap();
    assert!(second.applied.is_empty(), "a second run applies nothing");
    assert_eq!(second.total_applied, 5);
    assert!(s.pending_migrations().await.unwrap().is_empty());

    let report = s.check().await;
    assert_eq!(report.exit_code(), 0, "{report}");
    assert_eq!(report.indexes_present.len(), 21);
    assert!(report.indexes_missing.is_empty());
    assert!(report.extra_indexes.contains(&"users.idx_users_email_lower".to_owned()), "{:?}", report.extra_indexes);
    assert!(report.server_version_num.unwrap() >= 140000);
    assert!(report.latency.is_some());
    assert!(report.tls.is_some(), "TLS state is reported");
    let text = report.to_string();
    assert!(text.contains("21/21 seed indexes present") && text.ends_with("OK"), "{text}");
    assert!(text.contains("pool       max 20, min 0, idle timeout 30 s, acquire timeout 2 s, statement timeout 30 s"));
}

#[tokio::test]
async fn the_21_seed_indexes_exist_by_name() {
    let db = TestDb::new().await;
    let _s = db.migrated().await;
    let mut c = db.conn().await;
    let names: Vec<(String, String)> =
        sqlx::query_as("select tablename::text, indexname::text from pg_indexes where schemaname = 'public'")
            .fetch_all(&mut c)
            .await
            .unwrap();
    for (table, index) in SEED_INDEXES {
        assert!(names.iter().any(|(t, i)| t == table && i == index), "missing {table}.{index}");
    }
    // The two unique ones are unique.
    let unique: Vec<String> =
        sqlx::query_scalar("select indexrelid::regclass::text from pg_index where indisunique and not indisprimary")
            .fetch_all(&mut c)
            .await
            .unwrap();
    assert!(unique.contains(&"users_email_key".to_owned()));
    assert!(unique.contains(&"project_members_project_user_key".to_owned()));
    // Dropping one is what db check reports.
    sqlx::query("drop index idx_tasks_due_date").execute(&mut c).await.unwrap();
    let report = db.store().await.check().await;
    assert_eq!(report.indexes_missing, vec!["idx_tasks_due_date"]);
    assert_eq!(report.exit_code(), 1);
}

#[tokio::test]
async fn concurrent_migrations_both_succeed() {
    let db = TestDb::new().await;
    let (s1, s2) = (db.store().await, db.store().await);
    let (r1, r2) = tokio::join!(s1.migrate(), s2.migrate());
    let (r1, r2) = (r1.expect("first migrate"), r2.expect("second migrate"));
    let mut all: Vec<i64> = r1.applied.iter().chain(&r2.applied).map(|m| m.version).collect();
    all.sort();
    assert_eq!(all, vec![1, 2, 3, 4, 5], "each migration applied exactly once");
    assert_eq!(count(&db, "select count(*) from _sqlx_migrations where success").await, 5);
}

#[tokio::test]
async fn member_role_check_accepts_all_seven_spellings() {
    let db = TestDb::new().await;
    let s = db.migrated().await;
    let (a, ..) = seed_users(&s).await;
    let p = s.insert_project(project_input("P"), &Actor::from_user(&a)).await.unwrap();
    let mut c = db.conn().await;
    let pid = uuid::Uuid::parse_str(&p.id).unwrap();
    for (i, role) in ["admin", "member", "viewer", "manager", "contributor", "reviewer"].iter().enumerate() {
        let uid = uuid::Uuid::new_v4();
        sqlx::query("insert into users (id, email, name, user_type, created_at) values ($1, $2, 'x', 'client', now())")
            .bind(uid)
            .bind(format!("u{i}@example.com"))
            .execute(&mut c)
            .await
            .unwrap();
        sqlx::query("insert into project_members (project_id, user_id, role, joined_at, position) values ($1, $2, $3, now(), $4)")
            .bind(pid)
            .bind(uid)
            .bind(*role)
            .bind(i as i32 + 1)
            .execute(&mut c)
            .await
            .unwrap_or_else(|e| panic!("role {role} refused: {e}"));
    }
    let bad = sqlx::query("update project_members set role = 'superuser' where project_id = $1")
        .bind(pid)
        .execute(&mut c)
        .await;
    assert!(bad.is_err(), "an unknown role violates the CHECK");
    let roles: Vec<String> =
        s.get_project(&p.id).await.unwrap().unwrap().members.iter().map(|m| m.role.clone()).collect();
    assert_eq!(roles, ["owner", "admin", "member", "viewer", "manager", "contributor", "reviewer"]);
}

// ------------------------------------------------------------------------------------------------------ users

#[tokio::test]
async fn users_lookup_conflicts_and_legacy_ids() {
    let db = TestDb::new().await;
    let s = db.migrated().await;
    let (a, b, _, legacy) = seed_users(&s).await;

    assert_eq!(s.get_user(A).await.unwrap(), Some(a.clone()));
    assert_eq!(s.get_user("aaaaaaaa-0000-4000-8000-0000000000ff").await.unwrap(), None);
    assert_eq!(s.get_user("not-an-id").await.unwrap(), None);
    // The legacy id is the public id in every answer, and a token carrying it finds the user.
    assert_eq!(s.get_user(LEGACY).await.unwrap(), Some(legacy.clone()));
    assert_eq!(s.get_user_by_email("marten.oberg@example.com").await.unwrap().unwrap().id, LEGACY);
    let storage = postgres::ids::storage_id(postgres::Entity::User, LEGACY);
    assert_eq!(storage.get_version_num(), 5);
    assert_eq!(
        count(&db, "select count(*) from legacy_ids where entity = 'user' and legacy_id = '1756887342317'").await,
        1
    );

    // Exact first, then a unique case-insensitive match.
    assert_eq!(s.get_user_by_email("ann@example.com").await.unwrap().unwrap().id, A);
    assert_eq!(s.get_user_by_email("ANN@Example.com").await.unwrap().unwrap().id, A);
    assert_eq!(s.get_user_by_email("nobody@example.com").await.unwrap(), None);

    // Duplicates: the same address in any case, or the same id.
    let dup = s.insert_user(user(&domain::new_id(), "Bo@Example.COM", "Bo 2", "2025-09-05T00:00:00.000Z")).await;
    assert_eq!(code(&dup.unwrap_err()), "email_taken");
    let dup = s.insert_user(user(B, "other@example.com", "Bo 3", "2025-09-05T00:00:00.000Z")).await;
    assert_eq!(code(&dup.unwrap_err()), "email_taken");

    // Legacy data may already hold case variants: then only the exact address logs in.
    let mut variant =
        user("aaaaaaaa-0000-4000-8000-0000000000c2", "CY@example.com", "Cy 2", "2025-09-06T00:00:00.000Z");
    s.put_user(&variant).await.unwrap();
    assert_eq!(s.get_user_by_email("cy@example.com").await.unwrap().unwrap().id, C);
    assert_eq!(s.get_user_by_email("CY@example.com").await.unwrap().unwrap().id, variant.id);
    assert_eq!(s.get_user_by_email("Cy@Example.com").await.unwrap(), None, "ambiguous case-insensitive match");

    // Creation order.
    let ids: Vec<String> = s.list_users().await.unwrap().into_iter().map(|u| u.id).collect();
    assert_eq!(ids, [A, B, C, LEGACY, variant.id.as_str()]);

    // Google id lookup and updates.
    variant.google_id = Some("g-123".into());
    s.put_user(&variant).await.unwrap();
    assert_eq!(s.get_user_by_google_id("g-123").await.unwrap().unwrap().id, variant.id);
    assert_eq!(s.get_user_by_google_id("g-999").await.unwrap(), None);
    let rehash = store::UserPatch { password: Some(Some("$2b$10$new".into())), ..Default::default() };
    let u = s.update_user(LEGACY, rehash).await.unwrap();
    assert_eq!(u.password.as_deref(), Some("$2b$10$new"));
    assert_eq!(u.updated_at, None, "a rehash does not stamp updatedAt");
    let disable = store::UserPatch {
        is_active: Some(false),
        user_type: Some("admin".into()),
        touch_updated_at: true,
        ..Default::default()
    };
    let u = s.update_user(LEGACY, disable).await.unwrap();
    assert!(!u.is_active && u.user_type == "admin" && u.updated_at.is_some());
    assert_eq!(s.get_user(LEGACY).await.unwrap(), Some(u));
    let missing = s.update_user("aaaaaaaa-0000-4000-8000-0000000000ff", Default::default()).await;
    assert_eq!(code(&missing.unwrap_err()), "user_not_found");

    // A second instance (fresh in-memory map) sees the same public ids; so does one that connected before a legacy
    // id was added by someone else.
    let early = db.store().await;
    let other = db.store().await;
    other.put_user(&user("1600000000000", "late@example.com", "Late", "2025-10-01T00:00:00.000Z")).await.unwrap();
    assert_eq!(early.get_user_by_email("late@example.com").await.unwrap().unwrap().id, "1600000000000");
    assert_eq!(other.get_user(LEGACY).await.unwrap().unwrap().id, LEGACY);
    drop(b);
}

#[tokio::test]
async fn the_request_user_cache_sees_own_writes_at_once_and_other_instances_within_its_ttl() {
    let db = TestDb::new().await;
    let here = db.migrated().await;
    let elsewhere = db.store().await;
    seed_users(&here).await;
    for id in [A, LEGACY] {
        assert!(here.get_user_for_request(id).await.unwrap().unwrap().is_active, "{id} starts active");
        assert!(elsewhere.get_user_for_request(id).await.unwrap().unwrap().is_active);
    }
    let disable = || store::UserPatch { is_active: Some(false), touch_updated_at: true, ..Default::default() };
    here.update_user(A, disable()).await.unwrap();
    here.update_user(LEGACY, disable()).await.unwrap();
    let disabled_at = Instant::now();
    for id in [A, LEGACY] {
        assert!(!here.get_user_for_request(id).await.unwrap().unwrap().is_active, "{id}: own write seen at once");
    }
    // The other instance may serve its cached record for at most the TTL (auth.md §1), then reads the new one.
    tokio::time::sleep(store::USER_CACHE_TTL.saturating_sub(disabled_at.elapsed()) + Duration::from_millis(50)).await;
    for id in [A, LEGACY] {
        assert!(!elsewhere.get_user_for_request(id).await.unwrap().unwrap().is_active, "{id} after the TTL");
    }
    assert_eq!(here.get_user_for_request("aaaaaaaa-0000-4000-8000-0000000000ff").await.unwrap(), None);
}

#[tokio::test]
async fn concurrent_signups_of_case_variants_create_one_account() {
    let db = TestDb::new().await;
    let s = Arc::new(db.migrated().await);
    let mut handles = vec![];
    for (i, email) in
        ["race@example.com", "Race@example.com", "RACE@example.com", "race@Example.com"].iter().enumerate()
    {
        let s = s.clone();
        let u = user(&domain::new_id(), email, &format!("R{i}"), "2025-09-01T00:00:00.000Z");
        handles.push(tokio::spawn(async move { s.insert_user(u).await }));
    }
    let mut ok = 0;
    for h in handles {
        match h.await.unwrap() {
            Ok(_) => ok += 1,
            Err(e) => assert_eq!(code(&e), "email_taken"),
        }
    }
    assert_eq!(ok, 1);
}

// ------------------------------------------------------------------------------------------------------ projects

#[tokio::test]
async fn projects_membership_order_and_delete_cascade() {
    let db = TestDb::new().await;
    let s = db.migrated().await;
    let (a, b, c, _) = seed_users(&s).await;
    let actor = Actor::from_user(&a);

    let mut created = vec![];
    for name in ["One", "Two", "Three"] {
        created.push(s.insert_project(project_input(name), &actor).await.unwrap());
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let p = created[0].clone();
    assert_eq!(p.members.len(), 1);
    assert_eq!((p.members[0].user_id.as_str(), p.members[0].role.as_str()), (A, "owner"));
    assert_eq!(s.get_project(&p.id).await.unwrap().unwrap(), p, "stored exactly as built");

    let names = |v: Vec<Arc<domain::Project>>| v.iter().map(|p| p.name.clone()).collect::<Vec<_>>();
    assert_eq!(names(s.list_projects_for(&a).await.unwrap()), ["One", "Two", "Three"]);
    assert!(s.list_projects_for(&b).await.unwrap().is_empty(), "not a member: nothing listed");

    s.add_member(&created[1].id, &b, "viewer", &actor).await.unwrap();
    assert_eq!(names(s.list_projects_for(&b).await.unwrap()), ["Two"]);

    // The creator counts as an owner even without a member row (legacy data).
    let mut conn = db.conn().await;
    sqlx::query("delete from project_members where project_id = $1")
        .bind(uuid::Uuid::parse_str(&created[2].id).unwrap())
        .execute(&mut conn)
        .await
        .unwrap();
    assert_eq!(names(s.list_projects_for(&a).await.unwrap()), ["One", "Two", "Three"]);

    // Update: explicit columns, partial, server-owned fields untouched.
    let patch = ProjectPatch {
        name: Some("Uno".into()),
        status: Some("in_progress".into()),
        due_date: Some(Some("2025-12-01T00:00:00.000Z".into())),
        channel_metadata: Some(Some(json!({}))),
        ..Default::default()
    };
    let updated = s.update_project(&p.id, patch).await.unwrap();
    assert_eq!((updated.name.as_str(), updated.status.as_str()), ("Uno", "in_progress"));
    assert_eq!(updated.created_by, A);
    let reread = s.get_project(&p.id).await.unwrap().unwrap();
    assert_eq!(*reread, *updated);
    assert_eq!(reread.channel_metadata, Some(json!({})), "{{}} stays {{}}");
    let missing = s.update_project("bbbbbbbb-0000-4000-8000-0000000000ff", ProjectPatch::default()).await;
    assert_eq!(code(&missing.unwrap_err()), "project_not_found");
    assert_eq!(s.get_project("1234").await.unwrap(), None);

    // Delete removes members, tasks, milestones and activities.
    s.insert_task(&p.id, task_input("t"), &actor).await.unwrap();
    s.insert_milestone(&p.id, NewMilestone { title: "m".into(), ..Default::default() }, &actor).await.unwrap();
    s.add_member(&p.id, &c, "member", &actor).await.unwrap();
    assert!(count(&db, "select count(*) from activities").await >= 3);
    s.delete_project(&p.id).await.unwrap();
    assert_eq!(s.get_project(&p.id).await.unwrap(), None);
    assert_eq!(s.list_activities(&p.id, &all_activities()).await.unwrap().total, 0);
    let pid = uuid::Uuid::parse_str(&p.id).unwrap();
    for sql in [
        "select count(*) from tasks where project_id = $1",
        "select count(*) from milestones where project_id = $1",
        "select count(*) from project_members where project_id = $1",
        "select count(*) from activities where project_id = $1",
    ] {
        let n: i64 = sqlx::query_scalar(sql).bind(pid).fetch_one(&mut conn).await.unwrap();
        assert_eq!(n, 0, "{sql}");
    }
    assert_eq!(code(&s.delete_project(&p.id).await.unwrap_err()), "project_not_found");
}

// ------------------------------------------------------------------------------------------------------ tasks

#[tokio::test]
async fn tasks_positions_progress_and_completed_at() {
    let db = TestDb::new().await;
    let s = db.migrated().await;
    let (a, b, ..) = seed_users(&s).await;
    let actor = Actor::from_user(&a);
    let p = s.insert_project(project_input("P"), &actor).await.unwrap();

    let (t1, act) = s.insert_task(&p.id, task_input("first"), &actor).await.unwrap();
    assert_eq!(
        (act.kind.as_str(), act.metadata.clone()),
        ("task.created", json!({"status": "todo", "priority": "low"}))
    );
    let (t2, _) = s.insert_task(&p.id, task_input("second"), &actor).await.unwrap();
    let (t3, _) = s.insert_task(&p.id, task_input("third"), &actor).await.unwrap();
    let titles = |p: &domain::Project| p.tasks.iter().map(|t| t.title.clone()).collect::<Vec<_>>();
    assert_eq!(titles(&s.get_project(&p.id).await.unwrap().unwrap()), ["first", "second", "third"]);

    let done = TaskPatch { status: Some("completed".into()), ..Default::default() };
    let (t2c, act) = s.update_task(&p.id, &t2.id, done, &actor).await.unwrap();
    assert_eq!(act.kind, "task.completed");
    assert!(t2c.completed_at.is_some());
    let stored = s.get_project(&p.id).await.unwrap().unwrap();
    assert_eq!(*stored.tasks[1], t2c);
    assert_eq!((stored.progress, stored.computed_progress()), (33, 33));

    let assign =
        TaskPatch { assigned_to: Some(Some(B.into())), assignee_label: Some("Bo".into()), ..Default::default() };
    let (_, act) = s.update_task(&p.id, &t3.id, assign, &actor).await.unwrap();
    assert_eq!(act.metadata, json!({"field": "assignedTo", "oldValue": "Unassigned", "newValue": "Bo"}));

    let reopen = TaskPatch { status: Some("in_progress".into()), ..Default::default() };
    let (t2r, act) = s.update_task(&p.id, &t2.id, reopen, &actor).await.unwrap();
    assert_eq!(act.metadata, json!({"field": "status", "oldValue": "completed", "newValue": "in_progress"}));
    assert_eq!(t2r.completed_at, None);
    assert_eq!(s.get_project(&p.id).await.unwrap().unwrap().progress, 0);

    let act = s.delete_task(&p.id, &t1.id, &actor).await.unwrap();
    assert_eq!((act.kind.as_str(), act.entity_id.as_deref()), ("task.deleted", Some(t1.id.as_str())));
    let (t4, _) = s.insert_task(&p.id, task_input("fourth"), &actor).await.unwrap();
    let now = s.get_project(&p.id).await.unwrap().unwrap();
    assert_eq!(titles(&now), ["second", "third", "fourth"], "new tasks go after every existing one");
    assert_eq!(now.tasks[1].assigned_to.as_deref(), Some(B));
    assert_eq!(*now.tasks[2], t4);

    assert_eq!(code(&s.update_task(&p.id, &t1.id, TaskPatch::default(), &actor).await.unwrap_err()), "task_not_found");
    assert_eq!(code(&s.delete_task(&p.id, &t1.id, &actor).await.unwrap_err()), "task_not_found");
    let access = s.get_project_access(&p.id, true).await.unwrap().unwrap();
    assert_eq!((access.id.as_str(), access.created_by.as_str()), (now.id.as_str(), now.created_by.as_str()));
    assert_eq!((access.members, access.tasks), (now.members.clone(), now.tasks.clone()));
    assert!(s.get_project_access(&p.id, false).await.unwrap().unwrap().tasks.is_empty());
    let nowhere = "bbbbbbbb-0000-4000-8000-0000000000ff";
    assert_eq!(code(&s.insert_task(nowhere, task_input("x"), &actor).await.unwrap_err()), "project_not_found");
    for with_tasks in [false, true] {
        assert_eq!(s.get_project_access(nowhere, with_tasks).await.unwrap(), None);
    }
    drop(b);
}

#[tokio::test]
async fn concurrent_task_writes_lose_nothing() {
    let db = TestDb::new().await;
    let s = Arc::new(db.migrated().await);
    let (a, ..) = seed_users(s.as_ref()).await;
    let actor = Actor::from_user(&a);
    let p = s.insert_project(project_input("P"), &actor).await.unwrap();
    let mut handles = vec![];
    for i in 0..30 {
        let (s, actor, pid) = (s.clone(), actor.clone(), p.id.clone());
        handles.push(tokio::spawn(async move {
            let (t, _) = s.insert_task(&pid, task_input(&format!("t{i}")), &actor).await.unwrap();
            if i % 3 == 0 {
                let done = TaskPatch { status: Some("completed".into()), ..Default::default() };
                s.update_task(&pid, &t.id, done, &actor).await.unwrap();
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    let p = s.get_project(&p.id).await.unwrap().unwrap();
    assert_eq!(p.tasks.len(), 30);
    assert_eq!(p.progress, 33);
    let mut titles: Vec<_> = p.tasks.iter().map(|t| t.title.clone()).collect();
    titles.sort();
    titles.dedup();
    assert_eq!(titles.len(), 30, "every task is listed once");
    // Inserts take no project lock (outside dual-postgres), so two that overlap may share a position; the list is
    // then ordered by creation time and id, and every insert still goes after each task committed before it.
    let listed: Vec<(i32, String)> =
        sqlx::query_as("select position, id::text from tasks order by position, created_at, id")
            .fetch_all(&mut db.conn().await)
            .await
            .unwrap();
    assert!(listed.iter().all(|(pos, _)| (0..30).contains(pos)), "{listed:?}");
    let ids: Vec<String> = listed.into_iter().map(|(_, id)| id).collect();
    assert_eq!(ids, p.tasks.iter().map(|t| t.id.clone()).collect::<Vec<_>>(), "the API lists them in that order");
    assert_eq!(s.list_activities(&p.id, &all_activities()).await.unwrap().total, 40);

    // The GET tasks read sorts its rows itself: the same order, ties on position and on creation time included.
    let mut conn = db.conn().await;
    sqlx::query("update tasks set position = position / 4, created_at = date_trunc('minute', created_at) + (position % 2) * interval '1 s'")
        .execute(&mut conn)
        .await
        .unwrap();
    let expected: Vec<String> = sqlx::query_scalar("select id::text from tasks order by position, created_at, id")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    let access = s.get_project_access(&p.id, true).await.unwrap().unwrap();
    assert_eq!(access.tasks.iter().map(|t| t.id.clone()).collect::<Vec<_>>(), expected);
    let aggregate = s.get_project(&p.id).await.unwrap().unwrap();
    assert_eq!(aggregate.tasks.iter().map(|t| t.id.clone()).collect::<Vec<_>>(), expected);
    assert!(s.get_project_access("bbbbbbbb-0000-4000-8000-0000000000ff", true).await.unwrap().is_none());
}

/// The stored `progress` (what rollback writes and validate compares) follows the JSON store's rule: a project's
/// legacy value stands until the project, its members or its tasks are rewritten; from then on it is the tasks'.
#[tokio::test]
async fn stored_progress_is_the_legacy_value_until_a_rewrite() {
    use store::json::state::Op;
    let db = TestDb::new().await;
    let s = db.migrated().await;
    let (a, b, ..) = seed_users(&s).await;
    let actor = Actor::from_user(&a);
    // Three "migrated" projects whose stored progress disagrees with their tasks (legacy data does that).
    let mut legacy = vec![];
    for (name, stale) in [("tasks", 50), ("members", 77), ("replayed", 10)] {
        let mut p = (*s.insert_project(project_input(name), &actor).await.unwrap()).clone();
        p.tasks = vec![Arc::new(s.insert_task(&p.id, task_input("old"), &actor).await.unwrap().0)];
        p.progress = stale;
        s.put_project(&p).await.unwrap();
        assert_eq!(s.get_project(&p.id).await.unwrap().unwrap().progress, stale, "imported as it stands");
        legacy.push(p);
    }
    let stored = |id: String| {
        let s = &s;
        async move { s.get_project(&id).await.unwrap().unwrap().progress }
    };

    let (t, _) = s.insert_task(&legacy[0].id, task_input("new"), &actor).await.unwrap();
    assert_eq!(stored(legacy[0].id.clone()).await, 0, "a task insert rewrites the project");
    let done = TaskPatch { status: Some("completed".into()), ..Default::default() };
    s.update_task(&legacy[0].id, &t.id, done, &actor).await.unwrap();
    assert_eq!(stored(legacy[0].id.clone()).await, 50, "1 of 2 tasks completed");

    s.add_member(&legacy[1].id, &b, "member", &actor).await.unwrap();
    assert_eq!(stored(legacy[1].id.clone()).await, 0, "a member write rewrites the project");

    let mut replayed = (*legacy[2].tasks[0]).clone();
    replayed.status = "completed".into();
    s.apply_ops(&[Op::PutTask { project: legacy[2].id.clone(), pos: 0, rec: replayed }]).await.unwrap();
    assert_eq!(stored(legacy[2].id.clone()).await, 100, "a replayed task write rewrites the project");
    let mut header = (*s.get_project(&legacy[2].id).await.unwrap().unwrap()).clone();
    header.progress = 10;
    s.put_project(&header).await.unwrap();
    assert_eq!(stored(legacy[2].id.clone()).await, 10, "an import stores the record's own value");
}

// ------------------------------------------------------------------------------------------------------ activities

#[tokio::test]
async fn activities_filter_page_and_order() {
    let db = TestDb::new().await;
    let s = db.migrated().await;
    let (a, b, ..) = seed_users(&s).await;
    let (actor_a, actor_b) = (Actor::from_user(&a), Actor::from_user(&b));
    let p = s.insert_project(project_input("P"), &actor_a).await.unwrap();
    s.add_member(&p.id, &b, "member", &actor_a).await.unwrap();
    for i in 0..60 {
        let actor = if i % 4 == 0 { &actor_b } else { &actor_a };
        s.insert_task(&p.id, task_input(&format!("t{i:02}")), actor).await.unwrap();
    }
    // 61 activities: member.added, then 60 task.created.
    let page = s.list_activities(&p.id, &ActivityQuery { limit: 50, ..Default::default() }).await.unwrap();
    assert_eq!((page.activities.len(), page.total), (50, 61), "not capped at 50 (legacy defect 18)");
    let titles: Vec<String> = page.activities.iter().map(|a| a.entity_title.clone().unwrap()).collect();
    let expected: Vec<String> = (10..60).rev().map(|i| format!("t{i:02}")).collect();
    assert_eq!(titles, expected, "newest first, same-millisecond writes in reverse write order");
    assert!(page.activities.windows(2).all(|w| w[0].timestamp >= w[1].timestamp));

    let rest = s.list_activities(&p.id, &ActivityQuery { limit: 50, offset: 50, ..Default::default() }).await.unwrap();
    assert_eq!((rest.activities.len(), rest.total), (11, 61));
    assert_eq!(rest.activities.last().unwrap().kind, "member.added");
    let past = s.list_activities(&p.id, &ActivityQuery { limit: 50, offset: 500, ..Default::default() }).await.unwrap();
    assert_eq!((past.activities.len(), past.total), (0, 61));
    let none = s.list_activities(&p.id, &ActivityQuery { limit: 0, ..Default::default() }).await.unwrap();
    assert_eq!((none.activities.len(), none.total), (0, 61));

    let by_kind = ActivityQuery { limit: 100, kind: Some("member.added".into()), ..Default::default() };
    assert_eq!(s.list_activities(&p.id, &by_kind).await.unwrap().total, 1);
    let by_user = ActivityQuery { limit: 100, user_id: Some(B.into()), ..Default::default() };
    let page = s.list_activities(&p.id, &by_user).await.unwrap();
    assert_eq!(page.total, 15);
    assert!(page.activities.iter().all(|a| a.user_id.as_deref() == Some(B)));
    let by_nobody = ActivityQuery { limit: 100, user_id: Some("not-an-id".into()), ..Default::default() };
    assert_eq!(s.list_activities(&p.id, &by_nobody).await.unwrap().total, 0);

    let all = s.list_activities(&p.id, &all_activities()).await.unwrap().activities;
    let middle = all[30].timestamp.clone();
    let from = ActivityQuery { limit: 100, date_from: Some(middle.clone()), ..Default::default() };
    let to = ActivityQuery { limit: 100, date_to: Some(middle.clone()), ..Default::default() };
    let (n_from, n_to) = (s.list_activities(&p.id, &from).await.unwrap(), s.list_activities(&p.id, &to).await.unwrap());
    assert!(n_from.activities.iter().all(|a| a.timestamp >= middle));
    assert!(n_to.activities.iter().all(|a| a.timestamp <= middle));
    let same = all.iter().filter(|a| a.timestamp == middle).count();
    assert_eq!(n_from.total + n_to.total, 61 + same, "bounds are inclusive");

    let unknown = s.list_activities("bbbbbbbb-0000-4000-8000-0000000000ff", &all_activities()).await.unwrap();
    assert_eq!((unknown.activities.len(), unknown.total), (0, 0));
}

// ------------------------------------------------------------------------------------------------------ members

#[tokio::test]
async fn member_rules() {
    let db = TestDb::new().await;
    let s = db.migrated().await;
    let (a, b, c, _) = seed_users(&s).await;
    let (actor_a, actor_b) = (Actor::from_user(&a), Actor::from_user(&b));
    let p = s.insert_project(project_input("P"), &actor_a).await.unwrap();

    let (m, act) = s.add_member(&p.id, &b, "admin", &actor_a).await.unwrap();
    assert_eq!((m.user_id.as_str(), m.role.as_str()), (B, "admin"));
    assert_eq!(
        (act.kind.as_str(), act.action.as_str(), act.metadata.clone()),
        ("member.added", "added member \"Bo\"", json!({"role": "admin"}))
    );
    assert_eq!(code(&s.add_member(&p.id, &b, "member", &actor_a).await.unwrap_err()), "already_member");
    assert_eq!(code(&s.add_member(&p.id, &a, "member", &actor_a).await.unwrap_err()), "already_member");
    let (_, act) = s.add_member(&p.id, &c, "viewer", &actor_a).await.unwrap();
    assert_eq!(act.action, "added member \"cy@example.com\"", "a user without a name is labelled by e-mail");

    let (m, act) = s.update_member_role(&p.id, B, "Bo", "admin", false, &actor_a).await.unwrap();
    assert_eq!((m.role.as_str(), act), ("admin", None), "same role: no activity");
    let (m, act) = s.update_member_role(&p.id, C, "Cy", "member", false, &actor_b).await.unwrap();
    assert_eq!(m.role, "member");
    assert_eq!(act.unwrap().metadata, json!({"field": "role", "oldValue": "viewer", "newValue": "member"}));
    assert_eq!(
        code(&s.update_member_role(&p.id, C, "Cy", "owner", false, &actor_b).await.unwrap_err()),
        "permission_denied"
    );
    assert_eq!(code(&s.update_member_role(&p.id, A, "Ann", "admin", true, &actor_a).await.unwrap_err()), "last_owner");
    assert_eq!(code(&s.remove_member(&p.id, A, "Ann", false, &actor_b).await.unwrap_err()), "permission_denied");
    assert_eq!(code(&s.remove_member(&p.id, A, "Ann", true, &actor_a).await.unwrap_err()), "last_owner");
    assert_eq!(
        code(&s.remove_member(&p.id, "nobody@example.com", "x", true, &actor_a).await.unwrap_err()),
        "member_not_found"
    );

    // Promote B to owner, then A may leave.
    s.update_member_role(&p.id, B, "Bo", "owner", true, &actor_a).await.unwrap();
    let act = s.remove_member(&p.id, A, "Ann", true, &actor_b).await.unwrap();
    assert_eq!((act.kind.as_str(), act.metadata.clone()), ("member.removed", json!({"role": "owner"})));
    let members: Vec<(String, String)> = s
        .get_project(&p.id)
        .await
        .unwrap()
        .unwrap()
        .members
        .iter()
        .map(|m| (m.user_id.clone(), m.role.clone()))
        .collect();
    assert_eq!(members, [(B.to_owned(), "owner".to_owned()), (C.to_owned(), "member".to_owned())]);
    let missing = "bbbbbbbb-0000-4000-8000-0000000000ff";
    assert_eq!(code(&s.add_member(missing, &c, "member", &actor_a).await.unwrap_err()), "project_not_found");
}

/// The one-statement task insert vouches only for certain writers (the creator, members by id that are not viewers)
/// and does nothing for anyone else, so the caller's regular path answers them.
#[tokio::test]
async fn insert_task_as_writer_inserts_only_for_certain_writers() {
    let db = TestDb::new().await;
    let s = db.migrated().await;
    let (a, b, c, legacy) = seed_users(&s).await;
    let p = s.insert_project(project_input("P"), &Actor::from_user(&a)).await.unwrap();
    s.add_member(&p.id, &b, "member", &Actor::from_user(&a)).await.unwrap();
    s.add_member(&p.id, &c, "viewer", &Actor::from_user(&a)).await.unwrap();
    // The legacy-id user as a member stored by e-mail: a writer to the domain, not one the statement can vouch for.
    let mut q = (*s.get_project(&p.id).await.unwrap().unwrap()).clone();
    q.members.push(Member {
        user_id: "Marten.Oberg@example.com".into(),
        role: "admin".into(),
        joined_at: "2025-09-23T10:00:00.000Z".into(),
        extra: Default::default(),
    });
    s.put_project(&q).await.unwrap();
    assert!(domain::access::role_of(&q, &legacy).is_some_and(|r| r.can_write()));

    let try_as = |u: &User, project: &str| {
        let (s, u, project) = (&s, u.clone(), project.to_owned());
        async move { s.insert_task_as_writer(&project, task_input("t"), &Actor::from_user(&u), &u).await.unwrap() }
    };
    let (by_a, act) = try_as(&a, &p.id).await.expect("the creator");
    assert_eq!((by_a.created_by.as_str(), act.kind.as_str()), (A, "task.created"));
    assert!(try_as(&b, &p.id).await.is_some(), "a member by id");
    assert!(try_as(&c, &p.id).await.is_none(), "a viewer");
    assert!(try_as(&legacy, &p.id).await.is_none(), "a member by e-mail: left to the regular path");
    assert!(try_as(&a, "bbbbbbbb-0000-4000-8000-0000000000ff").await.is_none(), "no such project");
    let stored = s.get_project(&p.id).await.unwrap().unwrap();
    assert_eq!(stored.tasks.len(), 2, "only the two writers' tasks");
    let acts = s.list_activities(&p.id, &all_activities()).await.unwrap().activities;
    assert_eq!(acts.iter().filter(|a| a.kind == "task.created").count(), 2, "an activity per inserted task");
}

#[tokio::test]
async fn members_stored_by_email_and_legacy_ids() {
    let db = TestDb::new().await;
    let s = db.migrated().await;
    let (a, _, _, legacy) = seed_users(&s).await;
    let aoife = user(
        "aaaaaaaa-0000-4000-8000-000000000004",
        "aoife.obrien@example.com",
        "Aoife O&#x27;Brien",
        "2025-09-22T07:30:00.000Z",
    );
    s.insert_user(aoife.clone()).await.unwrap();

    // The fixture's project 2: owned by the legacy-id user, one member stored by e-mail (in another case).
    let mut p = (*s
        .insert_project(project_input("Mårten&#x27;s Portfolio &amp; Reel"), &Actor::from_user(&legacy))
        .await
        .unwrap())
    .clone();
    p.members.push(Member {
        user_id: "Aoife.OBrien@example.com".into(),
        role: "admin".into(),
        joined_at: "2025-09-23T10:00:00.000Z".into(),
        extra: Default::default(),
    });
    s.put_project(&p).await.unwrap();
    let stored = s.get_project(&p.id).await.unwrap().unwrap();
    assert_eq!(*stored, p, "the raw e-mail reference is what the API shows as userId");
    assert_eq!(stored.created_by, LEGACY);
    let member_ref: Option<String> = sqlx::query_scalar("select member_ref from project_members where user_id = $1")
        .bind(uuid::Uuid::parse_str(&aoife.id).unwrap())
        .fetch_one(&mut db.conn().await)
        .await
        .unwrap();
    assert_eq!(member_ref.as_deref(), Some("Aoife.OBrien@example.com"));

    // Membership resolves both references to their users.
    let ids = |v: Vec<Arc<domain::Project>>| v.iter().map(|p| p.id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(s.list_projects_for(&aoife).await.unwrap()), [p.id.clone()]);
    assert_eq!(ids(s.list_projects_for(&legacy).await.unwrap()), [p.id.clone()]);
    assert!(s.list_projects_for(&a).await.unwrap().is_empty());
    assert_eq!(domain::access::role_of(&stored, &aoife), Some(domain::access::Role::Admin));

    // Tasks by the legacy user keep its public id.
    let (t, act) = s.insert_task(&p.id, task_input("Write bio"), &Actor::from_user(&legacy)).await.unwrap();
    assert_eq!((t.created_by.as_str(), act.user_id.as_deref()), (LEGACY, Some(LEGACY)));
    assert_eq!(s.get_project(&p.id).await.unwrap().unwrap().tasks[0].created_by, LEGACY);

    // Members are addressed by their stored entry, e-mail included.
    let actor = Actor::from_user(&legacy);
    let (m, act) =
        s.update_member_role(&p.id, "Aoife.OBrien@example.com", "Aoife", "member", true, &actor).await.unwrap();
    assert_eq!((m.user_id.as_str(), m.role.as_str()), ("Aoife.OBrien@example.com", "member"));
    assert_eq!(act.unwrap().entity_id.as_deref(), Some("Aoife.OBrien@example.com"));
    assert_eq!(code(&s.add_member(&p.id, &aoife, "member", &actor).await.unwrap_err()), "already_member");
    let act = s.remove_member(&p.id, "Aoife.OBrien@example.com", "Aoife", true, &actor).await.unwrap();
    assert_eq!(act.entity_id.as_deref(), Some("Aoife.OBrien@example.com"));
    let listed = s.list_activities(&p.id, &all_activities()).await.unwrap().activities;
    assert_eq!(listed[0], act, "an e-mail entity id reads back verbatim");
    assert!(s.list_projects_for(&aoife).await.unwrap().is_empty());

    // A member reference that resolves to nobody is refused, not stored half-way.
    let mut dangling = (*stored).clone();
    dangling.members.push(Member {
        user_id: "ghost@example.com".into(),
        role: "member".into(),
        joined_at: time::now(),
        extra: Default::default(),
    });
    assert_eq!(code(&s.put_project(&dangling).await.unwrap_err()), "other");
    assert_eq!(s.get_project(&p.id).await.unwrap().unwrap().members.len(), 1);
}

// ------------------------------------------------------------------------------------------------------ milestones

#[tokio::test]
async fn milestones_keep_order_and_completion() {
    let db = TestDb::new().await;
    let s = db.migrated().await;
    let (a, ..) = seed_users(&s).await;
    let actor = Actor::from_user(&a);
    let p = s.insert_project(project_input("P"), &actor).await.unwrap();
    let input = |t: &str| NewMilestone {
        title: t.into(),
        description: "d".into(),
        due_date: Some("2025-11-30T00:00:00.000Z".into()),
    };
    let (m1, act) = s.insert_milestone(&p.id, input("Alpha"), &actor).await.unwrap();
    assert_eq!((act.kind.as_str(), act.action.as_str()), ("milestone.created", "created milestone \"Alpha\""));
    let (m2, _) = s.insert_milestone(&p.id, input("Beta"), &actor).await.unwrap();
    let done = MilestonePatch { status: Some("completed".into()), ..Default::default() };
    let (m1c, act) = s.update_milestone(&p.id, &m1.id, done, &actor).await.unwrap();
    assert_eq!(act.kind, "milestone.completed");
    assert!(m1c.completed_at.is_some());
    let stored = s.get_project(&p.id).await.unwrap().unwrap();
    assert_eq!(stored.milestones, vec![m1c.clone(), m2.clone()]);
    assert_eq!(stored.milestones[0].order_index, None, "orderIndex is written only when the record had one");
    let reopen =
        MilestonePatch { status: Some("in_progress".into()), title: Some("Alpha 2".into()), ..Default::default() };
    let (m1r, act) = s.update_milestone(&p.id, &m1.id, reopen, &actor).await.unwrap();
    assert_eq!((act.kind.as_str(), m1r.completed_at.clone()), ("milestone.updated", None));
    assert_eq!(s.get_project(&p.id).await.unwrap().unwrap().milestones[0], m1r);
    let missing =
        s.update_milestone(&p.id, "dddddddd-0000-4000-8000-0000000000ff", MilestonePatch::default(), &actor).await;
    assert_eq!(code(&missing.unwrap_err()), "milestone_not_found");
}

// ------------------------------------------------------------------------------------------------------ files

fn file(id: &str, uploader: &str, project: Option<&str>, at: &str) -> FileRecord {
    FileRecord {
        id: id.into(),
        original_name: "reel-thumbnail.PNG".into(),
        filename: format!("{id}-1757000000000.png"),
        path: Some(format!("/srv/uploads/{id}.png")),
        url: format!("/uploads/{id}.png"),
        size: 20480,
        mimetype: "image/png".into(),
        uploaded_by: uploader.into(),
        uploaded_at: at.into(),
        tags: vec!["reel".into()],
        description: String::new(),
        is_public: false,
        updated_at: None,
        project_id: project.map(str::to_owned),
        extra: Default::default(),
    }
}

#[tokio::test]
async fn files_crud() {
    let db = TestDb::new().await;
    let s = db.migrated().await;
    let (a, ..) = seed_users(&s).await;
    let p = s.insert_project(project_input("P"), &Actor::from_user(&a)).await.unwrap();
    let f1 = file("ffffffff-0000-4000-8000-000000000001", A, Some(&p.id), "2025-09-04T15:33:20.000Z");
    let f2 = file("ffffffff-0000-4000-8000-000000000002", LEGACY, None, "2025-09-04T15:33:21.000Z");
    let f3 = file("ffffffff-0000-4000-8000-000000000003", A, None, "2025-09-04T15:33:22.000Z");
    let inserted = s.insert_files(vec![f1.clone(), f2.clone(), f3.clone()]).await.unwrap();
    assert_eq!(inserted, vec![f1.clone(), f2.clone(), f3.clone()]);
    assert_eq!(s.list_files_for(A, None).await.unwrap(), vec![f1.clone(), f3.clone()]);
    assert_eq!(s.list_files_for(A, Some(&p.id)).await.unwrap(), vec![f1.clone()]);
    assert_eq!(s.list_files_for(LEGACY, None).await.unwrap(), vec![f2.clone()]);
    assert_eq!(s.get_file(&f2.id).await.unwrap(), Some(f2.clone()));

    let patch = FilePatch { description: Some("Cover".into()), tags: Some(vec![]), is_public: Some(true) };
    let u = s.update_file(&f1.id, patch).await.unwrap();
    assert!(u.is_public && u.tags.is_empty() && u.description == "Cover" && u.updated_at.is_some());
    assert_eq!(s.get_file(&f1.id).await.unwrap(), Some(u.clone()));
    assert_eq!(s.delete_file(&f3.id).await.unwrap(), f3);
    assert_eq!(s.get_file(&f3.id).await.unwrap(), None);
    assert_eq!(code(&s.delete_file(&f3.id).await.unwrap_err()), "file_not_found");
    assert_eq!(code(&s.update_file(&f3.id, FilePatch::default()).await.unwrap_err()), "file_not_found");

    // Deleting the project detaches its files (`on delete set null`).
    s.delete_project(&p.id).await.unwrap();
    assert_eq!(s.get_file(&f1.id).await.unwrap().unwrap().project_id, None);
}

// ------------------------------------------------------------------------------------------------------ teams

#[tokio::test]
async fn teams_and_organizations() {
    let db = TestDb::new().await;
    let s = db.migrated().await;
    let (a, b, c, legacy) = seed_users(&s).await;
    let member = |id: &str, role: &str| Member {
        user_id: id.into(),
        role: role.into(),
        joined_at: "2025-10-13T11:00:00.000Z".into(),
        extra: Default::default(),
    };
    let team = Team {
        id: "eeeeeeee-0000-4000-8000-000000000001".into(),
        name: "Design Studio ✏️".into(),
        description: String::new(),
        created_by: A.into(),
        created_at: "2025-09-11T09:00:00.000Z".into(),
        updated_at: None,
        members: vec![member(A, "owner"), member(LEGACY, "member")],
        invites: vec![],
        extra: Default::default(),
    };
    let org = Team {
        id: "eeeeeeee-0000-4000-8000-000000000003".into(),
        name: "Example Org GmbH & Co. <KG>".into(),
        description: "Umbrella".into(),
        created_by: B.into(),
        created_at: "2025-10-13T11:00:00.000Z".into(),
        updated_at: Some("2025-10-13T11:00:00.000Z".into()),
        members: vec![member(B, "admin"), member(A, "member")],
        invites: vec![],
        extra: Default::default(),
    };
    assert_eq!(s.insert_team(team.clone()).await.unwrap(), team);
    assert_eq!(s.insert_team(org.clone()).await.unwrap(), org);
    assert_eq!(s.get_team(&team.id).await.unwrap(), Some(team.clone()));
    assert_eq!(s.get_team("eeeeeeee-0000-4000-8000-0000000000ff").await.unwrap(), None);
    assert_eq!(s.list_teams_for(&a).await.unwrap(), vec![team.clone(), org.clone()]);
    assert_eq!(s.list_teams_for(&legacy).await.unwrap(), vec![team.clone()]);
    assert_eq!(s.list_teams_for(&b).await.unwrap(), vec![org.clone()]);
    assert!(s.list_teams_for(&c).await.unwrap().is_empty());
    let kinds: Vec<(String, String)> = sqlx::query_as("select name, kind from organizations order by created_at")
        .fetch_all(&mut db.conn().await)
        .await
        .unwrap();
    assert_eq!(kinds[0].1, "team");
    assert_eq!(kinds[1].1, "organization");

    // A project can point at a team and an organization.
    let input =
        NewProject { team_id: Some(team.id.clone()), organization_id: Some(org.id.clone()), ..project_input("P") };
    let p = s.insert_project(input, &Actor::from_user(&a)).await.unwrap();
    assert_eq!(s.get_project(&p.id).await.unwrap().unwrap().organization_id, Some(org.id.clone()));
}

// ------------------------------------------------------------------------------------------------------ fixtures

/// The legacy fixture set, loaded by the JSON store and written through the import path, reads back identical
/// from PostgreSQL: ids (the legacy one included), e-mail members, escaped text, NFD names, unknown keys, date-only
/// values in canonical form, rollback-shaped milestones.
#[tokio::test]
async fn legacy_fixtures_read_back_identical() {
    let dir = tempfile::tempdir().unwrap();
    copy_tree(&fixtures_dir(), dir.path());
    let json = JsonStore::open(JsonOptions::new(dir.path())).unwrap();
    let state = json.snapshot();

    let db = TestDb::new().await;
    let s = db.migrated().await;
    for u in state.users.values() {
        s.put_user(u).await.unwrap();
    }
    for t in state.teams.values() {
        s.insert_team((**t).clone()).await.unwrap();
    }
    for p in state.projects.values() {
        s.put_project(p).await.unwrap();
    }
    s.insert_files(state.files.values().map(|f| (**f).clone()).collect()).await.unwrap();
    for list in state.activities.values() {
        for a in list.oldest_first() {
            s.put_activity(a).await.unwrap();
        }
    }
    // Twice is a no-op.
    for p in state.projects.values() {
        s.put_project(p).await.unwrap();
    }

    let fresh = db.store().await; // a new instance: the legacy ids come from the table
    for u in state.users.values() {
        assert_eq!(fresh.get_user(&u.id).await.unwrap().as_ref(), Some(&**u), "user {}", u.id);
    }
    for t in state.teams.values() {
        assert_eq!(fresh.get_team(&t.id).await.unwrap().as_ref(), Some(&**t), "team {}", t.id);
    }
    for p in state.projects.values() {
        assert_eq!(fresh.get_project(&p.id).await.unwrap().as_deref(), Some(&**p), "project {}", p.id);
        // The membership-and-tasks read of task requests answers as the JSON store's, legacy ids and order included.
        for with_tasks in [false, true] {
            let want = json.get_project_access(&p.id, with_tasks).await.unwrap();
            let got = fresh.get_project_access(&p.id, with_tasks).await.unwrap();
            assert_eq!(got, want, "access to project {} (with tasks: {with_tasks})", p.id);
        }
        let want = json.list_activities(&p.id, &all_activities()).await.unwrap();
        let got = fresh.list_activities(&p.id, &all_activities()).await.unwrap();
        assert_eq!((got.activities, got.total), (want.activities, want.total), "activities of {}", p.id);
    }
    for f in state.files.values() {
        assert_eq!(fresh.get_file(&f.id).await.unwrap().as_ref(), Some(&**f), "file {}", f.id);
    }
    for u in state.users.values() {
        let mut want: Vec<String> = json.list_projects_for(u).await.unwrap().iter().map(|p| p.id.clone()).collect();
        let mut got: Vec<String> = fresh.list_projects_for(u).await.unwrap().iter().map(|p| p.id.clone()).collect();
        // The JSON store lists in file order; PostgreSQL in creation order (legacy defect 19). Same set.
        want.sort();
        got.sort();
        assert_eq!(got, want, "projects of {}", u.id);
        let want: Vec<Team> = json.list_teams_for(u).await.unwrap();
        assert_eq!(fresh.list_teams_for(u).await.unwrap().len(), want.len(), "teams of {}", u.id);
    }
    assert_eq!(count(&db, "select count(*) from project_members").await, 14);
    assert_eq!(count(&db, "select count(*) from tasks").await, 17);
    assert_eq!(count(&db, "select count(*) from milestones").await, 7);
    assert_eq!(count(&db, "select count(*) from team_members").await, 7);
    assert_eq!(count(&db, "select count(*) from activities").await, 4);
    json.close().await.unwrap();
}

// ------------------------------------------------------------------------------------------------------ parity

/// Replaces ids and generated timestamps by placeholders numbered in order of appearance, so that two stores'
/// answers to the same calls can be compared although each minted its own ids.
fn normalise(v: &Value, seen: &mut Vec<String>) -> Value {
    match v {
        Value::String(s)
            if uuid::Uuid::parse_str(s).is_ok() && !s.starts_with("aaaaaaaa") && !s.starts_with("ffffffff") =>
        {
            let n = seen.iter().position(|x| x == s).unwrap_or_else(|| {
                seen.push(s.clone());
                seen.len() - 1
            });
            Value::String(format!("<id{n}>"))
        }
        Value::String(s)
            if s.len() == 24
                && s.ends_with('Z')
                && postgres::mapping::parse_ts(s).is_some()
                && !s.starts_with("2025") =>
        {
            Value::String("<now>".into())
        }
        Value::Array(a) => Value::Array(a.iter().map(|x| normalise(x, seen)).collect()),
        Value::Object(o) => Value::Object(o.iter().map(|(k, x)| (k.clone(), normalise(x, seen))).collect()),
        other => other.clone(),
    }
}

fn outcome<T: serde::Serialize>(r: Result<T, StoreError>) -> Value {
    match r {
        Ok(v) => serde_json::to_value(v).unwrap(),
        Err(e) => json!({ "error": code(&e) }),
    }
}

/// One scenario touching every method; each answer is recorded.
async fn scenario(s: &dyn Store) -> Vec<Value> {
    let mut out = vec![];
    let (a, b, c, legacy) = seed_users(s).await;
    let (aa, ab, al) = (Actor::from_user(&a), Actor::from_user(&b), Actor::from_user(&legacy));
    out.push(outcome(s.insert_user(user(&domain::new_id(), "ANN@example.com", "x", "2025-09-09T00:00:00.000Z")).await));
    out.push(outcome(s.get_user_by_email("Ann@Example.com").await));
    out.push(outcome(s.get_user(LEGACY).await));
    out.push(outcome(s.list_users().await));

    let p1 = s.insert_project(project_input("One"), &aa).await.unwrap();
    tokio::time::sleep(Duration::from_millis(3)).await;
    let p2 = s.insert_project(project_input("Two"), &al).await.unwrap();
    out.push(outcome(s.add_member(&p1.id, &b, "member", &aa).await));
    out.push(outcome(s.add_member(&p1.id, &b, "member", &aa).await));
    out.push(outcome(s.add_member(&p2.id, &a, "viewer", &al).await));
    out.push(outcome(s.update_member_role(&p1.id, B, "Bo", "admin", false, &aa).await));
    out.push(outcome(s.update_member_role(&p1.id, B, "Bo", "admin", false, &aa).await));
    out.push(outcome(s.update_member_role(&p1.id, A, "Ann", "member", true, &aa).await));

    let mut tasks = vec![];
    for t in ["a", "b", "c"] {
        let r = s.insert_task(&p1.id, task_input(t), &ab).await;
        tasks.push(r.as_ref().unwrap().0.id.clone());
        out.push(outcome(r));
    }
    let patches = [
        TaskPatch { status: Some("completed".into()), ..Default::default() },
        TaskPatch { priority: Some("high".into()), ..Default::default() },
        TaskPatch {
            assigned_to: Some(Some(LEGACY.into())),
            assignee_label: Some("Mårten".into()),
            ..Default::default()
        },
        TaskPatch { status: Some("in_progress".into()), title: Some("b2".into()), ..Default::default() },
        TaskPatch { description: Some("same".into()), ..Default::default() },
    ];
    for (i, patch) in patches.into_iter().enumerate() {
        out.push(outcome(s.update_task(&p1.id, &tasks[i % 3], patch, &aa).await));
    }
    out.push(outcome(s.delete_task(&p1.id, &tasks[0], &aa).await));
    out.push(outcome(s.delete_task(&p1.id, &tasks[0], &aa).await));
    out.push(outcome(s.insert_task(&p1.id, task_input("d"), &aa).await));
    out.push(outcome(s.insert_task("bbbbbbbb-0000-4000-8000-0000000000ff", task_input("x"), &aa).await));

    let (m, _) =
        s.insert_milestone(&p1.id, NewMilestone { title: "M1".into(), ..Default::default() }, &aa).await.unwrap();
    out.push(outcome(s.insert_milestone(&p1.id, NewMilestone { title: "M2".into(), ..Default::default() }, &ab).await));
    out.push(outcome(
        s.update_milestone(
            &p1.id,
            &m.id,
            MilestonePatch { status: Some("completed".into()), ..Default::default() },
            &aa,
        )
        .await,
    ));
    out.push(outcome(s.update_milestone(&p1.id, "x", MilestonePatch::default(), &aa).await));

    out.push(outcome(s.update_project(&p1.id, ProjectPatch { name: Some("Uno".into()), ..Default::default() }).await));
    out.push(outcome(s.get_project(&p1.id).await));
    out.push(outcome(s.list_projects_for(&a).await));
    out.push(outcome(s.list_projects_for(&c).await));
    for q in [
        ActivityQuery { limit: 5, ..Default::default() },
        ActivityQuery { limit: 5, offset: 4, ..Default::default() },
        ActivityQuery { limit: 50, kind: Some("task.updated".into()), ..Default::default() },
        ActivityQuery { limit: 50, user_id: Some(B.into()), ..Default::default() },
        ActivityQuery { limit: 50, offset: 99, ..Default::default() },
    ] {
        let page = s.list_activities(&p1.id, &q).await.unwrap();
        out.push(json!({ "total": page.total, "activities": page.activities }));
    }
    out.push(outcome(s.remove_member(&p1.id, A, "Ann", false, &ab).await));
    out.push(outcome(s.remove_member(&p1.id, B, "Bo", true, &aa).await));
    out.push(outcome(s.remove_member(&p1.id, A, "Ann", true, &aa).await));
    out.push(outcome(s.remove_member(&p1.id, B, "Bo", true, &aa).await));

    let f1 = file("ffffffff-0000-4000-8000-000000000001", A, Some(&p1.id), "2025-09-04T15:33:20.000Z");
    let f2 = file("ffffffff-0000-4000-8000-000000000002", A, None, "2025-09-04T15:33:21.000Z");
    out.push(outcome(s.insert_files(vec![f1.clone(), f2.clone()]).await));
    out.push(outcome(s.list_files_for(A, None).await));
    out.push(outcome(s.list_files_for(A, Some(&p1.id)).await));
    out.push(outcome(
        s.update_file(&f2.id, FilePatch { description: Some("d".into()), ..Default::default() }).await.map(|mut f| {
            f.updated_at = None;
            f
        }),
    ));
    out.push(outcome(s.delete_file(&f1.id).await));
    out.push(outcome(s.get_file(&f1.id).await));

    out.push(outcome(s.delete_project(&p2.id).await));
    out.push(outcome(s.delete_project(&p2.id).await));
    out.push(outcome(s.get_project(&p2.id).await));
    out.push(outcome(s.list_activities(&p2.id, &all_activities()).await.map(|p| p.total)));
    out
}

/// The same calls against the JSON store (the reference) and the PostgreSQL store give the same answers.
#[tokio::test]
async fn same_answers_as_the_json_store() {
    let dir = tempfile::tempdir().unwrap();
    let json = JsonStore::open(JsonOptions::new(dir.path())).unwrap();
    let db = TestDb::new().await;
    let pg = db.migrated().await;
    let want = scenario(&json).await;
    let got = scenario(&pg).await;
    assert_eq!(want.len(), got.len());
    let (mut seen_w, mut seen_g) = (vec![], vec![]);
    for (i, (w, g)) in want.iter().zip(&got).enumerate() {
        let (w, g) = (normalise(w, &mut seen_w), normalise(g, &mut seen_g));
        assert_eq!(g, w, "step {i} differs");
    }
    json.close().await.unwrap();
}

// ------------------------------------------------------------------------------------------------------ availability

#[tokio::test]
async fn database_down_is_unavailable_within_the_acquire_timeout() {
    let opts = PgOptions {
        acquire_timeout: Duration::from_millis(500),
        ..PgOptions::new("postgres://flux:secret@127.0.0.1:1/flux")
    };
    let started = Instant::now();
    let s = PostgresStore::connect(opts).await.expect("the store comes up while PostgreSQL is down");
    assert!(started.elapsed() < Duration::from_secs(2));

    let started = Instant::now();
    let err = s.get_user(A).await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    assert!(started.elapsed() < Duration::from_millis(1500), "{:?}", started.elapsed());
    let (a, ..) = (user(A, "a@example.com", "A", "2025-09-01T00:00:00.000Z"),);
    assert!(matches!(s.insert_user(a).await.unwrap_err(), StoreError::Unavailable(_)));
    assert!(matches!(s.list_activities("x", &all_activities()).await.unwrap_err(), StoreError::Unavailable(_)));

    let report = s.check().await;
    assert_eq!(report.exit_code(), 3);
    assert_eq!(report.connect_error.as_ref().unwrap().class, postgres::ConnectErrorClass::Refused);
    assert!(!report.to_string().contains("secret"), "the password is never printed");
    assert!(matches!(s.migrate().await.unwrap_err(), postgres::PgError::Unreachable { .. }));
}

#[tokio::test]
async fn recovers_when_the_database_comes_back() {
    // "Comes back" without stopping the shared server: the database does not exist at first, then is created.
    let name = format!("flux_test_{}", uuid::Uuid::new_v4().simple());
    let url = with_database(&server_url(), &name);
    let s = PostgresStore::connect(PgOptions { acquire_timeout: Duration::from_millis(500), ..PgOptions::new(url) })
        .await
        .unwrap();
    assert!(s.get_user(A).await.is_err());
    let mut admin = PgConnection::connect(&server_url()).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("create database {name}"))).execute(&mut admin).await.unwrap();
    let _guard = TestDb { name: name.clone(), url: String::new() };
    s.migrate().await.unwrap();
    assert_eq!(s.get_user(A).await.unwrap(), None, "same store, no restart");
}

#[tokio::test]
async fn statement_timeout_is_unavailable() {
    let db = TestDb::new().await;
    let s = db.migrated().await;
    let (a, ..) = seed_users(&s).await;
    let p = s.insert_project(project_input("P"), &Actor::from_user(&a)).await.unwrap();
    let slow = PostgresStore::connect(PgOptions { statement_timeout: Duration::from_millis(200), ..db.options() })
        .await
        .unwrap();
    // Another session holds the project row; the write waits for the lock until statement_timeout fires.
    let mut other = db.conn().await;
    let mut tx = other.begin().await.unwrap();
    sqlx::query("select 1 from projects where id = $1 for update")
        .bind(uuid::Uuid::parse_str(&p.id).unwrap())
        .execute(&mut *tx)
        .await
        .unwrap();
    let started = Instant::now();
    let err = slow.insert_task(&p.id, task_input("t"), &Actor::from_user(&a)).await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
    tx.rollback().await.unwrap();
    slow.insert_task(&p.id, task_input("t"), &Actor::from_user(&a)).await.unwrap();
    // The connection reports itself in pg_stat_activity.
    let names: Vec<Option<String>> =
        sqlx::query_scalar("select application_name from pg_stat_activity where datname = current_database()")
            .fetch_all(&mut other)
            .await
            .unwrap();
    assert!(names.iter().any(|n| n.as_deref() == Some("fluxstudio")), "{names:?}");
}

// ------------------------------------------------------------------------------------------ dual-postgres outbox

#[tokio::test]
async fn outbox_rows_exist_only_for_committed_writes_and_replay_into_json_in_order() {
    use store::json::state::Op;
    use store::outbox::{OutboxSource, OutboxTarget};
    let db = TestDb::new().await;
    let pg = Arc::new(db.migrated().await);
    let op = |v: Value| -> Op { serde_json::from_value(v).unwrap() };
    let project = op(json!({"op": "putProject", "rec": {"id": "bbbbbbbb-0000-4000-8000-0000000000aa", "name": "P",
        "status": "active", "priority": "medium", "createdBy": "u1", "createdAt": "2026-01-01T00:00:00.000Z",
        "members": []}}));
    let task = |title: &str| {
        op(json!({"op": "putTask", "project": "bbbbbbbb-0000-4000-8000-0000000000aa", "pos": usize::MAX, "rec": {
            "id": "cccccccc-0000-4000-8000-0000000000aa", "title": title, "description": null, "status": "todo",
            "priority": "medium", "assignedTo": null, "dueDate": null, "createdBy": "u1",
            "createdAt": "2026-01-01T00:00:00.000Z", "updatedAt": "2026-01-01T00:00:00.000Z", "completedAt": null}}))
    };

    // Not recording: nothing is written.
    let mut tx = pg.pool().begin().await.unwrap();
    pg.record_outbox(&mut tx, || vec![project.clone()]).await.unwrap();
    tx.commit().await.unwrap();
    pg.enable_outbox(7);
    // A rolled-back write leaves no entry; committed ones do, in order.
    let mut tx = pg.pool().begin().await.unwrap();
    pg.record_outbox(&mut tx, || vec![task("rolled back")]).await.unwrap();
    tx.rollback().await.unwrap();
    let mut tx = pg.pool().begin().await.unwrap();
    pg.record_outbox(&mut tx, || vec![project.clone(), task("first")]).await.unwrap();
    tx.commit().await.unwrap();
    let mut tx = pg.pool().begin().await.unwrap();
    pg.record_outbox(&mut tx, || vec![task("second")]).await.unwrap();
    tx.commit().await.unwrap();

    let source = postgres::outbox::PgOutbox::new(pg.clone());
    let pending = source.pending(100).await;
    let summary: Vec<(String, String, u64)> =
        pending.iter().map(|e| (e.entity.clone(), e.ordering_key.clone(), e.epoch)).collect();
    assert_eq!(summary.len(), 3, "{summary:?}");
    assert!(summary.iter().all(|(_, k, epoch)| k == "project:bbbbbbbb-0000-4000-8000-0000000000aa" && *epoch == 7));
    assert!(pending.windows(2).all(|w| w[0].seq < w[1].seq));
    assert_eq!(pending[2].data.as_ref().unwrap()["title"], "second");
    assert_eq!(source.depth().0, 3);

    // Replayed into a JSON store: the after-images land, the last one wins.
    let dir = tempfile::tempdir().unwrap();
    let json = JsonStore::open(JsonOptions::new(dir.path())).unwrap();
    json.apply_batch(&pending).await.unwrap();
    source.mark_applied(&pending.iter().map(|e| e.seq).collect::<Vec<_>>()).await;
    assert_eq!(source.depth().0, 0);
    assert!(source.pending(100).await.is_empty());
    let p = json.get_project("bbbbbbbb-0000-4000-8000-0000000000aa").await.unwrap().unwrap();
    assert_eq!(p.tasks.iter().map(|t| t.title.as_str()).collect::<Vec<_>>(), vec!["second"]);
    json.close().await.unwrap();
}
