//! vPDQ: Meta's video hash, a PDQ hash of one frame a second, and its match rule.
//!
//! The reference (`vpdq`, ThreatExchange) hashes the frames whose number is a multiple of
//! `trunc(fps)`, so "one a second" means every `trunc(fps)`-th frame; the video sampler's
//! `video::frame_times` gives the same frames. Two videos match when enough of each one's distinct,
//! good-quality frame hashes are within the PDQ distance of some frame of the other
//! ([`compare`]), as ThreatExchange's brute-force matcher counts them.
//!
//! A vPDQ travels as ThreatExchange serialises it: a JSON array of `"<pdq hex>,<quality>,
//! <seconds>"` strings, one per hashed frame.

use std::collections::HashSet;

use anyhow::{bail, Context};

use super::pdq::{hamming, Pdq};

/// One hashed frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Feature {
    pub pdq: Pdq,
    /// Seconds from the start of the stream.
    pub time_s: f64,
}

impl Feature {
    /// ThreatExchange's compact form, `hex,quality,seconds` (3 decimals).
    pub fn compact(&self) -> String {
        format!("{},{},{:.3}", self.pdq.hex(), self.pdq.quality, self.time_s)
    }

    fn parse(s: &str) -> anyhow::Result<Feature> {
        let parts: Vec<&str> = s.split(',').map(str::trim).collect();
        let [hex, quality, time] = parts[..] else { bail!("a vPDQ frame is 'pdq hex,quality,seconds', got '{s}'") };
        let words = Pdq::parse_hex(hex).with_context(|| format!("'{hex}' is not a PDQ hash (64 hex digits)"))?;
        let quality: u8 = quality.parse().ok().filter(|q| *q <= 100).context("quality must be 0 to 100")?;
        let time_s: f64 = time.parse().ok().filter(|t: &f64| t.is_finite() && *t >= 0.0).context("bad timestamp")?;
        Ok(Feature { pdq: Pdq { words, quality }, time_s })
    }
}

/// The serialised form of a video's features (a JSON array of compact strings).
pub fn to_json(features: &[Feature]) -> String {
    serde_json::to_string(&features.iter().map(Feature::compact).collect::<Vec<_>>()).expect("strings serialise")
}

/// Parses a serialised vPDQ (as [`to_json`] writes it); at least one frame.
pub fn parse(text: &str) -> anyhow::Result<Vec<Feature>> {
    let items: Vec<String> =
        serde_json::from_str(text).context("a vPDQ hash is a JSON array of \"hex,quality,seconds\" strings")?;
    if items.is_empty() {
        bail!("a vPDQ hash needs at least one frame");
    }
    items.iter().enumerate().map(|(i, s)| Feature::parse(s).with_context(|| format!("frame {}", i + 1))).collect()
}

/// The frames matching uses: quality at least `min_quality`, each distinct hash once.
pub fn prepare(features: &[Feature], min_quality: u8) -> Vec<[u64; 4]> {
    let mut seen = HashSet::new();
    features
        .iter()
        .filter(|f| f.pdq.quality >= min_quality && seen.insert(f.pdq.words))
        .map(|f| Pdq::lanes(&f.pdq.words))
        .collect()
}

/// How two prepared vPDQs compare.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Comparison {
    /// Share of the query's frames within the distance of some frame of the other, in percent.
    pub query_pct: f32,
    /// Share of the other's frames within the distance of some query frame, in percent.
    pub other_pct: f32,
    /// Smallest distance between any two frames.
    pub min_distance: u32,
}

/// Compares prepared frame hashes; `None` when either side has no frame left to compare.
pub fn compare(query: &[[u64; 4]], other: &[[u64; 4]], max_distance: u32) -> Option<Comparison> {
    if query.is_empty() || other.is_empty() {
        return None;
    }
    let mut min_distance = u32::MAX;
    let mut other_hit = vec![false; other.len()];
    let mut query_hits = 0usize;
    for q in query {
        let mut hit = false;
        for (j, o) in other.iter().enumerate() {
            let d = hamming(q, o);
            min_distance = min_distance.min(d);
            if d <= max_distance {
                hit = true;
                other_hit[j] = true;
            }
        }
        query_hits += usize::from(hit);
    }
    let pct = |n: usize, of: usize| (n as f64 * 100.0 / of as f64) as f32;
    Some(Comparison {
        query_pct: pct(query_hits, query.len()),
        other_pct: pct(other_hit.iter().filter(|h| **h).count(), other.len()),
        min_distance,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feature(fill: u16, quality: u8, time_s: f64) -> Feature {
        Feature { pdq: Pdq { words: [fill; 16], quality }, time_s }
    }

    #[test]
    fn serialised_form_round_trips_and_bad_frames_are_named() {
        let f = vec![feature(0x1234, 100, 0.0), feature(0xffff, 42, 1.001)];
        let json = to_json(&f);
        assert!(json.starts_with("[\"12341234"), "{json}");
        assert!(json.contains(",42,1.001\""), "{json}");
        assert_eq!(parse(&json).unwrap(), f);
        let err = format!("{:#}", parse("[\"00,1,0\"]").unwrap_err());
        assert!(err.contains("frame 1") && err.contains("64 hex"), "{err}");
        assert!(parse("[]").is_err() && parse("{}").is_err());
        assert!(parse(&format!("[\"{},101,0\"]", "0".repeat(64))).is_err());
    }

    #[test]
    fn comparison_counts_each_side_and_ignores_poor_and_repeated_frames() {
        let a = [feature(0x0000, 100, 0.0), feature(0x0000, 100, 1.0), feature(0x00ff, 100, 2.0)];
        let b = [feature(0x0001, 90, 0.0), feature(0xff00, 90, 1.0), feature(0x0f0f, 10, 2.0)];
        let (pa, pb) = (prepare(&a, 50), prepare(&b, 50));
        // The repeated frame and the poor one are dropped.
        assert_eq!((pa.len(), pb.len()), (2, 2));
        let c = compare(&pa, &pb, 31).unwrap();
        // 0x0000 is 16 bits from 0x0001-filled; 0x00ff is 128 from everything in b.
        assert_eq!(c, Comparison { query_pct: 50.0, other_pct: 50.0, min_distance: 16 });
        assert!(compare(&pa, &[], 31).is_none());
    }
}
