//! TLS for the REST API: the server side (certificate, key, optional verification of
//! client certificates) and the client side this node and the CLI use towards members
//! (the CA that verifies their certificates, and this node's certificate as its client
//! identity when members demand one).
//!
//! Certificates are PEM files. A member certificate used both to serve and to call peers
//! needs both extended key usages (`serverAuth` and `clientAuth`) when it carries any.

use crate::config::{RestSection, VerifyClient};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use std::path::Path;
use std::sync::Arc;

/// One crypto provider for every TLS configuration of the daemon (the AWS SDK links a
/// second one; rustls cannot choose on its own then).
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Every certificate of a PEM file.
pub fn read_certs(path: &Path, key: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("{key}: cannot read {}: {e}", path.display()))?;
    let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{key}: {} is not PEM: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{key}: {} holds no certificate (expected -----BEGIN CERTIFICATE-----)", path.display()));
    }
    Ok(certs)
}

/// The private key of a PEM file (PKCS#8, PKCS#1 or SEC1).
pub fn read_key(path: &Path, key: &str) -> Result<PrivateKeyDer<'static>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("{key}: cannot read {}: {e}", path.display()))?;
    rustls_pemfile::private_key(&mut pem.as_slice())
        .map_err(|e| format!("{key}: {} is not PEM: {e}", path.display()))?
        .ok_or_else(|| format!("{key}: {} holds no private key", path.display()))
}

fn roots(path: &Path, key: &str) -> Result<RootCertStore, String> {
    let mut store = RootCertStore::empty();
    for c in read_certs(path, key)? {
        store.add(c).map_err(|e| format!("{key}: {} is not a usable CA certificate: {e}", path.display()))?;
    }
    Ok(store)
}

/// The server's TLS configuration (None: plain HTTP).
pub fn server_config(rest: &RestSection) -> Result<Option<Arc<ServerConfig>>, String> {
    let (Some(cert), Some(key)) = (&rest.cert_file, &rest.key_file) else { return Ok(None) };
    let certs = read_certs(cert, "rest.cert_file")?;
    let key = read_key(key, "rest.key_file")?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?;
    let builder = match (rest.client_policy(), &rest.client_ca_file) {
        (VerifyClient::None, _) | (_, None) => builder.with_no_client_auth(),
        (policy, Some(ca)) => {
            let v = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots(ca, "rest.client_ca_file")?),
                provider(),
            );
            let v = if policy == VerifyClient::Optional { v.allow_unauthenticated() } else { v };
            builder.with_client_cert_verifier(v.build().map_err(|e| format!("rest.client_ca_file: {e}"))?)
        }
    };
    let mut cfg = builder
        .with_single_cert(certs, key)
        .map_err(|e| format!("rest.cert_file / rest.key_file do not make a usable pair: {e}"))?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Some(Arc::new(cfg)))
}

/// The client's TLS configuration towards members: their CA (`rest.ca_file`), and this
/// node's certificate as client identity when it has one and the members verify clients.
/// None when neither is configured (then only `http://` members can be reached).
pub fn client_config(rest: &RestSection) -> Result<Option<ClientConfig>, String> {
    if rest.ca_file.is_none() && rest.cert_file.is_none() {
        return Ok(None);
    }
    let store = match &rest.ca_file {
        Some(ca) => roots(ca, "rest.ca_file")?,
        None => RootCertStore::empty(),
    };
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_root_certificates(store);
    // No ALPN here: the HTTPS connector sets it (and refuses a preset one).
    let cfg = match (&rest.cert_file, &rest.key_file, rest.client_policy()) {
        (Some(cert), Some(key), policy) if policy != VerifyClient::None => builder
            .with_client_auth_cert(read_certs(cert, "rest.cert_file")?, read_key(key, "rest.key_file")?)
            .map_err(|e| format!("rest.cert_file as a client certificate: {e}"))?,
        _ => builder.with_no_client_auth(),
    };
    Ok(Some(cfg))
}
