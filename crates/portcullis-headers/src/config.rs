use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Serde form of a set of header operations, as a gateway config writes it:
///
/// ```toml
/// remove = ["x-debug"]
/// rename = { "x-user" = "x-client-user" }
/// set = { "x-env" = "prod" }
/// add = { "x-tag" = "edge" }
/// ```
///
/// Applied in the order remove, rename, set, add; within a table, in key order.
#[derive(Deserialize, Serialize, Debug, Clone, Default, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct HeaderRulesConfig {
    /// Headers to remove (every field of each name). Default: none.
    pub remove: Vec<String>,
    /// `from = "to"`: move every field of `from` to `to`, replacing any `to`. Default: none.
    pub rename: BTreeMap<String, String>,
    /// `name = "value"`: replace every field of `name` with one. Default: none.
    pub set: BTreeMap<String, String>,
    /// `name = "value"`: append one more field. Default: none.
    pub add: BTreeMap<String, String>,
}
