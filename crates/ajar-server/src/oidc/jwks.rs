//! An issuer's signing keys: parsing a JWKS document into verification keys,
//! and loading it from an HTTPS URL or a file.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;
use tokio::io::AsyncReadExt;
use url::Url;

/// A JWKS fetch (connect, TLS, request and body) must finish within this.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// A JWKS larger than this is refused: real ones hold a handful of keys and
/// weigh a few KiB.
pub const MAX_JWKS_BYTES: usize = 1024 * 1024;
/// RSA keys shorter than this are skipped (ring refuses them anyway).
const MIN_RSA_BITS: usize = 2048;

/// JWK members are base64url; a few publishers pad them, so padding is
/// tolerated here (never in tokens).
const JWK_BASE64: GeneralPurpose =
    GeneralPurpose::new(&base64::alphabet::URL_SAFE, GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent));

/// What a key is, which decides the token algorithms it may verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    Rsa,
    EcP256,
    EcP384,
    Ed25519,
}

impl KeyType {
    fn fits(self, alg: Algorithm) -> bool {
        use Algorithm::*;
        match self {
            KeyType::Rsa => matches!(alg, RS256 | RS384 | RS512 | PS256 | PS384 | PS512),
            KeyType::EcP256 => alg == ES256,
            KeyType::EcP384 => alg == ES384,
            KeyType::Ed25519 => alg == EdDSA,
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            KeyType::Rsa => "an RSA key",
            KeyType::EcP256 => "an EC P-256 key",
            KeyType::EcP384 => "an EC P-384 key",
            KeyType::Ed25519 => "an Ed25519 key",
        }
    }
}

/// One verification key from a JWKS.
pub struct Key {
    pub kid: Option<String>,
    pub key_type: KeyType,
    /// The JWK's `alg`, when it names one: then only that algorithm.
    pub alg: Option<Algorithm>,
    pub decoding: DecodingKey,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key").field("kid", &self.kid).field("key_type", &self.key_type).field("alg", &self.alg).finish_non_exhaustive()
    }
}

impl Key {
    /// Whether this key may verify a token signed with `alg`.
    pub fn fits(&self, alg: Algorithm) -> bool {
        self.key_type.fits(alg) && self.alg.is_none_or(|own| own == alg)
    }

    /// What the key is, for messages: "an RSA key", "an EC P-256 key (RS256 only)".
    pub fn describe(&self) -> String {
        match self.alg {
            Some(alg) => format!("{} ({alg:?} only)", self.key_type.describe()),
            None => self.key_type.describe().to_owned(),
        }
    }
}

/// An issuer's keys as last loaded.
pub struct KeySet {
    pub keys: Vec<Arc<Key>>,
    pub loaded_at: Instant,
}

#[derive(Deserialize)]
struct Document {
    keys: Vec<serde_json::Value>,
}

/// The members of a JWK that matter here; others are ignored.
#[derive(Deserialize)]
struct Jwk {
    kty: String,
    kid: Option<String>,
    alg: Option<String>,
    #[serde(rename = "use")]
    use_: Option<String>,
    crv: Option<String>,
    n: Option<String>,
    e: Option<String>,
    x: Option<String>,
    y: Option<String>,
}

/// Maps an accepted JWS algorithm name to its algorithm: asymmetric
/// signatures only. Everything else (`none`, `HS*`, unknown) is `None`.
pub fn accepted_algorithm(name: &str) -> Option<Algorithm> {
    use Algorithm::*;
    Some(match name {
        "RS256" => RS256,
        "RS384" => RS384,
        "RS512" => RS512,
        "PS256" => PS256,
        "PS384" => PS384,
        "PS512" => PS512,
        "ES256" => ES256,
        "ES384" => ES384,
        "EdDSA" => EdDSA,
        _ => return None,
    })
}

/// Parses a JWKS document into the keys usable for verifying signatures.
/// Keys of other kinds (encryption keys, symmetric keys, curves or
/// algorithms not supported) are skipped, so one exotic key does not take the
/// issuer down; a document with no usable key at all is an error.
pub fn parse(bytes: &[u8]) -> Result<Vec<Arc<Key>>, String> {
    let doc: Document = serde_json::from_slice(bytes).map_err(|e| {
        format!("not a JWKS document (a JSON object with a \"keys\" array): {} at line {} column {}", kind(&e), e.line(), e.column())
    })?;
    let mut keys = Vec::new();
    let mut skipped = Vec::new();
    for (index, value) in doc.keys.into_iter().enumerate() {
        match serde_json::from_value::<Jwk>(value).map_err(|_| "not a JWK object".to_owned()).and_then(|jwk| key(&jwk)) {
            Ok(key) => keys.push(Arc::new(key)),
            Err(reason) => skipped.push(format!("key #{index}: {reason}")),
        }
    }
    if !skipped.is_empty() {
        tracing::debug!(skipped = %skipped.join("; "), "JWKS keys skipped");
    }
    if keys.is_empty() {
        let mut message = "holds no usable signing key (RSA of 2048 bits or more, EC P-256 or P-384, or Ed25519)".to_owned();
        if !skipped.is_empty() {
            message.push_str(&format!(": {}", skipped.join("; ")));
        }
        return Err(message);
    }
    Ok(keys)
}

