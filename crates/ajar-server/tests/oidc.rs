//! The OIDC verifier against real signatures: keys generated here, a JWKS
//! served over HTTPS on 127.0.0.1 (or from a file), tokens signed with
//! jsonwebtoken.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rcgen::KeyPair;
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject;
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use url::Url;

use ajar_server::oidc::{IssuerConfig, KeySource, MAX_JWKS_BYTES, OidcError, OidcIdentity, OidcVerifier};

const ISS: &str = "https://login.example.test/tenant";
const AUD: &str = "api://ajar";

// ---------------------------------------------------------------- keys

struct TestKey {
    kid: String,
    alg: Algorithm,
    encoding: EncodingKey,
    jwk: Value,
    /// The public key's bytes, as an attacker would find them.
    public: Vec<u8>,
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

impl TestKey {
    fn ec(kid: &str, alg: Algorithm) -> TestKey {
        let (sig_alg, crv, len) = match alg {
            Algorithm::ES256 => (&rcgen::PKCS_ECDSA_P256_SHA256, "P-256", 32),
            Algorithm::ES384 => (&rcgen::PKCS_ECDSA_P384_SHA384, "P-384", 48),
            other => panic!("not an EC algorithm: {other:?}"),
        };
        let pair = KeyPair::generate_for(sig_alg).unwrap();
        // 0x04 ‖ x ‖ y
        let raw = pair.public_key_raw().to_vec();
        assert_eq!(raw.len(), 1 + 2 * len);
        let jwk = json!({"kty": "EC", "crv": crv, "kid": kid, "use": "sig", "alg": format!("{alg:?}"),
            "x": b64(&raw[1..1 + len]), "y": b64(&raw[1 + len..])});
        TestKey { kid: kid.to_owned(), alg, encoding: EncodingKey::from_ec_der(&pair.serialize_der()), jwk, public: raw }
    }

    fn ed(kid: &str) -> TestKey {
        let pair = KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let raw = pair.public_key_raw().to_vec();
        let jwk = json!({"kty": "OKP", "crv": "Ed25519", "kid": kid, "x": b64(&raw)});
        let encoding = EncodingKey::from_ed_der(&pair.serialize_der());
        TestKey { kid: kid.to_owned(), alg: Algorithm::EdDSA, encoding, jwk, public: raw }
    }

    /// The fixed RSA key; `pin`: whether its JWK names the algorithm.
    fn rsa(kid: &str, alg: Algorithm, pin: bool) -> TestKey {
        let PrivateKeyDer::Pkcs1(der) = PrivateKeyDer::from_pem_slice(RSA_TEST_KEY.as_bytes()).unwrap() else {
            panic!("the RSA test key is PKCS#1");
        };
        let mut jwk = json!({"kty": "RSA", "kid": kid, "n": RSA_TEST_N, "e": "AQAB"});
        if pin {
            jwk["alg"] = json!(format!("{alg:?}"));
        }
        let public = URL_SAFE_NO_PAD.decode(RSA_TEST_N).unwrap();
        TestKey { kid: kid.to_owned(), alg, encoding: EncodingKey::from_rsa_der(der.secret_pkcs1_der()), jwk, public }
    }

    fn sign(&self, claims: &Value) -> String {
        self.sign_as(Some(&self.kid), claims)
    }

