//! A tiny VP8 encoder for a synthetic test picture.
//!
//! The headless peer needs video that a real receiver (a browser, or another
//! headless peer) accepts as VP8, without a camera and without a C codec
//! library. [`Vp8Pattern`] writes real RFC 6386 key frames: every macroblock
//! uses DC prediction, and only the first macroblock carries a coefficient,
//! the luma DC, so the whole picture is one flat grey whose brightness
//! cycles from frame to frame. Every frame is a key frame, so each one
//! decodes on its own: a receiver that joins late or loses a packet never
//! needs a picture-loss round trip before it shows something.
//!
//! The frames are small (tens to a few hundred bytes): this is a signal for
//! counters and decoders, not a bandwidth model.

mod tables;

use tables::{Prob, COEFF_UPDATE_PROBS, DEFAULT_COEFF_PROBS};

/// Largest width or height accepted by [`FrameSize::new`]: large enough for
/// any test, small enough that a frame's first partition always fits the
/// 19-bit size field of the frame tag.
pub const MAX_DIMENSION: u16 = 4096;

/// The quantizer index of every frame. The largest step size lets a small
/// coefficient (|c| <= 10, coded without long extra-bit categories) move the
/// brightness by about 50 levels either way.
const Q_INDEX: u32 = 127;
/// The Y2 DC dequantization factor at [`Q_INDEX`]: `2 * dc_qlookup[127]`
/// (RFC 6386, section 14.1).
const Y2_DC_STEP: i32 = 2 * 157;
/// Probability that a macroblock has coefficients: almost all are skipped.
const PROB_SKIP_FALSE: Prob = 2;
/// Largest coefficient magnitude the pattern uses.
const MAX_COEFF: i32 = 10;
/// Frames in one full brightness cycle (dark to bright and back).
const CYCLE: u64 = 4 * MAX_COEFF as u64;

/// Coefficient band of each position in a 4x4 block (RFC 6386, section 13.3).
const COEFF_BANDS: [usize; 16] = [0, 1, 2, 3, 6, 4, 5, 6, 6, 6, 6, 6, 6, 6, 6, 7];
/// Block types indexing the token probabilities (RFC 6386, section 13.3).
const PLANE_Y_AFTER_Y2: usize = 0;
const PLANE_Y2: usize = 1;
const PLANE_CHROMA: usize = 2;

/// Width and height of the synthetic picture, in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameSize {
    width: u16,
    height: u16,
}

/// Why a [`FrameSize`] was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("frame size {width}x{height} is outside 1x1..={max}x{max}", max = MAX_DIMENSION)]
pub struct FrameSizeError {
    /// The width asked for.
    pub width: u32,
    /// The height asked for.
    pub height: u32,
}

impl FrameSize {
    /// A size of `width` x `height` pixels, each between 1 and
    /// [`MAX_DIMENSION`].
    pub fn new(width: u32, height: u32) -> Result<Self, FrameSizeError> {
        let valid = |v: u32| (1..=u32::from(MAX_DIMENSION)).contains(&v);
        if valid(width) && valid(height) {
            Ok(Self {
                width: width as u16,
                height: height as u16,
            })
        } else {
            Err(FrameSizeError { width, height })
        }
    }

    /// Width in pixels.
    pub fn width(self) -> u16 {
        self.width
    }

    /// Height in pixels.
    pub fn height(self) -> u16 {
        self.height
    }

    fn macroblocks(self) -> usize {
        usize::from(self.width.div_ceil(16)) * usize::from(self.height.div_ceil(16))
    }
}

impl Default for FrameSize {
    /// 320x240, a small but ordinary video size.
    fn default() -> Self {
        Self {
            width: 320,
            height: 240,
        }
    }
}

/// Encoder of the synthetic test picture; see the module documentation.
///
/// Pure and deterministic: frame `n` is always the same bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Vp8Pattern {
    size: FrameSize,
}

