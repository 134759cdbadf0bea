//! Provenance: C2PA Content Credentials read from the upload's own bytes and reported beside
//! the manipulation score, never mixed into it.
//!
//! Generators and cameras sign what they make; an AI image may declare itself
//! (`digitalSourceType` = `trainedAlgorithmicMedia`). A valid manifest is strong evidence; a
//! missing one proves nothing (most platforms strip metadata). The `c2pa` crate reads and
//! validates manifests with Rust-native crypto and is built without any HTTP client, so
//! nothing is fetched: no remote manifests, no OCSP (revocation is checked only against what
//! the manifest carries). Trust needs anchors from the operator (`--c2pa-trust-anchors`):
//! without them an intact signature reports `valid`, never `trusted`.
//!
//! Limits: the manifest is read from the upload, whose size the body limits already bound;
//! reading runs on the blocking pool, at most one per core at a time, and a read that takes
//! longer than [`READ_TIMEOUT`] is reported as an error while the request goes on. A broken
//! manifest is a reported validation error, never a failed request.

use std::io::Cursor;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use c2pa::assertions::Actions;
use c2pa::{Context, Reader, ValidationState};
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

/// What is known of an upload's origin.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    pub c2pa: C2pa,
}

/// The upload's C2PA manifest store, as validated here.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct C2pa {
    /// Whether the upload carries a manifest store (also when it is broken).
    pub present: bool,
    /// `invalid` (broken, tampered, or a bad signature), `valid` (intact and well signed, by a
    /// signer not on the trust list) or `trusted` (valid, and the signer chains to an anchor).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signer: Option<Signer>,
    /// When the claim was signed (RFC 3339), as the signature says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed_at: Option<String>,
    /// The software that made the claim (e.g. a camera's or a generator's name and version).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim_generator: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// The digital source types the active manifest's actions declare, as IPTC's short names
    /// (`trainedAlgorithmicMedia`, `compositeWithTrainedAlgorithmicMedia`, `digitalCapture`...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub digital_source_types: Vec<String>,
    /// The manifest declares generative AI (`trainedAlgorithmicMedia` or
    /// `compositeWithTrainedAlgorithmicMedia`). Meaningful only when `state` is not `invalid`.
    pub generative_ai: bool,
    /// C2PA validation failure codes (e.g. `assertion.dataHash.mismatch`), or dfserve's own
    /// (`dfserve.malformed`, `dfserve.timeout`) when the manifest could not be read.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Signer {
    /// The signing certificate's issuer (organisation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// The signing certificate's subject common name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub common_name: Option<String>,
}

/// How long one upload's manifest may take to read and validate before it is reported as an
/// error (`dfserve.timeout`); the signature checks of a normal manifest take milliseconds.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// The IPTC source types that mean generative AI made the content, or part of it.
const GENERATIVE: [&str; 2] = ["trainedAlgorithmicMedia", "compositeWithTrainedAlgorithmicMedia"];

/// The media type the `c2pa` crate reads, from the leading bytes; `None` for formats that
/// carry no manifest we read.
pub fn format_of(bytes: &[u8]) -> Option<&'static str> {
    match bytes {
        [0xff, 0xd8, 0xff, ..] => Some("image/jpeg"),
        [0x89, b'P', b'N', b'G', ..] => Some("image/png"),
        [b'R', b'I', b'F', b'F', _, _, _, _, b'W', b'E', b'B', b'P', ..] => Some("image/webp"),
        [_, _, _, _, b'f', b't', b'y', b'p', b'q', b't', ..] => Some("video/quicktime"),
        [_, _, _, _, b'f', b't', b'y', b'p', ..] => Some("video/mp4"),
        _ => None,
    }
}

/// Reads manifests; shared by every front end.
pub struct ProvenanceReader {
    context: Arc<Context>,
    permits: Arc<Semaphore>,
    timeout: Duration,
}

impl ProvenanceReader {
    /// `anchors`: PEM trust anchors (root certificates); none means nothing is `trusted`.
    pub fn new(anchors: Option<String>, timeout: Duration) -> anyhow::Result<ProvenanceReader> {
        let mut settings = serde_json::json!({
            "verify": {
                "verify_after_reading": true,
                "verify_trust": true,
                "ocsp_fetch": false,
                "remote_manifest_fetch": false,
            }
        });
        if let Some(pem) = anchors {
            if !pem.contains("-----BEGIN CERTIFICATE-----") {
                anyhow::bail!("the C2PA trust anchors must be PEM certificates");
            }
            settings["trust"] = serde_json::json!({ "user_anchors": pem });
        }
        let context = Context::new().with_settings(settings).context("configuring the C2PA reader")?;
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Ok(ProvenanceReader { context: Arc::new(context), permits: Arc::new(Semaphore::new(cores)), timeout })
    }

    /// Reads `--c2pa-trust-anchors` (a PEM file), if given.
    pub fn from_file(path: Option<&std::path::Path>, timeout: Duration) -> anyhow::Result<ProvenanceReader> {
        let anchors = path
            .map(|p| std::fs::read_to_string(p).with_context(|| format!("reading C2PA trust anchors {}", p.display())))
            .transpose()?;
        ProvenanceReader::new(anchors, timeout)
    }

