//! OIDC sign-in through the real server: tokens signed here with keys generated here, the issuer's keys
//! in a JWKS file the server reads (and reads again when they rotate).

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::{API, READER, Server};

const ISS: &str = "https://login.example.test/tenant";
const AUD: &str = "api://ajar";

/// A signing key made for the test, and its public half as a JWK.
pub struct Key {
    kid: String,
    encoding: EncodingKey,
    pub jwk: Value,
}

impl Key {
    pub fn new(kid: &str) -> Key {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let raw = pair.public_key_raw().to_vec();
        let b64 = |b: &[u8]| URL_SAFE_NO_PAD.encode(b);
        let jwk =
            json!({"kty": "EC", "crv": "P-256", "kid": kid, "use": "sig", "alg": "ES256", "x": b64(&raw[1..33]), "y": b64(&raw[33..])});
        Key { kid: kid.to_owned(), encoding: EncodingKey::from_ec_der(&pair.serialize_der()), jwk }
    }

    pub fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding).unwrap()
    }
}

fn claims(changes: Value) -> Value {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
    let mut c = json!({"iss": ISS, "aud": AUD, "sub": "alice", "name": "Alice", "groups": ["auditors"], "iat": now, "exp": now + 600});
    for (k, v) in changes.as_object().unwrap() {
        c[k] = v.clone();
    }
    c
}

#[tokio::test]
async fn oidc_tokens_sign_in_carry_group_roles_and_follow_key_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let jwks_path = dir.path().join("jwks.json");
    let first = Key::new("k1");
    std::fs::write(&jwks_path, json!({"keys": [first.jwk]}).to_string()).unwrap();
    let config = dir.path().join("oidc.json");
    let issuers = json!({"issuers": [{"name": "corp", "issuer": ISS, "audience": AUD, "jwksFile": jwks_path}]});
    std::fs::write(&config, issuers.to_string()).unwrap();
    let s = Server::start(&["--oidc-config", config.to_str().unwrap(), "--trusted-proxy", "127.0.0.1"]).await;
    let me = |token: String| {
        let s = &s;
        async move { s.send(Method::GET, "/ajar/v1/me", Some(&token), None, "").await }
    };

    // A valid token signs in as the issuer's subject, with its groups.
    let (st, v, _) = me(first.sign(&claims(json!({})))).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["id"], "oidc:corp/alice");
    assert_eq!(v["name"], "Alice");
    assert_eq!(v["principalIds"], json!(["oidc:corp/alice", "group:corp/auditors"]));

    // A role assigned to the group reaches its members.
    let policies = format!("/subscriptions/{}/providers/Microsoft.Security/jitNetworkAccessPolicies?{API}", s.sub);
    let token = first.sign(&claims(json!({})));
    let (st, _, _) = s.send(Method::GET, &policies, Some(&token), None, "").await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    s.assign_role("group:corp/auditors", READER, &format!("/subscriptions/{}", s.sub)).await;
    let (st, v, _) = s.send(Method::GET, &policies, Some(&token), None, "").await;
    assert_eq!(st, StatusCode::OK, "{v}");

    // A principal linked to the identity is who the token is.
    let (st, v) = s
        .call(
            Method::POST,
            "/ajar/v1/principals",
            Some(json!({"name": "Alice L.", "kind": "user", "oidc": {"issuer": ISS, "subject": "alice"}})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let linked = v["id"].as_str().unwrap().to_owned();
    let (st, v, _) = me(first.sign(&claims(json!({})))).await;
    assert_eq!((st, v["id"].as_str()), (StatusCode::OK, Some(linked.as_str())), "{v}");

    // Refused: each kind of bad token, without the token in the answer.
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
    let stranger = Key::new("k1");
    let none =
        format!("{}.{}.", URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#), URL_SAFE_NO_PAD.encode(claims(json!({})).to_string()));
    let hmac = jsonwebtoken::encode(
        &Header { kid: Some("k1".into()), ..Header::new(Algorithm::HS256) },
        &claims(json!({})),
        &EncodingKey::from_secret(first.jwk.to_string().as_bytes()),
    )
    .unwrap();
    let bad = [
        ("expired", first.sign(&claims(json!({"exp": now - 3600, "iat": now - 7200})))),
        ("not yet valid", first.sign(&claims(json!({"nbf": now + 3600})))),
        ("wrongly signed", stranger.sign(&claims(json!({})))),
        ("wrong audience", first.sign(&claims(json!({"aud": "api://other"})))),
        ("wrong issuer", first.sign(&claims(json!({"iss": "https://evil.example.test"})))),
        ("alg none", none),
        ("HS256 with the public key", hmac),
    ];
    for (i, (what, token)) in bad.iter().enumerate() {
        let from = format!("198.51.100.{}", i + 1);
        let (st, v, _) = s.send_with(Method::GET, "/ajar/v1/me", Some(token), None, "", &[("x-forwarded-for", &from)]).await;
        assert_eq!((st, v["error"]["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("InvalidAuthenticationToken")), "{what}: {v}");
        let signature = token.rsplit('.').next().unwrap();
        assert!(signature.is_empty() || !v.to_string().contains(signature), "{what}: the answer repeats the token");
    }

    // Rotation: the issuer's file now holds a new key; a token under it is accepted.
    let second = Key::new("k2");
    std::fs::write(&jwks_path, json!({"keys": [second.jwk]}).to_string()).unwrap();
    let (st, v, _) = me(second.sign(&claims(json!({})))).await;
    assert_eq!(st, StatusCode::OK, "{v}");
}
