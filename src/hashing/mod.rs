//! Hashes for matching known content: PDQ (perceptual, images), vPDQ (PDQ of one frame a
//! second, videos) and the exact digests MD5 and SHA-256 that hash-sharing programmes use for
//! files.
//!
//! `dfserve hash FILE...` prints them; matching uploads against hash lists builds on this.

pub mod pdq;
pub mod vpdq;

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use image::RgbImage;

use md5::Md5;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::error::CoreError;
use crate::pipeline::decode::{decode_rgb, DecodeLimits};
use crate::video::{sniff, Container, Sampling, Sniffed, VideoDecoder, VideoSettings};

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
    /// The eight dihedral variants' PDQ hashes, in [`pdq::DIHEDRAL`]'s order (`dfserve hash
    /// --dihedral`); images only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pdq_dihedral: Option<Vec<String>>,
    /// vPDQ frames (`"hex,quality,seconds"`, ThreatExchange's form); videos only. A hash-list
    /// entry takes this array as its `hash`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vpdq: Option<Vec<String>>,
    pub md5: String,
    pub sha256: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Hashes one upload's bytes: the digests always, PDQ when it is an image.
pub fn hash_bytes(path: String, bytes: &[u8], max_pixels: u64, dihedral: bool) -> FileHashes {
    let md5 = hex::encode(Md5::digest(bytes));
    let sha256 = hex::encode(Sha256::digest(bytes));
    let base = FileHashes {
        path,
        kind: "image",
        pdq: None,
        quality: None,
        pdq_dihedral: None,
        vpdq: None,
        md5,
        sha256,
        error: None,
    };
    match sniff(bytes) {
        Sniffed::Video(_) => FileHashes { kind: "video", ..base },
        Sniffed::Refused(why) => FileHashes { kind: "error", error: Some(why.to_string()), ..base },
        Sniffed::Other => match decode_rgb(bytes, DecodeLimits { max_pixels }) {
            Ok(img) => {
                // The dihedral variants come from the same DCT, the first being the hash itself.
                let (h, variants) = match dihedral {
                    true => {
                        let all = pdq::pdq_dihedral(&img);
                        (all[0], Some(all.iter().map(pdq::Pdq::hex).collect()))
                    }
                    false => (pdq::pdq(&img), None),
                };
                FileHashes { pdq: Some(h.hex()), quality: Some(h.quality), pdq_dihedral: variants, ..base }
            }
            Err(e) => FileHashes { kind: "error", error: Some(e.to_string()), ..base },
        },
    }
}

/// One sampled frame's vPDQ feature, hashed off the async workers.
pub async fn frame_feature(image: Arc<RgbImage>, time_s: f64) -> Result<vpdq::Feature, CoreError> {
    let pdq = tokio::task::spawn_blocking(move || pdq::pdq(&image))
        .await
        .map_err(|e| CoreError::Inference(format!("frame hashing task failed: {e}")))?;
    Ok(vpdq::Feature { pdq, time_s })
}

/// A video's vPDQ, decoded by the same confined FFmpeg and sampler as uploads.
pub async fn video_vpdq(
    decoder: &VideoDecoder,
    bytes: Bytes,
    container: Container,
) -> Result<Vec<vpdq::Feature>, CoreError> {
    let deadline = Instant::now() + decoder.settings().decode_timeout;
    let mut video = decoder.open(bytes, container, Some(Sampling::Count(0)), Some(1.0), deadline).await?;
    let mut out = Vec::new();
    while let Some(frame) = video.next_frame().await? {
        if frame.hash {
            out.push(frame_feature(Arc::new(frame.image), frame.time_s).await?);
        }
    }
    Ok(out)
}

/// Every hash of one upload: the digests, and PDQ (image) or vPDQ (video). Hashing runs off
/// the async workers. An image that cannot be decoded says why in `error`; a video that cannot
/// be decoded gives its line (digests and `error`) with the decoder's error, whose kind
/// (busy, too long, undecodable) the server reports.
pub async fn hash_upload(
    decoder: &VideoDecoder,
    path: String,
    bytes: Bytes,
    max_pixels: u64,
    dihedral: bool,
) -> Result<FileHashes, (FileHashes, CoreError)> {
    let b = bytes.clone();
    let mut line = match tokio::task::spawn_blocking(move || hash_bytes(path, &b, max_pixels, dihedral)).await {
        Ok(line) => line,
        Err(e) => {
            let msg = format!("hashing task failed: {e}");
            return Err((FileHashes::failed(String::new(), msg.clone()), CoreError::Inference(msg)));
        }
    };
    if let Sniffed::Video(container) = sniff(&bytes) {
        match video_vpdq(decoder, bytes, container).await {
            Ok(frames) => line.vpdq = Some(frames.iter().map(vpdq::Feature::compact).collect()),
            Err(e) => {
                (line.kind, line.error) = ("error", Some(e.to_string()));
                return Err((line, e));
            }
        }
    }
    Ok(line)
}

impl FileHashes {
    fn failed(path: String, error: String) -> FileHashes {
        FileHashes {
            path,
            kind: "error",
            pdq: None,
            quality: None,
            pdq_dihedral: None,
            vpdq: None,
            md5: String::new(),
            sha256: String::new(),
            error: Some(error),
        }
    }
}

/// `dfserve hash FILE...`: one JSON line per file on stdout, decoding within the server's
/// limits (`video` and `max_pixels`, from the command line's engine settings).
pub fn run(files: &[std::path::PathBuf], video: VideoSettings, max_pixels: u64, dihedral: bool) -> anyhow::Result<()> {
    use std::io::Write;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let decoder = runtime.block_on(VideoDecoder::start(video)).waiting_for_budget();
    let mut out = std::io::stdout().lock();
    let mut failed = 0usize;
    for path in files {
        let name = path.to_string_lossy().into_owned();
        let line = match std::fs::read(path) {
            Ok(bytes) => runtime
                .block_on(hash_upload(&decoder, name, bytes.into(), max_pixels, dihedral))
                .unwrap_or_else(|(l, _)| l),
            Err(e) => FileHashes::failed(name, format!("cannot read: {e}")),
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