fn kind(e: &serde_json::Error) -> &'static str {
    match e.classify() {
        serde_json::error::Category::Io => "unreadable",
        serde_json::error::Category::Syntax => "invalid JSON",
        serde_json::error::Category::Data => "unexpected content",
        serde_json::error::Category::Eof => "truncated JSON",
    }
}

fn key(jwk: &Jwk) -> Result<Key, String> {
    if let Some(use_) = jwk.use_.as_deref().filter(|u| *u != "sig") {
        return Err(format!("its use is {use_:?}, not \"sig\""));
    }
    let alg = match jwk.alg.as_deref() {
        None => None,
        Some(name) => Some(accepted_algorithm(name).ok_or_else(|| format!("its alg {name:?} is not an accepted signature algorithm"))?),
    };
    let member = |name: &str, value: &Option<String>| -> Result<(String, Vec<u8>), String> {
        let text = value.as_deref().ok_or_else(|| format!("member {name:?} is missing"))?;
        let bytes = JWK_BASE64.decode(text).map_err(|_| format!("member {name:?} is not base64url"))?;
        Ok((text.trim_end_matches('=').to_owned(), bytes))
    };
    let bad = |e: jsonwebtoken::errors::Error| format!("unusable key material: {e}");
    let (key_type, decoding) = match (jwk.kty.as_str(), jwk.crv.as_deref()) {
        ("RSA", _) => {
            let (n, n_bytes) = member("n", &jwk.n)?;
            let (e, _) = member("e", &jwk.e)?;
            let significant = n_bytes.iter().skip_while(|b| **b == 0).count();
            if significant * 8 < MIN_RSA_BITS {
                return Err(format!("RSA modulus of {} bits, fewer than {MIN_RSA_BITS}", significant * 8));
            }
            (KeyType::Rsa, DecodingKey::from_rsa_components(&n, &e).map_err(bad)?)
        }
        ("EC", Some(crv @ ("P-256" | "P-384"))) => {
            let (key_type, len) = if crv == "P-256" { (KeyType::EcP256, 32) } else { (KeyType::EcP384, 48) };
            let (x, x_bytes) = member("x", &jwk.x)?;
            let (y, y_bytes) = member("y", &jwk.y)?;
            if x_bytes.len() != len || y_bytes.len() != len {
                return Err(format!("{crv} coordinates must be {len} bytes each"));
            }
            (key_type, DecodingKey::from_ec_components(&x, &y).map_err(bad)?)
        }
        ("OKP", Some("Ed25519")) => {
            let (x, x_bytes) = member("x", &jwk.x)?;
            if x_bytes.len() != 32 {
                return Err("Ed25519 public keys are 32 bytes".to_owned());
            }
            (KeyType::Ed25519, DecodingKey::from_ed_components(&x).map_err(bad)?)
        }
        (kty @ ("EC" | "OKP"), crv) => return Err(format!("kty {kty:?} with curve {crv:?} is not supported")),
        (kty, _) => return Err(format!("kty {kty:?} is not a supported signature key type")),
    };
    if let Some(alg) = alg.filter(|alg| !key_type.fits(*alg)) {
        return Err(format!("its alg {alg:?} does not fit {}", key_type.describe()));
    }
    Ok(Key { kid: jwk.kid.clone(), key_type, alg, decoding })
}

/// Where an issuer's JWKS comes from, ready to load.
pub enum Source {
    Url { url: Url, client: reqwest::Client },
    File(PathBuf),
}

impl Source {
    /// Reads and parses the key set. Errors are messages for an operator.
    pub async fn load(&self) -> Result<Vec<Arc<Key>>, String> {
        let bytes = match self {
            Source::Url { url, client } => match tokio::time::timeout(FETCH_TIMEOUT, fetch(client, url)).await {
                Ok(fetched) => fetched?,
                Err(_) => return Err(format!("no complete answer within {} s", FETCH_TIMEOUT.as_secs())),
            },
            Source::File(path) => read_file(path).await?,
        };
        parse(&bytes)
    }
}

async fn fetch(client: &reqwest::Client, url: &Url) -> Result<Vec<u8>, String> {
    let mut response =
        client.get(url.clone()).header(reqwest::header::ACCEPT, "application/json").send().await.map_err(|e| transport_message(&e))?;
    let status = response.status();
    if status != reqwest::StatusCode::OK {
        return Err(format!("answered HTTP {status} (expected 200 OK)"));
    }
    read_bounded(&mut response, MAX_JWKS_BYTES).await
}

