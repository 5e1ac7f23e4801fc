//! TLS material: a generated CA and server certificate (or the user's own PEM files), and the rustls
//! server configs for the MQTTS and HTTPS listeners.
//!
//! Generated material lives in the data directory: `ca.pem` / `ca.key` (the CA users trust) and
//! `server.pem` / `server.key`. It is reused on restart; the server certificate is re-issued by the
//! same CA when the host names it must cover change (`server.names` records them), so clients keep
//! trusting `ca.pem`. The certificates pass strict X.509 verification (Python's
//! `VERIFY_X509_STRICT`): the CA has critical basicConstraints `CA:true`, critical keyUsage
//! keyCertSign+cRLSign and a subject key identifier; the server certificate has SANs for `localhost`,
//! `127.0.0.1`, `::1` and the hub host name, EKU serverAuth, an authority key identifier and keyUsage
//! digitalSignature+keyEncipherment.
//!
//! Both listeners offer TLS 1.2 and 1.3 (the Python device SDK pins 1.2). HTTPS advertises ALPN
//! `http/1.1`. Client certificates are not requested (X.509 device auth is out of scope).

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::Datelike;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;

use crate::config::TlsSource;

/// The CA certificate file users point their clients at.
pub const CA_FILE: &str = "ca.pem";
const CA_KEY_FILE: &str = "ca.key";
const SERVER_CERT_FILE: &str = "server.pem";
const SERVER_KEY_FILE: &str = "server.key";
const SERVER_NAMES_FILE: &str = "server.names";

/// Loaded TLS material.
#[derive(Debug, Clone)]
pub struct TlsMaterial {
    /// Server certificate chain (server first).
    pub chain: Vec<CertificateDer<'static>>,
    /// The server key.
    pub key: Arc<PrivateKeyDer<'static>>,
    /// The CA certificate as PEM, when the hub generated it (`None` for user files).
    pub ca_pem: Option<String>,
}

/// Why TLS material could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A PEM file holds no usable certificate or key.
    #[error("{path}: {what}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is missing or wrong.
        what: String,
    },
    /// Certificate generation failed.
    #[error("generating certificates: {0}")]
    Generate(#[from] rcgen::Error),
    /// rustls refused the certificate or key.
    #[error("tls config: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Loads the user's files, or generates/reuses certificates in `data_dir` covering `host_name`.
///
/// # Errors
/// [`TlsError`] for unreadable files, PEM without a certificate or key, or generation failures.
pub fn load_or_generate(
    source: &TlsSource,
    data_dir: &Path,
    host_name: &str,
) -> Result<TlsMaterial, TlsError> {
    match source {
        TlsSource::Files { cert, key } => Ok(TlsMaterial {
            chain: read_certs(cert)?,
            key: Arc::new(read_key(key)?),
            ca_pem: None,
        }),
        TlsSource::Generate => generate_in(data_dir, host_name),
    }
}

/// A rustls server config offering TLS 1.2 and 1.3 with the given ALPN protocols.
///
/// # Errors
/// [`TlsError::Rustls`] when the certificate and key do not match or are unsupported.
pub fn server_config(
    material: &TlsMaterial,
    alpn: &[&[u8]],
) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS12, &rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(material.chain.clone(), material.key.clone_key())?;
    config.alpn_protocols = alpn.iter().map(|proto| proto.to_vec()).collect();
    Ok(Arc::new(config))
}

/// The names the generated server certificate covers, in order.
fn server_names(host_name: &str) -> Vec<String> {
    let mut names = vec!["localhost".to_owned(), "127.0.0.1".to_owned(), "::1".to_owned()];
    let host = host_name.split(':').next().unwrap_or(host_name);
    let host = if host_name.parse::<IpAddr>().is_ok() { host_name } else { host };
    if !host.is_empty() && !names.iter().any(|name| name.eq_ignore_ascii_case(host)) {
        names.push(host.to_owned());
    }
    names
}

fn generate_in(data_dir: &Path, host_name: &str) -> Result<TlsMaterial, TlsError> {
    let ca_key_path = data_dir.join(CA_KEY_FILE);
    let ca_path = data_dir.join(CA_FILE);
    let (ca_key, ca_pem) = if ca_key_path.exists() && ca_path.exists() {
        let key_pem = read_text(&ca_key_path)?;
        let key = KeyPair::from_pem(&key_pem).map_err(|err| pem_error(&ca_key_path, err))?;
        (key, read_text(&ca_path)?)
    } else {
        let key = KeyPair::generate()?;
        let ca = ca_params()?.self_signed(&key)?;
        write_secret(&ca_key_path, &key.serialize_pem())?;
        write_text(&ca_path, &ca.pem())?;
        tracing::info!(path = %ca_path.display(), "generated a CA certificate");
        (key, ca.pem())
    };
    let names = server_names(host_name).join("\n");
    let cert_path = data_dir.join(SERVER_CERT_FILE);
    let key_path = data_dir.join(SERVER_KEY_FILE);
    let names_path = data_dir.join(SERVER_NAMES_FILE);
    let current = cert_path.exists()
        && key_path.exists()
        && read_text(&names_path).is_ok_and(|saved| saved == names);
    if !current {
        issue_server_cert(&ca_key, host_name, &cert_path, &key_path)?;
        write_text(&names_path, &names)?;
    }
    let mut chain = read_certs(&cert_path)?;
    chain.extend(read_certs(&ca_path)?);
    Ok(TlsMaterial { chain, key: Arc::new(read_key(&key_path)?), ca_pem: Some(ca_pem) })
}

