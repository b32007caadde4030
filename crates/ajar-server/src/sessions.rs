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
/// Sessions kept at once; beyond that, expired ones are dropped, then the one ending soonest.
pub const MAX_SESSIONS: usize = 10_000;
/// Sessions one principal may hold; its next sign-in ends its own session that ends soonest, so one token
/// holder signing in over and over cannot push everyone else's sessions out.
pub const MAX_SESSIONS_PER_PRINCIPAL: usize = 16;

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
    /// The principal it was opened for, whose sessions it counts among.
    pub principal_id: String,
    pub csrf: String,
    pub expires: Instant,
}

type Key = [u8; 32];

#[derive(Default)]
struct Table {
    by_hash: HashMap<Key, Session>,
    /// Each principal's sessions (at most [`MAX_SESSIONS_PER_PRINCIPAL`]).
    by_principal: HashMap<String, Vec<Key>>,
}

impl Table {
    fn remove(&mut self, key: &Key) {
        let Some(session) = self.by_hash.remove(key) else { return };
        if let Some(keys) = self.by_principal.get_mut(&session.principal_id) {
            keys.retain(|k| k != key);
            if keys.is_empty() {
                self.by_principal.remove(&session.principal_id);
            }
        }
    }

    /// The session ending soonest among `keys`.
    fn ending_first<'a>(&self, keys: impl Iterator<Item = &'a Key>) -> Option<Key> {
        keys.filter_map(|k| self.by_hash.get(k).map(|s| (s.expires, *k))).min().map(|(_, k)| k)
    }
}

pub struct Sessions {
    capacity: usize,
    table: Mutex<Table>,
}

impl Default for Sessions {
    fn default() -> Self {
        Sessions::with_capacity(MAX_SESSIONS)
    }
}

fn key(id: &str) -> Key {
    Sha256::digest(id.as_bytes()).into()
}

impl Sessions {
    /// At most `capacity` sessions at once.
    pub fn with_capacity(capacity: usize) -> Self {
        Sessions { capacity: capacity.max(1), table: Mutex::default() }
    }

    /// Opens a session for `principal_id` that ends after [`SESSION_TTL`], or at `ends_by` if that is
    /// sooner; returns its ID (for the cookie) and CSRF token.
    pub fn open(&self, opened_with: OpenedWith, principal_id: &str, now: Instant, ends_by: Option<Instant>) -> (String, String) {
        let (id, csrf) = (random_secret(), random_secret());
        let expires = ends_by.map_or(now + SESSION_TTL, |end| end.min(now + SESSION_TTL));
        if let Ok(mut table) = self.table.lock() {
            if let Some(own) = table.by_principal.get(principal_id).filter(|keys| keys.len() >= MAX_SESSIONS_PER_PRINCIPAL)
                && let Some(first) = table.ending_first(own.iter())
            {
                table.remove(&first);
            }
            if table.by_hash.len() >= self.capacity {
                // A pass over every session, only when full: opening follows a successful sign-in.
                let expired: Vec<Key> = table.by_hash.iter().filter(|(_, s)| s.expires <= now).map(|(k, _)| *k).collect();
                for k in &expired {
                    table.remove(k);
                }
                if table.by_hash.len() >= self.capacity
                    && let Some(first) = table.ending_first(table.by_hash.keys())
                {
                    table.remove(&first);
                }
            }
            let k = key(&id);
            table.by_hash.insert(k, Session { opened_with, principal_id: principal_id.to_owned(), csrf: csrf.clone(), expires });
            table.by_principal.entry(principal_id.to_owned()).or_default().push(k);
        }
        (id, csrf)
    }

    /// The live session with this ID.
    pub fn get(&self, id: &str, now: Instant) -> Option<Session> {
        let mut table = self.table.lock().ok()?;
        let k = key(id);
        match table.by_hash.get(&k) {
            Some(s) if s.expires > now => Some(s.clone()),
            Some(_) => {
                table.remove(&k);
                None
            }
            None => None,
        }
    }

