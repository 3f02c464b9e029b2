//! The GGUF block formats our kernels read, by their byte layout (the same bytes candle keeps in
//! its `QTensor` storage, read in place).

use candle_core::quantized::GgmlDType;

/// Values in the small blocks (Q4_0 .. Q8_0) and in the k-quants' super-blocks.
pub const QK: usize = 32;
/// Values in a k-quant super-block.
pub const QK_K: usize = 256;

/// A quantized weight format that has a dot-product kernel here.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    /// `d: f16, qs: [u8; 16]`: `d * (nibble - 8)`.
    Q4_0,
    /// `d: f16, m: f16, qs: [u8; 16]`: `d * nibble + m`.
    Q4_1,
    /// `d: f16, qh: [u8; 4], qs: [u8; 16]`: `d * (5-bit value - 16)`.
    Q5_0,
    /// `d: f16, m: f16, qh: [u8; 4], qs: [u8; 16]`: `d * 5-bit value + m`.
    Q5_1,
    /// `d: f16, qs: [i8; 32]`.
    Q8_0,
    /// `scales: [u8; 16], qs: [u8; 64], d: f16, dmin: f16`.
    Q2K,
    /// `hmask: [u8; 32], qs: [u8; 64], scales: [u8; 12], d: f16`.
    Q3K,
    /// `d: f16, dmin: f16, scales: [u8; 12], qs: [u8; 128]`.
    Q4K,
    /// `d: f16, dmin: f16, scales: [u8; 12], qh: [u8; 32], qs: [u8; 128]`.
    Q5K,
    /// `ql: [u8; 128], qh: [u8; 64], scales: [i8; 16], d: f16`.
    Q6K,
}

/// How a format's dot products round the activations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ActFormat {
    /// Blocks of 32, an f16 scale `max|x| / 127`, values rounded half away from zero.
    Q8_0,
    /// [`ActFormat::Q8_0`] plus `s = f16(f16(Σ q) · f16(d))` per block (for the formats with a
    /// minimum; candle's rounding).
    Q8_1,
    /// Blocks of 256, an f32 scale from the value of largest magnitude, sums per 16 values.
    Q8K,
}

impl Format {
    /// Every format, in the order the tests walk them.
    pub const ALL: [Format; 10] = [
        Format::Q4_0,
        Format::Q4_1,
        Format::Q5_0,
        Format::Q5_1,
        Format::Q8_0,
        Format::Q2K,
        Format::Q3K,
        Format::Q4K,
        Format::Q5K,
        Format::Q6K,
    ];

    /// The format of a candle dtype, if it has a kernel here.
    pub fn of(dtype: GgmlDType) -> Option<Self> {
        Some(match dtype {
            GgmlDType::Q4_0 => Format::Q4_0,
            GgmlDType::Q4_1 => Format::Q4_1,
            GgmlDType::Q5_0 => Format::Q5_0,
            GgmlDType::Q5_1 => Format::Q5_1,
            GgmlDType::Q8_0 => Format::Q8_0,
            GgmlDType::Q2K => Format::Q2K,
            GgmlDType::Q3K => Format::Q3K,
            GgmlDType::Q4K => Format::Q4K,
            GgmlDType::Q5K => Format::Q5K,
            GgmlDType::Q6K => Format::Q6K,
            _ => return None,
        })
    }

    /// The candle dtype of this format.
    pub fn dtype(self) -> GgmlDType {
        match self {
            Format::Q4_0 => GgmlDType::Q4_0,
            Format::Q4_1 => GgmlDType::Q4_1,
            Format::Q5_0 => GgmlDType::Q5_0,
            Format::Q5_1 => GgmlDType::Q5_1,
            Format::Q8_0 => GgmlDType::Q8_0,
            Format::Q2K => GgmlDType::Q2K,
            Format::Q3K => GgmlDType::Q3K,
            Format::Q4K => GgmlDType::Q4K,
            Format::Q5K => GgmlDType::Q5K,
            Format::Q6K => GgmlDType::Q6K,
        }
    }

    /// Values per block.
    pub fn block_values(self) -> usize {
        match self {
            Format::Q4_0 | Format::Q4_1 | Format::Q5_0 | Format::Q5_1 | Format::Q8_0 => QK,
            _ => QK_K,
        }
    }

    /// Bytes per block.
    pub fn block_bytes(self) -> usize {
        match self {
            Format::Q4_0 => 18,
            Format::Q4_1 => 20,
            Format::Q5_0 => 22,
            Format::Q5_1 => 24,
            Format::Q8_0 => 34,
            Format::Q2K => 84,
            Format::Q3K => 110,
            Format::Q4K => 144,
            Format::Q5K => 176,
            Format::Q6K => 210,
        }
    }

    /// The rounding of the activations this format's dot products take (llama.cpp's
    /// `vec_dot_type`).
    pub fn act_format(self) -> ActFormat {
        match self {
            Format::Q4_0 | Format::Q5_0 | Format::Q8_0 => ActFormat::Q8_0,
            Format::Q4_1 | Format::Q5_1 => ActFormat::Q8_1,
            _ => ActFormat::Q8K,
        }
    }
}

/// An f16 stored little-endian at `b[0..2]`, as f32 (exact).
#[inline(always)]
pub fn f16_at(b: &[u8]) -> f32 {
    half::f16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32()
}

/// The 6-bit scale and minimum `j` (0..8) of a Q4_K / Q5_K super-block (llama.cpp's
/// `get_scale_min_k4`).
#[inline(always)]
pub fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// The sixteen signed 6-bit scales of a Q3_K super-block (stored in 12 bytes), minus 32.
#[inline(always)]
pub fn q3k_scales(scales: &[u8]) -> [i8; 16] {
    const KMASK1: u32 = 0x0303_0303;
    const KMASK2: u32 = 0x0f0f_0f0f;
    let word =
        |i: usize| u32::from_le_bytes([scales[i], scales[i + 1], scales[i + 2], scales[i + 3]]);
    let (a0, a1, tmp) = (word(0), word(4), word(8));
    let aux = [
        (a0 & KMASK2) | ((tmp & KMASK1) << 4),
        (a1 & KMASK2) | (((tmp >> 2) & KMASK1) << 4),
        ((a0 >> 4) & KMASK2) | (((tmp >> 4) & KMASK1) << 4),
        ((a1 >> 4) & KMASK2) | (((tmp >> 6) & KMASK1) << 4),
    ];
    let mut out = [0i8; 16];
    for (i, word) in aux.iter().enumerate() {
        for (b, byte) in word.to_le_bytes().iter().enumerate() {
            out[i * 4 + b] = *byte as i8 - 32;
        }
    }
    out
}