/// The CA's parameters. Deterministic apart from validity, so a reloaded CA key re-creates an issuer
/// with the same name and key identifier as the saved `ca.pem`.
fn ca_params() -> Result<CertificateParams, rcgen::Error> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, "hubsim local CA");
    name.push(DnType::OrganizationName, "hubsim");
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    set_validity(&mut params, 20);
    Ok(params)
}

fn issue_server_cert(
    ca_key: &KeyPair,
    host_name: &str,
    cert_path: &Path,
    key_path: &Path,
) -> Result<(), TlsError> {
    let issuer = ca_params()?.self_signed(ca_key)?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, "hubsim server");
    params.distinguished_name = name;
    for entry in server_names(host_name) {
        let san = match entry.parse::<IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(entry.as_str().try_into()?),
        };
        params.subject_alt_names.push(san);
    }
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    params.use_authority_key_identifier_extension = true;
    set_validity(&mut params, 5);
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer, ca_key)?;
    write_secret(key_path, &key.serialize_pem())?;
    write_text(cert_path, &cert.pem())?;
    tracing::info!(path = %cert_path.display(), host_name, "issued a server certificate");
    Ok(())
}

fn set_validity(params: &mut CertificateParams, years: i32) {
    let now = chrono::Utc::now();
    let year = now.year();
    params.not_before = rcgen::date_time_ymd(year - 1, 1, 1);
    params.not_after = rcgen::date_time_ymd(year + years, 1, 1);
}

fn read_text(path: &Path) -> Result<String, TlsError> {
    std::fs::read_to_string(path).map_err(|source| TlsError::Io { path: path.to_owned(), source })
}

fn write_text(path: &Path, text: &str) -> Result<(), TlsError> {
    std::fs::write(path, text).map_err(|source| TlsError::Io { path: path.to_owned(), source })
}

/// Writes a private key readable only by the owner (on Unix).
fn write_secret(path: &Path, text: &str) -> Result<(), TlsError> {
    crate::hub::write_private_file(path, text)
        .map_err(|source| TlsError::Io { path: path.to_owned(), source })
}

fn pem_error(path: &Path, err: impl std::fmt::Display) -> TlsError {
    TlsError::Pem { path: path.to_owned(), what: err.to_string() }
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let text = read_text(path)?;
    let certs = rustls_pemfile::certs(&mut text.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| pem_error(path, err))?;
    if certs.is_empty() {
        return Err(pem_error(path, "no CERTIFICATE block found"));
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let text = read_text(path)?;
    rustls_pemfile::private_key(&mut text.as_bytes())
        .map_err(|err| pem_error(path, err))?
        .ok_or_else(|| pem_error(path, "no PRIVATE KEY block found"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_once_and_reuses() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_generate(&TlsSource::Generate, dir.path(), "hub.example").unwrap();
        assert_eq!(first.chain.len(), 2);
        let again = load_or_generate(&TlsSource::Generate, dir.path(), "hub.example").unwrap();
        assert_eq!(first.chain, again.chain);
        assert_eq!(first.ca_pem, again.ca_pem);
        // A new host name re-issues the server certificate under the same CA.
        let renamed = load_or_generate(&TlsSource::Generate, dir.path(), "other.example").unwrap();
        assert_ne!(first.chain[0], renamed.chain[0]);
        assert_eq!(first.ca_pem, renamed.ca_pem);
        assert!(server_config(&renamed, &[b"http/1.1"]).is_ok());
    }

    #[test]
    fn names_cover_loopback_and_host() {
        assert_eq!(server_names("localhost"), ["localhost", "127.0.0.1", "::1"]);
        assert_eq!(server_names("hub.local:8443"), ["localhost", "127.0.0.1", "::1", "hub.local"]);
        assert_eq!(server_names("10.0.0.5"), ["localhost", "127.0.0.1", "::1", "10.0.0.5"]);
    }

    #[test]
    fn user_files_must_hold_pem() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let source = TlsSource::Files { cert: empty.clone(), key: empty };
        let err = load_or_generate(&source, dir.path(), "localhost").unwrap_err();
        assert!(err.to_string().contains("no CERTIFICATE"), "{err}");
    }
}
