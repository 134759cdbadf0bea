//! What ffprobe says about an upload: the video stream's size (upright), rate, duration, start
//! time and codec, and, when sampling could use it, where the keyframes are.

use serde::Deserialize;

#[derive(Debug, Deserialize)]
struct ProbeOutput {
    #[serde(default)]
    streams: Vec<ProbeStream>,
    format: Option<ProbeFormat>,
}

#[derive(Debug, Deserialize)]
struct ProbeStream {
    codec_type: Option<String>,
    codec_name: Option<String>,
    width: Option<u32>,
    height: Option<u32>,
    avg_frame_rate: Option<String>,
    r_frame_rate: Option<String>,
    nb_frames: Option<String>,
    duration: Option<String>,
    start_time: Option<String>,
    #[serde(default)]
    side_data_list: Vec<serde_json::Value>,
    #[serde(default)]
    tags: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Deserialize)]
struct ProbeFormat {
    duration: Option<String>,
}

/// The video stream, with the frame size as FFmpeg outputs it (rotated upright).
#[derive(Debug, Clone, PartialEq)]
pub struct Probe {
    pub width: u32,
    pub height: u32,
    pub fps: f64,
    pub duration: f64,
    /// Presentation time of the first frame, seconds.
    pub start: f64,
    /// Frames in the stream (counted by the container, or duration x fps).
    pub frames: u64,
    pub codec: String,
}

fn rate(s: &Option<String>) -> Option<f64> {
    let s = s.as_deref()?;
    let (n, d) = s.split_once('/').unwrap_or((s, "1"));
    let (n, d): (f64, f64) = (n.parse().ok()?, d.parse().ok()?);
    (d > 0.0 && n > 0.0).then_some(n / d)
}

fn number(s: &Option<String>) -> Option<f64> {
    s.as_deref().and_then(|d| d.parse::<f64>().ok()).filter(|d| d.is_finite())
}

/// Parses `ffprobe -print_format json -show_format -show_streams`. The error says what is
/// missing, for the log and the client alike.
pub fn parse(json: &[u8]) -> Result<Probe, &'static str> {
    let parsed: ProbeOutput = serde_json::from_slice(json).map_err(|_| "the video's metadata cannot be read")?;
    let v = parsed
        .streams
        .iter()
        .find(|s| s.codec_type.as_deref() == Some("video") && s.width.is_some())
        .ok_or("the file has no video stream")?;
    let (mut width, mut height) = (v.width.unwrap_or(0), v.height.unwrap_or(0));
    // FFmpeg rotates frames upright on output; report and allocate for the rotated size.
    let rotation = v
        .side_data_list
        .iter()
        .find_map(|d| d.get("rotation").and_then(|r| r.as_f64()))
        .or_else(|| v.tags.get("rotate").and_then(|r| r.as_str()).and_then(|r| r.parse().ok()))
        .unwrap_or(0.0);
    if (rotation.abs() as i64) % 180 == 90 {
        std::mem::swap(&mut width, &mut height);
    }
    if width == 0 || height == 0 {
        return Err("the video stream has no frame size");
    }
    let fps = rate(&v.avg_frame_rate).or_else(|| rate(&v.r_frame_rate)).unwrap_or(25.0);
    let duration = number(&v.duration).or_else(|| number(&parsed.format.as_ref().and_then(|f| f.duration.clone())));
    let duration = duration.filter(|d| *d > 0.0).unwrap_or(0.0);
    let frames = v
        .nb_frames
        .as_deref()
        .and_then(|n| n.parse::<u64>().ok())
        .filter(|n| *n > 0)
        .unwrap_or_else(|| (duration * fps).round().max(1.0) as u64);
    Ok(Probe {
        width,
        height,
        fps,
        duration,
        start: number(&v.start_time).unwrap_or(0.0),
        frames,
        codec: v.codec_name.clone().unwrap_or_default(),
    })
}

/// Keyframe times from `ffprobe -show_entries packet=pts_time,flags -of csv=p=0` (one
/// `time,flags` line per packet, in decode order), sorted.
pub fn parse_keyframes(csv: &[u8]) -> Vec<f64> {
    let mut out: Vec<f64> = String::from_utf8_lossy(csv)
        .lines()
        .filter_map(|l| {
            let (t, flags) = l.split_once(',')?;
            flags.starts_with('K').then(|| t.trim().parse::<f64>().ok()).flatten()
        })
        .filter(|t| t.is_finite())
        .collect();
    out.sort_by(f64::total_cmp);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rates_streams_and_rotation() {
        assert_eq!(rate(&Some("30000/1001".into())).map(|r| (r * 1000.0).round()), Some(29970.0));
        assert_eq!(rate(&Some("0/0".into())), None);
        let json = br#"{"streams":[{"codec_type":"audio"},{"codec_type":"video","codec_name":"h264","width":1920,
            "height":1080,"avg_frame_rate":"30/1","duration":"10.0","start_time":"0.033","nb_frames":"300",
            "side_data_list":[{"rotation":-90}]}],"format":{"duration":"10.1"}}"#;
        let p = parse(json).unwrap();
        assert_eq!((p.width, p.height, p.frames, p.codec.as_str()), (1080, 1920, 300, "h264"));
        assert_eq!((p.fps, p.duration, p.start), (30.0, 10.0, 0.033));
        assert_eq!(parse(br#"{"streams":[{"codec_type":"audio"}]}"#), Err("the file has no video stream"));
        assert!(parse(b"not json").is_err());
    }

    #[test]
    fn keyframes_are_sorted_times_of_k_packets() {
        let csv = b"0.000000,K__\n0.133333,___\n0.066667,___\n8.333333,K__\nN/A,K__\n2.000000,K_\n";
        assert_eq!(parse_keyframes(csv), vec![0.0, 2.0, 8.333333]);
    }
}
