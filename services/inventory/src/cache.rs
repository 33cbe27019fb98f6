//! A read-through cache of products for the embedded (SQLite) mode.
//!
//! With SQLite the service process is the database's only writer (the file
//! sits on the service's own volume), so an in-process cache can be exactly
//! as fresh as the database: every write runs on the one writer thread
//! (kit::db::Writer; SQLite serialises writers anyway) and publishes its
//! result to the cache right after its COMMIT, in commit order. A reader that
//! missed only fills the cache if no write was published since it started
//! reading (the epoch check), so a slow reader can never put back a row that
//! a write has already replaced or deleted.
//!
//! PostgreSQL deployments run several replicas writing one database, which
//! no process-local cache can see, so there the cache is off.

use crate::model::Product;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::RwLock;

pub struct Cache {
    map: RwLock<HashMap<String, Product>>,
    epoch: AtomicU64,
    max_entries: usize,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("max_entries", &self.max_entries)
            .finish_non_exhaustive()
    }
}

impl Cache {
    pub fn new(max_entries: usize) -> Self {
        Self {
            map: RwLock::new(HashMap::new()),
            epoch: AtomicU64::new(0),
            max_entries,
        }
    }

    /// A hit, or the epoch to hand back to [`Cache::fill`] after a miss.
    pub fn get(&self, id: &str) -> Result<Product, u64> {
        let map = self.map.read().unwrap_or_else(|e| e.into_inner());
        match map.get(id) {
            Some(p) => Ok(p.clone()),
            None => Err(self.epoch.load(Ordering::Acquire)),
        }
    }

    /// Caches what a reader found, unless a write was published meanwhile.
    pub fn fill(&self, since: u64, p: &Product) {
        let mut map = self.map.write().unwrap_or_else(|e| e.into_inner());
        if self.epoch.load(Ordering::Acquire) != since {
            return;
        }
        self.insert(&mut map, p);
    }

    /// A committed write's result; called by the writer, in commit order.
    pub fn publish(&self, id: &str, p: Option<&Product>) {
        let mut map = self.map.write().unwrap_or_else(|e| e.into_inner());
        match p {
            Some(p) => self.insert(&mut map, p),
            None => {
                map.remove(id);
            }
        }
        self.epoch.fetch_add(1, Ordering::AcqRel);
    }

    fn insert(&self, map: &mut HashMap<String, Product>, p: &Product) {
        if map.len() >= self.max_entries && !map.contains_key(&p.id) {
            // Bounded memory: drop an arbitrary entry; a later read reloads it.
            if let Some(k) = map.keys().next().cloned() {
                map.remove(&k);
            }
        }
        map.insert(p.id.clone(), p.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn product(id: &str, version: i64) -> Product {
        Product {
            id: id.into(),
            name: "n".into(),
            description: String::new(),
            unit_price_minor: 1,
            currency: "EUR".into(),
            quantity: version,
            held: 0,
            available: version,
            version,
            created_at: String::new(),
            updated_at: String::new(),
        }
    }

    #[test]
    fn a_slow_reader_cannot_resurrect_a_replaced_or_deleted_row() {
        let c = Cache::new(10);
        // Reader misses and reads version 1 from the database…
        let since = c.get("a").unwrap_err();
        // …meanwhile a write commits version 2 and publishes it.
        c.publish("a", Some(&product("a", 2)));
        // The reader's stale fill is refused.
        c.fill(since, &product("a", 1));
        assert_eq!(c.get("a").unwrap().version, 2);
        // Same for a delete.
        let since = c.get("b").unwrap_err();
        c.publish("b", None);
        c.fill(since, &product("b", 1));
        assert!(c.get("b").is_err());
        // With no write in between, the fill is kept.
        let since = c.get("c").unwrap_err();
        c.fill(since, &product("c", 1));
        assert_eq!(c.get("c").unwrap().version, 1);
    }

    #[test]
    fn the_cache_stays_within_its_bound() {
        let c = Cache::new(3);
        for i in 0..10 {
            c.publish(&i.to_string(), Some(&product(&i.to_string(), 1)));
        }
        assert_eq!(c.map.read().unwrap().len(), 3);
        assert!(c.get("9").is_ok());
    }
}
