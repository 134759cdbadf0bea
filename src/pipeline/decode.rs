//! Image decoding with limits checked before any pixel is decoded.
//!
//! The header is read first; an image that declares more than `max_pixels` is refused before
//! the decoder allocates its buffer, so a small file that claims 50,000 x 50,000 pixels cannot
//! exhaust memory. `image`'s own allocation limit stays on as a second guard. EXIF orientation
//! is applied so a phone photo is scored upright, as a person would see it.
//!
//! JPEG goes through libjpeg-turbo (the `turbojpeg` crate): it is the fastest decoder
//! available, and it is the decoder Pillow uses, so pixels (and therefore scores) match the
//! Python reference pipelines models are validated with. JPEGs it cannot turn into RGB (CMYK,
//! 12-bit) fall back to the `image` crate's decoder.

use std::io::Cursor;

use image::{DynamicImage, ImageDecoder, ImageReader, Limits, RgbImage};

use crate::error::CoreError;

#[derive(Debug, Clone, Copy)]
pub struct DecodeLimits {
    pub max_pixels: u64,
}

/// Most scans a JPEG may have. Ordinary progressive JPEGs have about 10; libjpeg-turbo's
/// `djpeg -maxscans` advice is 100. A file with thousands of tiny scans makes a decoder redo
/// its whole coefficient buffer thousands of times (a CPU bomb in a few kilobytes).
pub const MAX_JPEG_SCANS: usize = 100;

/// Width and height from the image's header, without decoding pixels (for admission).
pub fn dimensions(bytes: &[u8]) -> Result<(u32, u32), CoreError> {
    ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(undecodable)?
        .into_dimensions()
        .map_err(undecodable)
}

fn undecodable(e: impl std::fmt::Display) -> CoreError {
    CoreError::UndecodableImage(e.to_string())
}

/// Decodes JPEG, PNG, WebP, BMP or GIF (first frame) bytes into upright 8-bit RGB.
pub fn decode_rgb(bytes: &[u8], limits: DecodeLimits) -> Result<RgbImage, CoreError> {
    if bytes.is_empty() {
        return Err(CoreError::BadRequest("empty image".into()));
    }
    let mut reader = ImageReader::new(Cursor::new(bytes)).with_guessed_format().map_err(undecodable)?;
    match reader.format() {
        Some(image::ImageFormat::Jpeg)
        | Some(image::ImageFormat::Png)
        | Some(image::ImageFormat::WebP)
        | Some(image::ImageFormat::Bmp)
        | Some(image::ImageFormat::Gif) => {}
        Some(other) => {
            return Err(CoreError::UndecodableImage(format!(
                "{other:?} images are not supported (JPEG, PNG, WebP, BMP, GIF are)"
            )))
        }
        None => {
            return Err(CoreError::UndecodableImage(
                "not a recognised image format (JPEG, PNG, WebP, BMP, GIF are supported)".into(),
            ))
        }
    }
    if reader.format() == Some(image::ImageFormat::Jpeg) {
        if !jpeg_has_end_marker(bytes) {
            return Err(CoreError::UndecodableImage(
                "truncated JPEG: no end-of-image marker after the scan data".into(),
            ));
        }
        let scans = jpeg_scan_count(bytes);
        if scans > MAX_JPEG_SCANS {
            return Err(CoreError::UndecodableImage(format!(
                "JPEG with {scans} scans, over the limit of {MAX_JPEG_SCANS}"
            )));
        }
        if let Some(img) = decode_jpeg_turbo(bytes, limits)? {
            return Ok(img);
        }
    }
    let mut image_limits = Limits::default();
    // Room for the decoded pixels at up to 16 bits x 4 channels, plus the decoder's own buffers.
    image_limits.max_alloc = Some(limits.max_pixels.saturating_mul(8).saturating_add(64 << 20));
    reader.limits(image_limits);
    let mut decoder = reader.into_decoder().map_err(undecodable)?;
    let (width, height) = decoder.dimensions();
    let pixels = width as u64 * height as u64;
    if pixels > limits.max_pixels {
        return Err(CoreError::ImageTooLarge { width, height, pixels, max_pixels: limits.max_pixels });
    }
    if pixels == 0 {
        return Err(CoreError::UndecodableImage(format!("image has no pixels ({width}x{height})")));
    }
    let orientation = decoder.orientation().unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut img = DynamicImage::from_decoder(decoder).map_err(undecodable)?;
    img.apply_orientation(orientation);
    Ok(img.into_rgb8())
}

