//! TLS to PostgreSQL with libpq's `sslmode` and `sslrootcert`, over rustls.
//!
//! The `postgres` client parses `sslmode` only as far as `disable`, `prefer` and `require`, and
//! leaves certificate checks to the TLS connector it is given. Operators write libpq's
//! strings, and `sslmode=verify-full` is what a fleet's database should get, so this module
//! takes the two options out of the string, builds the connector they ask for, and hands the
//! rest to the client. The modes mean what libpq documents:
//!
//! | sslmode       | encrypted          | certificate checked                   |
//! |---------------|--------------------|---------------------------------------|
//! | `disable`     | no                 | —                                     |
//! | `prefer`      | if the server can  | only against `sslrootcert`, if given  |
//! | `require`     | yes                | only against `sslrootcert`, if given  |
//! | `verify-ca`   | yes                | chain to `sslrootcert`                |
//! | `verify-full` | yes                | chain to `sslrootcert`, and host name |
//!
//! `sslrootcert` is a PEM file of CA certificates, or `system` for the Mozilla roots
//! (webpki-roots). Without it the verifying modes read `~/.postgresql/root.crt`, as libpq does,
//! and fail with a message naming the option when that is missing too. Client certificates
//! (`sslcert`, `sslkey`) are not supported; the client refuses them as unknown options.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, Error as TlsError, RootCertStore, SignatureScheme};
use tokio_postgres_rustls::MakeRustlsConnect;

/// libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl Mode {
    fn parse(s: &str) -> Result<Mode, String> {
        Ok(match s {
            "disable" => Mode::Disable,
            // libpq's `allow` tries without TLS first; TLS when offered is no weaker.
            "allow" | "prefer" => Mode::Prefer,
            "require" => Mode::Require,
            "verify-ca" => Mode::VerifyCa,
            "verify-full" => Mode::VerifyFull,
            _ => return Err(format!("sslmode '{s}': use disable, prefer, require, verify-ca or verify-full")),
        })
    }
}

/// A connection string made ready for the client: its configuration and TLS connector.
pub struct Connection {
    pub config: postgres::Config,
    pub tls: MakeRustlsConnect,
    pub mode: Mode,
}

/// Parses a libpq URL (`postgres://…?sslmode=…`) or key=value string.
pub fn parse(conn: &str) -> Result<Connection, String> {
    let (rest, ssl) = take_ssl_options(conn)?;
    let mode = ssl.mode.as_deref().map(Mode::parse).transpose()?.unwrap_or(Mode::Prefer);
    let mut config: postgres::Config = rest.parse().map_err(|e| format!("{e}"))?;
    config.ssl_mode(match mode {
        Mode::Disable => postgres::config::SslMode::Disable,
        Mode::Prefer => postgres::config::SslMode::Prefer,
        _ => postgres::config::SslMode::Require,
    });
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let root_file = ssl.root_cert.map(PathBuf::from).or_else(|| {
        // libpq's default place, used only by the modes that must verify.
        let home = std::env::var_os("HOME")?;
        let p = PathBuf::from(home).join(".postgresql/root.crt");
        (matches!(mode, Mode::VerifyCa | Mode::VerifyFull) && p.exists()).then_some(p)
    });
    let verifier: Arc<dyn ServerCertVerifier> = match (&root_file, mode) {
        (None, Mode::VerifyCa | Mode::VerifyFull) => {
            return Err(format!(
                "sslmode={}: name the CA certificates with sslrootcert=FILE (PEM), or sslrootcert=system",
                if mode == Mode::VerifyCa { "verify-ca" } else { "verify-full" }
            ))
        }
        (None, _) => Arc::new(Unverified(provider.clone())),
        (Some(file), _) => {
            let roots = roots(file)?;
            let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .map_err(|e| format!("sslrootcert: {e}"))?;
            if mode == Mode::VerifyFull {
                webpki
            } else {
                Arc::new(ChainOnly(webpki))
            }
        }
    };
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(Connection { config, tls: MakeRustlsConnect::new(tls), mode })
}

fn roots(file: &std::path::Path) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    if file.as_os_str() == "system" {
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        return Ok(roots);
    }
    let certs = CertificateDer::pem_file_iter(file)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("sslrootcert {}: {e}", file.display()))?;
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(format!("sslrootcert {}: no CA certificate in it", file.display()));
    }
    Ok(roots)
}

#[derive(Default)]
struct SslOptions {
    mode: Option<String>,
    root_cert: Option<String>,
}

/// The connection string without `sslmode` and `sslrootcert`, and their values.
fn take_ssl_options(conn: &str) -> Result<(String, SslOptions), String> {
    let mut ssl = SslOptions::default();
    let mut take = |key: &str, value: String| match key {
        "sslmode" => ssl.mode = Some(value),
        "sslrootcert" => ssl.root_cert = Some(value),
        _ => unreachable!(),
    };
    let is_ssl = |k: &str| k == "sslmode" || k == "sslrootcert";
    let rest = if conn.starts_with("postgres://") || conn.starts_with("postgresql://") {
        let Some((base, query)) = conn.split_once('?') else { return Ok((conn.to_string(), ssl)) };
        let mut kept = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            if is_ssl(k) {
                let v = percent_encoding::percent_decode_str(v).decode_utf8().map_err(|e| format!("{k}: {e}"))?;
                take(k, v.into_owned());
            } else {
                kept.push(pair);
            }
        }
        if kept.is_empty() {
            base.to_string()
        } else {
            format!("{base}?{}", kept.join("&"))
        }
    } else {
        let mut kept = String::new();
        for (k, v, text) in key_values(conn)? {
            if is_ssl(&k) {
                take(&k, v);
            } else {
                kept.push_str(text);
                kept.push(' ');
            }
        }
        kept
    };
    Ok((rest, ssl))
}

