//! What an `inline_data` part costs in tokens, by Gemini's documented rules: an image of at
//! most 384×384 pixels is 258 tokens, a larger one is cut into 768×768 tiles of 258 tokens
//! each; audio is 32 tokens per second; video 263 per second (258 per frame at one frame a
//! second, plus its audio); a PDF 258 per page. The sizes are read from the bytes: PNG, JPEG,
//! GIF and WebP dimensions; WAV's header, `audio/pcm;rate=N` (16-bit mono) and MP4's `mvhd`
//! for durations; PDF page objects. What cannot be read is estimated, as documented in
//! README ("What serve counts"): an image of unknown size as one tile, other audio at
//! 16,000 bytes a second (128 kbit/s), other video at 125,000 bytes a second (1 Mbit/s).

/// Tokens of one image tile (or a small image, or a PDF page, or a video frame).
pub const TILE_TOKENS: u64 = 258;
/// Images no larger than this on both sides count as one tile.
pub const SMALL_IMAGE: u64 = 384;
/// The side of a tile.
pub const TILE: u64 = 768;
/// Tokens per second of audio.
pub const AUDIO_TOKENS_PER_SECOND: u64 = 32;
/// Tokens per second of video (258 for its frame at 1 fps, 5 rounded for its audio, as
/// Google's documentation states the total).
pub const VIDEO_TOKENS_PER_SECOND: u64 = 263;
/// Bytes per second assumed for audio whose duration cannot be read.
pub const AUDIO_BYTES_PER_SECOND: u64 = 16_000;
/// Bytes per second assumed for video whose duration cannot be read.
pub const VIDEO_BYTES_PER_SECOND: u64 = 125_000;

/// Tokens of an inline part of MIME type `mime` holding `data`; 0 for a type Gemini does not
/// count as media (e.g. `text/plain` inline data counts by its characters, done by the caller).
pub fn tokens(mime: &str, data: &[u8]) -> u64 {
    let (kind, params) = mime.split_once(';').unwrap_or((mime, ""));
    let kind = kind.trim().to_ascii_lowercase();
    if kind.starts_with("image/") {
        image_tokens(image_size(data))
    } else if kind.starts_with("audio/") {
        let ms = audio_millis(&kind, params, data);
        (ms * AUDIO_TOKENS_PER_SECOND).div_ceil(1000)
    } else if kind.starts_with("video/") {
        let ms = mp4_millis(data).unwrap_or_else(|| millis_at(data.len(), VIDEO_BYTES_PER_SECOND));
        (ms * VIDEO_TOKENS_PER_SECOND).div_ceil(1000)
    } else if kind == "application/pdf" {
        pdf_pages(data).max(1) * TILE_TOKENS
    } else {
        0
    }
}

/// Tokens of an image of `size` (width, height) pixels, or one tile when unknown.
pub fn image_tokens(size: Option<(u64, u64)>) -> u64 {
    match size {
        Some((w, h)) if w > SMALL_IMAGE || h > SMALL_IMAGE => {
            w.div_ceil(TILE).max(1) * h.div_ceil(TILE).max(1) * TILE_TOKENS
        }
        _ => TILE_TOKENS,
    }
}

fn millis_at(bytes: usize, per_second: u64) -> u64 {
    (bytes as u64 * 1000).div_ceil(per_second)
}

fn be32(d: &[u8], at: usize) -> Option<u64> {
    Some(u32::from_be_bytes(d.get(at..at + 4)?.try_into().ok()?) as u64)
}

fn le32(d: &[u8], at: usize) -> Option<u64> {
    Some(u32::from_le_bytes(d.get(at..at + 4)?.try_into().ok()?) as u64)
}

fn le16(d: &[u8], at: usize) -> Option<u64> {
    Some(u16::from_le_bytes(d.get(at..at + 2)?.try_into().ok()?) as u64)
}

fn be16(d: &[u8], at: usize) -> Option<u64> {
    Some(u16::from_be_bytes(d.get(at..at + 2)?.try_into().ok()?) as u64)
}

