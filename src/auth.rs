//! Optional API keys.
//!
//! Keys live in a file (`--api-key-file`), one per line; blank lines and `#` comments are
//! ignored. A line `admin:<key>` makes an admin key, which may also change hash lists; plain
//! keys (or `score:<key>`) may only score and read. Several keys may be valid at once, so a key is rotated by adding the new one,
//! moving clients over, then removing the old one; the file is re-read on SIGHUP without a
//! restart. A request presents its key as `Authorization: Bearer <key>` or `x-api-key: <key>`
//! (HTTP headers or gRPC metadata).
//!
//! Only SHA-256 digests of the keys are kept. A presented key is hashed and its digest compared
//! with every stored digest in constant time: all comparisons are of 32 bytes, so timing reveals
//! neither a key's content, nor its length, nor which key matched. Each key has a public id (the
//! first 8 hex digits of its digest) that the access log records instead of the key.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use anyhow::{bail, Context};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

type KeyDigest = [u8; 32];

/// A key's public id (the first 8 hex digits of its SHA-256, safe to log) and its role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyId {
    id: [u8; 4],
    /// An admin key (`admin:` prefix in the key file) may also change hash lists.
    pub admin: bool,
}

impl std::fmt::Display for KeyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex::encode(self.id))
    }
}

fn digest(key: &[u8]) -> KeyDigest {
    Sha256::digest(key).into()
}

pub struct KeyStore {
    path: PathBuf,
    /// Each key's digest and whether it is an admin key.
    keys: RwLock<Arc<Vec<(KeyDigest, bool)>>>,
}

fn read_keys(path: &Path) -> anyhow::Result<Vec<(KeyDigest, bool)>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading --api-key-file {}", path.display()))?;
    let lines = text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#'));
    let keys: Vec<(&str, bool)> = lines
        .map(|l| match l.strip_prefix("admin:") {
            Some(k) => (k.trim(), true),
            None => (l.strip_prefix("score:").map_or(l, str::trim), false),
        })
        .collect();
    if keys.is_empty() {
        bail!(
            "--api-key-file {} holds no keys (one per line); refusing to start with every request locked out",
            path.display()
        );
    }
    if let Some((short, _)) = keys.iter().find(|(k, _)| k.len() < 16) {
        bail!("--api-key-file {}: a key of {} characters is too short (use at least 16)", path.display(), short.len());
    }
    Ok(keys.iter().map(|(k, admin)| (digest(k.as_bytes()), *admin)).collect())
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

    /// The id of the key `presented` equals, if it is one of the keys.
    pub fn check(&self, presented: &[u8]) -> Option<KeyId> {
        let keys = self.keys.read().unwrap_or_else(|e| e.into_inner()).clone();
        let d = digest(presented);
        let (mut ok, mut admin) = (subtle::Choice::from(0u8), subtle::Choice::from(0u8));
        for (k, is_admin) in keys.iter() {
            let eq = k.ct_eq(&d);
            ok |= eq;
            admin |= eq & subtle::Choice::from(u8::from(*is_admin));
        }
        bool::from(ok).then(|| KeyId { id: [d[0], d[1], d[2], d[3]], admin: bool::from(admin) })
    }

    /// Checks the key carried by `authorization: Bearer <key>` or `x-api-key: <key>`, given the
    /// raw values of those two headers (HTTP) or metadata entries (gRPC).
    pub fn check_presented(&self, authorization: Option<&[u8]>, api_key: Option<&[u8]>) -> Option<KeyId> {
        let bearer = authorization
            .and_then(|v| v.strip_prefix(b"Bearer ").or_else(|| v.strip_prefix(b"bearer ")))
            .map(|k| k.trim_ascii());
        self.check(bearer.or(api_key)?)
    }

    pub fn check_headers(&self, headers: &axum::http::HeaderMap) -> Option<KeyId> {
        self.check_presented(
            headers.get(axum::http::header::AUTHORIZATION).map(|v| v.as_bytes()),
            headers.get("x-api-key").map(|v| v.as_bytes()),
        )
    }
}

/// Handles SIGHUP for the server's whole life: re-reads the key file when there is one, and
/// otherwise only logs it. Either way SIGHUP never ends the process (its default action would).
pub fn handle_sighup(store: Option<Arc<KeyStore>>) {
    let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
        tracing::warn!("cannot listen for SIGHUP; API keys reload only on restart");
        return;
    };
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            match store.as_ref().map(|s| s.reload()) {
                None => tracing::info!("SIGHUP: no --api-key-file, nothing to reload"),
                Some(Ok(n)) => tracing::info!(keys = n, "SIGHUP: API keys reloaded"),
                Some(Err(e)) => {
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
        let one = s.check(b"key-one-0123456789abcdef").unwrap();
        let two = s.check(b"key-two-0123456789abcdef").unwrap();
        assert_ne!(one, two);
        // The id is the digest's first 8 hex digits, never the key.
        assert_eq!(one.to_string(), hex::encode(&digest(b"key-one-0123456789abcdef")[..4]));
        assert!(s.check(b"key-one-0123456789abcde").is_none());
        assert!(s.check(b"").is_none());
        let mut h = axum::http::HeaderMap::new();
        h.insert("authorization", "Bearer key-two-0123456789abcdef".parse().unwrap());
        assert_eq!(s.check_headers(&h), Some(two));
        let mut h = axum::http::HeaderMap::new();
        h.insert("x-api-key", "nope".parse().unwrap());
        assert!(s.check_headers(&h).is_none());
        std::fs::write(&f, "key-three-0123456789abcdef\n").unwrap();
        assert_eq!(s.reload().unwrap(), 1);
        assert!(s.check(b"key-one-0123456789abcdef").is_none());
        assert!(s.check(b"key-three-0123456789abcdef").is_some());
        // A bad file keeps the old keys.
        std::fs::write(&f, "# nothing\n").unwrap();
        assert!(s.reload().is_err());
        assert!(s.check(b"key-three-0123456789abcdef").is_some());
        std::fs::write(&f, "short\n").unwrap();
        assert!(KeyStore::load(&f).is_err());
        // Roles: `admin:` keys are admins, plain and `score:` keys are not.
        std::fs::write(&f, "admin:boss-0123456789abcdef\nscore:user-0123456789abcdef\nplain-0123456789abcdef\n")
            .unwrap();
        let s = KeyStore::load(&f).unwrap();
        assert!(s.check(b"boss-0123456789abcdef").unwrap().admin);
        assert!(!s.check(b"user-0123456789abcdef").unwrap().admin);
        assert!(!s.check(b"plain-0123456789abcdef").unwrap().admin);
        assert!(s.check(b"admin:boss-0123456789abcdef").is_none());
    }
}
