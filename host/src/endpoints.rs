//! The table of configured endpoints, swapped atomically on change.
//!
//! Endpoints come from the declarative file today; the persistent store
//! (SQLite) feeds the same table.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};

/// An endpoint as configured: what clients call it and where it goes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EndpointDef {
    /// Name clients pass as `model`.
    pub name: String,
    /// Plugin (provider) id.
    pub provider: String,
    /// Upstream model id.
    pub model: String,
    /// Provider configuration values (secrets in clear: never log these).
    pub config: BTreeMap<String, String>,
}

/// Lock-free read, copy-on-write table of endpoints by name.
#[derive(Default)]
pub struct EndpointTable {
    by_name: ArcSwap<HashMap<String, Arc<EndpointDef>>>,
}

impl EndpointTable {
    pub fn new(defs: impl IntoIterator<Item = EndpointDef>) -> Self {
        let table = Self::default();
        table.replace_all(defs);
        table
    }

    pub fn get(&self, name: &str) -> Option<Arc<EndpointDef>> {
        self.by_name.load().get(name).cloned()
    }

    /// All endpoints, sorted by name.
    pub fn list(&self) -> Vec<Arc<EndpointDef>> {
        let mut all: Vec<_> = self.by_name.load().values().cloned().collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    pub fn replace_all(&self, defs: impl IntoIterator<Item = EndpointDef>) {
        let map = defs
            .into_iter()
            .map(|d| (d.name.clone(), Arc::new(d)))
            .collect();
        self.by_name.store(Arc::new(map));
    }
}
