//! Who is calling, in Argo Server's auth modes: `server` (the server acts as itself; a static
//! bearer token may be required), `client` (each call carries the user's ID token from the
//! OpenID issuer) and `sso` (as `client`, and the browser signs in through the issuer:
//! authorization code with PKCE, callback at Argo's `/oauth2/callback`, the token kept in the
//! `authorization` cookie as Argo's server keeps it). What a user may do is `access`'s rules.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{header, HeaderMap};
use base64::Engine as _;
use sha2::Digest as _;

use crate::config::{AuthMode, ServerConfig};
use crate::error::ApiError;

/// The cookie a signed-in browser sends, as Argo's server names it.
pub const COOKIE: &str = "authorization";

/// The cookie that binds a sign-in under way to the browser that started it (its value is the
/// OAuth `state`), as Argo's server names it.
pub const STATE_COOKIE: &str = "oauthState";

/// At most this many sign-ins under way are remembered (the oldest are forgotten first) …
const MAX_PENDING: usize = 10_000;
/// … each for this long.
const PENDING_TTL: Duration = Duration::from_secs(600);

pub use access::same_secret;

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
    pending: Mutex<Pending>,
}

/// Sign-ins under way: `state` → (PKCE verifier, where to go after, when started), at most
/// [`MAX_PENDING`] of them, none older than [`PENDING_TTL`].
#[derive(Default)]
struct Pending {
    by_state: HashMap<String, (String, String, Instant)>,
    /// States in the order they were made (some may be gone from `by_state` already).
    order: VecDeque<(String, Instant)>,
}

impl Pending {
    fn insert(&mut self, state: String, pkce: String, back: String, now: Instant) {
        while let Some((s, at)) = self.order.front() {
            if self.order.len() < MAX_PENDING && now.duration_since(*at) < PENDING_TTL {
                break;
            }
            self.by_state.remove(s);
            self.order.pop_front();
        }
        self.order.push_back((state.clone(), now));
        self.by_state.insert(state, (pkce, back, now));
    }

    /// The sign-in that `state` names, if it is under way and `cookie` (the browser's
    /// [`STATE_COOKIE`]) is that state: the browser that comes back is the one that left.
    fn take(
        &mut self,
        state: &str,
        cookie: Option<&str>,
        now: Instant,
    ) -> Result<(String, String), ApiError> {
        if !cookie.is_some_and(|c| same_secret(c, state)) {
            return Err(ApiError::Unauthenticated(
                "sign-in: this browser did not start this sign-in (the state does not match its cookie; start again at /oauth2/redirect)".into(),
            ));
        }
        match self.by_state.remove(state) {
            Some((pkce, back, at)) if now.duration_since(at) < PENDING_TTL => Ok((pkce, back)),
            _ => Err(ApiError::Unauthenticated(
                "sign-in: unknown or expired state (start again at /oauth2/redirect)".into(),
            )),
        }
    }
}

