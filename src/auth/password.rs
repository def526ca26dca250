//! bcrypt hashing off the async runtime, with bounded concurrency and the no-enumeration rule of auth.md §3:
//! every password login performs exactly one verification at the configured cost, against the stored hash or a
//! dummy hash when there is none.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::Semaphore;

pub struct Passwords {
    cost: u32,
    dummy: String,
    permits: Semaphore,
    verifications: AtomicU64,
}

/// The cost encoded in a modular-crypt bcrypt hash (`$2b$10$…` → 10).
pub fn cost_of(hash: &str) -> Option<u32> {
    let mut parts = hash.split('$');
    parts.next()?;
    let version = parts.next()?;
    if !matches!(version, "2a" | "2b" | "2y") {
        return None;
    }
    parts.next()?.parse().ok()
}

impl Passwords {
    /// Computes the dummy hash (one bcrypt at `cost`), so call it once at start-up.
    pub fn new(cost: u32) -> Passwords {
        let dummy =
            bcrypt::hash("flux-dummy-password-for-unknown-accounts", cost).expect("bcrypt cost validated by config");
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
        Passwords { cost, dummy, permits: Semaphore::new(cores), verifications: AtomicU64::new(0) }
    }

    pub fn cost(&self) -> u32 {
        self.cost
    }

    /// Verifications performed so far (a test hook for the one-verification rule; never a timing test).
    pub fn verification_count(&self) -> u64 {
        self.verifications.load(Ordering::Relaxed)
    }

    /// Verifies against `hash`, or against the dummy hash when the account has none (or an unreadable one), so
    /// that the work done does not reveal which accounts exist.
    pub async fn verify(self: &Arc<Self>, password: &str, hash: Option<&str>) -> bool {
        let usable = hash.filter(|h| cost_of(h).is_some());
        let target = usable.unwrap_or(&self.dummy).to_owned();
        let password = password.to_owned();
        let _permit = self.permits.acquire().await.expect("semaphore never closed");
        self.verifications.fetch_add(1, Ordering::Relaxed);
        let ok = tokio::task::spawn_blocking(move || bcrypt::verify(password.as_bytes(), &target).unwrap_or(false))
            .await
            .unwrap_or(false);
        ok && usable.is_some()
    }

    pub async fn hash(self: &Arc<Self>, password: &str) -> Result<String, String> {
        let password = password.to_owned();
        let cost = self.cost;
        let _permit = self.permits.acquire().await.expect("semaphore never closed");
        tokio::task::spawn_blocking(move || bcrypt::hash(password.as_bytes(), cost).map_err(|e| e.to_string()))
            .await
            .map_err(|e| e.to_string())?
    }

    pub fn hash_blocking(&self, password: &str) -> Result<String, String> {
        bcrypt::hash(password.as_bytes(), self.cost).map_err(|e| e.to_string())
    }

    /// A stored hash of another cost is rehashed at the configured one on the next successful login.
    pub fn needs_rehash(&self, hash: &str) -> bool {
        cost_of(hash).is_some_and(|c| c != self.cost)
    }
}

/// Signup / set-password policy (auth.md §3): 8 characters to 72 bytes, nothing else.
pub fn check_policy(password: &str) -> Result<(), &'static str> {
    if password.chars().count() < 8 {
        return Err("Password must be at least 8 characters");
    }
    if password.len() > 72 {
        return Err("Password must be at most 72 bytes");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn legacy_hash_verifies_and_unknown_accounts_cost_one_verification() {
        let p = Arc::new(Passwords::new(4));
        // Fixture user 1 (bcryptjs, cost 10).
        let legacy = "$2b$10$Ao4eY6nqaeGPZ7CFmHaFquaVh4rLPVZzkA53fl8kQzJDkyVdV6onu";
        assert!(p.verify("legacy-Marten-2025", Some(legacy)).await);
        assert!(!p.verify("wrong", Some(legacy)).await);
        assert!(!p.verify("anything", None).await);
        assert_eq!(p.verification_count(), 3);
        assert!(p.needs_rehash(legacy));
        assert_eq!(cost_of(&p.hash("abcdefgh").await.unwrap()), Some(4));
    }

    #[test]
    fn policy_counts_characters_and_bytes() {
        assert!(check_policy("short").is_err());
        assert!(check_policy("密码密码密码密码").is_ok());
        assert!(check_policy(&"é".repeat(37)).is_err());
    }
}
