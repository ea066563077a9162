//! The pictures SaveImage "renders": a PNG of the asked size whose colours depend on the
//! prompt and the image number, so different outputs differ.

use sha2::{Digest, Sha256};

/// A `width` x `height` RGB PNG: a diagonal gradient between two colours taken from a
/// hash of `label` and `n`.
pub(super) fn draw(width: u32, height: u32, label: &str, n: u64) -> Vec<u8> {
    let mut hash = Sha256::new();
    hash.update(label.as_bytes());
    hash.update(n.to_le_bytes());
    let d = hash.finalize();
    let (from, to) = ([d[0], d[1], d[2]], [d[3], d[4], d[5]]);
    let (w, h) = (width as usize, height as usize);
    let span = (w + h).max(1) as f32;
    let mut pixels = Vec::with_capacity(w * h * 3);
    for y in 0..h {
        for x in 0..w {
            let t = (x + y) as f32 / span;
            for c in 0..3 {
                pixels.push((from[c] as f32 * (1.0 - t) + to[c] as f32 * t) as u8);
            }
        }
    }
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, width, height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.set_compression(png::Compression::Fast);
    let mut writer = encoder.write_header().expect("a PNG header");
    writer.write_image_data(&pixels).expect("PNG data");
    writer.finish().expect("a whole PNG");
    out
}
