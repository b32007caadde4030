//! TLS material for `ajar serve`.
//!
//! Either the operator supplies a certificate and key (`--tls-cert/--tls-key`,
//! [`load_given`]) or we maintain a small private CA under `<data_dir>/tls/`
//! ([`ensure_self_signed`]). The CA is created once and never replaced:
//! clients are told to trust `ca.pem`, so replacing it would silently break
//! every client. The server certificate is derived material and is simply
//! reissued from that CA on every start, so it never needs to be inspected.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::net::IpAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, Ia5String, IsCa, KeyPair, KeyUsagePurpose, SanType};
use rustls::ServerConfig;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls::crypto::CryptoProvider;
use rustls::server::ParsedCertificate;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, DnsName, PrivateKeyDer, ServerName, UnixTime};
use time::{Duration, OffsetDateTime};

const CA_NAME: &str = "ajar local CA";
const SERVER_NAME: &str = "ajar server";
const CA_VALIDITY: Duration = Duration::days(3650);
const SERVER_VALIDITY: Duration = Duration::days(730);
/// Backdating `notBefore` absorbs modest clock skew between server and clients.
const BACKDATE: Duration = Duration::hours(1);
/// Private keys must never be readable by other users.
const KEY_MODE: u32 = 0o600;
/// Certificates are public, but nobody else should be able to rewrite them.
const CERT_MODE: u32 = 0o644;
const DIR_MODE: u32 = 0o700;

/// A ready-to-use server configuration plus the certificate clients must trust.
#[derive(Debug, Clone)]
pub struct TlsSetup {
    pub server_config: Arc<ServerConfig>,
    /// The PEM file clients must trust: the local CA for self-signed setups,
    /// or the operator's certificate file for `--tls-cert`.
    pub ca_pem_path: PathBuf,
}

/// Errors while preparing TLS material. Every message names the file involved
/// and carries the underlying cause, so it can be shown to an operator as is.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{action} {}: {cause}", path.display())]
    Io { action: &'static str, path: PathBuf, cause: io::Error },
    #[error("{}: {reason}", path.display())]
    InvalidFile { path: PathBuf, reason: String },
    #[error(
        "incomplete local CA: {} exists but {} is missing; refusing to create a new CA over a \
         possibly trusted one: restore the missing file, or delete both to start over with a \
         new CA (clients will then have to trust the new ca.pem)",
        present.display(),
        missing.display()
    )]
    PartialCa { present: PathBuf, missing: PathBuf },
    #[error("invalid TLS subject alternative name {0:?}: neither an IP address nor a DNS name")]
    InvalidSan(String),
    #[error("generating {0}: {1}")]
    Generate(&'static str, rcgen::Error),
}

/// Loads an operator-provided certificate chain (PEM, leaf first) and a
/// PKCS#8, PKCS#1 or SEC1 PEM private key.
pub fn load_given(cert_path: &Path, key_path: &Path) -> Result<TlsSetup, TlsError> {
    let chain = read_certs(cert_path)?;
    let pem = fs::read(key_path).map_err(|cause| io_err("reading", key_path, cause))?;
    let key = PrivateKeyDer::from_pem_slice(&pem).map_err(|cause| match cause {
        rustls_pki_types::pem::Error::NoItemsFound => invalid(
            key_path,
            "contains no PEM private key (expected PKCS#8 \"PRIVATE KEY\", PKCS#1 \
             \"RSA PRIVATE KEY\" or SEC1 \"EC PRIVATE KEY\")",
        ),
        other => invalid(key_path, format!("malformed PEM: {other}")),
    })?;
    Ok(TlsSetup { server_config: server_config(chain, key, cert_path, key_path)?, ca_pem_path: cert_path.to_path_buf() })
}

