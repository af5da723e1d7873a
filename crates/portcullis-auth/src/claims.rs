//! The compact JWS form and the registered claims, parsed in one pass each.
//!
//! Signatures are verified by jsonwebtoken's RustCrypto verifiers; everything around
//! it is here, so that a token costs one header parse and one claims parse.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

/// A token split at its two dots.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Compact<'a> {
    /// `header.payload`, what the signature covers.
    pub(crate) signing_input: &'a str,
    pub(crate) header: &'a str,
    pub(crate) payload: &'a str,
    pub(crate) signature: &'a str,
}

/// The JOSE header fields this crate reads.
#[derive(Debug, Deserialize)]
pub(crate) struct JoseHeader<'a> {
    #[serde(borrow)]
    pub(crate) alg: Cow<'a, str>,
    #[serde(default, borrow)]
    pub(crate) kid: Option<Cow<'a, str>>,
    /// Critical extensions (RFC 7515 §4.1.11): none is understood, so any refuses.
    #[serde(default)]
    pub(crate) crit: Option<IgnoredAny>,
}

/// What the registered claims must satisfy.
#[derive(Debug, Clone)]
pub(crate) struct Rules {
    pub(crate) issuer: Option<Box<str>>,
    pub(crate) audience: Vec<Box<str>>,
    /// Seconds.
    pub(crate) leeway: f64,
    pub(crate) identity_claim: Arc<str>,
}

/// A token whose claims passed the rules.
#[derive(Debug)]
pub(crate) struct Valid {
    pub(crate) identity: Arc<str>,
    /// The `exp` claim, seconds since the epoch.
    pub(crate) exp: f64,
}

#[derive(Debug, Default)]
struct Claims {
    exp: Option<f64>,
    nbf: Option<f64>,
    iss: Option<String>,
    aud: Option<Audience>,
    identity: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

/// Reads a claims object, keeping only the registered claims and the identity.
struct ClaimsSeed<'r> {
    identity_claim: &'r str,
}

enum Field {
    Exp,
    Nbf,
    Iss,
    Aud,
    Identity,
    Other,
}

struct FieldSeed<'r> {
    identity_claim: &'r str,
}

// === impl Compact ===

impl<'a> Compact<'a> {
    /// Splits `header.payload.signature`; `None` unless there are exactly two dots
    /// and a non-empty signature.
    pub(crate) fn split(token: &'a str) -> Option<Self> {
        let (signing_input, signature) = token.rsplit_once('.')?;
        let (header, payload) = signing_input.split_once('.')?;
        if signature.is_empty() || payload.contains('.') {
            return None;
        }
        Some(Self {
            signing_input,
            header,
            payload,
            signature,
        })
    }
}

/// Decodes a base64url segment.
pub(crate) fn decode_segment(segment: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(segment).ok()
}

// === impl Rules ===

impl Rules {
    /// Checks the claims JSON against the rules at time `now` (seconds since the
    /// epoch) and returns the identity and `exp`, or a short reason.
    pub(crate) fn check(&self, claims_json: &[u8], now: f64) -> Result<Valid, &'static str> {
        let mut de = serde_json::Deserializer::from_slice(claims_json);
        let seed = ClaimsSeed {
            identity_claim: &self.identity_claim,
        };
        let claims = seed.deserialize(&mut de).map_err(|_| "malformed claims")?;
        de.end().map_err(|_| "malformed claims")?;

        let exp = claims.exp.ok_or("missing required claim")?;
        if exp + self.leeway < now {
            return Err("token expired");
        }
        if claims.nbf.is_some_and(|nbf| nbf > now + self.leeway) {
            return Err("token not yet valid");
        }
        if let Some(issuer) = &self.issuer {
            match &claims.iss {
                Some(iss) if iss == &**issuer => {}
                Some(_) => return Err("wrong issuer"),
                None => return Err("missing required claim"),
            }
        }
        if !self.audience.is_empty() {
            let accepted = |a: &String| self.audience.iter().any(|b| **b == **a);
            match &claims.aud {
                Some(Audience::One(a)) if accepted(a) => {}
                Some(Audience::Many(all)) if all.iter().any(accepted) => {}
                Some(_) => return Err("wrong audience"),
                None => return Err("missing required claim"),
            }
        }
        let identity = match &*self.identity_claim {
            "iss" => claims.iss,
            "aud" => match claims.aud {
                Some(Audience::One(a)) => Some(a),
                _ => None,
            },
            _ => claims.identity,
        };
        match identity {
            Some(id) if !id.is_empty() => Ok(Valid {
                identity: Arc::from(id),
                exp,
            }),
            _ => Err("identity claim missing"),
        }
    }
}

// === impl ClaimsSeed ===