/// Whether `path` is a safe place to send a browser after signing in: a path on this server
/// (one leading '/', visible ASCII only, no backslash), which stays one when decoded — so neither
/// `//host`, `/\host` nor their percent-encoded forms, which browsers or the UI's router may
/// take for another site.
pub fn safe_redirect(path: &str) -> bool {
    let on_this_server = |p: &str| {
        p.starts_with('/')
            && !p.starts_with("//")
            && !p.starts_with("/\\")
            && !p.contains('\\')
            && !p.chars().any(char::is_control)
    };
    if !(on_this_server(path) && path.bytes().all(|b| b.is_ascii_graphic())) {
        return false;
    }
    let mut p = path.to_string();
    // Decoded again and again, as a chain of decoders might, until nothing changes.
    for _ in 0..4 {
        let decoded = access::decode_component_lossy(&p);
        if decoded == p {
            return true;
        }
        if !on_this_server(&decoded) {
            return false;
        }
        p = decoded;
    }
    // Encoded more times over than any honest link is.
    false
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
                    pending: Mutex::new(Pending::default()),
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
            if same_secret(t, g) {
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

    /// `sso`: where to send a browser to sign in, remembering where it came from, and the
    /// cookie (`Set-Cookie`) that binds the sign-in to that browser.
    pub fn sign_in(&self, return_to: &str) -> Result<(String, String), ApiError> {
        let (Some(sso), Some(v)) = (&self.sso, &self.verifier) else {
            return Err(ApiError::NotFound(
                "single sign-on is off: the server's auth mode is not sso".into(),
            ));
        };
        let state = random_token(24);
        let verifier = random_token(32);
        let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(sha2::Sha256::digest(verifier.as_bytes()));
        let back = if safe_redirect(return_to) {
            return_to
        } else {
            "/"
        };
        sso.pending.lock().expect("pending sign-ins").insert(
            state.clone(),
            verifier,
            back.to_string(),
            Instant::now(),
        );
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
            .map(|(k, v)| format!("{k}={}", access::encode_component(v)))
            .collect();
        let cookie = format!(
            "{STATE_COOKIE}={state}; Path={}; Max-Age={}; HttpOnly; SameSite=Lax{}",
            sso.cookie_path(),
            PENDING_TTL.as_secs(),
            sso.secure()
        );
        Ok((
            format!("{}?{}", v.endpoints.authorization, query.join("&")),
            cookie,
        ))
    }

    /// `sso`: the issuer sent the browser back with a code: if the browser is the one that
    /// started the sign-in (its [`STATE_COOKIE`] is `state`), trade the code for the ID token
    /// (checked like any other) and answer the cookies to set and where to go.
    pub async fn callback(
        &self,
        code: &str,
        state: &str,
        headers: &HeaderMap,
    ) -> Result<(Vec<String>, String), ApiError> {
        let (Some(sso), Some(v)) = (&self.sso, &self.verifier) else {
            return Err(ApiError::NotFound(
                "single sign-on is off: the server's auth mode is not sso".into(),
            ));
        };
        let cookie = cookie(headers, STATE_COOKIE);
        let (pkce, back) = sso.pending.lock().expect("pending sign-ins").take(
            state,
            cookie.as_deref(),
            Instant::now(),
        )?;
        let back = if safe_redirect(&back) {
            back
        } else {
            "/".into()
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
        let signed_in = format!(
            "{COOKIE}={}; Path=/; HttpOnly; SameSite=Lax{}",
            access::encode_component(&format!("Bearer {id_token}")),
            sso.secure()
        );
        let spent = format!(
            "{STATE_COOKIE}=; Path={}; Max-Age=0; HttpOnly; SameSite=Lax{}",
            sso.cookie_path(),
            sso.secure()
        );
        Ok((vec![signed_in, spent], back))
    }
}

impl Sso {
    /// `; Secure` when the callback is https.
    fn secure(&self) -> &'static str {
        if self.redirect_url.starts_with("https://") {
            "; Secure"
        } else {
            ""
        }
    }

    /// The state cookie's path: the callback's folder (`/oauth2`), so that only the sign-in's
    /// own paths see it.
    fn cookie_path(&self) -> String {
        let path = self
            .redirect_url
            .split_once("://")
            .map(|(_, rest)| rest.find('/').map_or("", |i| &rest[i..]))
            .unwrap_or_default();
        let path = path.split(['?', '#']).next().unwrap_or_default();
        match path.rsplit_once('/') {
            Some((dir, _))
                if dir.starts_with('/')
                    && dir.bytes().all(|b| b.is_ascii_graphic() && b != b';') =>
            {
                dir.to_string()
            }
            _ => "/oauth2".into(),
        }
    }
}

/// The audit trail's name for a caller of the server's own token: a prefix of its digest.
pub fn token_name(token: &str) -> String {
    let digest = sha2::Sha256::digest(token.as_bytes());
    let hex: String = digest.iter().take(4).map(|b| format!("{b:02x}")).collect();
    format!("token:{hex}")
}

/// A cookie's value (as sent, not decoded).
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| {
            let (k, v) = c.trim().split_once('=')?;
            (k == name).then(|| v.trim().to_string())
        })
}