/// Creates (first run) or loads a local CA under `data_dir/tls/` and issues a
/// fresh server certificate from it, valid for `localhost`, `127.0.0.1`,
/// `::1` and `extra_sans` (IP addresses where they parse as one, DNS names
/// otherwise).
pub fn ensure_self_signed(data_dir: &Path, extra_sans: &[String]) -> Result<TlsSetup, TlsError> {
    let sans = wanted_sans(extra_sans)?;
    let dir = data_dir.join("tls");
    fs::create_dir_all(data_dir).map_err(|cause| io_err("creating", data_dir, cause))?;
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true).mode(DIR_MODE).create(&dir).map_err(|e| io_err("creating", &dir, e))?;
    let [ca_cert, ca_key, server_cert, server_key] = ["ca.pem", "ca-key.pem", "server.pem", "server-key.pem"].map(|name| dir.join(name));
    let exists = |path: &Path| path.try_exists().map_err(|e| io_err("checking", path, e));

    let (ca_der, ca_key_pair) = match (exists(&ca_cert)?, exists(&ca_key)?) {
        (true, true) => load_ca(&ca_cert, &ca_key)?,
        (false, false) => {
            tracing::info!(dir = %dir.display(), "creating local TLS CA");
            let key = KeyPair::generate().map_err(gen_err("CA key"))?;
            let cert = ca_params().self_signed(&key).map_err(gen_err("CA"))?;
            // Key first: a crash in between leaves a key without a
            // certificate, which is reported as partial state.
            write_atomic(&ca_key, key.serialize_pem().as_bytes(), KEY_MODE)?;
            write_atomic(&ca_cert, cert.pem().as_bytes(), CERT_MODE)?;
            (cert.der().clone(), key)
        }
        (present, _) => {
            let (present, missing) = if present { (ca_cert, ca_key) } else { (ca_key, ca_cert) };
            return Err(TlsError::PartialCa { present, missing });
        }
    };

    // rcgen signs using only the issuer's name, key-identifier method, key
    // usages and key, so rebuilding the CA's parameters from the same
    // constants yields an issuer that chains to the ca.pem on disk.
    let issuer = ca_params().self_signed(&ca_key_pair).map_err(gen_err("CA issuer"))?;
    let key = KeyPair::generate().map_err(gen_err("server key"))?;
    let mut params = params(SERVER_NAME, SERVER_VALIDITY, IsCa::ExplicitNoCa);
    params.subject_alt_names = sans;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    let cert = params.signed_by(&key, &issuer, &ca_key_pair).map_err(gen_err("server certificate"))?;
    // Catch a ca.pem that is not ours (e.g. replaced by hand) now rather than
    // at the first client handshake.
    verify(&ca_der, cert.der(), "localhost").map_err(|e| {
        let reason = format!("issued server certificate does not verify under it: {e}");
        invalid(&ca_cert, reason)
    })?;
    write_atomic(&server_key, key.serialize_pem().as_bytes(), KEY_MODE)?;
    write_atomic(&server_cert, cert.pem().as_bytes(), CERT_MODE)?;
    tracing::debug!(dir = %dir.display(), "issued TLS server certificate from the local CA");
    let key_der = PrivateKeyDer::Pkcs8(key.serialize_der().into());
    let chain = vec![cert.der().clone()];
    let server_config = server_config(chain, key_der, &server_cert, &server_key)?;
    Ok(TlsSetup { server_config, ca_pem_path: ca_cert })
}

/// Loads the CA and checks that its key belongs to its certificate.
fn load_ca(cert_path: &Path, key_path: &Path) -> Result<(CertificateDer<'static>, KeyPair), TlsError> {
    let cert = read_certs(cert_path)?.swap_remove(0);
    let key_pem = fs::read_to_string(key_path).map_err(|e| io_err("reading", key_path, e))?;
    let key = KeyPair::from_pem(&key_pem).map_err(|e| invalid(key_path, format!("not a usable PKCS#8 private key: {e}")))?;
    let parsed = ParsedCertificate::try_from(&cert).map_err(|e| invalid(cert_path, format!("not a valid X.509 certificate: {e}")))?;
    if parsed.subject_public_key_info().as_ref() != key.public_key_der().as_slice() {
        let reason = format!("does not belong to {}", cert_path.display());
        return Err(invalid(key_path, reason));
    }
    Ok((cert, key))
}

/// Parameters common to both certificates. For the CA, everything except
/// the validity window must stay constant: they are rebuilt on every call to
/// sign with the existing CA.
fn params(common_name: &str, validity: Duration, is_ca: IsCa) -> CertificateParams {
    let now = OffsetDateTime::now_utc();
    let mut params = CertificateParams::default();
    // Replaces rcgen's default common name.
    let name = &mut params.distinguished_name;
    name.push(DnType::CommonName, common_name);
    params.is_ca = is_ca;
    params.not_before = now - BACKDATE;
    params.not_after = now + validity;
    params
}

fn ca_params() -> CertificateParams {
    // Path length 0: this CA may only sign leaf certificates.
    let is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    let mut params = params(CA_NAME, CA_VALIDITY, is_ca);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params
}

fn wanted_sans(extra: &[String]) -> Result<Vec<SanType>, TlsError> {
    let mut sans = Vec::new();
    let defaults = ["localhost", "127.0.0.1", "::1"].into_iter();
    for raw in defaults.chain(extra.iter().map(String::as_str)) {
        let san = parse_san(raw)?;
        if !sans.contains(&san) {
            sans.push(san);
        }
    }
    Ok(sans)
}

