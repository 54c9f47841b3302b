//! Who is calling, in Argo Server's auth modes: `server` (the server acts as itself; a static
//! bearer token may be required), `client` (each call carries the user's ID token from the
//! OpenID issuer) and `sso` (as `client`, and the browser signs in through the issuer:
//! authorization code with PKCE, callback at Argo's `/oauth2/callback`, the token kept in the
//! `authorization` cookie as Argo's server keeps it). What a user may do is `access`'s rules.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{header, HeaderMap};
use base64::Engine as _;
use sha2::Digest as _;

use crate::config::{AuthMode, ServerConfig};
use crate::error::ApiError;

/// The cookie a signed-in browser sends, as Argo's server names it.
pub const COOKIE: &str = "authorization";

pub struct Auth {
    pub mode: AuthMode,
    verifier: Option<Arc<oidc::Verifier>>,
    /// The config's grants, and those of approved namespace requests (read again from the
    /// store every few seconds: a standby learns of approvals its leader made).
    rules: std::sync::RwLock<(access::Rules, Option<Instant>)>,
    configured: Vec<access::Grant>,
    /// The server's own token (`auth_token_file`): an admin's, for Prometheus and scripts.
    static_token: Option<String>,
    sso: Option<Sso>,
}

struct Sso {
    client_id: String,
    client_secret: String,
    redirect_url: String,
    /// Sign-ins under way: `state` → (PKCE verifier, where to go after, when started).
    pending: Mutex<HashMap<String, (String, String, Instant)>>,
}

fn random_token(bytes: usize) -> String {
    let data: Vec<u8> = (0..bytes).map(|_| rand::random::<u8>()).collect();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}

fn now_secs() -> i64 {
    chrono::Utc::now().timestamp()
}