impl Vp8Pattern {
    /// A pattern of the given picture size.
    pub fn new(size: FrameSize) -> Self {
        Self { size }
    }

    /// The picture size.
    pub fn size(&self) -> FrameSize {
        self.size
    }

    /// The encoded VP8 key frame number `n`, ready to be packetized
    /// (RFC 7741) by an RTP payloader.
    pub fn frame(&self, n: u64) -> Vec<u8> {
        encode_key_frame(self.size, coefficient(n))
    }

    /// The luma value every pixel of frame `n` decodes to.
    pub fn luma(n: u64) -> u8 {
        // Inverse WHT of a lone DC, then a DC-only inverse DCT
        // (RFC 6386, sections 14.3 and 14.4), added to the DC prediction of
        // the first macroblock, which is 128 when it has no neighbours.
        let dc = coefficient(n) * Y2_DC_STEP;
        let per_block = (dc + 3) >> 3;
        let per_pixel = (per_block + 4) >> 3;
        (128 + per_pixel).clamp(0, 255) as u8
    }
}

/// The luma DC coefficient of frame `n`: a triangle wave between
/// `-MAX_COEFF` and `MAX_COEFF`.
fn coefficient(n: u64) -> i32 {
    let phase = (n % CYCLE) as i32;
    (phase - 2 * MAX_COEFF).abs() - MAX_COEFF
}

fn encode_key_frame(size: FrameSize, coeff: i32) -> Vec<u8> {
    let first = first_partition(size, coeff != 0);
    let tokens = token_partition(coeff);

    // Frame tag (RFC 6386, section 9.1): key frame (bit 0 clear), version 0,
    // show_frame, then the size of the first partition.
    let first_len = u32::try_from(first.len()).expect("bounded by MAX_DIMENSION");
    debug_assert!(first_len < 1 << 19);
    let tag = (1 << 4) | (first_len << 5);
    let mut out = Vec::with_capacity(10 + first.len() + tokens.len());
    out.extend_from_slice(&tag.to_le_bytes()[..3]);
    out.extend_from_slice(&[0x9d, 0x01, 0x2a]);
    out.extend_from_slice(&size.width.to_le_bytes());
    out.extend_from_slice(&size.height.to_le_bytes());
    out.extend_from_slice(&first);
    out.extend_from_slice(&tokens);
    out
}

/// Frame header and per-macroblock modes (RFC 6386, sections 9.2-9.11, 19.2
/// and 19.3).
fn first_partition(size: FrameSize, first_mb_has_coeffs: bool) -> Vec<u8> {
    let mut e = BoolEncoder::default();
    e.put_literal(0, 1); // color_space: YUV
    e.put_literal(0, 1); // clamping_type: decoder clamps
    e.put_literal(0, 1); // segmentation_enabled
    e.put_literal(0, 1); // filter_type
    e.put_literal(0, 6); // loop_filter_level: no loop filter
    e.put_literal(0, 3); // sharpness_level
    e.put_literal(0, 1); // loop_filter_adj_enable
    e.put_literal(0, 2); // log2_nbr_of_dct_partitions: one partition
    e.put_literal(Q_INDEX, 7); // y_ac_qi
    for _ in 0..5 {
        e.put_literal(0, 1); // no y_dc, y2_dc, y2_ac, uv_dc, uv_ac deltas
    }
    e.put_literal(0, 1); // refresh_entropy_probs: nothing to keep anyway
    for prob in COEFF_UPDATE_PROBS.iter().flatten().flatten().flatten() {
        e.put_bool(false, *prob); // no token probability update
    }
    e.put_literal(1, 1); // mb_no_coeff_skip
    e.put_literal(u32::from(PROB_SKIP_FALSE), 8);

    for mb in 0..size.macroblocks() {
        let skip = !(mb == 0 && first_mb_has_coeffs);
        e.put_bool(skip, PROB_SKIP_FALSE);
        // Key-frame luma mode DC_PRED: "100" on the kf_ymode_tree.
        e.put_bool(true, 145);
        e.put_bool(false, 156);
        e.put_bool(false, 163);
        // Key-frame chroma mode DC_PRED: "0" on the uv_mode_tree.
        e.put_bool(false, 142);
    }
    e.finish()
}