/// Width and height of a PNG, JPEG, GIF or WebP image, from its header.
pub fn image_size(d: &[u8]) -> Option<(u64, u64)> {
    if d.starts_with(b"\x89PNG\r\n\x1a\n") && d.get(12..16) == Some(b"IHDR") {
        return Some((be32(d, 16)?, be32(d, 20)?));
    }
    if d.starts_with(b"GIF8") {
        return Some((le16(d, 6)?, le16(d, 8)?));
    }
    if d.starts_with(b"RIFF") && d.get(8..12) == Some(b"WEBP") {
        return match d.get(12..16)? {
            b"VP8 " => Some((le16(d, 26)? & 0x3fff, le16(d, 28)? & 0x3fff)),
            b"VP8L" => {
                let b = le32(d, 21)?;
                Some(((b & 0x3fff) + 1, ((b >> 14) & 0x3fff) + 1))
            }
            b"VP8X" => {
                let w = le32(d, 24)? & 0xff_ffff;
                let h = le32(d, 27)? & 0xff_ffff;
                Some((w + 1, h + 1))
            }
            _ => None,
        };
    }
    if d.starts_with(&[0xff, 0xd8]) {
        // Walk the JPEG segments to the first start-of-frame marker.
        let mut at = 2;
        while at + 4 <= d.len() {
            if d[at] != 0xff {
                return None;
            }
            let marker = d[at + 1];
            if marker == 0xff {
                at += 1;
                continue;
            }
            let len = be16(d, at + 2)? as usize;
            let sof = matches!(marker, 0xc0..=0xcf) && !matches!(marker, 0xc4 | 0xc8 | 0xcc);
            if sof {
                return Some((be16(d, at + 7)?, be16(d, at + 5)?));
            }
            at += 2 + len;
        }
    }
    None
}

/// Milliseconds of audio: a WAV's data size over its byte rate, raw 16-bit PCM at the rate its
/// MIME type names (`audio/pcm;rate=16000`, 16,000 by default), else the size at
/// [`AUDIO_BYTES_PER_SECOND`].
fn audio_millis(kind: &str, params: &str, d: &[u8]) -> u64 {
    if d.starts_with(b"RIFF") && d.get(8..12) == Some(b"WAVE") {
        if let Some(ms) = wav_millis(d) {
            return ms;
        }
    }
    if kind == "audio/pcm" || kind == "audio/l16" {
        let rate = params
            .split(';')
            .filter_map(|p| p.trim().strip_prefix("rate="))
            .find_map(|r| r.parse::<u64>().ok())
            .filter(|&r| r > 0)
            .unwrap_or(16_000);
        return millis_at(d.len(), rate.saturating_mul(2));
    }
    millis_at(d.len(), AUDIO_BYTES_PER_SECOND)
}

fn wav_millis(d: &[u8]) -> Option<u64> {
    let mut at = 12;
    let mut byte_rate = None;
    while at + 8 <= d.len() {
        let id = &d[at..at + 4];
        let len = le32(d, at + 4)? as usize;
        if id == b"fmt " {
            byte_rate = le32(d, at + 16);
        } else if id == b"data" {
            let rate = byte_rate.filter(|&r| r > 0)?;
            let len = len.min(d.len() - at - 8) as u64;
            return Some((len * 1000).div_ceil(rate));
        }
        at = at.checked_add(8 + len + (len & 1))?;
    }
    None
}

/// Milliseconds of an MP4/QuickTime file, from its `moov/mvhd` box.
fn mp4_millis(d: &[u8]) -> Option<u64> {
    let moov = find_box(d, b"moov")?;
    let mvhd = find_box(moov, b"mvhd")?;
    let (scale, duration) = if *mvhd.first()? == 1 {
        (be32(mvhd, 20)?, be32(mvhd, 24)? << 32 | be32(mvhd, 28)?)
    } else {
        (be32(mvhd, 12)?, be32(mvhd, 16)?)
    };
    (scale > 0).then(|| duration.saturating_mul(1000).div_ceil(scale))
}

/// The payload of the first top-level box of type `kind` in `d`.
fn find_box<'a>(d: &'a [u8], kind: &[u8; 4]) -> Option<&'a [u8]> {
    let mut at = 0usize;
    while at + 8 <= d.len() {
        let size = be32(d, at)? as usize;
        let (header, size) = match size {
            1 => (16, (be32(d, at + 8)? << 32 | be32(d, at + 12)?) as usize),
            0 => (8, d.len() - at),
            s => (8, s),
        };
        if size < header {
            return None;
        }
        let end = at.checked_add(size)?.min(d.len());
        if &d[at + 4..at + 8] == kind {
            return d.get(at + header..end);
        }
        at = at.checked_add(size)?;
    }
    None
}

