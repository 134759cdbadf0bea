//! Optional API keys.
//!
//! Keys live in a file (`--api-key-file`), one per line; blank lines and `#` comments are
//! ignored. Several keys may be valid at once, so a key is rotated by adding the new one,
//! moving clients over, then removing the old one; the file is re-read on SIGHUP without a
//! restart. A request presents its key as `Authorization: Bearer <key>` or `x-api-key: <key>`
//! (HTTP headers or gRPC metadata). Comparison is constant-time, and every stored key is
//! compared, so timing reveals neither a key's content nor which key matched.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use anyhow::{bail, Context};
use subtle::ConstantTimeEq;

pub struct KeyStore {
    path: PathBuf,
    keys: RwLock<Arc<Vec<Vec<u8>>>>,
}

fn read_keys(path: &Path) -> anyhow::Result<Vec<Vec<u8>>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading --api-key-file {}", path.display()))?;
    let keys: Vec<Vec<u8>> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.as_bytes().to_vec())
        .collect();
    if keys.is_empty() {
        bail!(
            "--api-key-file {} holds no keys (one per line); refusing to start with every request locked out",
            path.display()
        );
    }
    if let Some(short) = keys.iter().find(|k| k.len() < 16) {
        bail!("--api-key-file {}: a key of {} characters is too short (use at least 16)", path.display(), short.len());
    }
    Ok(keys)
}

impl KeyStore {
    pub fn load(path: &Path) -> anyhow::Result<KeyStore> {
        let keys = read_keys(path)?;
        Ok(KeyStore { path: path.to_path_buf(), keys: RwLock::new(Arc::new(keys)) })
    }

    /// Re-reads the key file. On error the old keys stay in force.
    pub fn reload(&self) -> anyhow::Result<usize> {
        let keys = read_keys(&self.path)?;
        let n = keys.len();
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(keys);
        Ok(n)
    }

    /// Whether `presented` equals one of the keys.
    pub fn check(&self, presented: &[u8]) -> bool {
        let keys = self.keys.read().unwrap_or_else(|e| e.into_inner()).clone();
        let mut ok = subtle::Choice::from(0u8);
        for k in keys.iter() {
            ok |= k.as_slice().ct_eq(presented);
        }
        ok.into()
    }

    /// Checks the key carried by `authorization: Bearer <key>` or `x-api-key: <key>`, given the
    /// raw values of those two headers (HTTP) or metadata entries (gRPC).
    pub fn check_presented(&self, authorization: Option<&[u8]>, api_key: Option<&[u8]>) -> bool {
        let bearer = authorization
            .and_then(|v| v.strip_prefix(b"Bearer ").or_else(|| v.strip_prefix(b"bearer ")))
            .map(|k| k.trim_ascii());
        match bearer.or(api_key) {
            Some(k) => self.check(k),
            None => false,
        }
    }

    pub fn check_headers(&self, headers: &axum::http::HeaderMap) -> bool {
        self.check_presented(
            headers.get(axum::http::header::AUTHORIZATION).map(|v| v.as_bytes()),
            headers.get("x-api-key").map(|v| v.as_bytes()),
        )
    }
}

/// Re-reads the key file on every SIGHUP.
pub fn reload_on_sighup(store: Arc<KeyStore>) {
    tokio::spawn(async move {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
            tracing::warn!("cannot listen for SIGHUP; API keys reload only on restart");
            return;
        };
        while hup.recv().await.is_some() {
            match store.reload() {
                Ok(n) => tracing::info!(keys = n, "SIGHUP: API keys reloaded"),
                Err(e) => {
                    tracing::error!(error = %format!("{e:#}"), "SIGHUP: API key reload failed; old keys stay in force")
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_load_check_and_reload() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("keys");
        std::fs::write(&f, "# ops team\nkey-one-0123456789abcdef\n\n  key-two-0123456789abcdef  \n").unwrap();
        let s = KeyStore::load(&f).unwrap();
        assert!(s.check(b"key-one-0123456789abcdef"));
        assert!(s.check(b"key-two-0123456789abcdef"));
        assert!(!s.check(b"key-one-0123456789abcde"));
        assert!(!s.check(b""));
        let mut h = axum::http::HeaderMap::new();
        h.insert("authorization", "Bearer key-two-0123456789abcdef".parse().unwrap());
        assert!(s.check_headers(&h));
        let mut h = axum::http::HeaderMap::new();
        h.insert("x-api-key", "nope".parse().unwrap());
        assert!(!s.check_headers(&h));
        std::fs::write(&f, "key-three-0123456789abcdef\n").unwrap();
        assert_eq!(s.reload().unwrap(), 1);
        assert!(!s.check(b"key-one-0123456789abcdef"));
        assert!(s.check(b"key-three-0123456789abcdef"));
        // A bad file keeps the old keys.
        std::fs::write(&f, "# nothing\n").unwrap();
        assert!(s.reload().is_err());
        assert!(s.check(b"key-three-0123456789abcdef"));
        std::fs::write(&f, "short\n").unwrap();
        assert!(KeyStore::load(&f).is_err());
    }
}
