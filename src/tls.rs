//! What every outgoing HTTPS connection trusts: the system's roots, read and parsed once per
//! process and shared by every token's source and every proxy (each client built its own copy
//! before, some 200 KiB and 8 ms a token), plus a `ca_file`'s certificates in a copy for a
//! client that names one. The client settings are rustls on ring, as everywhere in the tree.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use rustls::RootCertStore;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

/// The system's roots; unreadable ones are skipped.
fn system_roots() -> Arc<RootCertStore> {
    static ROOTS: OnceLock<Arc<RootCertStore>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let mut roots = RootCertStore::empty();
            roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
            Arc::new(roots)
        })
        .clone()
}

/// The system's roots, and `ca_file`'s certificates when given. The error is the reason alone:
/// callers name the key.
pub(crate) fn roots(ca_file: Option<&Path>) -> Result<Arc<RootCertStore>, String> {
    let Some(path) = ca_file else { return Ok(system_roots()) };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| e.to_string())?
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    if certs.is_empty() {
        return Err("holds no PEM certificate".into());
    }
    let mut roots = (*system_roots()).clone();
    for cert in certs {
        roots.add(cert).map_err(|e| e.to_string())?;
    }
    Ok(Arc::new(roots))
}

/// A TLS client configuration trusting `roots`.
pub(crate) fn client_config(roots: Arc<RootCertStore>) -> rustls::ClientConfig {
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("ring supports the default TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth()
}