/// Coefficient tokens (RFC 6386, section 13): only the first macroblock has
/// any, and only its Y2 DC. A decoder rejects an empty partition, so the
/// partition is flushed even when it carries no token.
fn token_partition(coeff: i32) -> Vec<u8> {
    let mut e = BoolEncoder::default();
    if coeff != 0 {
        let probs = &DEFAULT_COEFF_PROBS;
        // Y2 block: the DC token, then end of block at position 1, whose
        // context says how large the previous token was.
        let magnitude = coeff.unsigned_abs();
        put_dct_value(&mut e, &probs[PLANE_Y2][COEFF_BANDS[0]][0], magnitude);
        e.put_bool(coeff < 0, 128);
        let ctx = if magnitude == 1 { 1 } else { 2 };
        e.put_bool(false, probs[PLANE_Y2][COEFF_BANDS[1]][ctx][0]);
        // 16 luma blocks start at position 1 (their DC is in Y2); none of
        // their neighbours has coefficients, so the context is 0.
        for _ in 0..16 {
            e.put_bool(false, probs[PLANE_Y_AFTER_Y2][COEFF_BANDS[1]][0][0]);
        }
        // 4 U and 4 V blocks: end of block right away.
        for _ in 0..8 {
            e.put_bool(false, probs[PLANE_CHROMA][COEFF_BANDS[0]][0][0]);
        }
    }
    e.finish()
}

/// Writes a non-zero token of `magnitude` (1..=10) on the coefficient token
/// tree, including its "not end of block" branch and its extra bits.
fn put_dct_value(e: &mut BoolEncoder, p: &[Prob; 11], magnitude: u32) {
    debug_assert!((1..=MAX_COEFF as u32).contains(&magnitude));
    e.put_bool(true, p[0]); // not EOB
    e.put_bool(true, p[1]); // not DCT_0
    if magnitude == 1 {
        e.put_bool(false, p[2]);
        return;
    }
    e.put_bool(true, p[2]);
    if magnitude <= 4 {
        e.put_bool(false, p[3]);
        if magnitude == 2 {
            e.put_bool(false, p[4]);
        } else {
            e.put_bool(true, p[4]);
            e.put_bool(magnitude == 4, p[5]);
        }
        return;
    }
    e.put_bool(true, p[3]);
    e.put_bool(false, p[6]); // category 1 or 2
    if magnitude <= 6 {
        e.put_bool(false, p[7]); // DCT_CAT1: 5 + 1 extra bit
        e.put_bool(magnitude == 6, 159);
    } else {
        e.put_bool(true, p[7]); // DCT_CAT2: 7 + 2 extra bits
        let extra = magnitude - 7;
        e.put_bool(extra & 2 != 0, 165);
        e.put_bool(extra & 1 != 0, 145);
    }
}

/// The boolean entropy encoder of RFC 6386, section 7.3.
#[derive(Debug)]
struct BoolEncoder {
    out: Vec<u8>,
    range: u32,
    bottom: u32,
    bit_count: i32,
}

impl Default for BoolEncoder {
    fn default() -> Self {
        Self {
            out: Vec::new(),
            range: 255,
            bottom: 0,
            bit_count: 24,
        }
    }
}

impl BoolEncoder {
    /// Codes `bit`, which is false with probability `prob / 256`.
    fn put_bool(&mut self, bit: bool, prob: Prob) {
        let split = 1 + (((self.range - 1) * u32::from(prob)) >> 8);
        if bit {
            self.bottom = self.bottom.wrapping_add(split);
            self.range -= split;
        } else {
            self.range = split;
        }
        while self.range < 128 {
            self.range <<= 1;
            if self.bottom & (1 << 31) != 0 {
                self.carry();
            }
            self.bottom <<= 1;
            self.bit_count -= 1;
            if self.bit_count == 0 {
                self.out.push((self.bottom >> 24) as u8);
                self.bottom &= (1 << 24) - 1;
                self.bit_count = 8;
            }
        }
    }

