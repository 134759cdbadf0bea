//! Hashes for matching known content: PDQ (perceptual, images) and the exact digests MD5 and
//! SHA-256 that hash-sharing programmes use for files.
//!
//! `dfserve hash FILE...` prints them; matching uploads against hash lists builds on this.

pub mod pdq;

use std::path::PathBuf;

use md5::Md5;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::pipeline::decode::{decode_rgb, DecodeLimits};
use crate::video::{sniff, Sniffed};

/// The hashes of one file.
#[derive(Debug, Clone, Serialize)]
pub struct FileHashes {
    pub path: String,
    /// `image`, `video`, or `error` (then `error` says why).
    pub kind: &'static str,
    /// PDQ hash (64 hex digits) and quality; images only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pdq: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quality: Option<u8>,
    pub md5: String,
    pub sha256: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Hashes one upload's bytes: the digests always, PDQ when it is an image.
pub fn hash_bytes(path: String, bytes: &[u8], max_pixels: u64) -> FileHashes {
    let md5 = hex::encode(Md5::digest(bytes));
    let sha256 = hex::encode(Sha256::digest(bytes));
    let base = FileHashes { path, kind: "image", pdq: None, quality: None, md5, sha256, error: None };
    match sniff(bytes) {
        Sniffed::Video(_) => FileHashes { kind: "video", ..base },
        Sniffed::Refused(why) => FileHashes { kind: "error", error: Some(why.to_string()), ..base },
        Sniffed::Other => match decode_rgb(bytes, DecodeLimits { max_pixels }) {
            Ok(img) => {
                let h = pdq::pdq(&img);
                FileHashes { pdq: Some(h.hex()), quality: Some(h.quality), ..base }
            }
            Err(e) => FileHashes { kind: "error", error: Some(e.to_string()), ..base },
        },
    }
}

/// `dfserve hash FILE...`: one JSON line per file on stdout.
pub fn run(files: &[PathBuf], max_pixels: u64) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let mut failed = 0usize;
    for path in files {
        let name = path.to_string_lossy().into_owned();
        let line = match std::fs::read(path) {
            Ok(bytes) => hash_bytes(name, &bytes, max_pixels),
            Err(e) => FileHashes {
                path: name,
                kind: "error",
                pdq: None,
                quality: None,
                md5: String::new(),
                sha256: String::new(),
                error: Some(format!("cannot read: {e}")),
            },
        };
        failed += usize::from(line.error.is_some());
        serde_json::to_writer(&mut out, &line)?;
        out.write_all(b"\n")?;
    }
    if failed > 0 {
        anyhow::bail!("{failed} of {} files could not be hashed (see their `error`)", files.len());
    }
    Ok(())
}
