//! Secondary indexes that `fluxstudio migrate` builds once after filling an empty table instead of maintaining
//! them row by row (cli.md §3; bench/README.md "Migration": index maintenance was most of a backfill's time).
//!
//! Only plain lookup indexes are listed: the primary and unique keys stay, because `on conflict` needs them and
//! they are what keeps a concurrent dual-json server's writes and the backfill from duplicating rows. Without a
//! listed index a concurrent writer stays correct and only gets slower (its lookups scan the table).
//!
//! Safety: the backfill drops them only when the table is empty at the start of its entity, and creates them
//! again before it marks the entity finished. If it is interrupted in between (crash, Ctrl-C, lost connection),
//! [`restore`] recreates every missing one at the next schema check — every `serve` start-up, `db migrate`,
//! `migrate` (including the resuming run), `validate` … (`PostgresStore::migrate`) — and `db check` reports them
//! missing until then.

use sqlx::{Connection, PgConnection};

/// One lookup index: its table, its name, and its statements (static text: this crate builds no SQL at run time).
pub struct Deferrable {
    pub table: &'static str,
    pub name: &'static str,
    /// `create index if not exists …`, with the definition of migrations/0001_entities.sql.
    pub create: &'static str,
    pub drop: &'static str,
}

macro_rules! deferrable {
    ($table:literal, $name:literal, $cols:literal) => {
        Deferrable {
            table: $table,
            name: $name,
            create: concat!("create index if not exists ", $name, " on ", $table, " (", $cols, ")"),
            drop: concat!("drop index if exists ", $name),
        }
    };
}

/// The non-unique indexes of migrations/0001_entities.sql on the tables the backfill fills in bulk; the test
/// `deferred_indexes_are_restored_as_the_migrations_define_them` (tests/it) compares the definitions with what
/// the migrations create. A later migration that drops or changes one of them must change this list.
pub const DEFERRABLE_INDEXES: [Deferrable; 18] = [
    deferrable!("projects", "idx_projects_manager", "manager_id"),
    deferrable!("projects", "idx_projects_team", "team_id"),
    deferrable!("projects", "idx_projects_organization", "organization_id"),
    deferrable!("projects", "idx_projects_status", "status"),
    deferrable!("projects", "idx_projects_created_at", "created_at desc"),
    deferrable!("project_members", "idx_project_members_user", "user_id"),
    deferrable!("project_members", "idx_project_members_role", "role"),
    deferrable!("tasks", "idx_tasks_project_position", "project_id, position"),
    deferrable!("tasks", "idx_tasks_project_status", "project_id, status"),
    deferrable!("tasks", "idx_tasks_assigned_to", "assigned_to"),
    deferrable!("tasks", "idx_tasks_due_date", "due_date"),
    deferrable!("milestones", "idx_milestones_project_order", "project_id, order_index"),
    deferrable!("milestones", "idx_milestones_due_date", "due_date"),
    deferrable!("activities", "idx_activities_project_timestamp", "project_id, \"timestamp\" desc"),
    deferrable!("activities", "idx_activities_user", "user_id"),
    deferrable!("activities", "idx_activities_entity", "entity_type, entity_id"),
    deferrable!("activities", "idx_activities_organization", "organization_id"),
    deferrable!("files", "idx_files_uploaded_by", "uploaded_by"),
];

/// Whether `table` (one of the tables above) holds no row; `None` for any other table.
pub async fn table_is_empty(conn: &mut PgConnection, table: &str) -> Result<Option<bool>, sqlx::Error> {
    let sql = match table {
        "projects" => "select not exists (select 1 from projects)",
        "project_members" => "select not exists (select 1 from project_members)",
        "tasks" => "select not exists (select 1 from tasks)",
        "milestones" => "select not exists (select 1 from milestones)",
        "activities" => "select not exists (select 1 from activities)",
        "files" => "select not exists (select 1 from files)",
        _ => return Ok(None),
    };
    Ok(Some(sqlx::query_scalar(sql).fetch_one(conn).await?))
}

/// The listed indexes of `table` (every table when `None`) that the current schema lacks.
pub async fn missing(conn: &mut PgConnection, table: Option<&str>) -> Result<Vec<&'static str>, sqlx::Error> {
    let names: Vec<&str> =
        DEFERRABLE_INDEXES.iter().filter(|d| table.is_none_or(|t| t == d.table)).map(|d| d.name).collect();
    let present: Vec<String> = sqlx::query_scalar(
        "select c.relname::text from pg_class c join pg_namespace n on n.oid = c.relnamespace \
         where n.nspname = current_schema() and c.relkind = 'i' and c.relname = any($1)",
    )
    .bind(&names)
    .fetch_all(&mut *conn)
    .await?;
    Ok(names.into_iter().filter(|n| !present.iter().any(|p| p == n)).collect())
}

/// Drops `table`'s listed indexes (in one transaction, so either all or none are gone) and returns their names.
pub async fn drop_for_load(conn: &mut PgConnection, table: &str) -> Result<Vec<&'static str>, sqlx::Error> {
    let mut tx = conn.begin().await?;
    let mut dropped = Vec::new();
    for d in DEFERRABLE_INDEXES.iter().filter(|d| d.table == table) {
        sqlx::raw_sql(d.drop).execute(&mut *tx).await?;
        dropped.push(d.name);
    }
    tx.commit().await?;
    Ok(dropped)
}

/// Creates the named indexes, each in its own transaction with room to sort in memory and no statement timeout
/// (the pool's timeout is for requests; a million-row build may take longer). A name that is not listed is
/// ignored; an index that exists already (created meanwhile by another session) is left alone.
pub async fn create(conn: &mut PgConnection, names: &[&str]) -> Result<(), sqlx::Error> {
    for name in names {
        let Some(d) = DEFERRABLE_INDEXES.iter().find(|d| d.name == *name) else { continue };
        let mut tx = conn.begin().await?;
        sqlx::raw_sql("set local statement_timeout = 0; set local maintenance_work_mem = '256MB'")
            .execute(&mut *tx)
            .await?;
        sqlx::raw_sql(d.create).execute(&mut *tx).await?;
        tx.commit().await?;
    }
    Ok(())
}

/// Recreates every listed index the schema lacks (left so by an interrupted backfill); returns their names.
pub async fn restore(conn: &mut PgConnection) -> Result<Vec<&'static str>, sqlx::Error> {
    let gone = missing(conn, None).await?;
    create(conn, &gone).await?;
    Ok(gone)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_index_is_a_plain_index_of_the_migrations() {
        let migrations = include_str!("../../../migrations/0001_entities.sql");
        for d in &DEFERRABLE_INDEXES {
            let plain = d.create.replacen("create index if not exists ", "create index ", 1);
            assert!(migrations.contains(&format!("{plain};")), "{} is not in 0001_entities.sql as {plain}", d.name);
            assert_eq!(d.drop, format!("drop index if exists {}", d.name));
            assert_eq!(DEFERRABLE_INDEXES.iter().filter(|o| o.name == d.name).count(), 1, "{} listed twice", d.name);
        }
    }
}