/// libpq's key=value syntax: `key = value` pairs apart by spaces, values optionally in single
/// quotes with backslash escapes. Each key, its value, and the pair's text as written.
fn key_values(s: &str) -> Result<Vec<(String, String, &str)>, String> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let skip_ws = |i: &mut usize| {
        while *i < b.len() && b[*i].is_ascii_whitespace() {
            *i += 1;
        }
    };
    loop {
        skip_ws(&mut i);
        if i >= b.len() {
            return Ok(out);
        }
        let start = i;
        while i < b.len() && b[i] != b'=' && !b[i].is_ascii_whitespace() {
            i += 1;
        }
        let key = s[start..i].to_string();
        skip_ws(&mut i);
        if i >= b.len() || b[i] != b'=' {
            return Err(format!("'{key}' in the connection string has no '=' after it"));
        }
        i += 1;
        skip_ws(&mut i);
        let mut value = String::new();
        if i < b.len() && b[i] == b'\'' {
            i += 1;
            loop {
                match b.get(i) {
                    None => return Err(format!("the value of '{key}' has no closing quote")),
                    Some(b'\'') => break,
                    Some(b'\\') if i + 1 < b.len() => i += 1,
                    _ => {}
                }
                let ch = s[i..].chars().next().expect("in bounds");
                value.push(ch);
                i += ch.len_utf8();
            }
            i += 1;
        } else {
            let v0 = i;
            while i < b.len() && !b[i].is_ascii_whitespace() {
                i += 1;
            }
            value.push_str(&s[v0..i]);
        }
        out.push((key, value, &s[start..i]));
    }
}

/// `prefer` and `require` without `sslrootcert`: encrypted, the certificate not checked (as
/// libpq does), the handshake's signatures still checked.
#[derive(Debug)]
struct Unverified(Arc<CryptoProvider>);

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, TlsError> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `verify-ca` (and `prefer`/`require` with `sslrootcert`): the chain must reach a named CA;
/// the name in the certificate need not match the host.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, TlsError> {
        match self.0.verify_server_cert(end_entity, intermediates, name, ocsp, now) {
            Err(TlsError::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssl_options_are_taken_out_of_both_syntaxes() {
        let (rest, ssl) = take_ssl_options(
            "postgres://u:p@db:5432/x?sslmode=verify-full&sslrootcert=%2Fetc%2Fca%20b.pem&connect_timeout=5",
        )
        .unwrap();
        assert_eq!(rest, "postgres://u:p@db:5432/x?connect_timeout=5");
        assert_eq!((ssl.mode.as_deref(), ssl.root_cert.as_deref()), (Some("verify-full"), Some("/etc/ca b.pem")));
        let (rest, ssl) = take_ssl_options("postgresql://db/x?sslmode=require").unwrap();
        assert_eq!((rest.as_str(), ssl.mode.as_deref()), ("postgresql://db/x", Some("require")));

        let (rest, ssl) =
            take_ssl_options("host=db  password='a b\\'c' sslmode = verify-ca sslrootcert='/x y/ca.pem' dbname=d")
                .unwrap();
        assert_eq!(rest, "host=db password='a b\\'c' dbname=d ");
        assert_eq!((ssl.mode.as_deref(), ssl.root_cert.as_deref()), (Some("verify-ca"), Some("/x y/ca.pem")));
        let c: postgres::Config = rest.parse().unwrap();
        assert_eq!(c.get_password(), Some(&b"a b'c"[..]));
        assert!(take_ssl_options("host=db sslmode").is_err());
        assert!(take_ssl_options("host='db").is_err());
    }

    #[test]
    fn verifying_modes_need_their_ca_and_bad_modes_are_named() {
        if !std::path::Path::new(&format!("{}/.postgresql/root.crt", std::env::var("HOME").unwrap_or_default()))
            .exists()
        {
            let e = parse("host=db sslmode=verify-full").err().unwrap();
            assert!(e.contains("sslrootcert"), "{e}");
        }
        let e = parse("host=db sslmode=strict").err().unwrap();
        assert!(e.contains("verify-full"), "{e}");
        let e = parse("host=db sslmode=verify-ca sslrootcert=/nonexistent.pem").err().unwrap();
        assert!(e.contains("/nonexistent.pem"), "{e}");
        assert_eq!(parse("host=db sslmode=verify-full sslrootcert=system").unwrap().mode, Mode::VerifyFull);
        assert_eq!(parse("host=db").unwrap().mode, Mode::Prefer);
        assert_eq!(parse("postgres://db/x?sslmode=disable").unwrap().mode, Mode::Disable);
    }
}