fn parse_san(raw: &str) -> Result<SanType, TlsError> {
    let s = raw.trim();
    // Accept "[::1]" as people write IPv6 hosts in URLs.
    let unbracketed = s.strip_prefix('[').and_then(|r| r.strip_suffix(']'));
    if let Ok(ip) = unbracketed.unwrap_or(s).parse::<IpAddr>() {
        return Ok(SanType::IpAddress(ip));
    }
    let name = s.strip_suffix('.').unwrap_or(s).to_ascii_lowercase();
    // A leading "*." wildcard label is allowed; the rest must be a DNS name.
    let valid = DnsName::try_from(name.strip_prefix("*.").unwrap_or(&name)).is_ok();
    match Ia5String::try_from(name) {
        Ok(name) if valid => Ok(SanType::DnsName(name)),
        _ => Err(TlsError::InvalidSan(raw.to_owned())),
    }
}

fn ring_provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Verifies, as a client trusting only `ca` would, that `leaf` is valid now
/// for `name` (a DNS name or an IP address).
fn verify(ca: &CertificateDer<'_>, leaf: &CertificateDer<'_>, name: &str) -> Result<(), rustls::Error> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone().into_owned())?;
    let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), ring_provider())
        .build()
        .map_err(|e| rustls::Error::General(e.to_string()))?;
    let name = ServerName::try_from(name).map_err(|e| rustls::Error::General(e.to_string()))?;
    verifier.verify_server_cert(leaf, &[], &name, &[], UnixTime::now())?;
    Ok(())
}

fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    cert: &Path,
    key_path: &Path,
) -> Result<Arc<ServerConfig>, TlsError> {
    let config_err = |e| invalid(key_path, format!("does not fit {}: {e}", cert.display()));
    let mut config = ServerConfig::builder_with_provider(ring_provider())
        .with_safe_default_protocol_versions()
        .map_err(config_err)?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(config_err)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = fs::read(path).map_err(|cause| io_err("reading", path, cause))?;
    let chain = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|cause| invalid(path, format!("malformed PEM: {cause}")))?;
    if chain.is_empty() {
        return Err(invalid(path, "contains no PEM CERTIFICATE block"));
    }
    Ok(chain)
}

