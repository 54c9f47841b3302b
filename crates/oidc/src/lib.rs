//! OpenID Connect for the API: bearer ID tokens verified as Kubernetes' and Argo's OIDC
//! authenticators verify them — the issuer's discovery document names its key set, the token's
//! signature must verify with the published key its `kid` names, `iss` must be the configured
//! issuer, `aud` must include the client id, and `exp` must not have passed (give or take the
//! configured clock skew).
//!
//! Keys are cached; a token naming a key the cache lacks makes the verifier fetch the key set
//! again (at most once a second), so an issuer's key rotation is honoured without a restart.
//! The network is only touched by [`Verifier::discover`] and [`Verifier::refresh`], which
//! block: async callers run them on a blocking thread.

#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use base64::Engine as _;
use jsonwebtoken::{jwk::JwkSet, Algorithm, DecodingKey, Validation};
use serde_json::Value;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TokenError {
    #[error("the token is not a JWT ({0})")]
    Malformed(String),
    #[error("the token expired at {expired} (unix seconds; now {now}): sign in again")]
    Expired { expired: i64, now: i64 },
    #[error("the token was issued by {got:?}, not by this server's issuer {want:?}")]
    WrongIssuer { got: String, want: String },
    #[error("the token is for audience {got}, not for this server's client id {want:?}")]
    WrongAudience { got: String, want: String },
    #[error("the token is signed with key {kid:?}, which the issuer does not publish")]
    UnknownKey { kid: String },
    #[error("the token's signature does not verify with the issuer's key {kid:?}")]
    BadSignature { kid: String },
    #[error("the token is not valid: {0}")]
    Invalid(String),
    #[error("the issuer {issuer}: {why}")]
    Issuer { issuer: String, why: String },
}

/// Who a verified token says its holder is.
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    pub subject: String,
    pub email: Option<String>,
    pub groups: Vec<String>,
    /// When the token expires (unix seconds).
    pub expires: i64,
}

/// What to verify tokens against.
#[derive(Debug, Clone)]
pub struct Settings {
    pub issuer: String,
    /// The `aud` a token must carry: the client id registered with the issuer.
    pub client_id: String,
    /// The claim holding the user's groups (a list of strings, or one string).
    pub groups_claim: String,
    /// Leeway on `exp`, for clocks that differ a little.
    pub clock_skew: Duration,
}

/// The issuer's endpoints, from its discovery document.
#[derive(Debug, Clone, PartialEq)]
pub struct Endpoints {
    pub authorization: String,
    pub token: String,
    pub jwks: String,
}

struct Keys {
    by_kid: HashMap<String, (DecodingKey, Algorithm)>,
    fetched: Option<Instant>,
}

pub struct Verifier {
    settings: Settings,
    pub endpoints: Endpoints,
    keys: RwLock<Keys>,
    agent: ureq::Agent,
}

fn get_json<T: serde::de::DeserializeOwned>(agent: &ureq::Agent, url: &str) -> Result<T, String> {
    let text = agent
        .get(url)
        .call()
        .map_err(|e| format!("GET {url}: {e}"))?
        .into_string()
        .map_err(|e| format!("GET {url}: {e}"))?;
    serde_json::from_str(&text).map_err(|e| format!("{url}: {e}"))
}

fn issuer_error(settings: &Settings, why: impl std::fmt::Display) -> TokenError {
    TokenError::Issuer {
        issuer: settings.issuer.clone(),
        why: why.to_string(),
    }
}

impl Verifier {
    /// Read the issuer's discovery document and key set.
    pub fn discover(settings: Settings) -> Result<Verifier, TokenError> {
        let agent = ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(10))
            .build();
        let url = format!(
            "{}/.well-known/openid-configuration",
            settings.issuer.trim_end_matches('/')
        );
        let doc: Value = get_json(&agent, &url).map_err(|e| issuer_error(&settings, e))?;
        if doc["issuer"].as_str() != Some(settings.issuer.as_str()) {
            return Err(issuer_error(
                &settings,
                format!(
                    "its discovery document names issuer {}, not the configured one",
                    doc["issuer"]
                ),
            ));
        }
        let field = |name: &str| {
            doc[name]
                .as_str()
                .map(String::from)
                .ok_or_else(|| issuer_error(&settings, format!("{url} has no {name}")))
        };
        let endpoints = Endpoints {
            authorization: field("authorization_endpoint")?,
            token: field("token_endpoint")?,
            jwks: field("jwks_uri")?,
        };
        let v = Verifier {
            settings,
            endpoints,
            keys: RwLock::new(Keys {
                by_kid: HashMap::new(),
                fetched: None,
            }),
            agent,
        };
        v.refresh()?;
        Ok(v)
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Fetch the key set again (not more than once a second); true if it was fetched.
    pub fn refresh(&self) -> Result<bool, TokenError> {
        if self
            .keys
            .read()
            .expect("keys")
            .fetched
            .is_some_and(|t| t.elapsed() < Duration::from_secs(1))
        {
            return Ok(false);
        }
        let url = &self.endpoints.jwks;
        let set: JwkSet =
            get_json(&self.agent, url).map_err(|e| issuer_error(&self.settings, e))?;
        let mut by_kid = HashMap::new();
        for jwk in &set.keys {
            let Some(kid) = jwk.common.key_id.clone() else {
                continue;
            };
            let alg = match jwk.common.key_algorithm.map(|a| a.to_string()) {
                Some(a) => a.parse::<Algorithm>().ok(),
                None => match &jwk.algorithm {
                    jsonwebtoken::jwk::AlgorithmParameters::RSA(_) => Some(Algorithm::RS256),
                    jsonwebtoken::jwk::AlgorithmParameters::EllipticCurve(_) => {
                        Some(Algorithm::ES256)
                    }
                    _ => None,
                },
            };
            if let (Some(alg), Ok(key)) = (alg, DecodingKey::from_jwk(jwk)) {
                by_kid.insert(kid, (key, alg));
            }
        }
        tracing::info!(
            "OIDC: {} signing key(s) from {}",
            by_kid.len(),
            self.endpoints.jwks
        );
        *self.keys.write().expect("keys") = Keys {
            by_kid,
            fetched: Some(Instant::now()),
        };
        Ok(true)
    }

