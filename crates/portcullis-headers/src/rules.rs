use std::sync::Arc;

use http::header::{HeaderMap, HeaderName, HeaderValue};

use crate::HeaderRulesConfig;

/// A mistake in header rules, found when they are built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The header name is not a valid field name.
    #[error("invalid header name {name:?}")]
    InvalidName {
        /// The offending name.
        name: String,
    },
    /// The value contains bytes a header value cannot hold.
    #[error("invalid value for header {name:?}")]
    InvalidValue {
        /// The header the value was for.
        name: String,
    },
    /// The header frames the message or belongs to one hop; it cannot be rewritten.
    #[error("header {name:?} frames the message or is hop-by-hop and cannot be rewritten")]
    Protected {
        /// The offending name.
        name: String,
    },
}

#[derive(Debug, Clone)]
enum Op {
    Remove(HeaderName),
    Rename(HeaderName, HeaderName),
    Set(HeaderName, HeaderValue),
    Add(HeaderName, HeaderValue),
}

/// An ordered list of header operations, validated when built and shared by
/// every clone of the layer that applies it.
#[derive(Debug, Clone, Default)]
pub struct HeaderRules {
    ops: Arc<Vec<Op>>,
}

/// Headers that frame the message or belong to one connection.
const PROTECTED: &[&str] = &[
    "connection",
    "content-length",
    "host",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

fn name(n: &str, protect: bool) -> Result<HeaderName, ConfigError> {
    let h = HeaderName::from_bytes(n.as_bytes())
        .map_err(|_| ConfigError::InvalidName { name: n.to_owned() })?;
    if protect && PROTECTED.contains(&h.as_str()) {
        return Err(ConfigError::Protected { name: n.to_owned() });
    }
    Ok(h)
}

fn value(n: &str, v: &str) -> Result<HeaderValue, ConfigError> {
    HeaderValue::from_str(v).map_err(|_| ConfigError::InvalidValue { name: n.to_owned() })
}

// === impl HeaderRules ===

impl HeaderRules {
    /// No operations.
    pub fn new() -> Self {
        Self::default()
    }

    fn push(mut self, op: Op) -> Self {
        Arc::make_mut(&mut self.ops).push(op);
        self
    }

    /// Removes every field named `header`. Any header may be removed.
    pub fn remove(self, header: &str) -> Result<Self, ConfigError> {
        let h = name(header, false)?;
        Ok(self.push(Op::Remove(h)))
    }

    /// Moves every field named `from` to `to`, replacing the fields `to` had.
    /// Nothing changes when `from` is absent.
    pub fn rename(self, from: &str, to: &str) -> Result<Self, ConfigError> {
        let f = name(from, true)?;
        let t = name(to, true)?;
        Ok(self.push(Op::Rename(f, t)))
    }

    /// Replaces every field named `header` with one holding `value`.
    pub fn set(self, header: &str, value_: &str) -> Result<Self, ConfigError> {
        let h = name(header, true)?;
        let v = value(header, value_)?;
        Ok(self.push(Op::Set(h, v)))
    }

    /// Appends a field named `header` holding `value`.
    pub fn add(self, header: &str, value_: &str) -> Result<Self, ConfigError> {
        let h = name(header, true)?;
        let v = value(header, value_)?;
        Ok(self.push(Op::Add(h, v)))
    }

    /// Builds rules from config, in the order remove, rename, set, add; reports
    /// every mistake.
    pub fn from_config(config: &HeaderRulesConfig) -> Result<Self, Vec<ConfigError>> {
        let mut ops = Vec::new();
        let mut errs = Vec::new();
        for r in &config.remove {
            match name(r, false) {
                Ok(h) => ops.push(Op::Remove(h)),
                Err(e) => errs.push(e),
            }
        }
        for (f, t) in &config.rename {
            match (name(f, true), name(t, true)) {
                (Ok(f), Ok(t)) => ops.push(Op::Rename(f, t)),
                (Err(e), _) | (_, Err(e)) => errs.push(e),
            }
        }
        for (set, table) in [(true, &config.set), (false, &config.add)] {
            for (n, v) in table {
                match (name(n, true), value(n, v)) {
                    (Ok(h), Ok(v)) if set => ops.push(Op::Set(h, v)),
                    (Ok(h), Ok(v)) => ops.push(Op::Add(h, v)),
                    (Err(e), _) | (_, Err(e)) => errs.push(e),
                }
            }
        }
        if errs.is_empty() {
            Ok(Self { ops: Arc::new(ops) })
        } else {
            Err(errs)
        }
    }

    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Applies the operations to `headers`, in order.
    pub fn apply(&self, headers: &mut HeaderMap) {
        for op in self.ops.iter() {
            match op {
                Op::Remove(h) => {
                    headers.remove(h);
                }
                Op::Rename(f, t) => {
                    if let http::header::Entry::Occupied(e) = headers.entry(f) {
                        let values: Vec<HeaderValue> = e.remove_entry_mult().1.collect();
                        headers.remove(t);
                        for v in values {
                            headers.append(t.clone(), v);
                        }
                    }
                }
                Op::Set(h, v) => {
                    headers.insert(h.clone(), v.clone());
                }
                Op::Add(h, v) => {
                    headers.append(h.clone(), v.clone());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (n, v) in pairs {
            m.append(
                HeaderName::from_bytes(n.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        m
    }

    #[test]
    fn operations_apply_in_order() {
        let rules = HeaderRules::new()
            .rename("a", "b")
            .unwrap()
            .add("b", "3")
            .unwrap()
            .remove("c")
            .unwrap();
        let mut h = map(&[("a", "1"), ("a", "2"), ("b", "old"), ("c", "x"), ("d", "y")]);
        rules.apply(&mut h);
        let b: Vec<_> = h.get_all("b").iter().collect();
        assert_eq!(b, ["1", "2", "3"]);
        assert!(h.get("a").is_none());
        assert!(h.get("c").is_none());
        assert_eq!(h["d"], "y");
    }

    #[test]
    fn rename_of_an_absent_header_leaves_the_target() {
        let rules = HeaderRules::new().rename("a", "b").unwrap();
        let mut h = map(&[("b", "keep")]);
        rules.apply(&mut h);
        assert_eq!(h["b"], "keep");
    }

    #[test]
    fn set_replaces_every_field() {
        let rules = HeaderRules::new().set("x", "new").unwrap();
        let mut h = map(&[("x", "1"), ("x", "2")]);
        rules.apply(&mut h);
        assert_eq!(h.get_all("x").iter().count(), 1);
        assert_eq!(h["x"], "new");
    }

    #[test]
    fn config_reports_every_mistake_and_orders_operations() {
        let mut c = HeaderRulesConfig::default();
        c.set.insert("bad name".into(), "v".into());
        c.set.insert("content-length".into(), "1".into());
        c.add.insert("x".into(), "bad\nvalue".into());
        let errs = HeaderRules::from_config(&c).unwrap_err();
        assert_eq!(errs.len(), 3, "{errs:?}");
        assert!(errs.contains(&ConfigError::Protected {
            name: "content-length".into()
        }));

        let mut c = HeaderRulesConfig::default();
        c.add.insert("x".into(), "added".into());
        c.set.insert("x".into(), "set".into());
        c.remove.push("x".into());
        let rules = HeaderRules::from_config(&c).unwrap();
        let mut h = map(&[("x", "client")]);
        rules.apply(&mut h);
        let x: Vec<_> = h.get_all("x").iter().collect();
        assert_eq!(x, ["set", "added"]);
    }

    #[test]
    fn remove_may_name_protected_headers() {
        assert!(HeaderRules::new().remove("connection").is_ok());
        assert!(HeaderRules::new().set("host", "x").is_err());
    }
}