/// Writes `contents` to a fresh temporary file created with `mode` and
/// renames it over `path`, so readers never see a half-written file and a key
/// is never briefly readable by others.
pub(crate) fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<(), TlsError> {
    let tmp = path.with_extension(format!("tmp-{:016x}", rand::random::<u64>()));
    let mut options = OpenOptions::new();
    let result = options
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .and_then(|mut file| file.write_all(contents).and_then(|()| file.sync_all()))
        .map_err(|cause| io_err("writing", &tmp, cause))
        .and_then(|()| fs::rename(&tmp, path).map_err(|e| io_err("renaming into place", path, e)));
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn io_err(action: &'static str, path: &Path, cause: io::Error) -> TlsError {
    let path = path.to_path_buf();
    TlsError::Io { action, path, cause }
}

fn invalid(path: &Path, reason: impl Into<String>) -> TlsError {
    let (path, reason) = (path.to_path_buf(), reason.into());
    TlsError::InvalidFile { path, reason }
}

fn gen_err(what: &'static str) -> impl Fn(rcgen::Error) -> TlsError {
    move |cause| TlsError::Generate(what, cause)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

    fn mode(tls: &Path, name: &str) -> u32 {
        fs::metadata(tls.join(name)).unwrap().permissions().mode() & 0o777
    }

    fn read(tls: &Path, name: &str) -> Vec<u8> {
        fs::read(tls.join(name)).unwrap()
    }

    /// Whether server.pem verifies for `name` against ca.pem, both from disk.
    fn valid_for(tls: &Path, name: &str) -> bool {
        let [ca, leaf] = ["ca.pem", "server.pem"].map(|f| read_certs(&tls.join(f)).unwrap());
        verify(&ca[0], &leaf[0], name).is_ok()
    }

    #[test]
    fn creates_files_with_the_right_modes() {
        let data = tempfile::tempdir().unwrap();
        let setup = ensure_self_signed(&data.path().join("data"), &[]).unwrap();
        let tls = data.path().join("data/tls");
        assert_eq!(setup.ca_pem_path, tls.join("ca.pem"));
        assert_eq!(setup.server_config.alpn_protocols, ALPN);
        assert_eq!(mode(&tls, ""), 0o700);
        assert_eq!(mode(&tls, "ca-key.pem"), 0o600);
        assert_eq!(mode(&tls, "server-key.pem"), 0o600);
        assert_eq!(mode(&tls, "ca.pem") & 0o022, 0);
        assert_eq!(mode(&tls, "server.pem") & 0o022, 0);
        // Only the four files, no temporaries left behind.
        let entries = fs::read_dir(&tls).unwrap();
        let mut names: Vec<_> = entries.map(|e| e.unwrap().file_name()).collect();
        names.sort();
        let expected = ["ca-key.pem", "ca.pem", "server-key.pem", "server.pem"];
        assert_eq!(names, expected);
        for name in ["localhost", "127.0.0.1", "::1"] {
            assert!(valid_for(&tls, name), "{name}");
        }
    }

    #[test]
    fn later_calls_keep_the_ca_and_reissue_a_chaining_server_cert() {
        let data = tempfile::tempdir().unwrap();
        let tls = data.path().join("tls");
        ensure_self_signed(data.path(), &[]).unwrap();
        let files = ["ca.pem", "ca-key.pem", "server.pem"];
        let [ca, ca_key, server] = files.map(|n| read(&tls, n));

        // Later calls sign with the issuer rebuilt from constants and the key
        // on disk; the result must chain to the unchanged ca.pem.
        let extra = ["AJAR.example.", "10.1.2.3", "[fd00::1]", "*.w.test"].map(String::from);
        ensure_self_signed(data.path(), &extra).unwrap();
        assert_eq!(read(&tls, "ca.pem"), ca);
        assert_eq!(read(&tls, "ca-key.pem"), ca_key);
        assert_ne!(read(&tls, "server.pem"), server);
        assert_eq!(mode(&tls, "server-key.pem"), 0o600);
        let names = "localhost 127.0.0.1 ::1 ajar.example 10.1.2.3 fd00::1 x.w.test";
        for name in names.split(' ') {
            assert!(valid_for(&tls, name), "{name}");
        }

        ensure_self_signed(data.path(), &[]).unwrap();
        assert_eq!(read(&tls, "ca.pem"), ca);
        assert!(valid_for(&tls, "localhost"));
        assert!(!valid_for(&tls, "ajar.example"));
        let err = ensure_self_signed(data.path(), &["not a name".into()]).unwrap_err();
        assert!(matches!(err, TlsError::InvalidSan(_)), "{err}");
    }

    #[test]
    fn partial_or_mismatched_ca_is_an_error_and_never_overwritten() {
        for (keep, gone) in [("ca.pem", "ca-key.pem"), ("ca-key.pem", "ca.pem")] {
            let data = tempfile::tempdir().unwrap();
            let tls = data.path().join("tls");
            ensure_self_signed(data.path(), &[]).unwrap();
            let before = read(&tls, keep);
            fs::remove_file(tls.join(gone)).unwrap();
            let err = ensure_self_signed(data.path(), &[]).unwrap_err();
            let msg = err.to_string();
            assert!(matches!(err, TlsError::PartialCa { .. }), "{msg}");
            assert!(msg.contains(&format!("/{gone} is missing")), "{msg}");
            assert!(msg.contains(&format!("/{keep} exists")), "{msg}");
            assert_eq!(read(&tls, keep), before, "CA must not be touched");
            assert!(!tls.join(gone).exists());
        }

        let data = tempfile::tempdir().unwrap();
        let tls = data.path().join("tls");
        ensure_self_signed(data.path(), &[]).unwrap();
        fs::copy(tls.join("server-key.pem"), tls.join("ca-key.pem")).unwrap();
        let err = ensure_self_signed(data.path(), &[]).unwrap_err();
        assert!(err.to_string().contains("ca-key.pem: does not belong"), "{err}");
    }

    #[test]
    fn load_given_accepts_a_pair_and_names_bad_files() {
        let data = tempfile::tempdir().unwrap();
        ensure_self_signed(data.path(), &[]).unwrap();
        let files = ["tls/server.pem", "tls/server-key.pem", "tls/ca-key.pem", "junk", "none"];
        let [cert, key, ca_key, junk, none] = files.map(|f| data.path().join(f));
        let setup = load_given(&cert, &key).unwrap();
        assert_eq!(setup.ca_pem_path, cert);
        assert_eq!(setup.server_config.alpn_protocols, ALPN);

        fs::write(&junk, b"this is not a certificate\n").unwrap();
        let key_mismatch = (&cert, &ca_key, &ca_key);
        for (c, k, named) in [(&junk, &key, &junk), (&cert, &junk, &junk), (&none, &key, &none), key_mismatch] {
            let msg = load_given(c, k).unwrap_err().to_string();
            assert!(msg.contains(&*named.to_string_lossy()), "{msg}");
        }
        let msg = load_given(&cert, &junk).unwrap_err().to_string();
        assert!(msg.contains("contains no PEM private key"), "{msg}");
    }
}
