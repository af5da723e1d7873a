//! Serde helpers for human duration strings (`"500ms"`, `"30s"`, `"5m"`).

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serializer};

/// Serializes a duration as a human string.
pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&humantime::format_duration(*d).to_string())
}

/// Deserializes a human duration string.
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    parse(&s).map_err(serde::de::Error::custom)
}

/// Parses a human duration string, with a message fit for a config error.
pub fn parse(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|e| format!("invalid duration {s:?}: {e} (use e.g. \"500ms\", \"30s\", \"5m\")"))
}
