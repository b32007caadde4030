//! Dashboard sessions: a random 256-bit session ID in an `HttpOnly; Secure; SameSite=Strict` cookie,
//! kept here only as its SHA-256, with what it was opened with and a CSRF token that every form must send
//! back. What it was opened with is checked again on every request: the hash of an API token (revoking
//! the token ends the session), or an identity an OIDC issuer vouched for (the session ends with the ID
//! token, and when the identity would now be another principal).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::bootstrap::random_secret;
use crate::oidc::OidcIdentity;

/// How long a session lasts, whatever happens in it.
pub const SESSION_TTL: Duration = Duration::from_secs(8 * 3600);
/// Sessions kept before expired ones are dropped, then the oldest.
const MAX_SESSIONS: usize = 10_000;

pub const SESSION_COOKIE: &str = "ajar_session";
/// The sign-in form's double-submit CSRF cookie (there is no session yet to hold its token).
pub const SIGNIN_COOKIE: &str = "ajar_signin";

/// Equal strings, compared in time independent of where they differ.
pub fn same_secret(a: &str, b: &str) -> bool {
    let (a, b) = (Sha256::digest(a.as_bytes()), Sha256::digest(b.as_bytes()));
    a.iter().zip(b.iter()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// What a session was opened with, and is checked against on every request.
#[derive(Debug, Clone)]
pub enum OpenedWith {
    /// The hash of an API token.
    ApiToken([u8; 32]),
    /// An OIDC sign-in: who the ID token named, and the principal that was at sign-in.
    Oidc { identity: OidcIdentity, principal_id: String },
}

#[derive(Debug, Clone)]
pub struct Session {
    pub opened_with: OpenedWith,
    pub csrf: String,
    pub expires: Instant,
}

#[derive(Default)]
pub struct Sessions {
    by_hash: Mutex<HashMap<[u8; 32], Session>>,
}

fn key(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

impl Sessions {
    /// Opens a session that ends after [`SESSION_TTL`], or at `ends_by` if that is sooner; returns its ID
    /// (for the cookie) and CSRF token.
    pub fn open(&self, opened_with: OpenedWith, now: Instant, ends_by: Option<Instant>) -> (String, String) {
        let (id, csrf) = (random_secret(), random_secret());
        let expires = ends_by.map_or(now + SESSION_TTL, |end| end.min(now + SESSION_TTL));
        if let Ok(mut map) = self.by_hash.lock() {
            if map.len() >= MAX_SESSIONS {
                map.retain(|_, s| s.expires > now);
            }
            if map.len() >= MAX_SESSIONS
                && let Some(oldest) = map.iter().min_by_key(|(_, s)| s.expires).map(|(k, _)| *k)
            {
                map.remove(&oldest);
            }
            map.insert(key(&id), Session { opened_with, csrf: csrf.clone(), expires });
        }
        (id, csrf)
    }

    /// The live session with this ID.
    pub fn get(&self, id: &str, now: Instant) -> Option<Session> {
        let mut map = self.by_hash.lock().ok()?;
        let k = key(id);
        match map.get(&k) {
            Some(s) if s.expires > now => Some(s.clone()),
            Some(_) => {
                map.remove(&k);
                None
            }
            None => None,
        }
    }

    pub fn close(&self, id: &str) {
        if let Ok(mut map) = self.by_hash.lock() {
            map.remove(&key(id));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_open_expire_and_close() {
        let sessions = Sessions::default();
        let now = Instant::now();
        let (id, csrf) = sessions.open(OpenedWith::ApiToken([7; 32]), now, None);
        assert_ne!(id, csrf);
        let s = sessions.get(&id, now).unwrap();
        assert!(same_secret(&s.csrf, &csrf));
        assert!(!same_secret(&s.csrf, "forged"));
        assert!(sessions.get("not-a-session", now).is_none());
        assert!(sessions.get(&id, now + SESSION_TTL).is_none(), "expired");
        let (id, _) = sessions.open(OpenedWith::ApiToken([7; 32]), now, None);
        sessions.close(&id);
        assert!(sessions.get(&id, now).is_none(), "closed");
    }

    #[test]
    fn a_session_ends_by_its_id_token_if_that_is_sooner() {
        let sessions = Sessions::default();
        let now = Instant::now();
        let identity = OidcIdentity {
            issuer: "https://idp.example.test".to_owned(),
            subject: "alice".to_owned(),
            display_name: "Alice".to_owned(),
            groups: Vec::new(),
        };
        let oidc = || OpenedWith::Oidc { identity: identity.clone(), principal_id: "oidc:corp/alice".to_owned() };
        let token_end = now + Duration::from_secs(600);
        let (id, _) = sessions.open(oidc(), now, Some(token_end));
        assert!(sessions.get(&id, token_end - Duration::from_secs(1)).is_some());
        assert!(sessions.get(&id, token_end).is_none(), "ended with the ID token");
        let (id, _) = sessions.open(oidc(), now, Some(now + SESSION_TTL * 2));
        assert!(sessions.get(&id, now + SESSION_TTL).is_none(), "never longer than a session");
    }
}