    /// Verify a token with the keys at hand. `UnknownKey` may mean the issuer rotated its
    /// keys: [`Verifier::refresh`] and try again.
    pub fn verify(&self, token: &str, now: i64) -> Result<Identity, TokenError> {
        let parts: Vec<&str> = token.split('.').collect();
        if parts.len() != 3 {
            return Err(TokenError::Malformed(format!(
                "{} dot-separated parts, not 3",
                parts.len()
            )));
        }
        let decode = |part: &str, what: &str| -> Result<Value, TokenError> {
            let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(part.trim_end_matches('='))
                .map_err(|e| TokenError::Malformed(format!("{what}: {e}")))?;
            serde_json::from_slice(&bytes)
                .map_err(|e| TokenError::Malformed(format!("{what}: {e}")))
        };
        let header = decode(parts[0], "header")?;
        let claims = decode(parts[1], "claims")?;
        // Said first: a token from elsewhere is refused for where it is from, not its key.
        let iss = claims["iss"].as_str().unwrap_or_default();
        if iss != self.settings.issuer {
            return Err(TokenError::WrongIssuer {
                got: iss.to_string(),
                want: self.settings.issuer.clone(),
            });
        }
        let kid = header["kid"].as_str().unwrap_or_default().to_string();
        let keys = self.keys.read().expect("keys");
        let Some((key, alg)) = keys.by_kid.get(&kid) else {
            return Err(TokenError::UnknownKey { kid });
        };
        let mut validation = Validation::new(*alg);
        validation.set_issuer(&[&self.settings.issuer]);
        validation.set_audience(&[&self.settings.client_id]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = self.settings.clock_skew.as_secs();
        // `exp` is checked below against the caller's clock (jsonwebtoken reads the system's).
        validation.validate_exp = false;
        let data = jsonwebtoken::decode::<Value>(token, key, &validation).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind;
            match e.kind() {
                ErrorKind::InvalidSignature => TokenError::BadSignature { kid: kid.clone() },
                ErrorKind::InvalidAudience => TokenError::WrongAudience {
                    got: claims["aud"].to_string(),
                    want: self.settings.client_id.clone(),
                },
                _ => TokenError::Invalid(e.to_string()),
            }
        })?;
        let c = data.claims;
        let expires = c["exp"].as_i64().unwrap_or(0);
        if now > expires + self.settings.clock_skew.as_secs() as i64 {
            return Err(TokenError::Expired {
                expired: expires,
                now,
            });
        }
        let groups = match &c[&self.settings.groups_claim] {
            Value::Array(a) => a
                .iter()
                .filter_map(|g| g.as_str())
                .map(String::from)
                .collect(),
            Value::String(g) => vec![g.clone()],
            _ => Vec::new(),
        };
        Ok(Identity {
            subject: c["sub"].as_str().unwrap_or_default().to_string(),
            email: c["email"].as_str().map(String::from),
            groups,
            expires,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offline() -> Verifier {
        Verifier {
            settings: Settings {
                issuer: "https://sso.onyx.internal/realms/onyx".into(),
                client_id: "onyx".into(),
                groups_claim: "groups".into(),
                clock_skew: Duration::from_secs(0),
            },
            endpoints: Endpoints {
                authorization: String::new(),
                token: String::new(),
                jwks: String::new(),
            },
            keys: RwLock::new(Keys {
                by_kid: HashMap::new(),
                fetched: None,
            }),
            agent: ureq::agent(),
        }
    }

    fn part(v: &Value) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    }

    #[test]
    fn refusals_say_why() {
        let v = offline();
        assert!(matches!(v.verify("abc", 0), Err(TokenError::Malformed(_))));
        let elsewhere = format!(
            "{}.{}.sig",
            part(&serde_json::json!({"alg": "RS256", "kid": "k"})),
            part(&serde_json::json!({"iss": "https://evil", "sub": "x"}))
        );
        assert_eq!(
            v.verify(&elsewhere, 0),
            Err(TokenError::WrongIssuer {
                got: "https://evil".into(),
                want: "https://sso.onyx.internal/realms/onyx".into()
            })
        );
        let unknown = format!(
            "{}.{}.sig",
            part(&serde_json::json!({"alg": "RS256", "kid": "k2"})),
            part(&serde_json::json!({"iss": "https://sso.onyx.internal/realms/onyx"}))
        );
        assert_eq!(
            v.verify(&unknown, 0),
            Err(TokenError::UnknownKey { kid: "k2".into() })
        );
    }

    proptest::proptest! {
        #[test]
        fn any_token_text_is_refused_without_a_panic(token in ".{0,300}") {
            let refused = offline().verify(&token, 0).is_err();
            proptest::prop_assert!(refused);
        }

        #[test]
        fn any_three_part_token_is_refused_without_a_panic(a in "[A-Za-z0-9_=-]{0,80}", b in "[A-Za-z0-9_=-]{0,80}", c in "[A-Za-z0-9_-]{0,80}") {
            let token = format!("{a}.{b}.{c}");
            let refused = offline().verify(&token, 0).is_err();
            proptest::prop_assert!(refused);
        }
    }
}