impl<'de> DeserializeSeed<'de> for ClaimsSeed<'_> {
    type Value = Claims;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Claims, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ClaimsSeed<'_> {
    type Value = Claims;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object of claims")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Claims, A::Error> {
        fn once<T, E: serde::de::Error>(slot: &mut Option<T>, v: T, name: &str) -> Result<(), E> {
            if slot.replace(v).is_some() {
                return Err(E::custom(format_args!("duplicate claim {name}")));
            }
            Ok(())
        }
        let mut c = Claims::default();
        let key = || FieldSeed {
            identity_claim: self.identity_claim,
        };
        while let Some(field) = map.next_key_seed(key())? {
            match field {
                Field::Exp => once(&mut c.exp, map.next_value()?, "exp")?,
                Field::Nbf => once(&mut c.nbf, map.next_value()?, "nbf")?,
                Field::Iss => once(&mut c.iss, map.next_value()?, "iss")?,
                Field::Aud => once(&mut c.aud, map.next_value()?, "aud")?,
                Field::Identity => {
                    let value: serde_json::Value = map.next_value()?;
                    if let serde_json::Value::String(s) = value {
                        once(&mut c.identity, s, "identity")?;
                    }
                }
                Field::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(c)
    }
}

// === impl FieldSeed ===

impl<'de> DeserializeSeed<'de> for FieldSeed<'_> {
    type Value = Field;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Field, D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for FieldSeed<'_> {
    type Value = Field;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a claim name")
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Field, E> {
        Ok(match v {
            "exp" => Field::Exp,
            "nbf" => Field::Nbf,
            "iss" => Field::Iss,
            "aud" => Field::Aud,
            v if v == self.identity_claim => Field::Identity,
            _ => Field::Other,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> Rules {
        Rules {
            issuer: Some("iss-1".into()),
            audience: vec!["api".into(), "web".into()],
            leeway: 30.0,
            identity_claim: Arc::from("sub"),
        }
    }

    fn check(json: &str) -> Result<Arc<str>, &'static str> {
        rules().check(json.as_bytes(), 1000.0).map(|v| v.identity)
    }

    #[test]
    fn claims_rules() {
        let ok = r#"{"sub":"a","exp":1000,"iss":"iss-1","aud":"web","x":{"y":[1]}}"#;
        assert_eq!(check(ok).as_deref(), Ok("a"));
        let cases = [
            (
                r#"{"sub":"a","exp":969,"iss":"iss-1","aud":"api"}"#,
                "token expired",
            ),
            (
                r#"{"sub":"a","exp":970.5,"iss":"iss-1","aud":"api","nbf":1031}"#,
                "token not yet valid",
            ),
            (
                r#"{"sub":"a","iss":"iss-1","aud":"api"}"#,
                "missing required claim",
            ),
            (
                r#"{"sub":"a","exp":"2000","iss":"iss-1","aud":"api"}"#,
                "malformed claims",
            ),
            (
                r#"{"sub":"a","exp":2000,"exp":2000,"iss":"iss-1","aud":"api"}"#,
                "malformed claims",
            ),
            (
                r#"{"sub":"a","exp":2000,"iss":"iss-2","aud":"api"}"#,
                "wrong issuer",
            ),
            (
                r#"{"sub":"a","exp":2000,"aud":"api"}"#,
                "missing required claim",
            ),
            (
                r#"{"sub":"a","exp":2000,"iss":"iss-1","aud":["x","y"]}"#,
                "wrong audience",
            ),
            (
                r#"{"sub":"a","exp":2000,"iss":"iss-1"}"#,
                "missing required claim",
            ),
            (
                r#"{"sub":7,"exp":2000,"iss":"iss-1","aud":"api"}"#,
                "identity claim missing",
            ),
            (
                r#"{"sub":"","exp":2000,"iss":"iss-1","aud":"api"}"#,
                "identity claim missing",
            ),
            (r#"[1]"#, "malformed claims"),
            (
                r#"{"sub":"a","exp":2000,"iss":"iss-1","aud":"api"} x"#,
                "malformed claims",
            ),
        ];
        for (json, reason) in cases {
            assert_eq!(check(json), Err(reason), "{json}");
        }
        let many = r#"{"sub":"a","exp":2000,"iss":"iss-1","aud":["x","api"]}"#;
        assert_eq!(check(many).as_deref(), Ok("a"));
        let valid = rules().check(many.as_bytes(), 1000.0).unwrap();
        assert_eq!(valid.exp, 2000.0);
    }

    #[test]
    fn splits_compact_tokens() {
        let c = Compact::split("h.p.s").unwrap();
        assert_eq!(
            (c.header, c.payload, c.signature, c.signing_input),
            ("h", "p", "s", "h.p")
        );
        for bad in ["h.p.", "h.p", "h.p.s.x", ""] {
            assert!(Compact::split(bad).is_none(), "{bad}");
        }
    }
}
