//! Dashboard sessions: a random 256-bit session ID in an `HttpOnly; Secure; SameSite=Strict` cookie,
//! kept here only as its SHA-256, with the token it was opened with (checked again on every request, so
//! revoking the token ends the session) and a CSRF token that every form must send back.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::bootstrap::random_secret;

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

#[derive(Debug, Clone)]
pub struct Session {
    /// The hash of the API token the session was opened with.
    pub token_hash: [u8; 32],
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
    /// Opens a session; returns its ID (for the cookie) and CSRF token.
    pub fn open(&self, token_hash: [u8; 32], now: Instant) -> (String, String) {
        let (id, csrf) = (random_secret(), random_secret());
        if let Ok(mut map) = self.by_hash.lock() {
            if map.len() >= MAX_SESSIONS {
                map.retain(|_, s| s.expires > now);
            }
            if map.len() >= MAX_SESSIONS
                && let Some(oldest) = map.iter().min_by_key(|(_, s)| s.expires).map(|(k, _)| *k)
            {
                map.remove(&oldest);
            }
            map.insert(key(&id), Session { token_hash, csrf: csrf.clone(), expires: now + SESSION_TTL });
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
        let (id, csrf) = sessions.open([7; 32], now);
        assert_ne!(id, csrf);
        let s = sessions.get(&id, now).unwrap();
        assert!(same_secret(&s.csrf, &csrf));
        assert!(!same_secret(&s.csrf, "forged"));
        assert!(sessions.get("not-a-session", now).is_none());
        assert!(sessions.get(&id, now + SESSION_TTL).is_none(), "expired");
        let (id, _) = sessions.open([7; 32], now);
        sessions.close(&id);
        assert!(sessions.get(&id, now).is_none(), "closed");
    }
}