    /// The upload's provenance, off the async workers and within the time limit.
    pub async fn read(&self, bytes: bytes::Bytes) -> Provenance {
        let Some(format) = format_of(&bytes) else { return Provenance::default() };
        let (permits, context) = (self.permits.clone(), self.context.clone());
        // The time limit covers waiting for a slot too: slow reads elsewhere cannot hold this
        // request up for longer.
        let work = async move {
            let permit = permits.acquire_owned().await.expect("the semaphore is never closed");
            tokio::task::spawn_blocking(move || {
                let _permit = permit;
                read_manifest(&context, format, &bytes)
            })
            .await
        };
        let c2pa = match tokio::time::timeout(self.timeout, work).await {
            Ok(Ok(c2pa)) => c2pa,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "the C2PA reader failed");
                broken("dfserve.reader_failed")
            }
            Err(_) => broken("dfserve.timeout"),
        };
        Provenance { c2pa }
    }

    /// [`read`](Self::read) for callers outside the async runtime (the CLI).
    pub fn read_blocking(&self, bytes: &[u8]) -> Provenance {
        let c2pa = format_of(bytes).map_or_else(C2pa::default, |f| read_manifest(&self.context, f, bytes));
        Provenance { c2pa }
    }
}

fn broken(code: &str) -> C2pa {
    C2pa { present: true, state: Some("invalid".into()), errors: vec![code.into()], ..C2pa::default() }
}

fn read_manifest(context: &Arc<Context>, format: &str, bytes: &[u8]) -> C2pa {
    let reader = match Reader::from_shared_context(context).with_stream(format, Cursor::new(bytes)) {
        Ok(r) => r,
        Err(c2pa::Error::JumbfNotFound | c2pa::Error::ProvenanceMissing) => return C2pa::default(),
        Err(e) => {
            tracing::debug!(error = %e, "unreadable C2PA manifest");
            return broken("dfserve.malformed");
        }
    };
    let state = match reader.validation_state() {
        ValidationState::Invalid => "invalid",
        ValidationState::Valid => "valid",
        ValidationState::Trusted => "trusted",
    };
    // An untrusted signer is what `valid` already says, not an error.
    let errors = reader
        .validation_status()
        .unwrap_or_default()
        .iter()
        .map(|s| s.code().to_string())
        .filter(|c| c != c2pa::validation_status::SIGNING_CREDENTIAL_UNTRUSTED)
        .collect();
    let mut out = C2pa { present: true, state: Some(state.into()), errors, ..C2pa::default() };
    let Some(m) = reader.active_manifest() else { return out };
    out.claim_generator = m
        .claim_generator()
        .map(str::to_string)
        .or_else(|| m.claim_generator_info.as_ref().and_then(|g| g.first()).map(|g| g.name.clone()));
    out.title = m.title().map(str::to_string);
    if let Some(sig) = m.signature_info() {
        out.signer = Some(Signer { issuer: sig.issuer.clone(), common_name: sig.common_name.clone() });
        out.signed_at = sig.time.clone();
    }
    if let Ok(actions) = m.find_assertion::<Actions>(Actions::LABEL) {
        for a in actions.actions() {
            if let Some(t) = a.source_type() {
                let url = t.to_string();
                let short = url.trim_matches('"').rsplit('/').next().unwrap_or_default().to_string();
                if !short.is_empty() && !out.digital_source_types.contains(&short) {
                    out.digital_source_types.push(short);
                }
            }
        }
    }
    out.generative_ai = out.digital_source_types.iter().any(|t| GENERATIVE.contains(&t.as_str()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_are_told_by_their_first_bytes() {
        assert_eq!(format_of(&[0xff, 0xd8, 0xff, 0xe0]), Some("image/jpeg"));
        assert_eq!(format_of(b"\x89PNG\r\n\x1a\n"), Some("image/png"));
        assert_eq!(format_of(b"RIFF\0\0\0\0WEBPVP8 "), Some("image/webp"));
        assert_eq!(format_of(b"\0\0\0\x20ftypisom"), Some("video/mp4"));
        assert_eq!(format_of(b"\0\0\0\x14ftypqt  "), Some("video/quicktime"));
        assert_eq!(format_of(b"GIF89a"), None);
    }

    #[test]
    fn uploads_without_a_manifest_report_absent_and_junk_never_fails() {
        let reader = ProvenanceReader::new(None, Duration::from_secs(5)).unwrap();
        let mut png = Vec::new();
        image::RgbImage::new(8, 8).write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png).unwrap();
        assert_eq!(reader.read_blocking(&png), Provenance::default());
        // A JPEG start with garbage after it: no manifest, or a reported error; never a panic.
        let junk = [0xff, 0xd8, 0xff, 0xeb, 0x00, 0x10, b'J', b'P', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        let got = reader.read_blocking(&junk).c2pa;
        assert!(!got.present || got.state.as_deref() == Some("invalid"), "{got:?}");
        assert!(ProvenanceReader::new(Some("not a pem".into()), Duration::from_secs(1)).is_err());
    }
}
