//! sqlx errors → [`StoreError`]: what the API answers (503 `store_unavailable`, 409, 500) depends only on this.

use crate::store::StoreError;

/// SQLSTATE classes and codes that mean "the database cannot serve this now; retrying later may work"
/// (store-modes.md §4: refused, timeouts, pool exhausted, server shutting down, too many connections).
fn transient_sqlstate(code: &str) -> bool {
    code.starts_with("08") // connection exception
        || code.starts_with("53") // insufficient resources (too_many_connections, disk_full, out_of_memory)
        || code.starts_with("57P") // admin_shutdown, crash_shutdown, cannot_connect_now, database_dropped
        || code == "57014" // query_canceled: statement_timeout fired
        || code == "40001" // serialization_failure
        || code == "40P01" // deadlock_detected
        || code == "55P03" // lock_not_available (lock_timeout)
        || code == "25006" // read_only_sql_transaction: connected to a standby after a failover
}

/// Is this the database being unreachable or overloaded (as opposed to a bug or a constraint)?
pub fn is_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|c| transient_sqlstate(&c)),
        _ => false,
    }
}

/// `unsupported` is the reason the last connection attempt was refused by our own version check, if any: a pool
/// that times out because every new connection is refused must say why rather than "timed out".
pub fn to_store_error(e: sqlx::Error, unsupported: Option<String>) -> StoreError {
    if is_unavailable(&e) {
        let message = match (&e, unsupported) {
            (sqlx::Error::PoolTimedOut, Some(reason)) => reason,
            (sqlx::Error::PoolTimedOut, None) => "PostgreSQL unreachable: timed out waiting for a connection".into(),
            _ => format!("PostgreSQL unavailable: {e}"),
        };
        return StoreError::Unavailable(message);
    }
    if let sqlx::Error::Database(db) = &e {
        if db.code().as_deref() == Some("23505") {
            // users_pkey too: inserting a user whose id exists is a duplicate account, as in the JSON store.
            return match db.constraint() {
                Some("users_email_key") | Some("users_pkey") => {
                    StoreError::Conflict { code: "email_taken", message: "Email already registered".into() }
                }
                Some(other) => StoreError::Conflict { code: "conflict", message: format!("duplicate key ({other})") },
                None => StoreError::Conflict { code: "conflict", message: db.message().to_owned() },
            };
        }
    }
    StoreError::Other(format!("PostgreSQL error: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_timeouts_are_unavailable_and_name_the_reason() {
        assert!(matches!(to_store_error(sqlx::Error::PoolTimedOut, None), StoreError::Unavailable(_)));
        let e = to_store_error(sqlx::Error::PoolTimedOut, Some("PostgreSQL 13.11 is not supported".into()));
        assert_eq!(e, StoreError::Unavailable("PostgreSQL 13.11 is not supported".into()));
        assert!(matches!(to_store_error(sqlx::Error::RowNotFound, None), StoreError::Other(_)));
    }

    #[test]
    fn sqlstates() {
        assert!(transient_sqlstate("08006"));
        assert!(transient_sqlstate("57014"));
        assert!(transient_sqlstate("53300"));
        assert!(!transient_sqlstate("23505"));
        assert!(!transient_sqlstate("42P01"));
    }
}