/// libjpeg-turbo fast path. `Ok(None)` means "let the generic decoder try".
fn decode_jpeg_turbo(bytes: &[u8], limits: DecodeLimits) -> Result<Option<RgbImage>, CoreError> {
    let mut d = match turbojpeg::Decompressor::new() {
        Ok(d) => d,
        Err(_) => return Ok(None),
    };
    // A second guard behind `jpeg_scan_count`.
    let _ = d.set_scan_limit(MAX_JPEG_SCANS as u32);
    let header = d.read_header(bytes).map_err(undecodable)?;
    let (width, height) = (header.width as u32, header.height as u32);
    let pixels = width as u64 * height as u64;
    if pixels > limits.max_pixels {
        return Err(CoreError::ImageTooLarge { width, height, pixels, max_pixels: limits.max_pixels });
    }
    if pixels == 0 {
        return Err(CoreError::UndecodableImage(format!("image has no pixels ({width}x{height})")));
    }
    let mut buf = vec![0u8; pixels as usize * 3];
    let out = turbojpeg::Image {
        pixels: buf.as_mut_slice(),
        width: header.width,
        pitch: header.width * 3,
        height: header.height,
        format: turbojpeg::PixelFormat::RGB,
    };
    if d.decompress(bytes, out).is_err() {
        return Ok(None);
    }
    let mut img =
        DynamicImage::ImageRgb8(RgbImage::from_raw(width, height, buf).expect("buffer sized from the header"));
    if let Some(o) = jpeg_orientation(bytes) {
        img.apply_orientation(o);
    }
    Ok(Some(img.into_rgb8()))
}

/// Whether a JPEG's scan data is followed by an EOI marker, i.e. the file is not truncated.
///
/// Decoders fill a truncated scan with grey and only warn; scoring such a half-image would be
/// misleading, so it is refused. Marker segments before the first scan (EXIF with an embedded
/// thumbnail and its own EOI, tables, frame header) are skipped by their lengths; inside scan
/// data a 0xFF byte is always stuffed or a marker, so the first 0xFFD9 there is the real end.
fn jpeg_has_end_marker(bytes: &[u8]) -> bool {
    let mut i = 2; // after SOI
    while i + 4 <= bytes.len() {
        if bytes[i] != 0xFF {
            return false;
        }
        let marker = bytes[i + 1];
        if marker == 0xFF {
            i += 1; // fill byte
            continue;
        }
        let len = u16::from_be_bytes([bytes[i + 2], bytes[i + 3]]) as usize;
        if marker == 0xDA {
            let scan = (i + 2 + len).min(bytes.len());
            return bytes[scan..].windows(2).any(|w| w == [0xFF, 0xD9]);
        }
        i += 2 + len;
    }
    false
}

/// Number of scans (SOS markers) in a JPEG's entropy-coded part. Marker segments before the first
/// scan (where an EXIF thumbnail with its own scans may sit) are skipped by their lengths; after
/// it, 0xFF in scan data is always stuffed or a marker, so every 0xFFDA is a scan.
fn jpeg_scan_count(bytes: &[u8]) -> usize {
    let mut i = 2; // after SOI
    while i + 4 <= bytes.len() {
        if bytes[i] != 0xFF {
            return 0;
        }
        let marker = bytes[i + 1];
        if marker == 0xFF {
            i += 1;
            continue;
        }
        if marker == 0xDA {
            return 1 + bytes[i + 2..].windows(2).filter(|w| *w == [0xFF, 0xDA]).count();
        }
        i += 2 + u16::from_be_bytes([bytes[i + 2], bytes[i + 3]]) as usize;
    }
    0
}