/// The bearer token of a request: the `Authorization` header, else the sign-in cookie.
pub fn bearer(headers: &HeaderMap) -> Option<String> {
    if let Some(v) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        return v.strip_prefix("Bearer ").map(|t| t.trim().to_string());
    }
    cookie(headers, COOKIE)
        .map(|v| access::decode_component_lossy(&v))
        .and_then(|v| v.strip_prefix("Bearer ").map(|t| t.trim().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_tokens_compare_whole() {
        assert!(same_secret("s3cret-token", "s3cret-token"));
        assert!(!same_secret("s3cret-token", "s3cret-tokem"));
        assert!(!same_secret("s3cret-token", "s3cret"));
        assert!(!same_secret("", "x"));
    }

    #[test]
    fn only_paths_on_this_server_are_redirected_to() {
        for good in [
            "/",
            "/workflows",
            "/workflows/team-a?phase=Running&x=%20y",
            "/a/b%2Fc",
            "/archived-workflows/default/5f1b#logs",
        ] {
            assert!(safe_redirect(good), "{good:?} should be accepted");
        }
        for bad in [
            "",
            "workflows",
            "https://evil.example.com",
            "//evil.example.com",
            "/\\evil.example.com",
            "\\/evil.example.com",
            "/\\/evil.example.com",
            "/a\\b",
            "/%2Fevil.example.com",
            "/%2fevil.example.com",
            "/%5Cevil.example.com",
            "/%5cevil.example.com",
            "/%252F%252Fevil.example.com",
            "/%25252F%25252Fevil.example.com",
            "/\t/evil.example.com",
            "/\n/evil.example.com",
            "/%09/evil.example.com",
            "/%0d%0aSet-Cookie:%20x=y",
            "/\r\nSet-Cookie: x=y",
            "/ /evil.example.com",
            "/\u{7f}",
            "/caf\u{e9}",
            "/%2525252525252F",
        ] {
            assert!(!safe_redirect(bad), "{bad:?} should be refused");
        }
    }

    fn pending_with(state: &str) -> Pending {
        let mut p = Pending::default();
        p.insert(
            state.into(),
            "pkce".into(),
            "/workflows".into(),
            Instant::now(),
        );
        p
    }

    #[test]
    fn a_callback_needs_the_browser_that_started_the_sign_in() {
        let now = Instant::now();
        // No state cookie, or another browser's: refused, and the sign-in stays for its owner.
        let mut p = pending_with("the-state");
        let e = p.take("the-state", None, now).unwrap_err().to_string();
        assert!(e.contains("did not start this sign-in"), "{e}");
        let e = p
            .take("the-state", Some("another-state"), now)
            .unwrap_err()
            .to_string();
        assert!(e.contains("did not start this sign-in"), "{e}");
        assert!(p.take("the-state", Some(""), now).is_err());
        assert_eq!(
            p.take("the-state", Some("the-state"), now).unwrap(),
            ("pkce".to_string(), "/workflows".to_string())
        );
        // Once only.
        let e = p
            .take("the-state", Some("the-state"), now)
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown or expired"), "{e}");
        // A cookie that matches a state the server never made is no better.
        let e = p
            .take("forged", Some("forged"), now)
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown or expired"), "{e}");
    }

    #[test]
    fn sign_ins_under_way_expire_and_are_capped() {
        let mut p = pending_with("old");
        let later = Instant::now() + PENDING_TTL + Duration::from_secs(1);
        assert!(p.take("old", Some("old"), later).is_err(), "expired");
        let t0 = Instant::now();
        let mut p = Pending::default();
        for i in 0..MAX_PENDING + 5 {
            p.insert(format!("s{i}"), "v".into(), "/".into(), t0);
        }
        assert_eq!(p.by_state.len(), MAX_PENDING);
        assert!(p.order.len() <= MAX_PENDING);
        // The oldest were forgotten first.
        assert!(p.take("s0", Some("s0"), t0).is_err());
        assert!(p.take("s4", Some("s4"), t0).is_err());
        assert!(p.take("s5", Some("s5"), t0).is_ok());
        // Entries older than the TTL go when the next sign-in starts.
        p.insert("new".into(), "v".into(), "/".into(), later);
        assert_eq!(p.by_state.len(), 1);
    }

    #[test]
    fn the_state_cookie_is_scoped_to_the_callback() {
        let sso = |url: &str| Sso {
            client_id: String::new(),
            client_secret: String::new(),
            redirect_url: url.into(),
            pending: Default::default(),
        };
        let s = sso("https://argo.example.com/oauth2/callback");
        assert_eq!(
            (s.cookie_path().as_str(), s.secure()),
            ("/oauth2", "; Secure")
        );
        let s = sso("http://127.0.0.1:2746/argo/oauth2/callback?x=1");
        assert_eq!((s.cookie_path().as_str(), s.secure()), ("/argo/oauth2", ""));
        assert_eq!(sso("nonsense").cookie_path(), "/oauth2");
    }

    #[test]
    fn a_cookie_of_any_bytes_is_read_without_panicking() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            axum::http::HeaderValue::from_bytes(b"authorization=Bearer%20t%a\xc3\xa9%").unwrap(),
        );
        let _ = bearer(&h);
        h.insert(
            header::COOKIE,
            "a=b; authorization=Bearer%20tok; oauthState=xyz"
                .parse()
                .unwrap(),
        );
        assert_eq!(bearer(&h).as_deref(), Some("tok"));
        assert_eq!(cookie(&h, STATE_COOKIE).as_deref(), Some("xyz"));
    }
}