    fn sign_as(&self, kid: Option<&str>, claims: &Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = kid.map(str::to_owned);
        jsonwebtoken::encode(&header, claims, &self.encoding).unwrap()
    }
}

fn jwks(keys: &[&TestKey]) -> String {
    json!({"keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()}).to_string()
}

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

fn claims() -> Value {
    let now = now();
    json!({"iss": ISS, "aud": AUD, "sub": "u-1234", "name": "Alice Liddell", "groups": ["ops", "dev"],
        "email": "alice@example.test", "iat": now, "nbf": now - 5, "exp": now + 600})
}

fn with(mut claims: Value, changes: Value) -> Value {
    for (name, value) in changes.as_object().unwrap() {
        if value.is_null() {
            claims.as_object_mut().unwrap().remove(name);
        } else {
            claims[name] = value.clone();
        }
    }
    claims
}

fn alice() -> OidcIdentity {
    OidcIdentity {
        issuer: ISS.to_owned(),
        subject: "u-1234".to_owned(),
        display_name: "Alice Liddell".to_owned(),
        groups: vec!["ops".to_owned(), "dev".to_owned()],
    }
}

// ---------------------------------------------------------------- JWKS server

/// A JWKS over HTTPS on 127.0.0.1, answering what it is told to and counting
/// its requests.
struct JwksServer {
    url: Url,
    ca: PathBuf,
    hits: Arc<AtomicUsize>,
    answer: Arc<Mutex<(StatusCode, String)>>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
    _dir: tempfile::TempDir,
}

#[derive(Clone)]
struct Served {
    hits: Arc<AtomicUsize>,
    answer: Arc<Mutex<(StatusCode, String)>>,
}

async fn serve_jwks(State(served): State<Served>) -> (StatusCode, [(&'static str, &'static str); 1], String) {
    served.hits.fetch_add(1, Ordering::SeqCst);
    let (status, body) = served.answer.lock().unwrap().clone();
    (status, [("content-type", "application/json")], body)
}

impl JwksServer {
    async fn start(body: String) -> JwksServer {
        let dir = tempfile::tempdir().unwrap();
        let tls = ajar_server::tls::ensure_self_signed(dir.path(), &[]).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = Url::parse(&format!("https://{}/keys", listener.local_addr().unwrap())).unwrap();
        let served = Served { hits: Arc::default(), answer: Arc::new(Mutex::new((StatusCode::OK, body))) };
        let app = Router::new().route("/keys", get(serve_jwks)).with_state(served.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        let shutdown = async move {
            let _ = stopped.await;
        };
        let task = tokio::spawn(ajar_server::listener::serve_https(
            listener,
            tls.server_config,
            app,
            Default::default(),
            shutdown,
            Duration::from_secs(1),
        ));
        JwksServer { url, ca: tls.ca_pem_path, hits: served.hits, answer: served.answer, stop: Some(stop), task: Some(task), _dir: dir }
    }

    fn serve(&self, status: StatusCode, body: String) {
        *self.answer.lock().unwrap() = (status, body);
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    fn issuer(&self) -> IssuerConfig {
        IssuerConfig { ca_file: Some(self.ca.clone()), ..IssuerConfig::new(ISS, AUD, KeySource::Url(self.url.clone())) }
    }

    async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(5), task).await.unwrap().unwrap().unwrap();
        }
    }
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        // A test that failed before shutdown() still stops its server.
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

// ---------------------------------------------------------------- assertions

/// The error's messages (Display and Debug) hold neither the token nor any
/// of its parts.
fn assert_no_leak(err: &OidcError, token: &str) {
    let shown = format!("{err} / {err:?}");
    assert!(!token.is_empty() && !shown.contains(token), "{shown}");
    for part in token.split('.').filter(|p| p.len() >= 4) {
        assert!(!shown.contains(part), "a token part leaked into {shown}");
    }
}

macro_rules! refused {
    ($verifier:expr, $token:expr, $pattern:pat) => {{
        let token: &str = &$token;
        let err = $verifier.verify(token).await.expect_err("the token must be refused");
        assert!(matches!(err, $pattern), "unexpected refusal: {err:?} ({err})");
        assert_no_leak(&err, token);
        err
    }};
}

fn file_issuer(path: &Path) -> IssuerConfig {
    IssuerConfig::new(ISS, AUD, KeySource::File(path.to_path_buf()))
}

// ---------------------------------------------------------------- tests

#[test]
fn the_verifier_can_be_shared_across_tasks() {
    fn send_sync<T: Send + Sync + 'static>() {}
    send_sync::<OidcVerifier>();
    send_sync::<OidcError>();
}

#[tokio::test]
async fn valid_tokens_of_every_algorithm_yield_the_identity() {
    let keys = [
        TestKey::ec("p256", Algorithm::ES256),
        TestKey::ec("p384", Algorithm::ES384),
        TestKey::ed("ed"),
        TestKey::rsa("rs", Algorithm::RS256, true),
        TestKey::rsa("ps", Algorithm::PS384, false),
    ];
    let server = JwksServer::start(jwks(&keys.iter().collect::<Vec<_>>())).await;
    let verifier = OidcVerifier::new(vec![server.issuer()]).await.unwrap();
    // The verification future must be Send to run in a server task.
    fn send<T: Send>(t: T) -> T {
        t
    }
    for key in &keys {
        let token = key.sign(&claims());
        assert!(OidcVerifier::looks_like_jwt(&token));
        assert_eq!(send(verifier.verify(&token)).await.unwrap(), alice(), "{}", key.kid);
    }
    // An RSA key without a pinned alg serves every RSA algorithm.
    let ps = TestKey::rsa("ps", Algorithm::PS256, false);
    assert_eq!(verifier.verify(&ps.sign(&claims())).await.unwrap(), alice());
    let rs = TestKey::rsa("ps", Algorithm::RS512, false);
    assert_eq!(verifier.verify(&rs.sign(&claims())).await.unwrap(), alice());

    let key = &keys[0];
    // The audience may be one of several; exp just past is within the leeway.
    let token = key.sign(&with(claims(), json!({"aud": ["other", AUD], "exp": now() - 30, "nbf": now() + 30})));
    assert_eq!(verifier.verify(&token).await.unwrap(), alice());
    // Without a name, the principal is shown; without groups, there are none;
    // one group may come as a string.
    let token = key.sign(&with(claims(), json!({"name": null, "groups": null})));
    let identity = verifier.verify(&token).await.unwrap();
    assert_eq!((identity.display_name.as_str(), identity.groups.len()), ("u-1234", 0));
    let token = key.sign(&with(claims(), json!({"groups": "ops"})));
    assert_eq!(verifier.verify(&token).await.unwrap().groups, ["ops"]);
    let token = key.sign(&with(claims(), json!({"groups": ["ops", 3]})));
    refused!(verifier, token, OidcError::InvalidClaim { .. });
    let token = key.sign(&with(claims(), json!({"sub": null})));
    let err = refused!(verifier, token, OidcError::MissingClaim { .. });
    assert_eq!(err.to_string(), "the token lacks the claim \"sub\"");
    assert_eq!(server.hits(), 1);

    // Custom claims.
    let config = IssuerConfig {
        principal_claim: "email".to_owned(),
        name_claim: Some("preferred_username".to_owned()),
        groups_claim: Some("roles".to_owned()),
        ..server.issuer()
    };
    let verifier = OidcVerifier::new(vec![config]).await.unwrap();
    let token = key.sign(&with(claims(), json!({"preferred_username": "alice", "roles": ["JIT.Approver"]})));
    let identity = verifier.verify(&token).await.unwrap();
    let expected = OidcIdentity {
        issuer: ISS.to_owned(),
        subject: "alice@example.test".to_owned(),
        display_name: "alice".to_owned(),
        groups: vec!["JIT.Approver".to_owned()],
    };
    assert_eq!(identity, expected);
    // An address the issuer has not verified names nobody.
    let token = key.sign(&with(claims(), json!({"email_verified": false})));
    refused!(verifier, token, OidcError::InvalidClaim { .. });
    let token = key.sign(&with(claims(), json!({"email_verified": true})));
    assert_eq!(verifier.verify(&token).await.unwrap().subject, "alice@example.test");
    assert_eq!(server.hits(), 2);
    server.shutdown().await;
}

#[tokio::test]
async fn refusals_have_their_own_errors_and_never_show_the_token() {
    let key = TestKey::ec("k1", Algorithm::ES256);
    let second = TestKey::ec("k2", Algorithm::ES256);
    let server = JwksServer::start(jwks(&[&key, &second])).await;
    let verifier = OidcVerifier::new(vec![server.issuer()]).await.unwrap();
    let now = now();

    refused!(verifier, key.sign(&with(claims(), json!({"exp": now - 120}))), OidcError::Expired);
    refused!(verifier, key.sign(&with(claims(), json!({"nbf": now + 300}))), OidcError::NotYetValid);
    refused!(verifier, key.sign(&with(claims(), json!({"iat": now + 300}))), OidcError::IssuedInFuture);
    refused!(verifier, key.sign(&with(claims(), json!({"exp": null}))), OidcError::MissingClaim { .. });
    refused!(verifier, key.sign(&with(claims(), json!({"exp": "tomorrow"}))), OidcError::InvalidClaim { .. });
    refused!(verifier, key.sign(&with(claims(), json!({"nbf": "now"}))), OidcError::InvalidClaim { .. });
    refused!(verifier, key.sign(&with(claims(), json!({"aud": "api://other"}))), OidcError::WrongAudience { .. });
    refused!(verifier, key.sign(&with(claims(), json!({"aud": ["a", "b"]}))), OidcError::WrongAudience { .. });
    refused!(verifier, key.sign(&with(claims(), json!({"aud": null}))), OidcError::MissingClaim { .. });
    refused!(verifier, key.sign(&with(claims(), json!({"iss": "https://evil.example.test/tenant"}))), OidcError::UnknownIssuer);
    refused!(verifier, key.sign(&with(claims(), json!({"iss": format!("{ISS}/")}))), OidcError::UnknownIssuer);
    refused!(verifier, key.sign(&with(claims(), json!({"iss": null}))), OidcError::MissingClaim { .. });

    // Signed by another key under the same kid.
    let impostor = TestKey::ec("k1", Algorithm::ES256);
    refused!(verifier, impostor.sign(&claims()), OidcError::BadSignature { .. });
    // A valid signature moved onto other claims.
    let genuine = key.sign(&claims());
    let forged = key.sign(&with(claims(), json!({"sub": "admin"})));
    let [_, payload, _] = forged.split('.').collect::<Vec<_>>()[..] else { panic!() };
    let [header, _, signature] = genuine.split('.').collect::<Vec<_>>()[..] else { panic!() };
    refused!(verifier, format!("{header}.{payload}.{signature}"), OidcError::BadSignature { .. });
    refused!(verifier, format!("{header}.{payload}."), OidcError::BadSignature { .. });

    // The kid's key is P-256: an ES384 token under it is refused unverified.
    let p384 = TestKey::ec("k1", Algorithm::ES384);
    refused!(verifier, p384.sign(&claims()), OidcError::KeyAlgorithmMismatch { .. });
    // No kid and two keys.
    refused!(verifier, key.sign_as(None, &claims()), OidcError::AmbiguousKey { count: 2, .. });

    // alg: none, hand built.
    let part = |value: Value| b64(value.to_string().as_bytes());
    let none_header = part(json!({"alg": "none", "typ": "JWT", "kid": "k1"}));
    let unsigned = format!("{none_header}.{}.", part(claims()));
    assert!(OidcVerifier::looks_like_jwt(&unsigned));
    let err = refused!(verifier, unsigned, OidcError::UnsupportedAlgorithm { alg: "none" });
    assert!(err.to_string().contains("(none) is refused"), "{err}");
    // HMAC "signed" with the issuer's public key, in the forms an attacker
    // can find it: the raw point and the JWK text. A kid nobody has would
    // cause a fetch if a key were looked up.
    for secret in [key.public.clone(), key.jwk.to_string().into_bytes()] {
        for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
            let mut header = Header::new(alg);
            header.kid = Some("nobody-has-this-kid".to_owned());
            let token = jsonwebtoken::encode(&header, &claims(), &EncodingKey::from_secret(&secret)).unwrap();
            refused!(verifier, token, OidcError::UnsupportedAlgorithm { alg: "HS256" | "HS384" | "HS512" });
        }
    }
    let weird = format!("{}.{}.c2ln", part(json!({"alg": "x-custom-alg"})), part(claims()));
    let err = refused!(verifier, weird, OidcError::UnsupportedAlgorithm { alg: "an unknown one" });
    assert!(!err.to_string().contains("x-custom"), "{err}");

    // Malformed.
    let good = key.sign(&claims());
    let (head, rest) = good.split_once('.').unwrap();
    let mut malformed = vec![
        rest.to_owned(),
        format!("{good}.{head}"),
        format!("{head}!.{rest}"),
        format!("{}.{rest}", b64(b"not json at all")),
        format!("{}.{rest}", part(json!(["alg", "ES256"]))),
        format!("{}.{rest}", part(json!({"typ": "JWT"}))),
        format!("{}.{rest}", part(json!({"alg": "ES256", "kid": "k1", "crit": ["exp"]}))),
        format!("{head}.{}.c2ln", b64(b"{\"sub\": ")),
        format!("{head}.{}.c2ln", part(json!("a string"))),
        format!("{head}.%%%.c2ln"),
        format!("{head}.{}.sig+/", part(claims())),
        format!("{good}{}", "A".repeat(16 * 1024)),
    ];
    // A padded part is not base64url as JWS uses it.
    malformed.push(format!("{head}=.{rest}"));
    for token in malformed {
        refused!(verifier, token, OidcError::Malformed(_));
    }
    // Nothing so far reached for the keys again.
    assert_eq!(server.hits(), 1);
    refused!(verifier, key.sign_as(Some("k9"), &claims()), OidcError::UnknownKey { .. });
    assert_eq!(server.hits(), 2);
    assert_eq!(verifier.verify(&good).await.unwrap(), alice());
    server.shutdown().await;
}

#[tokio::test]
async fn a_rotated_key_is_fetched_on_first_sight() {
    let old = TestKey::ec("2024", Algorithm::ES256);
    let new = TestKey::rsa("2025", Algorithm::RS256, true);
    let server = JwksServer::start(jwks(&[&old])).await;
    let verifier = OidcVerifier::new(vec![server.issuer()]).await.unwrap();
    assert_eq!(verifier.verify(&old.sign(&claims())).await.unwrap(), alice());
    assert_eq!(server.hits(), 1);

    server.serve(StatusCode::OK, jwks(&[&new]));
    assert_eq!(verifier.verify(&new.sign(&claims())).await.unwrap(), alice());
    assert_eq!(server.hits(), 2);
    assert_eq!(verifier.verify(&new.sign(&claims())).await.unwrap(), alice());
    // The old key is gone with the reload; asking again is not allowed yet.
    refused!(verifier, old.sign(&claims()), OidcError::UnknownKey { .. });
    assert_eq!(server.hits(), 2);
    server.shutdown().await;
}

#[tokio::test]
async fn unknown_kids_cause_at_most_one_fetch() {
    let key = TestKey::ec("k1", Algorithm::ES256);
    let server = JwksServer::start(jwks(&[&key])).await;
    let verifier = Arc::new(OidcVerifier::new(vec![server.issuer()]).await.unwrap());
    let started = Instant::now();
    // Ten at once (they share one fetch), then ten more one by one.
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..10 {
        let (verifier, token) = (Arc::clone(&verifier), key.sign_as(Some(&format!("random-{i}")), &claims()));
        tasks.spawn(async move { verifier.verify(&token).await });
    }
    while let Some(result) = tasks.join_next().await {
        assert!(matches!(result.unwrap(), Err(OidcError::UnknownKey { .. })));
    }
    for i in 10..20 {
        refused!(verifier, key.sign_as(Some(&format!("random-{i}")), &claims()), OidcError::UnknownKey { .. });
    }
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    assert_eq!(server.hits(), 2, "one fetch at start, one for all the unknown kids");
    assert_eq!(verifier.verify(&key.sign(&claims())).await.unwrap(), alice());
    server.shutdown().await;
}

#[tokio::test]
async fn a_failed_reload_keeps_the_previous_keys() {
    let key = TestKey::ec("k1", Algorithm::ES256);
    let next = TestKey::ec("k2", Algorithm::ES256);
    let server = JwksServer::start(String::new()).await;
    let failures = [
        (StatusCode::INTERNAL_SERVER_ERROR, jwks(&[&key, &next])),
        (StatusCode::FOUND, jwks(&[&key, &next])),
        (StatusCode::OK, "<html>maintenance</html>".to_owned()),
        (StatusCode::OK, json!({"keys": [{"kty": "oct", "kid": "k2", "k": "c2VjcmV0"}]}).to_string()),
        (StatusCode::OK, format!("{{\"keys\": [{}]}}{}", next.jwk, " ".repeat(MAX_JWKS_BYTES))),
    ];
    for (round, (status, body)) in failures.into_iter().enumerate() {
        server.serve(StatusCode::OK, jwks(&[&key]));
        let verifier = OidcVerifier::new(vec![server.issuer()]).await.unwrap();
        server.serve(status, body);
        refused!(verifier, next.sign(&claims()), OidcError::UnknownKey { .. });
        assert_eq!(server.hits(), 2 * (round + 1), "round {round}");
        assert_eq!(verifier.verify(&key.sign(&claims())).await.unwrap(), alice(), "round {round}");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn a_key_file_is_read_again_when_keys_rotate() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jwks.json");
    let old = TestKey::ed("a");
    let new = TestKey::ec("b", Algorithm::ES384);
    std::fs::write(&path, jwks(&[&old])).unwrap();
    let verifier = OidcVerifier::new(vec![file_issuer(&path)]).await.unwrap();
    assert_eq!(verifier.verify(&old.sign(&claims())).await.unwrap(), alice());
    // A token without kid is fine while the issuer has one key.
    assert_eq!(verifier.verify(&old.sign_as(None, &claims())).await.unwrap(), alice());

    std::fs::write(&path, jwks(&[&new])).unwrap();
    assert_eq!(verifier.verify(&new.sign(&claims())).await.unwrap(), alice());
    assert_eq!(verifier.verify(&new.sign_as(None, &claims())).await.unwrap(), alice());
    refused!(verifier, old.sign(&claims()), OidcError::UnknownKey { .. });
    refused!(verifier, old.sign_as(None, &claims()), OidcError::KeyAlgorithmMismatch { .. });
}

#[tokio::test]
async fn bad_configurations_are_errors_naming_the_issuer() {
    let key = TestKey::ec("k1", Algorithm::ES256);
    let dir = tempfile::tempdir().unwrap();
    let server = JwksServer::start(jwks(&[&key])).await;
    let write = |name: &str, body: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, body).unwrap();
        path
    };
    let good = write("good.json", &jwks(&[&key]));
    let html = write("bad.json", "<html>");
    let symmetric = write("oct.json", &json!({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}).to_string());
    let mut http_url = server.url.clone();
    http_url.set_scheme("http").unwrap();
    let mut not_found = server.url.clone();
    not_found.set_path("/missing");

    let cases: Vec<(Vec<IssuerConfig>, &str)> = vec![
        (vec![IssuerConfig { keys: KeySource::Url(http_url), ..server.issuer() }], "is not https"),
        (vec![IssuerConfig { keys: KeySource::Url(not_found), ..server.issuer() }], "404"),
        // The test server's CA is not among the system's roots.
        (vec![IssuerConfig { ca_file: None, ..server.issuer() }], ""),
        (vec![IssuerConfig { ca_file: Some(good.clone()), ..server.issuer() }], "no PEM certificate"),
        (vec![IssuerConfig { ca_file: Some(dir.path().join("nope.pem")), ..server.issuer() }], "nope.pem"),
        (vec![file_issuer(&dir.path().join("absent.json"))], "absent.json"),
        (vec![file_issuer(&html)], "invalid JSON"),
        (vec![file_issuer(&symmetric)], "no usable signing key"),
        (vec![IssuerConfig { ca_file: Some(server.ca.clone()), ..file_issuer(&good) }], "only to a JWKS URL"),
        (vec![IssuerConfig { audience: String::new(), ..file_issuer(&good) }], "audience is empty"),
        (vec![IssuerConfig { principal_claim: String::new(), ..file_issuer(&good) }], "claim name is empty"),
        (vec![file_issuer(&good), server.issuer()], "more than once"),
    ];
    for (configs, expected) in cases {
        let err = OidcVerifier::new(configs).await.expect_err(expected);
        let message = err.to_string();
        assert!(message.contains(&format!("OIDC issuer {ISS:?}")), "{message}");
        assert!(message.contains(expected), "{message}");
    }
    // Several issuers, each with its own keys.
    let other = TestKey::ec("k1", Algorithm::ES256);
    let other_file = write("other.json", &jwks(&[&other]));
    let second = IssuerConfig::new("https://other.example.test", "ajar", KeySource::File(other_file));
    let verifier = OidcVerifier::new(vec![server.issuer(), second]).await.unwrap();
    assert!(format!("{verifier:?}").contains("other.example.test"));
    assert_eq!(verifier.verify(&key.sign(&claims())).await.unwrap(), alice());
    let theirs = with(claims(), json!({"iss": "https://other.example.test", "aud": "ajar"}));
    assert_eq!(verifier.verify(&other.sign(&theirs)).await.unwrap().issuer, "https://other.example.test");
    refused!(verifier, key.sign(&theirs), OidcError::BadSignature { .. });
    refused!(verifier, other.sign(&claims()), OidcError::BadSignature { .. });
    server.shutdown().await;
}

#[test]
fn only_jwt_shaped_tokens_look_like_jwts() {
    for token in ["eyJh.eyJz.c2ln", "eyJh.eyJz.", "a-_0.b.c"] {
        assert!(OidcVerifier::looks_like_jwt(token), "{token}");
    }
    let opaque = "ajar_Zm9vYmFyYmF6cXV4Zm9vYmFyYmF6cXV4Zm9vYmFy";
    for token in [opaque, "", "a.b", "a.b.c.d", ".b.c", "a..c", "a.b.c d", "a+b.c.d", "a=.b.c", "a.b.c\n"] {
        assert!(!OidcVerifier::looks_like_jwt(token), "{token:?}");
    }
}

/// A fixed 2048-bit RSA key for tests only (ring cannot generate RSA keys).
const RSA_TEST_KEY: &str = "\
-----BEGIN RSA PRIVATE KEY-----
MIIEogIBAAKCAQEAulr9O84zc5MfptIaSjT/oVW63m3mef3JxoHEjUEgC1ypOmCc
C/g1IL4sAnnmXpQFa2RQb4Rs6lwKPEfv+vtsE89W9DQb0TsH2kVH4a9f7PaBDlWE
uL90GOT5gGvL0A/eSFJDecZ3XeqioQa+JQyu0BCRFXne01svMqWEctYj/9zOB5e4
uDl0dh9b1sfkjWsjZbOPSLb18r1g7VMiMNij4dsd3t/WAnlpMdqYVILoVNNmT6jI
k5ZFWut/lUtQmQIxbKdle5usukNgjmouppBjqTIcm2EIqqp8m0HCa4smou41S9yF
v9zznQPx6bj96D9IYZElj9bQjTHAIc6iMeLHlwIDAQABAoIBACff5kWQtpOpTGF+
nV95faVA2c5UR7ecpTsTc0IiSEAGILO8DkfFYWDTMEmLWc6s74fuHAPwmvl+njYN
0nyqpZKLj/iK2dToQ6LhpiLVSrpCeJTfmZmKZcYZ4IUpC6BGdPKWn5eD7vCqjwfT
kIYO86zTjqfAvvwMi8nTfsavqV5Ku1EeuKhM/WpkRDgPxbRWjGgGOvADL7q4fJ3I
rnoSF0RDxW6G5vS16YTo5if7EAkOnwLJa+PMNHktevYxy97fxpvtSFaOtyx3gGcp
rHUc5seMWn7bnhiAGjrtoc/ryOq1Vi87uCgiwtSvW8J1Qyp5/1i9MXkbWhA113z5
ydiLGnECgYEA/ScriwiWdg41oGLauDot8BthIZOpuWXwbu2MrTMQPycYHFnsozUh
04fROUpvmnVPm+iSFLyDiZnMGY5jLmteP9BxQkQQIN3cmT7TFmnwEoYrvSAmB1qa
LJ3hWEYrHzRhTBmZLIwHdoRk5zktqYexeyXDcEWrQYkwSwtg9XKCBbkCgYEAvHOC
G47IZ6lUPkRxiAo2KIb5YLkVfimrBSBNLfHQnuLCZAo/R4w1RyZLsW38J9ggpH8R
nXRhidYUwL7fxW1N+AFQSw3LFMaJfC0tQULmT7Rkja7IV37w2DH0ozi3HJ4jcxb0
S0aoNw8f9J8uwv5Mcw4eLO6oTAHDEJfbP7fk388CgYAx0GNhGG+DC4jB5rHjTo97
j+etE8FyGf0V1ui3rDSmOKsl6QwHkYz2cuNYwqzzV+Iya7FTI0U+7mSbIsmheL8z
D3E5+OqzjPS7swEWiAIVoxE4Rfs1tz5fSTHujOAvY79Bmkfp3CQbzjGMzlON6IWk
Feo/TXZFjxlRqwuJQN8VAQKBgGjYovSOFfWGgfY6wid79vHJVol3r/uHVzz84bPE
K9uaMajTAq3d1e6F4esPVBEe79pVUAmYLIQxdU5fY8RFsfFfWbrIK8qdQvSxddIv
VE/X/3HMYm47k+fUs1T0QvxLB1IK3VPcNc6cPZ0tyyh1rzb8DdHV3hCbkllzA2qJ
926FAoGAdCjOA0bO09e8Jc75NYuIukCUaYxikAfx3UptJA4gPR0HsKjYiFtZwHbO
d6/o7bDIPedlrUI7YdLD4SRnPsvp6ERnHqvYV1Mf/e/Do0lSIFPmbYstkCN7IPoo
Jhs66guVjIz3S0zB8HMeZcpW2ulB5kVAoTdIh0z022k22o5XzCo=
-----END RSA PRIVATE KEY-----
";
const RSA_TEST_N: &str = "ulr9O84zc5MfptIaSjT_oVW63m3mef3JxoHEjUEgC1ypOmCcC_g1IL4sAnnmXpQFa2RQb4Rs6lwKPEfv-vtsE89W9DQb0TsH2kVH4a9f7PaBDlWEuL90GOT5gGvL0A_eSFJDecZ3XeqioQa-JQyu0BCRFXne01svMqWEctYj_9zOB5e4uDl0dh9b1sfkjWsjZbOPSLb18r1g7VMiMNij4dsd3t_WAnlpMdqYVILoVNNmT6jIk5ZFWut_lUtQmQIxbKdle5usukNgjmouppBjqTIcm2EIqqp8m0HCa4smou41S9yFv9zznQPx6bj96D9IYZElj9bQjTHAIc6iMeLHlw";
