//! `fluxstudio migrate`, `validate` and `rollback` driven through the real binary against a fresh PostgreSQL
//! database each (cli.md §3–5), on copies of the legacy fixture set.

use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::{json, Value};
use sqlx::{Connection, PgConnection};
use tempfile::TempDir;

use crate::support::{copy_fixtures, fresh_database, read_json, spawn_child};

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Out {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}{}", self.stdout, self.stderr))
    }
}

fn run(dir: &Path, db: &str, args: &[&str], env: &[(&str, &str)]) -> Out {
    let out = Command::new(env!("CARGO_BIN_EXE_fluxstudio"))
        .args(["--no-env-file", "--data-dir", dir.to_str().unwrap(), "--database-url", db])
        .args(args)
        .env("RUST_LOG", "error")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("binary runs");
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn fixtures() -> TempDir {
    let dir = TempDir::new().unwrap();
    copy_fixtures(dir.path());
    dir
}

async fn sql(db: &str, statement: &'static str) {
    let mut conn = PgConnection::connect(db).await.unwrap();
    sqlx::query(statement).execute(&mut conn).await.unwrap();
    conn.close().await.unwrap();
}

async fn count(db: &str, query: &'static str) -> i64 {
    let mut conn = PgConnection::connect(db).await.unwrap();
    let n: i64 = sqlx::query_scalar(query).fetch_one(&mut conn).await.unwrap();
    conn.close().await.unwrap();
    n
}

/// The fixture set's counts (shared/fixtures/legacy/EXPECTED.md).
const EXPECTED: [(&str, u64); 9] = [
    ("users", 9),
    ("teams", 3),
    ("team_members", 7),
    ("projects", 7),
    ("project_members", 14),
    ("tasks", 17),
    ("milestones", 7),
    ("files", 3),
    ("activities", 4),
];

#[tokio::test]
async fn migrate_moves_every_fixture_row_and_a_second_run_changes_nothing() {
    let dir = fixtures();
    let db = fresh_database();
    let out = run(dir.path(), &db, &["migrate", "--json"], &[]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let r = out.json();
    assert_eq!(r["dryRun"], false);
    for (entity, n) in EXPECTED {
        let c = &r["entities"][entity];
        assert_eq!(c, &json!({"read": n, "inserted": n, "updated": 0, "unchanged": 0, "errors": 0}), "{entity}");
    }
    assert_eq!(r["rowErrors"], json!([]));
    let legacy = r["legacyIds"].as_array().unwrap();
    assert_eq!(legacy.len(), 1);
    assert_eq!(legacy[0]["entity"], "user");
    assert_eq!(legacy[0]["legacyId"], "1756887342317");
    assert_eq!(count(&db, "select count(*) from tasks").await, 17);
    assert_eq!(count(&db, "select count(*) from migration_runs where finished_at is null").await, 0);

    let again = run(dir.path(), &db, &["migrate", "--json"], &[]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    let r = again.json();
    for (entity, n) in EXPECTED {
        let c = &r["entities"][entity];
        assert_eq!(c, &json!({"read": n, "inserted": 0, "updated": 0, "unchanged": n, "errors": 0}), "{entity}");
    }
    assert_eq!(r["resumedRun"], Value::Null, "a finished run leaves nothing to resume");

    // The files' own version is already there: --overwrite finds nothing to replace.
    let over = run(dir.path(), &db, &["migrate", "--overwrite", "--json"], &[]);
    assert_eq!(over.code, 0, "{}", over.stderr);
    assert_eq!(over.json()["entities"]["tasks"]["updated"], 0);

    let text = run(dir.path(), &db, &["migrate"], &[]);
    assert!(text.stdout.contains("legacy ids mapped: 1 (user 1756887342317 -> "), "{}", text.stdout);
    assert!(text.stdout.contains("done in "), "{}", text.stdout);
}

#[tokio::test]
async fn a_dry_run_reports_what_it_would_insert_and_writes_nothing() {
    let dir = fixtures();
    let db = fresh_database();
    let out = run(dir.path(), &db, &["migrate", "--dry-run", "--json"], &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let r = out.json();
    assert_eq!(r["dryRun"], true);
    assert_eq!(r["entities"]["projects"]["inserted"], 7);
    for table in
        ["select count(*) from users", "select count(*) from activities", "select count(*) from migration_runs"]
    {
        assert_eq!(count(&db, table).await, 0, "{table}");
    }
    assert!(run(dir.path(), &db, &["migrate", "--dry-run"], &[]).stdout.contains("would insert"));
}

#[tokio::test]
async fn a_dangling_reference_is_a_row_error_naming_it_unless_nulled() {
    let dir = fixtures();
    let path = dir.path().join("projects.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut doc: Value = serde_json::from_str(&text).unwrap();
    let task = &mut doc["projects"][0]["tasks"][1];
    let task_id = task["id"].as_str().unwrap().to_owned();
    task["assignedTo"] = json!("aaaaaaaa-0000-4000-8000-000000000099");
    std::fs::write(&path, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();

    let db = fresh_database();
    let out = run(dir.path(), &db, &["migrate"], &[]);
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    let line = format!("tasks {task_id} assignedTo: references unknown user aaaaaaaa-0000-4000-8000-000000000099");
    assert!(out.stdout.contains("row errors (1):"), "{}", out.stdout);
    assert!(out.stdout.contains(&line), "{}", out.stdout);
    assert_eq!(count(&db, "select count(*) from tasks").await, 16, "the other rows still moved");

    let nulled = run(dir.path(), &db, &["migrate", "--on-dangling", "null", "--json"], &[]);
    assert_eq!(nulled.code, 0, "{}", nulled.stderr);
    let r = nulled.json();
    assert_eq!(r["entities"]["tasks"]["inserted"], 1);
    assert_eq!(r["nulledReferences"][0]["id"], task_id.as_str());
    assert_eq!(r["nulledReferences"][0]["field"], "assignedTo");
}

#[tokio::test]
async fn an_interrupted_migrate_resumes_after_its_last_committed_batch() {
    let dir = fixtures();
    let db = fresh_database();
    let crash = run(
        dir.path(),
        &db,
        &["migrate", "--batch-size", "2", "--json"],
        &[("FLUX_TEST_MIGRATE_CRASH_AFTER_BATCHES", "12")],
    );
    assert_eq!(crash.code, 137, "the test hook ends the process like a crash: {}", crash.stderr);
    assert!(
        count(&db, "select count(*) from migration_runs where finished_at is null").await > 0,
        "a checkpoint is left"
    );
    let done_before = count(&db, "select count(*) from tasks").await;
    assert!(done_before < 17, "stopped before the tasks were done ({done_before})");

    let resumed = run(dir.path(), &db, &["migrate", "--batch-size", "2", "--json"], &[]);
    assert_eq!(resumed.code, 0, "{}", resumed.stderr);
    let r = resumed.json();
    assert!(r["resumedRun"].is_string(), "{r}");
    assert_eq!(r["entities"]["users"]["inserted"], 0, "finished entities are skipped");
    for (entity, n) in EXPECTED {
        let c = &r["entities"][entity];
        assert_eq!(c["inserted"].as_u64().unwrap() + c["unchanged"].as_u64().unwrap(), n, "{entity}: {c}");
    }
    assert_eq!(count(&db, "select count(*) from tasks").await, 17);
    assert_eq!(count(&db, "select count(*) from project_members").await, 14);
    assert_eq!(count(&db, "select count(*) from migration_runs where finished_at is null").await, 0);
    assert_eq!(run(dir.path(), &db, &["validate"], &[]).code, 0);
}

#[tokio::test]
async fn validate_reports_exactly_the_differences_made_behind_its_back_and_repair_fixes_them() {
    let dir = fixtures();
    let db = fresh_database();
    assert_eq!(run(dir.path(), &db, &["migrate"], &[]).code, 0);
    let ok = run(dir.path(), &db, &["validate"], &[]);
    assert_eq!(ok.code, 0, "{}{}", ok.stdout, ok.stderr);
    assert!(ok.stdout.contains("mode json (source: json)"), "{}", ok.stdout);
    assert!(ok.stdout.contains("100.0%"));
    assert_eq!(count(&db, "select count(*) from validation_runs where passed").await, 1);

    sql(
        &db,
        "update tasks set status = 'blocked', updated_at = now() where id = 'cccccccc-0003-4000-8000-000000000002'",
    )
    .await;
    sql(&db, "delete from milestones where id = 'dddddddd-0003-4000-8000-000000000002'").await;
    let out = run(dir.path(), &db, &["validate", "--json"], &[]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    let r = out.json();
    assert_eq!(r["passed"], false);
    assert_eq!(r["source"], "json");
    assert_eq!(r["repaired"], Value::Null);
    assert_eq!(r["totals"], json!({"records": 71, "differences": 2}));
    let tasks = &r["entities"]["tasks"];
    assert_eq!(
        tasks["mismatched"],
        json!([{"id": "cccccccc-0003-4000-8000-000000000002", "fields": ["status", "updatedAt"]}])
    );
    assert_eq!(tasks["accuracy"], 94.1);
    assert_eq!(tasks["matched"], 16);
    let ms = &r["entities"]["milestones"];
    assert_eq!(ms["missingInPostgres"], json!(["dddddddd-0003-4000-8000-000000000002"]));
    assert_eq!((ms["json"].clone(), ms["postgres"].clone(), ms["accuracy"].clone()), (json!(7), json!(6), json!(85.7)));
    assert_eq!(r["entities"]["users"]["accuracy"], 100.0);

    let text = run(dir.path(), &db, &["validate"], &[]);
    assert_eq!(text.code, 1);
    assert!(text.stdout.contains("status (json \"review\", postgres \"blocked\")"), "{}", text.stdout);
    assert!(text.stdout.contains("dddddddd-0003-4000-8000-000000000002  missing in postgres"), "{}", text.stdout);
    assert!(text.stdout.contains("RESULT: 2 differences."), "{}", text.stdout);
    assert!(!text.stdout.contains("$2b$"), "never a password hash");

    let repair = run(dir.path(), &db, &["validate", "--repair", "--json"], &[]);
    assert_eq!(repair.code, 0, "{}{}", repair.stdout, repair.stderr);
    let r = repair.json();
    assert_eq!(r["passed"], true);
    assert_eq!(r["repaired"]["differencesBefore"], 2);
    assert_eq!(run(dir.path(), &db, &["validate"], &[]).code, 0);
    assert_eq!(
        count(&db, "select count(*) from milestones where id = 'dddddddd-0003-4000-8000-000000000002'").await,
        1
    );
}

#[tokio::test]
async fn rollback_round_trip_restores_files_that_validate_and_log_in_on_the_json_store() {
    let source = fixtures();
    let db = fresh_database();
    assert_eq!(run(source.path(), &db, &["migrate"], &[]).code, 0);
    let target = TempDir::new().unwrap();
    let dry = run(target.path(), &db, &["rollback", "--dry-run", "--json"], &[]);
    assert_eq!(dry.code, 0, "{}", dry.stderr);
    assert!(!target.path().join("users.json").exists(), "a dry run writes nothing");

    let out = run(target.path(), &db, &["rollback", "--json"], &[]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let r = out.json();
    assert_eq!(r["counts"]["tasks"], 17);
    assert_eq!(r["persistedMode"]["mode"], "json");
    assert_eq!(read_json(&target.path().join(".store-state.json"))["mode"], "json");
    assert!(!target.path().join("ROLLBACK_IN_PROGRESS").exists());
    let users = read_json(&target.path().join("users.json"));
    assert!(users["users"].as_array().unwrap().iter().any(|u| u["id"] == "1756887342317"));

    let check = run(target.path(), &db, &["validate", "--json"], &[]);
    assert_eq!(check.code, 0, "{}{}", check.stdout, check.stderr);
    assert_eq!(check.json()["totals"]["differences"], 0);

    // The JSON store serves the exported files: the legacy-id user logs in with the same id and password.
    let mut server = spawn_child(target.path(), &["--store", "json"], &[]);
    let resp = reqwest::Client::new()
        .post(format!("{}/api/auth/login", server.base))
        .json(&json!({"email": "marten.oberg@example.com", "password": "legacy-Marten-2025"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["user"]["id"], "1756887342317");
    let resp = reqwest::Client::new()
        .post(format!("{}/api/auth/login", server.base))
        .json(&json!({"email": "chen.jing+flux@example.org", "password": "密码-chen-2025"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    server.child.kill().unwrap();
    let _ = server.child.wait();
}

#[tokio::test]
async fn rollback_refuses_while_a_server_holds_the_data_dir_and_over_different_files_without_force() {
    let dir = fixtures();
    let db = fresh_database();
    assert_eq!(run(dir.path(), &db, &["migrate"], &[]).code, 0);

    let mut server = spawn_child(dir.path(), &["--store", "json"], &[]);
    let locked = run(dir.path(), &db, &["rollback", "--force"], &[]);
    assert_eq!(locked.code, 2, "{}", locked.stderr);
    assert!(locked.stderr.contains(&format!("pid {}", server.child.id())), "{}", locked.stderr);
    server.child.kill().unwrap();
    let _ = server.child.wait();

    // PostgreSQL lists records in creation order, the fixture files do not: the files differ.
    let refused = run(dir.path(), &db, &["rollback"], &[]);
    assert_eq!(refused.code, 2, "{}", refused.stderr);
    assert!(refused.stderr.contains("--force"), "{}", refused.stderr);
    assert!(refused.stderr.contains("projects.json (7 records)"), "{}", refused.stderr);

    let backup = TempDir::new().unwrap();
    let forced = run(dir.path(), &db, &["rollback", "--force", "--backup-dir", backup.path().to_str().unwrap()], &[]);
    assert_eq!(forced.code, 0, "{}", forced.stderr);
    let original = std::fs::read(crate::support::fixtures_dir().join("projects.json")).unwrap();
    assert_eq!(std::fs::read(backup.path().join("projects.json")).unwrap(), original, "the old file is backed up");
    assert!(backup.path().join("data/activities").is_dir());
    assert_eq!(run(dir.path(), &db, &["validate"], &[]).code, 0);

    // The persisted mode is now json, which writes the files: a second rollback is refused.
    let again = run(dir.path(), &db, &["rollback", "--force"], &[]);
    assert_eq!(again.code, 2);
    assert!(again.stderr.contains("persisted store mode is json"), "{}", again.stderr);
}

#[test]
fn serve_refuses_to_start_while_a_rollback_marker_exists() {
    let dir = fixtures();
    std::fs::write(dir.path().join("ROLLBACK_IN_PROGRESS"), "{}").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_fluxstudio"))
        .args(["--no-env-file", "--data-dir", dir.path().to_str().unwrap(), "serve", "--port", "0"])
        .env("RUST_LOG", "error")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("ROLLBACK_IN_PROGRESS"));
}

#[tokio::test]
async fn overwrite_is_refused_while_a_dual_mode_server_holds_the_database() {
    let dir = fixtures();
    let db = fresh_database();
    assert_eq!(run(dir.path(), &db, &["migrate"], &[]).code, 0);
    sql(
        &db,
        "insert into store_instances (instance_id, mode, epoch, heartbeat_at) values ('web-1', 'dual-json', 1, now())",
    )
    .await;
    let out = run(dir.path(), &db, &["migrate", "--overwrite"], &[]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("web-1"), "{}", out.stderr);
    assert_eq!(run(dir.path(), &db, &["migrate"], &[]).code, 0, "insert-only runs stay allowed");
}

#[test]
fn an_unreachable_database_is_exit_3() {
    let dir = fixtures();
    for cmd in [&["migrate"][..], &["validate"], &["rollback", "--dry-run"]] {
        let out = run(dir.path(), "postgres://postgres@127.0.0.1:1/nowhere", cmd, &[]);
        assert_eq!(out.code, 3, "{cmd:?}: {}", out.stderr);
    }
}

#[tokio::test]
async fn repair_towards_json_rewrites_the_files_and_is_refused_while_a_server_holds_them() {
    let dir = fixtures();
    let db = fresh_database();
    assert_eq!(run(dir.path(), &db, &["migrate"], &[]).code, 0);
    sql(&db, "update tasks set title = 'Renamed in PostgreSQL' where id = 'cccccccc-0001-4000-8000-000000000001'")
        .await;

    let mut server = spawn_child(dir.path(), &["--store", "json"], &[]);
    let refused = run(dir.path(), &db, &["validate", "--source", "postgres", "--repair"], &[]);
    assert_eq!(refused.code, 2, "{}{}", refused.stdout, refused.stderr);
    // The running json-mode server owns the files and is their source of truth: it declines.
    assert!(refused.stderr.contains("source of truth in mode json"), "{}", refused.stderr);
    server.child.kill().unwrap();
    let _ = server.child.wait();

    let out = run(dir.path(), &db, &["validate", "--source", "postgres", "--repair", "--json"], &[]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let r = out.json();
    assert_eq!(r["source"], "postgres");
    assert_eq!(r["repaired"]["changes"][0]["target"], "json");
    let projects = read_json(&dir.path().join("projects.json"));
    let titles: Vec<&str> = projects["projects"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["tasks"].as_array().unwrap().iter().map(|t| t["title"].as_str().unwrap()))
        .collect();
    assert!(titles.contains(&"Renamed in PostgreSQL"), "{titles:?}");
    assert_eq!(run(dir.path(), &db, &["validate"], &[]).code, 0);
}

#[tokio::test]
async fn records_with_pending_outbox_entries_are_pending_not_differences() {
    let dir = fixtures();
    let db = fresh_database();
    assert_eq!(run(dir.path(), &db, &["migrate"], &[]).code, 0);
    sql(&db, "update tasks set title = 'in flight' where id = 'cccccccc-0001-4000-8000-000000000002'").await;
    sql(
        &db,
        "insert into store_outbox (epoch, ordering_key, entity, entity_id, op, payload) \
         values (1, 'project:bbbbbbbb-0000-4000-8000-000000000001', 'task', 'cccccccc-0001-4000-8000-000000000002', \
         'upsert', '{}')",
    )
    .await;
    let out = run(dir.path(), &db, &["validate", "--json"], &[]);
    assert_eq!(out.code, 0, "{}", out.stdout);
    let tasks = &out.json()["entities"]["tasks"];
    assert_eq!(tasks["pending"], 1);
    assert_eq!(tasks["matched"], 16);
    assert_eq!(tasks["mismatched"], json!([]));
}

#[tokio::test]
async fn restart_discards_an_interrupted_runs_checkpoints_without_duplicating_rows() {
    let dir = fixtures();
    let db = fresh_database();
    let crash =
        run(dir.path(), &db, &["migrate", "--batch-size", "3"], &[("FLUX_TEST_MIGRATE_CRASH_AFTER_BATCHES", "4")]);
    assert_eq!(crash.code, 137);
    let out = run(dir.path(), &db, &["migrate", "--restart", "--json"], &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let r = out.json();
    assert_eq!(r["resumedRun"], Value::Null);
    for (entity, n) in EXPECTED {
        let c = &r["entities"][entity];
        assert_eq!(c["inserted"].as_u64().unwrap() + c["unchanged"].as_u64().unwrap(), n, "{entity}: {c}");
    }
    assert_eq!(count(&db, "select count(*) from users").await, 9);
    assert_eq!(count(&db, "select count(distinct run_id) from migration_runs").await, 1, "the old run is gone");
}

#[tokio::test]
async fn a_row_postgresql_refuses_becomes_a_row_error_and_the_rest_of_its_batch_moves() {
    let dir = fixtures();
    let path = dir.path().join("files.json");
    let mut doc: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let taken = doc["files"][0]["filename"].clone();
    doc["files"][1]["filename"] = taken;
    std::fs::write(&path, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
    let db = fresh_database();
    let out = run(dir.path(), &db, &["migrate", "--json"], &[]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    let r = out.json();
    assert_eq!(r["entities"]["files"]["errors"], 1);
    assert_eq!(r["entities"]["files"]["inserted"], 2);
    let errors = r["rowErrors"].as_array().unwrap();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0]["entity"], "files");
    assert!(errors[0]["reason"].as_str().unwrap().contains("files_filename_key"), "{}", errors[0]);
    assert_eq!(count(&db, "select count(*) from files").await, 2);
}

/// The round trip of issue 6 at scale: a gen-legacy set of 100,000 tasks (with the generator's legacy quirks)
/// → migrate → validate → rollback into an empty dir → validate, each step exit 0 and 100 %.
#[tokio::test]
async fn a_100k_task_gen_legacy_set_round_trips_through_migrate_validate_rollback_validate() {
    let source = TempDir::new().unwrap();
    let gen = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/tools/gen-legacy"))
        .args(["--out", source.path().to_str().unwrap(), "--users", "2000", "--projects", "1000"])
        .args(["--tasks-per-project", "100", "--teams", "200", "--files", "2000", "--seed", "7"])
        .stdout(Stdio::null())
        .status()
        .expect("gen-legacy runs (python3)");
    assert!(gen.success());
    let db = fresh_database();
    let migrated = run(source.path(), &db, &["migrate", "--json"], &[]);
    assert_eq!(migrated.code, 0, "{}{}", migrated.stdout, migrated.stderr);
    let moved = migrated.json();
    assert_eq!(moved["entities"]["tasks"]["inserted"], 100_000, "{moved}");

    let check = run(source.path(), &db, &["validate", "--json"], &[]);
    assert_eq!(check.code, 0, "{}", check.stdout);
    assert_eq!(check.json()["totals"]["differences"], 0);

    let target = TempDir::new().unwrap();
    let back = run(target.path(), &db, &["rollback", "--json"], &[]);
    assert_eq!(back.code, 0, "{}{}", back.stdout, back.stderr);
    assert_eq!(back.json()["counts"]["tasks"], 100_000);
    let check = run(target.path(), &db, &["validate", "--json"], &[]);
    assert_eq!(check.code, 0, "{}", check.stdout);
    let report = check.json();
    assert_eq!(report["totals"]["differences"], 0, "{report}");
    assert_eq!(report["entities"]["tasks"]["matched"], 100_000, "{report}");
}

/// Tasks whose project PostgreSQL does not have (never moved, or deleted there after the projects were): the
/// batch's parent check fails, the batch goes through PostgreSQL's foreign-key triggers, and every such task is
/// a row error naming the key; the others move, and no task is left without its project.
#[tokio::test]
async fn tasks_whose_project_is_missing_in_postgresql_are_row_errors_and_never_orphans() {
    let dir = fixtures();
    let doc: Value = serde_json::from_slice(&std::fs::read(dir.path().join("projects.json")).unwrap()).unwrap();
    let gone = doc["projects"][0]["id"].as_str().unwrap().to_owned();
    let gone_tasks = doc["projects"][0]["tasks"].as_array().unwrap().len();
    assert!(gone_tasks > 0, "the fixture's first project has tasks");

    // Before any project is there: every task is refused.
    let db = fresh_database();
    let out = run(dir.path(), &db, &["migrate", "--only", "users,tasks", "--json"], &[]);
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    let r = out.json();
    assert_eq!(r["entities"]["tasks"]["errors"], 17, "{r}");
    assert!(r["rowErrors"].as_array().unwrap().iter().all(|e| e["reason"].as_str().unwrap().contains("fkey")), "{r}");
    assert_eq!(count(&db, "select count(*) from tasks").await, 0);

    // One project deleted in PostgreSQL after the projects moved (behind the files' back, no tombstone).
    let db = fresh_database();
    let out = run(dir.path(), &db, &["migrate", "--only", "users,teams,projects", "--json"], &[]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let mut conn = PgConnection::connect(&db).await.unwrap();
    let deleted = sqlx::query("delete from projects where id = $1::uuid").bind(&gone).execute(&mut conn).await.unwrap();
    assert_eq!(deleted.rows_affected(), 1);
    conn.close().await.unwrap();
    let out = run(dir.path(), &db, &["migrate", "--only", "tasks", "--batch-size", "4", "--json"], &[]);
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    let r = out.json();
    assert_eq!(r["entities"]["tasks"]["errors"], gone_tasks as u64, "{r}");
    assert_eq!(r["entities"]["tasks"]["inserted"], 17 - gone_tasks as u64, "{r}");
    for e in r["rowErrors"].as_array().unwrap() {
        assert!(e["reason"].as_str().unwrap().contains("tasks_project_id_fkey"), "{e}");
    }
    assert_eq!(count(&db, "select count(*) from tasks").await, 17 - gone_tasks as i64);
    assert_eq!(
        count(
            &db,
            "select count(*) from tasks t where not exists (select 1 from projects p where p.id = t.project_id)"
        )
        .await,
        0,
        "no orphans"
    );
}

/// The parent check behind skipping the foreign-key triggers: true only when every distinct non-null parent
/// exists, and the parents stay locked against deletion until the batch's transaction ends.
#[tokio::test]
async fn a_staged_batch_locks_its_parents_and_sees_a_missing_one() {
    use fluxstudio::store::postgres::copy::{create_staging, lock_parents, stage_of};
    let dir = fixtures();
    let db = fresh_database();
    let out = run(dir.path(), &db, &["migrate", "--only", "users,teams,projects", "--json"], &[]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);

    let mut conn = PgConnection::connect(&db).await.unwrap();
    create_staging(&mut conn).await.unwrap();
    let mut tx = conn.begin().await.unwrap();
    // Three tasks per project (repeated parents), no assignee (a null reference needs no parent).
    sqlx::query(
        "insert into pg_temp.flux_stage_tasks (id, project_id, assigned_to, created_by) \
         select gen_random_uuid(), p.id, null, p.manager_id from projects p, generate_series(1, 3)",
    )
    .execute(&mut *tx)
    .await
    .unwrap();
    assert!(lock_parents(&mut tx, stage_of::TASKS).await.unwrap(), "every parent is there");

    // Another session cannot delete a locked project while the batch is open.
    let mut other = PgConnection::connect(&db).await.unwrap();
    sqlx::query("set lock_timeout = '200ms'").execute(&mut other).await.unwrap();
    let blocked = sqlx::query("delete from projects where id = (select id from projects order by id limit 1)")
        .execute(&mut other)
        .await;
    let err = blocked.expect_err("the delete waits for the lock");
    let code = err.as_database_error().and_then(|d| d.code()).map(|c| c.into_owned());
    assert_eq!(code.as_deref(), Some("55P03"), "lock_not_available: {err}");

    sqlx::query(
        "insert into pg_temp.flux_stage_tasks (id, project_id, created_by) \
         select gen_random_uuid(), gen_random_uuid(), manager_id from projects limit 1",
    )
    .execute(&mut *tx)
    .await
    .unwrap();
    assert!(!lock_parents(&mut tx, stage_of::TASKS).await.unwrap(), "one project is missing");
    tx.rollback().await.unwrap();
    conn.close().await.unwrap();
    other.close().await.unwrap();
}

/// With the foreign-key triggers forced on (a role that may not skip them), the same rows move and validate.
#[tokio::test]
async fn migrate_with_foreign_key_triggers_moves_the_same_rows() {
    let dir = fixtures();
    let db = fresh_database();
    let out = run(dir.path(), &db, &["migrate", "--json"], &[("FLUX_TEST_MIGRATE_FK_TRIGGERS", "1")]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let r = out.json();
    for (entity, n) in EXPECTED {
        assert_eq!(r["entities"][entity]["inserted"], n, "{entity}");
    }
    assert_eq!(run(dir.path(), &db, &["validate"], &[]).code, 0);
}

/// Every index of the schema with its definition, as PostgreSQL prints it.
async fn index_definitions(db: &str) -> Vec<(String, String)> {
    let mut conn = PgConnection::connect(db).await.unwrap();
    let rows: Vec<(String, String)> = sqlx::query_as(
        "select indexname::text, indexdef from pg_indexes where schemaname = current_schema() order by indexname",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();
    rows
}

/// The backfill builds the lookup indexes of a table it fills from empty after the load. A run that crashes in
/// the middle of tasks leaves them missing (and `db check` says so); the next `db migrate`, or the resuming
/// `migrate` itself, recreates them exactly as the migrations define them, and a finished run leaves all of them.
#[tokio::test]
async fn deferred_indexes_are_restored_as_the_migrations_define_them() {
    let dir = fixtures();
    let reference = fresh_database();
    assert_eq!(run(dir.path(), &reference, &["db", "migrate"], &[]).code, 0);
    let want = index_definitions(&reference).await;
    assert!(want.iter().any(|(i, _)| i == "idx_tasks_project_position"), "{want:?}");

    // users 5 + teams 2 + team members 4 + projects 4 + project members 7 batches of 2: the 25th is in tasks.
    let crash_in_tasks = [("FLUX_TEST_MIGRATE_CRASH_AFTER_BATCHES", "25")];
    let tasks_indexes = "select count(*) from pg_indexes where schemaname = current_schema() and indexname in \
         ('idx_tasks_project_position', 'idx_tasks_project_status', 'idx_tasks_assigned_to', 'idx_tasks_due_date')";
    for restore_with in [&["db", "migrate"][..], &["migrate", "--batch-size", "2", "--json"][..]] {
        let db = fresh_database();
        let crash = run(dir.path(), &db, &["migrate", "--batch-size", "2", "--json"], &crash_in_tasks);
        assert_eq!(crash.code, 137, "{}", crash.stderr);
        let tasks = count(&db, "select count(*) from tasks").await;
        assert!(tasks > 0 && tasks < 17, "stopped in the middle of tasks ({tasks})");
        assert_eq!(count(&db, tasks_indexes).await, 0, "dropped for the load");
        let check = run(dir.path(), &db, &["db", "check"], &[]);
        assert_eq!(check.code, 1, "db check reports the missing indexes: {}{}", check.stdout, check.stderr);
        assert!(check.stdout.contains("17/21"), "{}", check.stdout);

        let restored = run(dir.path(), &db, restore_with, &[]);
        assert_eq!(restored.code, 0, "{restore_with:?}: {}{}", restored.stdout, restored.stderr);
        assert_eq!(index_definitions(&db).await, want, "after {restore_with:?}");
        assert_eq!(run(dir.path(), &db, &["db", "check"], &[]).code, 0);
    }

    // A run that finishes leaves every index, defined as the migrations define it.
    let db = fresh_database();
    let done = run(dir.path(), &db, &["migrate", "--json"], &[]);
    assert_eq!(done.code, 0, "{}", done.stderr);
    assert_eq!(index_definitions(&db).await, want);
    assert_eq!(count(&db, "select count(*) from tasks").await, 17);
}