impl Auth {
    /// Read the issuer's discovery document and keys (client and sso modes).
    pub async fn new(cfg: &ServerConfig, static_token: Option<String>) -> Result<Auth, String> {
        let a = &cfg.auth;
        let rules = access::Rules {
            grants: a.grants.clone(),
            admin_groups: a.admin_groups.clone(),
        };
        let configured = rules.grants.clone();
        let rules = std::sync::RwLock::new((rules, None));
        if a.mode == AuthMode::Server {
            return Ok(Auth {
                mode: a.mode,
                verifier: None,
                rules,
                configured,
                static_token,
                sso: None,
            });
        }
        let settings = oidc::Settings {
            issuer: a.issuer.clone().unwrap_or_default(),
            client_id: a.client_id.clone().unwrap_or_default(),
            groups_claim: a.groups_claim.clone(),
            clock_skew: Duration::from_secs(a.clock_skew_seconds),
        };
        let verifier = tokio::task::spawn_blocking(move || oidc::Verifier::discover(settings))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("[auth] {e}"))?;
        let sso = match a.mode {
            AuthMode::Sso => {
                let file = a.client_secret_file.clone().unwrap_or_default();
                let secret = std::fs::read_to_string(&file)
                    .map_err(|e| format!("[auth] client_secret_file {}: {e}", file.display()))?;
                Some(Sso {
                    client_id: a.client_id.clone().unwrap_or_default(),
                    client_secret: secret.trim().to_string(),
                    redirect_url: a.redirect_url.clone().unwrap_or_default(),
                    pending: Mutex::new(HashMap::new()),
                })
            }
            _ => None,
        };
        Ok(Auth {
            mode: a.mode,
            verifier: Some(Arc::new(verifier)),
            rules,
            configured,
            static_token,
            sso,
        })
    }

    /// The rules now.
    pub fn rules(&self) -> access::Rules {
        self.rules.read().expect("rules").0.clone()
    }

    /// Read the approved namespace requests' grants again if the last read is older than a
    /// few seconds (or `now`).
    pub async fn refresh_grants(&self, store: &store::Store, now: bool) {
        let fresh = self
            .rules
            .read()
            .expect("rules")
            .1
            .is_some_and(|t| t.elapsed() < Duration::from_secs(3));
        if fresh && !now {
            return;
        }
        let Ok(rows) = store.objects(crate::requests::KIND, Some("")).await else {
            return;
        };
        let mut grants = self.configured.clone();
        grants.extend(
            rows.iter()
                .filter_map(|r| crate::requests::grant_of(&r.body)),
        );
        let mut w = self.rules.write().expect("rules");
        w.0.grants = grants;
        w.1 = Some(Instant::now());
    }

    /// The caller, from `Authorization: Bearer …` or (sso) the `authorization` cookie.
    pub async fn principal(&self, headers: &HeaderMap) -> Result<access::Principal, ApiError> {
        let given = bearer(headers);
        if let (Some(t), Some(g)) = (&self.static_token, &given) {
            if t == g {
                return Ok(access::Principal {
                    name: token_name(t),
                    groups: Vec::new(),
                    admin: true,
                });
            }
        }
        let Some(verifier) = &self.verifier else {
            if self.static_token.is_some() {
                return Err(ApiError::Unauthenticated(
                    "token not valid: send `Authorization: Bearer <token>` with the server's token"
                        .into(),
                ));
            }
            return Ok(access::Principal {
                name: "anonymous".into(),
                groups: Vec::new(),
                admin: true,
            });
        };
        let Some(token) = given else {
            return Err(ApiError::Unauthenticated(format!(
                "no token: send `Authorization: Bearer <ID token>` with an ID token from {}{}",
                verifier.settings().issuer,
                if self.sso.is_some() {
                    ", or sign in at /oauth2/redirect"
                } else {
                    ""
                }
            )));
        };
        let mut result = verifier.verify(&token, now_secs());
        if let Err(oidc::TokenError::UnknownKey { .. }) = result {
            // The issuer may have rotated its keys: fetch them again and retry once.
            let v = verifier.clone();
            if let Ok(Ok(true)) = tokio::task::spawn_blocking(move || v.refresh()).await {
                result = verifier.verify(&token, now_secs());
            }
        }
        let id = result.map_err(|e| ApiError::Unauthenticated(format!("token not valid: {e}")))?;
        let admin = self.rules().is_admin(&id.groups);
        Ok(access::Principal {
            name: id.email.unwrap_or(id.subject),
            groups: id.groups,
            admin,
        })
    }

    /// `sso`: where to send a browser to sign in, remembering where it came from.
    pub fn sign_in(&self, return_to: &str) -> Result<String, ApiError> {
        let (Some(sso), Some(v)) = (&self.sso, &self.verifier) else {
            return Err(ApiError::NotFound(
                "single sign-on is off: the server's auth mode is not sso".into(),
            ));
        };
        let state = random_token(24);
        let verifier = random_token(32);
        let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(sha2::Sha256::digest(verifier.as_bytes()));
        {
            let mut pending = sso.pending.lock().expect("pending sign-ins");
            pending.retain(|_, (_, _, at)| at.elapsed() < Duration::from_secs(600));
            let back = if return_to.starts_with('/') && !return_to.starts_with("//") {
                return_to
            } else {
                "/"
            };
            pending.insert(state.clone(), (verifier, back.to_string(), Instant::now()));
        }
        let q = [
            ("client_id", sso.client_id.as_str()),
            ("response_type", "code"),
            ("scope", "openid email groups"),
            ("redirect_uri", sso.redirect_url.as_str()),
            ("state", state.as_str()),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
        ];
        let query: Vec<String> = q
            .iter()
            .map(|(k, v)| format!("{k}={}", percent(v)))
            .collect();
        Ok(format!("{}?{}", v.endpoints.authorization, query.join("&")))
    }

    /// `sso`: the issuer sent the browser back with a code: trade it for the ID token (checked
    /// like any other) and answer the cookie to set and where to go.
    pub async fn callback(&self, code: &str, state: &str) -> Result<(String, String), ApiError> {
        let (Some(sso), Some(v)) = (&self.sso, &self.verifier) else {
            return Err(ApiError::NotFound(
                "single sign-on is off: the server's auth mode is not sso".into(),
            ));
        };
        let Some((pkce, back, _)) = sso.pending.lock().expect("pending sign-ins").remove(state)
        else {
            return Err(ApiError::Unauthenticated(
                "sign-in: unknown or expired state (start again at /oauth2/redirect)".into(),
            ));
        };
        let url = v.endpoints.token.clone();
        let form = [
            ("grant_type".to_string(), "authorization_code".to_string()),
            ("code".into(), code.to_string()),
            ("redirect_uri".into(), sso.redirect_url.clone()),
            ("code_verifier".into(), pkce),
        ];
        let basic = base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", sso.client_id, sso.client_secret));
        let answer = tokio::task::spawn_blocking(move || {
            let pairs: Vec<(&str, &str)> =
                form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            ureq::post(&url)
                .timeout(Duration::from_secs(10))
                .set("Authorization", &format!("Basic {basic}"))
                .send_form(&pairs)
                .map_err(|e| format!("POST {url}: {e}"))
                .and_then(|r| r.into_string().map_err(|e| e.to_string()))
        })
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(|e| {
            ApiError::Unauthenticated(format!("sign-in: the issuer refused the code: {e}"))
        })?;
        let tokens: serde_json::Value = serde_json::from_str(&answer)
            .map_err(|e| ApiError::Unauthenticated(format!("sign-in: the issuer's answer: {e}")))?;
        let id_token = tokens["id_token"].as_str().ok_or_else(|| {
            ApiError::Unauthenticated("sign-in: the issuer answered no id_token".into())
        })?;
        v.verify(id_token, now_secs())
            .map_err(|e| ApiError::Unauthenticated(format!("sign-in: {e}")))?;
        let secure = if sso.redirect_url.starts_with("https://") {
            "; Secure"
        } else {
            ""
        };
        let cookie = format!(
            "{COOKIE}={}; Path=/; HttpOnly; SameSite=Lax{secure}",
            percent(&format!("Bearer {id_token}"))
        );
        Ok((cookie, back))
    }
}

/// The audit trail's name for a caller of the server's own token: a prefix of its digest.
pub fn token_name(token: &str) -> String {
    let digest = sha2::Sha256::digest(token.as_bytes());
    let hex: String = digest.iter().take(4).map(|b| format!("{b:02x}")).collect();
    format!("token:{hex}")
}

fn percent(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn unpercent(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The bearer token of a request: the `Authorization` header, else the sign-in cookie.
pub fn bearer(headers: &HeaderMap) -> Option<String> {
    if let Some(v) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        return v.strip_prefix("Bearer ").map(|t| t.trim().to_string());
    }
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| {
            let (k, v) = c.trim().split_once('=')?;
            (k == COOKIE).then(|| unpercent(v))
        })
        .and_then(|v| v.strip_prefix("Bearer ").map(|t| t.trim().to_string()))
}