/// EXIF orientation of a JPEG, read from its headers only.
fn jpeg_orientation(bytes: &[u8]) -> Option<image::metadata::Orientation> {
    let mut dec = image::codecs::jpeg::JpegDecoder::new(Cursor::new(bytes)).ok()?;
    dec.orientation().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{ImageFormat, Rgb};

    const LIMITS: DecodeLimits = DecodeLimits { max_pixels: 10_000_000 };

    fn encode(img: &DynamicImage, fmt: ImageFormat) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, fmt).unwrap();
        out.into_inner()
    }

    #[test]
    fn decodes_every_supported_format() {
        let img = DynamicImage::ImageRgb8(RgbImage::from_pixel(7, 5, Rgb([200, 10, 30])));
        for fmt in [ImageFormat::Png, ImageFormat::Jpeg, ImageFormat::Bmp, ImageFormat::Gif, ImageFormat::WebP] {
            let rgb = decode_rgb(&encode(&img, fmt), LIMITS).unwrap_or_else(|e| panic!("{fmt:?}: {e}"));
            assert_eq!(rgb.dimensions(), (7, 5), "{fmt:?}");
            let p = rgb.get_pixel(3, 2);
            assert!(p[0] > 150 && p[1] < 60 && p[2] < 80, "{fmt:?} {p:?}");
        }
    }

    #[test]
    fn grey_and_alpha_become_rgb() {
        let grey = DynamicImage::ImageLuma16(image::ImageBuffer::from_pixel(3, 3, image::Luma([65535u16])));
        let rgb = decode_rgb(&encode(&grey, ImageFormat::Png), LIMITS).unwrap();
        assert_eq!(rgb.get_pixel(1, 1), &Rgb([255, 255, 255]));
        let rgba = DynamicImage::ImageRgba8(image::RgbaImage::from_pixel(3, 3, image::Rgba([1, 2, 3, 0])));
        assert_eq!(decode_rgb(&encode(&rgba, ImageFormat::Png), LIMITS).unwrap().dimensions(), (3, 3));
    }

    #[test]
    fn refuses_declared_size_over_limit_before_decoding() {
        // A valid PNG header that declares 50,000 x 50,000 with almost no data behind it.
        let img = DynamicImage::ImageRgb8(RgbImage::new(1, 1));
        let mut png = encode(&img, ImageFormat::Png);
        // IHDR width/height live at bytes 16..24; patching them breaks only the CRC, which the
        // decoder does not check before the size limit.
        png[16..20].copy_from_slice(&50_000u32.to_be_bytes());
        png[20..24].copy_from_slice(&50_000u32.to_be_bytes());
        match decode_rgb(&png, LIMITS) {
            Err(CoreError::ImageTooLarge { width: 50_000, height: 50_000, .. })
            | Err(CoreError::UndecodableImage(_)) => {}
            other => panic!("expected a refusal, got {other:?}"),
        }
        let big = DynamicImage::ImageRgb8(RgbImage::new(200, 100));
        let err = decode_rgb(&encode(&big, ImageFormat::Png), DecodeLimits { max_pixels: 10_000 }).unwrap_err();
        assert!(matches!(err, CoreError::ImageTooLarge { pixels: 20_000, .. }), "{err:?}");
    }

    /// A minimal little-endian TIFF block holding one tag: Orientation = 6 (rotate 90° CW).
    const EXIF_ROTATE_90: [u8; 26] =
        [b'I', b'I', 42, 0, 8, 0, 0, 0, 1, 0, 0x12, 0x01, 3, 0, 1, 0, 0, 0, 6, 0, 0, 0, 0, 0, 0, 0];

    #[test]
    fn exif_orientation_is_applied() {
        use image::ImageEncoder;
        // 4 wide x 2 high, left half red, right half blue.
        let img = RgbImage::from_fn(4, 2, |x, _| if x < 2 { Rgb([255, 0, 0]) } else { Rgb([0, 0, 255]) });
        let mut jpeg = Vec::new();
        let mut enc = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 100);
        enc.set_exif_metadata(EXIF_ROTATE_90.to_vec()).unwrap();
        enc.write_image(img.as_raw(), 4, 2, image::ExtendedColorType::Rgb8).unwrap();
        let mut png = Vec::new();
        let mut enc = image::codecs::png::PngEncoder::new(&mut png);
        enc.set_exif_metadata(EXIF_ROTATE_90.to_vec()).unwrap();
        enc.write_image(img.as_raw(), 4, 2, image::ExtendedColorType::Rgb8).unwrap();
        for (name, bytes) in [("jpeg", jpeg), ("png", png)] {
            let out = decode_rgb(&bytes, LIMITS).unwrap();
            assert_eq!(out.dimensions(), (2, 4), "{name}: rotated to portrait");
            // Rotating 90° clockwise puts the left (red) half on top.
            assert!(out.get_pixel(0, 0)[0] > 200 && out.get_pixel(1, 3)[2] > 200, "{name}");
        }
    }

    #[test]
    fn truncated_jpeg_is_refused_but_a_thumbnail_eoi_does_not_hide_it() {
        let img = DynamicImage::ImageRgb8(RgbImage::from_fn(64, 64, |x, y| Rgb([x as u8 * 4, y as u8 * 4, 9])));
        let full = encode(&img, ImageFormat::Jpeg);
        assert!(jpeg_has_end_marker(&full));
        let cut = &full[..full.len() * 2 / 3];
        assert!(!jpeg_has_end_marker(cut));
        assert!(matches!(decode_rgb(cut, LIMITS), Err(CoreError::UndecodableImage(m)) if m.contains("truncated")));
        // An APP1 segment holding a thumbnail's EOI before the scan.
        let mut with_app1 = vec![0xFF, 0xD8, 0xFF, 0xE1, 0x00, 0x06, 0xFF, 0xD9, 0x00, 0x00];
        with_app1.extend_from_slice(&cut[2..]);
        assert!(!jpeg_has_end_marker(&with_app1));
    }

    /// A progressive JPEG, and the same with its last scan repeated `extra` times.
    fn progressive_jpeg(extra: usize) -> (Vec<u8>, Vec<u8>) {
        let img = turbojpeg::Image::mandelbrot(64, 64, turbojpeg::PixelFormat::RGB);
        let mut c = turbojpeg::Compressor::new().unwrap();
        c.set_progressive(true).unwrap();
        let jpeg = c.compress_to_vec(img.as_deref()).unwrap();
        let last_sos = jpeg.windows(2).rposition(|w| w == [0xFF, 0xDA]).unwrap();
        let last_scan = &jpeg[last_sos..jpeg.len() - 2];
        let mut bomb = jpeg[..jpeg.len() - 2].to_vec();
        for _ in 0..extra {
            bomb.extend_from_slice(last_scan);
        }
        bomb.extend_from_slice(&[0xFF, 0xD9]);
        (jpeg, bomb)
    }

    #[test]
    fn many_scan_jpegs_are_refused_before_decoding() {
        let limits = DecodeLimits { max_pixels: 1 << 30 };
        let (ok, bomb) = progressive_jpeg(5000);
        let scans = jpeg_scan_count(&ok);
        assert!((2..=MAX_JPEG_SCANS).contains(&scans), "{scans}");
        assert!(decode_rgb(&ok, limits).is_ok());
        assert_eq!(jpeg_scan_count(&bomb), scans + 5000);
        let started = std::time::Instant::now();
        let err = decode_rgb(&bomb, limits).unwrap_err();
        assert!(err.to_string().contains("scans, over the limit"), "{err}");
        assert!(started.elapsed() < std::time::Duration::from_millis(100));
        // A baseline JPEG has one scan; its EXIF thumbnail's scans are not counted.
        let img = DynamicImage::ImageRgb8(RgbImage::from_fn(16, 16, |x, y| Rgb([x as u8, y as u8, 0])));
        assert_eq!(jpeg_scan_count(&encode(&img, ImageFormat::Jpeg)), 1);
        assert_eq!(dimensions(&ok).unwrap(), (64, 64));
    }

    #[test]
    fn garbage_and_truncation_are_errors_not_panics() {
        assert!(matches!(decode_rgb(b"", LIMITS), Err(CoreError::BadRequest(_))));
        assert!(matches!(decode_rgb(b"hello world, not an image", LIMITS), Err(CoreError::UndecodableImage(_))));
        let img = DynamicImage::ImageRgb8(RgbImage::from_pixel(64, 64, Rgb([1, 2, 3])));
        for fmt in [ImageFormat::Png, ImageFormat::Jpeg, ImageFormat::Gif, ImageFormat::WebP] {
            let bytes = encode(&img, fmt);
            for cut in [8, bytes.len() / 2] {
                let _ = decode_rgb(&bytes[..cut], LIMITS); // must return, Ok or Err, without panicking
            }
        }
    }
}
