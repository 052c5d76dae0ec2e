//! TLS for `serve` and `proxy`: a rustls server configuration from a PEM certificate chain and
//! key (`--tls-cert/--tls-key`), and a self-signed pair for 127.0.0.1 and localhost (`flux-sim
//! cert DIR`), so that clients which insist on `https://`/`wss://` (the google-genai SDK's Live
//! API) can talk to the mock server and through the proxy.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// The certificate file `flux-sim cert` writes.
pub const CERT_FILE: &str = "cert.pem";
/// The key file `flux-sim cert` writes.
pub const KEY_FILE: &str = "key.pem";
/// The largest certificate chain or key file read (a chain is a few KiB).
pub const MAX_PEM_BYTES: u64 = 1 << 20;

/// Which file a TLS error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsFile {
    /// The certificate chain.
    Cert,
    /// The private key.
    Key,
    /// The two together (the key does not fit the certificate).
    Pair,
}

/// Why a TLS configuration cannot be made: the file it is about and what was wrong (the
/// message names the file's path; the caller names how it was given).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsError {
    /// The file at fault.
    pub file: TlsFile,
    /// What was wrong.
    pub message: String,
}

/// A server configuration serving `cert` (PEM chain) with `key` (PEM private key), offering
/// HTTP/2 and HTTP/1.1. Errors name the file and what was wrong.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let err = |file, message| TlsError { file, message };
    // Read with a cap: a certificate at /dev/zero is an error, not an allocation of everything.
    let read = |file, path: &Path| crate::scenario::read_bytes_capped(path, MAX_PEM_BYTES).map_err(|e| err(file, e));
    let (cert_pem, key_pem) = (read(TlsFile::Cert, cert)?, read(TlsFile::Key, key)?);
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| {
            err(
                TlsFile::Cert,
                format!("{}: not a PEM certificate chain ({e})", cert.display()),
            )
        })?;
    if chain.is_empty() {
        return Err(err(
            TlsFile::Cert,
            format!(
                "{}: no certificate in it (expected PEM \"BEGIN CERTIFICATE\" blocks)",
                cert.display()
            ),
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| err(TlsFile::Key, format!("{}: not a PEM private key ({e})", key.display())))?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| err(TlsFile::Pair, format!("TLS: {e}")))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| err(TlsFile::Pair, format!("the key does not fit the certificate ({e})")))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A self-signed certificate for 127.0.0.1, ::1 and localhost: (certificate PEM, key PEM).
pub fn self_signed() -> Result<(String, String), String> {
    let names = vec!["localhost".to_string(), "127.0.0.1".to_string(), "::1".to_string()];
    let c = rcgen::generate_simple_self_signed(names).map_err(|e| format!("cannot make a certificate: {e}"))?;
    Ok((c.cert.pem(), c.key_pair.serialize_pem()))
}

/// Writes a self-signed pair into `dir` (created if missing) as `cert.pem` and `key.pem`;
/// refuses to replace existing files unless `force`.
pub fn write_self_signed(dir: &Path, force: bool) -> Result<(PathBuf, PathBuf), String> {
    let (cert, key) = (dir.join(CERT_FILE), dir.join(KEY_FILE));
    if !force {
        if let Some(p) = [&cert, &key].into_iter().find(|p| p.exists()) {
            return Err(format!("{} exists; not replaced", p.display()));
        }
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let (cert_pem, key_pem) = self_signed()?;
    std::fs::write(&cert, cert_pem).map_err(|e| format!("{}: {e}", cert.display()))?;
    write_private(&key, &key_pem)?;
    Ok((cert, key))
}

/// Writes a private key readable by its owner only (on Unix).
fn write_private(path: &Path, text: &str) -> Result<(), String> {
    use std::io::Write;
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    let mut f = o.open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    // An existing file keeps its mode on open: `cert --force` over a 0644 key.pem narrows it.
    #[cfg(unix)]
    f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    f.write_all(text.as_bytes())
        .map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_pair_loads_and_is_not_overwritten_without_force() {
        let dir = std::env::temp_dir().join(format!("flux-sim-cert-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (cert, key) = write_self_signed(&dir, false).unwrap();
        assert!(server_config(&cert, &key).is_ok());
        let before = std::fs::read(&cert).unwrap();
        assert!(write_self_signed(&dir, false)
            .unwrap_err()
            .ends_with("exists; not replaced"));
        assert_eq!(std::fs::read(&cert).unwrap(), before);
        assert!(write_self_signed(&dir, true).is_ok());
        let e = server_config(&key, &key).unwrap_err();
        assert!(e.file == TlsFile::Cert && e.message.contains("key.pem"), "{e:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_endless_file_is_an_error_and_force_narrows_an_old_key_mode() {
        // issue 29: /dev/zero was read without a cap and aborted at 4 GB.
        let e = server_config(Path::new("/dev/zero"), Path::new("/dev/zero")).unwrap_err();
        assert_eq!(e.file, TlsFile::Cert);
        assert!(
            e.message.starts_with("/dev/zero: larger than the most allowed"),
            "{e:?}"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let dir = std::env::temp_dir().join(format!("flux-sim-cert-mode-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            let old = dir.join(KEY_FILE);
            std::fs::write(&old, "old").unwrap();
            std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o644)).unwrap();
            let (_, key) = write_self_signed(&dir, true).unwrap();
            let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "cert --force kept {mode:o}");
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}