/// A response's body, refused once it exceeds `max` bytes (whatever its
/// Content-Length says).
pub(super) async fn read_bounded(response: &mut reqwest::Response, max: usize) -> Result<Vec<u8>, String> {
    let too_big = || format!("the answer exceeds {max} bytes");
    if response.content_length().is_some_and(|len| len > max as u64) {
        return Err(too_big());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| transport_message(&e))? {
        if body.len() + chunk.len() > max {
            return Err(too_big());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

async fn read_file(path: &Path) -> Result<Vec<u8>, String> {
    let file = tokio::fs::File::open(path).await.map_err(|e| format!("cannot open it: {e}"))?;
    let mut bytes = Vec::new();
    // One byte more than allowed tells an oversized file from a full one.
    file.take(MAX_JWKS_BYTES as u64 + 1).read_to_end(&mut bytes).await.map_err(|e| format!("cannot read it: {e}"))?;
    if bytes.len() > MAX_JWKS_BYTES {
        return Err(format!("it exceeds {MAX_JWKS_BYTES} bytes"));
    }
    Ok(bytes)
}

/// reqwest's top-level message is terse ("error sending request"); the
/// causes below it say what actually failed (DNS, refused, certificate...).
pub(super) fn transport_message(e: &reqwest::Error) -> String {
    let mut message = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        let text = c.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        cause = c.source();
    }
    if e.is_timeout() {
        message.push_str(" (timed out)");
    } else if message.contains("certificate") {
        message.push_str(" (is the CA that issued the server's certificate trusted? see the issuer's CA file)");
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(bytes: &[u8]) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }

    fn ec(crv: &str, len: usize) -> serde_json::Value {
        // A point need not be on the curve to be parsed; verification would fail.
        serde_json::json!({"kty": "EC", "crv": crv, "x": b64(&vec![1; len]), "y": b64(&vec![2; len])})
    }

    #[test]
    fn usable_keys_are_kept_and_others_skipped() {
        let mut n = vec![0xc5u8; 256];
        n.insert(0, 0);
        let keys = serde_json::json!({"keys": [
            {"kty": "RSA", "kid": "r", "alg": "RS256", "use": "sig", "n": b64(&n), "e": "AQAB"},
            {"kty": "RSA", "kid": "short", "n": b64(&[0xc5; 128]), "e": "AQAB"},
            {"kty": "RSA", "kid": "enc", "use": "enc", "n": b64(&n), "e": "AQAB"},
            {"kty": "oct", "kid": "secret", "k": "c2VjcmV0"},
            {"kty": "EC", "crv": "P-521", "x": "AA", "y": "AA"},
            {"kty": "EC", "kid": "hs", "alg": "HS256", "crv": "P-256", "x": b64(&[1; 32]), "y": b64(&[2; 32])},
            {"kty": "EC", "kid": "mismatch", "alg": "ES384", "crv": "P-256", "x": b64(&[1; 32]), "y": b64(&[2; 32])},
            ec("P-256", 31),
            ec("P-256", 32),
            ec("P-384", 48),
            {"kty": "OKP", "crv": "Ed25519", "x": format!("{}=", b64(&[3; 32]))},
            "not an object",
        ]});
        let keys = parse(keys.to_string().as_bytes()).unwrap();
        let types: Vec<_> = keys.iter().map(|k| (k.kid.as_deref(), k.key_type, k.alg)).collect();
        assert_eq!(
            types,
            [
                (Some("r"), KeyType::Rsa, Some(Algorithm::RS256)),
                (None, KeyType::EcP256, None),
                (None, KeyType::EcP384, None),
                (None, KeyType::Ed25519, None)
            ]
        );
        assert!(keys[0].fits(Algorithm::RS256) && !keys[0].fits(Algorithm::PS256));
        assert!(keys[1].fits(Algorithm::ES256) && !keys[1].fits(Algorithm::ES384));
        assert!(keys[3].fits(Algorithm::EdDSA) && !keys[3].fits(Algorithm::ES256));
    }

    #[test]
    fn documents_without_usable_keys_are_errors() {
        let err = parse(br#"{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}"#).unwrap_err();
        assert!(err.contains("no usable signing key") && err.contains("\"oct\""), "{err}");
        let err = parse(br#"{"keys": []}"#).unwrap_err();
        assert!(err.contains("no usable signing key"), "{err}");
        let err = parse(b"<html>").unwrap_err();
        assert!(err.contains("not a JWKS document") && err.contains("invalid JSON"), "{err}");
        let err = parse(br#"{"kty": "EC"}"#).unwrap_err();
        assert!(err.contains("not a JWKS document"), "{err}");
    }

    #[test]
    fn only_asymmetric_algorithms_are_accepted() {
        for name in ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA"] {
            assert!(accepted_algorithm(name).is_some(), "{name}");
        }
        for name in ["none", "None", "NONE", "HS256", "HS384", "HS512", "ES512", "rs256", ""] {
            assert!(accepted_algorithm(name).is_none(), "{name}");
        }
    }
}
