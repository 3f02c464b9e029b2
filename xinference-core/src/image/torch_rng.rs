//! `torch.Generator("cpu").manual_seed(seed)` + `torch.randn`, reproduced: the same seed gives
//! the same initial latents (and ancestral-sampler noise) as diffusers on CPU.
//!
//! torch's CPU generator is a plain mt19937 seeded with the low 32 bits of the seed. `randn` of a
//! contiguous float tensor with at least 16 elements (`normal_fill` in
//! `aten/src/ATen/native/cpu/DistributionTemplates.h`) first fills the tensor with 24-bit uniform
//! floats, then turns each run of 16 into normals by Box-Muller over pairs `(j, j + 8)`; when the
//! size is not a multiple of 16 the last 16 values are drawn again and transformed. Smaller
//! tensors take one double-precision Box-Muller normal per element (each pair's second value is
//! cached for the next draw).

/// torch's CPU random generator (`at::CPUGeneratorImpl`).
#[derive(Clone)]
pub struct TorchGenerator {
    state: [u32; 624],
    index: usize,
    next_double_normal: Option<f64>,
}

impl TorchGenerator {
    /// `torch.Generator("cpu").manual_seed(seed)`.
    pub fn new(seed: u64) -> Self {
        let mut state = [0u32; 624];
        state[0] = (seed & 0xffff_ffff) as u32;
        for j in 1..624 {
            let prev = state[j - 1];
            state[j] = 1_812_433_253u32
                .wrapping_mul(prev ^ (prev >> 30))
                .wrapping_add(j as u32);
        }
        TorchGenerator {
            state,
            index: 624,
            next_double_normal: None,
        }
    }

    fn twist(&mut self) {
        const UPPER: u32 = 0x8000_0000;
        const LOWER: u32 = 0x7fff_ffff;
        for i in 0..624 {
            let y = (self.state[i] & UPPER) | (self.state[(i + 1) % 624] & LOWER);
            let mut next = self.state[(i + 397) % 624] ^ (y >> 1);
            if y & 1 != 0 {
                next ^= 0x9908_b0df;
            }
            self.state[i] = next;
        }
        self.index = 0;
    }

    /// The next 32 random bits (`generator->random()`).
    pub fn next_u32(&mut self) -> u32 {
        if self.index >= 624 {
            self.twist();
        }
        let mut y = self.state[self.index];
        self.index += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^= y >> 18;
        y
    }

    /// 64 random bits from two draws, the first as the high half (`random64()`).
    fn next_u64(&mut self) -> u64 {
        let hi = self.next_u32() as u64;
        let lo = self.next_u32() as u64;
        (hi << 32) | lo
    }

    /// A float uniform in [0, 1) from 24 random bits.
    fn uniform_f32(&mut self) -> f32 {
        (self.next_u32() & 0x00ff_ffff) as f32 * (1.0 / 16_777_216.0)
    }

    /// A double uniform in [0, 1) from 53 random bits.
    fn uniform_f64(&mut self) -> f64 {
        (self.next_u64() & ((1u64 << 53) - 1)) as f64 * (1.0 / 9_007_199_254_740_992.0)
    }

    /// One standard normal in double precision (`at::normal_distribution<double>`).
    fn normal_f64(&mut self) -> f64 {
        if let Some(cached) = self.next_double_normal.take() {
            return cached;
        }
        let u1 = self.uniform_f64();
        let u2 = self.uniform_f64();
        let r = (-2.0 * (-u2).ln_1p()).sqrt();
        let theta = 2.0 * std::f64::consts::PI * u1;
        self.next_double_normal = Some(r * theta.sin());
        r * theta.cos()
    }

    /// `torch.randn(len, generator=self)` for a contiguous float32 tensor of `len` elements.
    pub fn randn(&mut self, len: usize) -> Vec<f32> {
        if len < 16 {
            return (0..len).map(|_| self.normal_f64() as f32).collect();
        }
        let mut data: Vec<f32> = (0..len).map(|_| self.uniform_f32()).collect();
        let mut start = 0;
        while start + 16 <= len {
            normal_fill_16(&mut data[start..start + 16]);
            start += 16;
        }
        if !len.is_multiple_of(16) {
            let tail = len - 16;
            for v in &mut data[tail..] {
                *v = self.uniform_f32();
            }
            normal_fill_16(&mut data[tail..]);
        }
        data
    }
}

/// Box-Muller over 16 uniforms: `(u[j], u[j + 8])` -> two normals, in float as torch does.
fn normal_fill_16(data: &mut [f32]) {
    for j in 0..8 {
        let u1 = 1.0 - data[j];
        let u2 = data[j + 8];
        let radius = (-2.0 * u1.ln()).sqrt();
        let theta = (2.0 * std::f64::consts::PI * f64::from(u2)) as f32;
        data[j] = radius * theta.cos();
        data[j + 8] = radius * theta.sin();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mt19937_matches_the_standard_sequence() {
        // std::mt19937 seeded with 5489: the 10000th output is 4123659995 (C++ standard).
        let mut g = TorchGenerator::new(5489);
        let mut last = 0;
        for _ in 0..10000 {
            last = g.next_u32();
        }
        assert_eq!(last, 4_123_659_995);
    }

    /// torch.randn draws recorded by scripts/fixtures/make_tiny_diffusion.py: sizes that are
    /// multiples of 16, not multiples (the recomputed tail), and under 16 (the double path),
    /// twice from one generator (the stream continues), and a seed above 32 bits.
    #[test]
    fn randn_matches_torch() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/fixtures/tiny-diffusion/reference.json"
        );
        let reference: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).unwrap();
        for draw in reference["randn"].as_array().unwrap() {
            let seed = draw["seed"].as_u64().unwrap();
            let len: u64 = draw["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_u64().unwrap())
                .product();
            let mut g = TorchGenerator::new(seed);
            for key in ["first", "second"] {
                let ours = g.randn(len as usize);
                let theirs: Vec<f32> = draw[key]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_f64().unwrap() as f32)
                    .collect();
                for (i, (a, b)) in ours.iter().zip(&theirs).enumerate() {
                    assert!(
                        (a - b).abs() <= 2e-6 * b.abs().max(1.0),
                        "seed {seed} {key}[{i}]: ours {a}, torch {b}"
                    );
                }
            }
        }
    }
}
