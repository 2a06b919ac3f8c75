//! The commune's Ed25519 signing key: a PKCS#8 PEM file beside the store
//! (`report_ed25519.pem`, or `report.key_file`), generated on first use
//! with mode 0600 and never overwritten.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::{SigningKey, VerifyingKey};

use super::ReportError;
use crate::config::Config;

/// Where the key lives for a config.
pub fn key_path(config: &Config) -> PathBuf {
    if config.report.key_file.trim().is_empty() {
        config.store.path.join("report_ed25519.pem")
    } else {
        PathBuf::from(&config.report.key_file)
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ReportError + '_ {
    move |e| ReportError::Key(format!("{}: {e}", path.display()))
}

/// Load the key, creating it (0600, exclusively) when missing.
pub fn load_or_create(path: &Path) -> Result<SigningKey, ReportError> {
    match std::fs::read_to_string(path) {
        Ok(pem) => {
            return SigningKey::from_pkcs8_pem(&pem)
                .map_err(|e| ReportError::Key(format!("{}: {e}", path.display())))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(path)(e)),
    }
    let key = SigningKey::from_bytes(&rand::random::<[u8; 32]>());
    let pem = key
        .to_pkcs8_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
        .map_err(|e| ReportError::Key(e.to_string()))?;
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir).map_err(io(dir))?;
        }
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    match opts.open(path) {
        Ok(mut f) => {
            use std::io::Write;
            f.write_all(pem.as_bytes()).map_err(io(path))?;
            f.sync_all().map_err(io(path))?;
            tracing::info!(path = %path.display(), "report signing key created");
            Ok(key)
        }
        // Another process made it first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => load_or_create(path),
        Err(e) => Err(io(path)(e)),
    }
}

/// Load an existing key (verification never creates one).
pub fn load_public(path: &Path) -> Result<Option<VerifyingKey>, ReportError> {
    match std::fs::read_to_string(path) {
        Ok(pem) => SigningKey::from_pkcs8_pem(&pem)
            .map(|k| Some(k.verifying_key()))
            .map_err(|e| ReportError::Key(format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io(path)(e)),
    }
}

/// The public key as base64 of its 32 bytes (the form in documents).
pub fn public_b64(key: &VerifyingKey) -> String {
    base64::engine::general_purpose::STANDARD.encode(key.as_bytes())
}

/// The public key as a SubjectPublicKeyInfo PEM.
pub fn public_pem(key: &VerifyingKey) -> String {
    key.to_public_key_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
        .unwrap_or_default()
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn created_once_private_and_stable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.pem");
        let a = load_or_create(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let b = load_or_create(&path).unwrap();
        assert_eq!(a.to_bytes(), b.to_bytes());
        assert_eq!(load_public(&path).unwrap(), Some(a.verifying_key()));
        assert!(public_pem(&a.verifying_key()).starts_with("-----BEGIN PUBLIC KEY-----"));
    }
}
