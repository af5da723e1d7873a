//! Serde helpers for human duration strings (`"500ms"`, `"30s"`, `"5m"`).

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serializer};

/// Serializes a duration as a human string.
pub(crate) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&humantime::format_duration(*d).to_string())
}

/// Deserializes a human duration string.
pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    humantime::parse_duration(s.trim()).map_err(|e| {
        serde::de::Error::custom(format!(
            "invalid duration {s:?}: {e} (use e.g. \"500ms\", \"30s\", \"5m\")"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Serialize, serde::Deserialize)]
    struct D {
        #[serde(with = "super")]
        d: Duration,
    }

    #[test]
    fn round_trips_and_rejects_garbage() {
        let d: D = serde_json::from_str(r#"{"d":"1m 30s"}"#).unwrap();
        assert_eq!(d.d, Duration::from_secs(90));
        assert_eq!(serde_json::to_string(&d).unwrap(), r#"{"d":"1m 30s"}"#);
        let e = serde_json::from_str::<D>(r#"{"d":"soon"}"#).err().unwrap();
        assert!(e.to_string().contains("invalid duration \"soon\""), "{e}");
    }
}