    /// Codes the `bits` low bits of `value`, most significant first, each at
    /// even odds (the `L(n)` of the specification).
    fn put_literal(&mut self, value: u32, bits: u32) {
        for shift in (0..bits).rev() {
            self.put_bool((value >> shift) & 1 == 1, 128);
        }
    }

    /// Propagates a carry into the bytes already written.
    fn carry(&mut self) {
        for byte in self.out.iter_mut().rev() {
            if *byte == 255 {
                *byte = 0;
            } else {
                *byte += 1;
                return;
            }
        }
    }

    fn finish(mut self) -> Vec<u8> {
        let mut c = self.bit_count;
        let mut v = self.bottom;
        if v & (1 << (32 - c)) != 0 {
            self.carry();
        }
        v <<= c & 7;
        c >>= 3;
        while c > 0 {
            v <<= 8;
            c -= 1;
        }
        for _ in 0..4 {
            self.out.push((v >> 24) as u8);
            v <<= 8;
        }
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image_webp::vp8::Vp8Decoder;
    use std::io::Cursor;

    fn decode(frame: &[u8]) -> image_webp::vp8::Frame {
        Vp8Decoder::decode_frame(Cursor::new(frame)).expect("a valid VP8 key frame")
    }

    #[test]
    fn every_frame_of_a_cycle_decodes_to_a_flat_picture_of_the_promised_brightness() {
        let pattern = Vp8Pattern::new(FrameSize::new(64, 48).unwrap());
        for n in 0..CYCLE {
            let decoded = decode(&pattern.frame(n));
            assert!(decoded.keyframe);
            assert!(decoded.for_display);
            assert_eq!((decoded.width, decoded.height), (64, 48));
            let want = Vp8Pattern::luma(n);
            assert!(
                decoded.ybuf.iter().all(|&y| y == want),
                "frame {n}: expected every luma sample to be {want}"
            );
            assert!(decoded.ubuf.iter().chain(&decoded.vbuf).all(|&c| c == 128));
        }
    }

    #[test]
    fn brightness_sweeps_a_wide_range_so_frames_differ() {
        let levels: Vec<u8> = (0..CYCLE).map(Vp8Pattern::luma).collect();
        assert_eq!(levels.iter().min(), Some(&79));
        assert_eq!(levels.iter().max(), Some(&177));
        assert_ne!(Vp8Pattern::luma(0), Vp8Pattern::luma(1));
        // The grey midpoint (coefficient zero) is a frame with no tokens.
        assert!(levels.contains(&128));
    }

    #[test]
    fn odd_sizes_and_the_largest_size_decode() {
        for (w, h) in [(1, 1), (17, 33), (176, 144), (MAX_DIMENSION as u32, 16)] {
            let pattern = Vp8Pattern::new(FrameSize::new(w, h).unwrap());
            let decoded = decode(&pattern.frame(3));
            assert_eq!(
                (u32::from(decoded.width), u32::from(decoded.height)),
                (w, h)
            );
        }
    }

    #[test]
    fn frames_are_deterministic() {
        let pattern = Vp8Pattern::default();
        assert_eq!(pattern.frame(7), pattern.frame(7));
        assert_eq!(pattern.frame(7), pattern.frame(7 + CYCLE));
    }

    #[test]
    fn sizes_outside_the_supported_range_are_refused() {
        assert_eq!(
            FrameSize::new(0, 10),
            Err(FrameSizeError {
                width: 0,
                height: 10
            })
        );
        assert!(FrameSize::new(10, u32::from(MAX_DIMENSION) + 1).is_err());
        assert!(FrameSize::new(u32::MAX, 1).is_err());
    }
}
