//! The demo's product photo: a small PNG drawn here, so the demo needs no image files.

const PHOTO_W: usize = 240;
const PHOTO_H: usize = 180;

/// A white kettle on a soft background.
pub(super) fn kettle_png() -> Vec<u8> {
    let mut raw = Vec::with_capacity((PHOTO_W * 3 + 1) * PHOTO_H);
    for y in 0..PHOTO_H {
        raw.push(0); // filter: none
        for x in 0..PHOTO_W {
            raw.extend_from_slice(&kettle_pixel(x as f64, y as f64));
        }
    }
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&(PHOTO_W as u32).to_be_bytes());
    ihdr.extend_from_slice(&(PHOTO_H as u32).to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // 8-bit RGB, no interlace
    let mut png = vec![0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a];
    png_chunk(&mut png, b"IHDR", &ihdr);
    png_chunk(&mut png, b"IDAT", &zlib_stored(&raw));
    png_chunk(&mut png, b"IEND", &[]);
    png
}

fn kettle_pixel(x: f64, y: f64) -> [u8; 3] {
    let inside = |cx: f64, cy: f64, rx: f64, ry: f64| {
        let (dx, dy) = ((x - cx) / rx, (y - cy) / ry);
        dx * dx + dy * dy
    };
    let body = inside(120.0, 105.0, 58.0, 48.0);
    let lid = inside(120.0, 58.0, 24.0, 8.0);
    let knob = inside(120.0, 48.0, 7.0, 5.0);
    let handle = inside(180.0, 100.0, 22.0, 30.0);
    let shadow = inside(120.0, 158.0, 70.0, 9.0);
    let spout = x > 40.0 && x < 72.0 && (y - (110.0 - (72.0 - x) * 0.9)).abs() < 7.0;
    if knob <= 1.0 || (0.96..=1.0).contains(&body) || (0.85..=1.0).contains(&lid) {
        return [70, 72, 84];
    }
    if lid < 0.85 {
        return [215, 218, 226];
    }
    if body < 0.96 {
        // Light from the upper left.
        let shade = 250.0 - 40.0 * ((x - 95.0) / 90.0 + (y - 80.0) / 90.0).clamp(0.0, 1.0);
        let s = shade as u8;
        return [s, s, s.saturating_add(3)];
    }
    if spout {
        return [188, 192, 204];
    }
    if (0.62..=1.0).contains(&handle) && x > 170.0 {
        return [70, 72, 84];
    }
    if shadow <= 1.0 {
        return [170, 180, 190];
    }
    let t = y / PHOTO_H as f64;
    [
        (205.0 + 30.0 * t) as u8,
        (225.0 + 10.0 * t) as u8,
        (240.0 - 20.0 * t) as u8,
    ]
}

fn png_chunk(png: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    png.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let start = png.len();
    png.extend_from_slice(kind);
    png.extend_from_slice(data);
    let crc = crc32(&png[start..]);
    png.extend_from_slice(&crc.to_be_bytes());
}

/// A zlib stream of uncompressed ("stored") deflate blocks.
fn zlib_stored(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x78, 0x01];
    let blocks: Vec<&[u8]> = data.chunks(65_535).collect();
    for (i, block) in blocks.iter().enumerate() {
        out.push(u8::from(i + 1 == blocks.len()));
        let len = block.len() as u16;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(block);
    }
    let (mut a, mut b) = (1u32, 0u32);
    for &byte in data {
        a = (a + u32::from(byte)) % 65_521;
        b = (b + a) % 65_521;
    }
    out.extend_from_slice(&((b << 16) | a).to_be_bytes());
    out
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                0xedb8_8320 ^ (crc >> 1)
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_matches_the_png_reference_value() {
        // The CRC of an empty IEND chunk, as every PNG file ends with it.
        assert_eq!(crc32(b"IEND"), 0xae42_6082);
    }

    #[test]
    fn the_photo_is_a_png_of_the_stated_size() {
        let png = kettle_png();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        assert_eq!(&png[12..16], b"IHDR");
        assert_eq!(
            u32::from_be_bytes([png[16], png[17], png[18], png[19]]),
            240
        );
        assert_eq!(
            u32::from_be_bytes([png[20], png[21], png[22], png[23]]),
            180
        );
        assert!(png.ends_with(&[0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82]));
    }
}