/// Page objects of a PDF (`/Type /Page`, not `/Pages`).
fn pdf_pages(d: &[u8]) -> u64 {
    let mut n = 0;
    let mut i = 0;
    while let Some(at) = d[i..].windows(5).position(|w| w == b"/Page") {
        let end = i + at + 5;
        let before = &d[i..i + at];
        let typed = before.trim_ascii_end().ends_with(b"/Type");
        if typed && d.get(end) != Some(&b's') {
            n += 1;
        }
        i = end;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(w: u32, h: u32) -> Vec<u8> {
        let mut d = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
        d.extend(w.to_be_bytes());
        d.extend(h.to_be_bytes());
        d.extend([8, 2, 0, 0, 0]);
        d
    }

    fn jpeg(w: u16, h: u16) -> Vec<u8> {
        let mut d = vec![0xff, 0xd8, 0xff, 0xe0, 0, 4, 0, 0, 0xff, 0xc0, 0, 11, 8];
        d.extend(h.to_be_bytes());
        d.extend(w.to_be_bytes());
        d.extend([3, 0, 0]);
        d
    }

    fn wav(rate: u32, channels: u16, bits: u16, data: usize) -> Vec<u8> {
        let block = channels * bits / 8;
        let mut d = b"RIFF\0\0\0\0WAVEfmt \x10\0\0\0\x01\0".to_vec();
        d.extend(channels.to_le_bytes());
        d.extend(rate.to_le_bytes());
        d.extend((rate * block as u32).to_le_bytes());
        d.extend(block.to_le_bytes());
        d.extend(bits.to_le_bytes());
        d.extend(b"data");
        d.extend((data as u32).to_le_bytes());
        d.extend(vec![0u8; data]);
        d
    }

    #[test]
    fn images_count_one_tile_when_small_and_768_tiles_when_large() {
        assert_eq!(image_size(&png(384, 384)), Some((384, 384)));
        assert_eq!(tokens("image/png", &png(384, 384)), 258);
        assert_eq!(tokens("image/png", &png(385, 10)), 258);
        assert_eq!(tokens("image/png", &png(1024, 1024)), 4 * 258);
        assert_eq!(tokens("image/jpeg", &jpeg(1920, 1080)), 3 * 2 * 258);
        assert_eq!(image_size(&jpeg(640, 480)), Some((640, 480)));
        assert_eq!(tokens("image/gif", b"GIF89a\x00\x04\x00\x03"), 2 * 258);
        // Unreadable bytes: one tile.
        assert_eq!(tokens("image/png", b"not an image"), 258);
    }

    #[test]
    fn audio_counts_32_tokens_a_second() {
        assert_eq!(tokens("audio/wav", &wav(16_000, 1, 16, 32_000 * 10)), 320);
        assert_eq!(tokens("audio/wav", &wav(44_100, 2, 16, 44_100 * 4 * 3)), 96);
        assert_eq!(tokens("audio/pcm;rate=24000", &vec![0; 48_000 * 5]), 160);
        assert_eq!(tokens("audio/pcm", &vec![0; 32_000]), 32);
        assert_eq!(tokens("audio/mp3", &vec![0; 16_000 * 60]), 60 * 32);
    }

    #[test]
    fn video_counts_263_tokens_a_second_from_mp4_duration() {
        // ftyp, then moov holding a version-0 mvhd: timescale 1000, duration 7,500 (7.5 s).
        let mut mvhd = vec![0u8; 100];
        mvhd[12..16].copy_from_slice(&1000u32.to_be_bytes());
        mvhd[16..20].copy_from_slice(&7500u32.to_be_bytes());
        let mut moov = ((mvhd.len() + 8) as u32).to_be_bytes().to_vec();
        moov.extend(b"mvhd");
        moov.extend(&mvhd);
        let mut d = b"\0\0\0\x10ftypisom\0\0\0\0".to_vec();
        d.extend(((moov.len() + 8) as u32).to_be_bytes());
        d.extend(b"moov");
        d.extend(&moov);
        assert_eq!(tokens("video/mp4", &d), (7500 * 263u64).div_ceil(1000));
        // Unreadable: 1 Mbit/s.
        assert_eq!(tokens("video/webm", &vec![0; 250_000]), 2 * 263);
    }

    #[test]
    fn pdfs_count_258_a_page() {
        let pdf = b"%PDF-1.4 1 0 obj << /Type /Pages /Count 2 >> 2 0 obj << /Type /Page >> 3 0 obj <</Type/Page>>";
        assert_eq!(tokens("application/pdf", pdf), 2 * 258);
        assert_eq!(tokens("text/plain", b"hello"), 0);
    }

    #[test]
    fn hostile_headers_never_panic() {
        for d in [
            &b"\x89PNG\r\n\x1a\n"[..],
            &[0xff, 0xd8, 0xff, 0xc0, 0xff, 0xff][..],
            b"RIFF\0\0\0\0WAVEdata\xff\xff\xff\xff",
            b"RIFF\0\0\0\0WEBPVP8X",
            b"\0\0\0\x01moov\xff\xff\xff\xff\xff\xff\xff\xff",
            b"\0\0\0\x04moov",
        ] {
            for m in ["image/png", "audio/wav", "video/mp4", "image/webp", "application/pdf"] {
                let _ = tokens(m, d);
            }
        }
    }
}