    pub fn close(&self, id: &str) {
        if let Ok(mut table) = self.table.lock() {
            table.remove(&key(id));
        }
    }

    /// Sessions held now, expired ones not yet dropped included.
    pub fn len(&self) -> usize {
        self.table.lock().map(|t| t.by_hash.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_open_expire_and_close() {
        let sessions = Sessions::default();
        let now = Instant::now();
        let (id, csrf) = sessions.open(OpenedWith::ApiToken([7; 32]), "p1", now, None);
        assert_ne!(id, csrf);
        let s = sessions.get(&id, now).unwrap();
        assert!(same_secret(&s.csrf, &csrf));
        assert!(!same_secret(&s.csrf, "forged"));
        assert!(sessions.get("not-a-session", now).is_none());
        assert!(sessions.get(&id, now + SESSION_TTL).is_none(), "expired");
        let (id, _) = sessions.open(OpenedWith::ApiToken([7; 32]), "p1", now, None);
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
        let (id, _) = sessions.open(oidc(), "oidc:corp/alice", now, Some(token_end));
        assert!(sessions.get(&id, token_end - Duration::from_secs(1)).is_some());
        assert!(sessions.get(&id, token_end).is_none(), "ended with the ID token");
        let (id, _) = sessions.open(oidc(), "oidc:corp/alice", now, Some(now + SESSION_TTL * 2));
        assert!(sessions.get(&id, now + SESSION_TTL).is_none(), "never longer than a session");
    }

    #[test]
    fn one_principal_holds_a_bounded_number_of_sessions() {
        let sessions = Sessions::default();
        let now = Instant::now();
        let other = sessions.open(OpenedWith::ApiToken([1; 32]), "other", now, None).0;
        let ids: Vec<String> = (0..MAX_SESSIONS_PER_PRINCIPAL as u64 + 5)
            .map(|i| sessions.open(OpenedWith::ApiToken([2; 32]), "busy", now + Duration::from_secs(i), None).0)
            .collect();
        assert_eq!(sessions.len(), MAX_SESSIONS_PER_PRINCIPAL + 1);
        assert!(ids[..5].iter().all(|id| sessions.get(id, now).is_none()), "its oldest sessions ended");
        assert!(ids[5..].iter().all(|id| sessions.get(id, now).is_some()));
        assert!(sessions.get(&other, now).is_some(), "nobody else's");
        sessions.close(&ids[5]);
        sessions.open(OpenedWith::ApiToken([2; 32]), "busy", now, None);
        assert!(ids[6..].iter().all(|id| sessions.get(id, now).is_some()), "a closed session freed its place");
    }

    #[test]
    fn sessions_are_bounded_expired_ones_going_first() {
        let sessions = Sessions::with_capacity(100);
        let now = Instant::now();
        let short = sessions.open(OpenedWith::ApiToken([1; 32]), "p0", now, Some(now + Duration::from_secs(1)));
        let first = sessions.open(OpenedWith::ApiToken([1; 32]), "p1", now, None);
        for i in 2..100 {
            sessions.open(OpenedWith::ApiToken([1; 32]), &format!("p{i}"), now + Duration::from_secs(2), None);
        }
        assert_eq!(sessions.len(), 100);
        let later = now + Duration::from_secs(2);
        sessions.open(OpenedWith::ApiToken([1; 32]), "late", later, None);
        assert!(sessions.get(&first.0, later).is_some(), "the expired one made room");
        for i in 0..1_000 {
            sessions.open(OpenedWith::ApiToken([1; 32]), &format!("q{i}"), later, None);
            assert!(sessions.len() <= 100);
        }
        assert!(sessions.get(&first.0, later).is_none(), "the one ending first went");
        assert!(sessions.get(&short.0, now).is_none());
    }
}
