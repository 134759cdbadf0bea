//! Which container an upload is, decided from its bytes before FFmpeg sees anything.
//!
//! dfserve accepts exactly three families (MP4/MOV, Matroska/WebM, AVI) and forces FFmpeg's
//! demuxer to the one sniffed here, so FFmpeg never guesses a format. Manifests and playlists
//! (DASH, HLS, SMIL, ffconcat, ...) name other resources (local files, URLs); they are refused
//! outright, and so is anything that only pretends to be MP4 (a box type at bytes 4..8 without
//! a box structure around it).

/// A container family dfserve decodes, with the FFmpeg demuxer forced for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Container {
    /// ISO base media (MP4, MOV, M4V, 3GP).
    Mp4,
    /// Matroska and WebM.
    Matroska,
    Avi,
}

impl Container {
    /// The FFmpeg demuxer (`-f`) for this container.
    pub fn demuxer(self) -> &'static str {
        match self {
            Container::Mp4 => "mov",
            Container::Matroska => "matroska",
            Container::Avi => "avi",
        }
    }
}

/// What the first bytes of an upload say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sniffed {
    /// A video container dfserve decodes.
    Video(Container),
    /// A manifest, playlist or a box-typed file that is not ISO media: refused.
    Refused(&'static str),
    /// Not a video (images and everything else).
    Other,
}

/// Top-level ISO-BMFF box types a file may start with.
const MP4_FIRST_BOXES: [&[u8; 4]; 7] = [b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot"];

/// Text that starts manifests and playlists (matched case-insensitively, after any BOM and
/// leading white space).
const MANIFEST_STARTS: [&str; 8] = ["<?xml", "<mpd", "<smil", "#extm3u", "ffconcat", "[playlist]", "<asx", "<!--"];

pub fn sniff(b: &[u8]) -> Sniffed {
    if b.len() >= 8 && MP4_FIRST_BOXES.iter().any(|t| &b[4..8] == *t) {
        return if mp4_boxes_are_sane(b) {
            Sniffed::Video(Container::Mp4)
        } else {
            Sniffed::Refused("the upload names an MP4/MOV box type but has no MP4/MOV box structure")
        };
    }
    if b.starts_with(&[0x1A, 0x45, 0xDF, 0xA3]) {
        return Sniffed::Video(Container::Matroska);
    }
    if b.len() >= 12 && &b[0..4] == b"RIFF" && &b[8..12] == b"AVI " {
        return Sniffed::Video(Container::Avi);
    }
    if is_manifest(b) {
        return Sniffed::Refused(
            "manifests and playlists (DASH, HLS, SMIL, ffconcat) are not accepted: upload the media file itself",
        );
    }
    Sniffed::Other
}

fn is_manifest(b: &[u8]) -> bool {
    let head = &b[..b.len().min(512)];
    let head = head.strip_prefix(&[0xEF, 0xBB, 0xBF]).unwrap_or(head);
    let start = head.iter().position(|c| !c.is_ascii_whitespace()).unwrap_or(head.len());
    let text = String::from_utf8_lossy(&head[start..]).to_ascii_lowercase();
    MANIFEST_STARTS.iter().any(|m| text.starts_with(m))
}

/// Walks the top-level boxes: each must have a printable type and a size that fits the file
/// (the last one may run past the end of a truncated upload, which FFmpeg then reports). A
/// size of 0 means "to the end of the file"; 1 means a 64-bit size follows.
fn mp4_boxes_are_sane(b: &[u8]) -> bool {
    let mut at = 0usize;
    let mut boxes = 0;
    while at + 8 <= b.len() {
        let size32 = u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]) as u64;
        let kind = &b[at + 4..at + 8];
        if !kind.iter().all(|c| c.is_ascii_alphanumeric() || *c == b' ' || *c == 0xA9) {
            return false;
        }
        let size = match size32 {
            0 => return boxes > 0 || kind == b"mdat" || kind == b"ftyp",
            1 if at + 16 <= b.len() => u64::from_be_bytes(b[at + 8..at + 16].try_into().expect("8 bytes")),
            1 => return false,
            s => s,
        };
        if size < 8 {
            return false;
        }
        boxes += 1;
        match at.checked_add(size as usize) {
            Some(next) if next <= b.len() => at = next,
            // A box running past the end is a truncated upload (FFmpeg reports it), but only
            // after a first box that fit: text posing as a box claims a huge first size.
            _ => return boxes > 1,
        }
    }
    boxes > 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mp4_box(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut out = ((body.len() + 8) as u32).to_be_bytes().to_vec();
        out.extend_from_slice(kind);
        out.extend_from_slice(body);
        out
    }

    #[test]
    fn containers_are_recognised() {
        let mut mp4 = mp4_box(b"ftyp", b"isom\0\0\0\0isomiso2");
        mp4.extend(mp4_box(b"free", b""));
        mp4.extend(mp4_box(b"mdat", &[0; 100]));
        assert_eq!(sniff(&mp4), Sniffed::Video(Container::Mp4));
        // Truncated inside the last box: still MP4, FFmpeg reports the truncation.
        assert_eq!(sniff(&mp4[..mp4.len() - 50]), Sniffed::Video(Container::Mp4));
        assert_eq!(sniff(&[0x1A, 0x45, 0xDF, 0xA3, 0x01]), Sniffed::Video(Container::Matroska));
        assert_eq!(sniff(b"RIFF\x00\x00\x00\x00AVI LIST"), Sniffed::Video(Container::Avi));
        assert_eq!(sniff(b"RIFF\x00\x00\x00\x00WEBPVP8 "), Sniffed::Other);
        assert_eq!(sniff(b"\xFF\xD8\xFF\xE0\x00\x10JFIF"), Sniffed::Other);
        assert_eq!(sniff(b""), Sniffed::Other);
    }

    #[test]
    fn manifests_and_fake_boxes_are_refused() {
        // A DASH manifest that carries `free` at bytes 4..8 to pass a naive MOV sniff.
        let dash = b"<!--free--><?xml version=\"1.0\"?><MPD><Period><AdaptationSet><Representation>\
            <BaseURL>file:///etc/passwd</BaseURL></Representation></AdaptationSet></Period></MPD>";
        assert!(matches!(sniff(dash), Sniffed::Refused(_)));
        for text in [
            &b"<?xml version='1.0'?><MPD/>"[..],
            b"  #EXTM3U\n#EXTINF:10,\nfile:///etc/passwd\n",
            b"\xEF\xBB\xBF<smil><body/></smil>",
            b"ffconcat version 1.0\nfile /etc/passwd\n",
            b"[playlist]\nFile1=http://127.0.0.1/x\n",
        ] {
            assert!(matches!(sniff(text), Sniffed::Refused(_)), "{}", String::from_utf8_lossy(text));
        }
        // A first box whose size runs past the end, or is impossible.
        let mut fake = b"\x7f\x00\x00\x00ftypisom".to_vec();
        fake.extend([0u8; 32]);
        assert!(matches!(sniff(&fake), Sniffed::Refused(_)));
        assert!(matches!(sniff(b"\x00\x00\x00\x04ftypisom"), Sniffed::Refused(_)));
    }
}
