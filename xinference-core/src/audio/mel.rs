//! Log-mel features as openai-whisper and faster-whisper compute them: a periodic Hann window,
//! a centred STFT (n_fft 400, hop 160, reflect padding), power spectrum without the last frame,
//! librosa's Slaney mel filter bank (80 or 128 bins), `log10(max(x, 1e-10))`, clamped to 8 below
//! the maximum, then `(x + 4) / 4`.

use rustfft::num_complex::Complex;
use rustfft::FftPlanner;

/// Samples per second Whisper hears.
pub const SAMPLE_RATE: usize = 16_000;
/// STFT window length.
pub const N_FFT: usize = 400;
/// STFT hop: one feature frame per 10 ms.
pub const HOP_LENGTH: usize = 160;
/// Frames in one 30 s window.
pub const N_FRAMES: usize = 3000;

fn hz_to_mel(f: f64) -> f64 {
    let f_sp = 200.0 / 3.0;
    let min_log_hz = 1000.0;
    let min_log_mel = min_log_hz / f_sp;
    let logstep = 6.4f64.ln() / 27.0;
    if f >= min_log_hz {
        min_log_mel + (f / min_log_hz).ln() / logstep
    } else {
        f / f_sp
    }
}

fn mel_to_hz(m: f64) -> f64 {
    let f_sp = 200.0 / 3.0;
    let min_log_hz = 1000.0;
    let min_log_mel = min_log_hz / f_sp;
    let logstep = 6.4f64.ln() / 27.0;
    if m >= min_log_mel {
        min_log_hz * (logstep * (m - min_log_mel)).exp()
    } else {
        f_sp * m
    }
}

/// librosa's `filters.mel(sr=16000, n_fft=400, n_mels)` (Slaney scale and norm), row-major
/// `[n_mels][N_FFT / 2 + 1]`: the bank in openai-whisper's `mel_filters.npz`.
pub fn mel_filters(n_mels: usize) -> Vec<f64> {
    let n_freqs = N_FFT / 2 + 1;
    let fft_freqs: Vec<f64> = (0..n_freqs)
        .map(|i| i as f64 * (SAMPLE_RATE as f64 / 2.0) / (n_freqs - 1) as f64)
        .collect();
    let (lo, hi) = (hz_to_mel(0.0), hz_to_mel(SAMPLE_RATE as f64 / 2.0));
    let mel_f: Vec<f64> = (0..n_mels + 2)
        .map(|i| mel_to_hz(lo + (hi - lo) * i as f64 / (n_mels + 1) as f64))
        .collect();
    let mut weights = vec![0f64; n_mels * n_freqs];
    for i in 0..n_mels {
        let enorm = 2.0 / (mel_f[i + 2] - mel_f[i]);
        let (d0, d1) = (mel_f[i + 1] - mel_f[i], mel_f[i + 2] - mel_f[i + 1]);
        for (j, f) in fft_freqs.iter().enumerate() {
            let lower = (f - mel_f[i]) / d0;
            let upper = (mel_f[i + 2] - f) / d1;
            weights[i * n_freqs + j] = lower.min(upper).max(0.0) * enorm;
        }
    }
    weights
}

/// Log-mel features of 16 kHz mono `samples`, row-major `[n_mels][frames]` with
/// `frames = (samples.len() + padding) / HOP_LENGTH`. faster-whisper appends `padding = 160`
/// zero samples; openai-whisper appends 30 s.
pub fn log_mel(samples: &[f32], n_mels: usize, padding: usize) -> (Vec<f32>, usize) {
    let mut audio: Vec<f64> = samples.iter().map(|&s| s as f64).collect();
    audio.extend(std::iter::repeat_n(0.0, padding));
    let half = N_FFT / 2;
    // Centre the frames with reflect padding (as torch.stft(center=True)).
    let n = audio.len();
    let reflect = |i: isize| -> f64 {
        if n == 1 {
            return audio[0];
        }
        let period = 2 * (n as isize - 1);
        let mut k = i.rem_euclid(period);
        if k >= n as isize {
            k = period - k;
        }
        audio[k as usize]
    };
    let frames = n / HOP_LENGTH; // 1 + n / hop frames, the last one dropped.
    let window: Vec<f64> = (0..N_FFT)
        .map(|i| 0.5 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / N_FFT as f64).cos())
        .collect();
    let fft = FftPlanner::<f64>::new().plan_fft_forward(N_FFT);
    let n_freqs = N_FFT / 2 + 1;
    let mut power = vec![0f64; frames * n_freqs];
    let mut buf = vec![Complex::new(0.0, 0.0); N_FFT];
    for t in 0..frames {
        let start = (t * HOP_LENGTH) as isize - half as isize;
        for (k, b) in buf.iter_mut().enumerate() {
            let at = start + k as isize;
            let x = if at >= 0 && (at as usize) < n {
                audio[at as usize]
            } else {
                reflect(at)
            };
            *b = Complex::new(x * window[k], 0.0);
        }
        fft.process(&mut buf);
        for (f, b) in buf.iter().take(n_freqs).enumerate() {
            power[t * n_freqs + f] = b.norm_sqr();
        }
    }
    let filters = mel_filters(n_mels);
    let mut out = vec![0f64; n_mels * frames];
    for m in 0..n_mels {
        let row = &filters[m * n_freqs..(m + 1) * n_freqs];
        let first = row.iter().position(|&w| w != 0.0).unwrap_or(0);
        let last = row.iter().rposition(|&w| w != 0.0).map_or(0, |l| l + 1);
        for t in 0..frames {
            let p = &power[t * n_freqs..(t + 1) * n_freqs];
            let v: f64 = (first..last).map(|f| row[f] * p[f]).sum();
            out[m * frames + t] = v.max(1e-10).log10();
        }
    }
    let max = out.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let out = out
        .into_iter()
        .map(|v| ((v.max(max - 8.0) + 4.0) / 4.0) as f32)
        .collect();
    (out, frames)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slaney_filters_have_librosa_values() {
        // Values of faster-whisper 1.1.1's FeatureExtractor.get_mel_filters (librosa's bank,
        // openai-whisper's mel_filters.npz), read once with numpy.
        let f = mel_filters(80);
        assert_eq!(f.len(), 80 * 201);
        assert!((f[1] - 0.024862593984176087).abs() < 1e-9, "{}", f[1]);
        assert!(
            (f[201 + 2] - 0.022871772096078016).abs() < 1e-9,
            "{}",
            f[203]
        );
        let last = f[79 * 201..].iter().cloned().fold(0.0, f64::max);
        assert!((last - 0.003164711739176461).abs() < 1e-9, "{last}");
        let f128 = mel_filters(128);
        assert_eq!(f128.len(), 128 * 201);
        assert!((f128[1] - 0.012373986332636965).abs() < 1e-9, "{}", f128[1]);
        let last = f128[127 * 201..].iter().cloned().fold(0.0, f64::max);
        assert!((last - 0.005041601675024642).abs() < 1e-9, "{last}");
    }

    #[test]
    fn frames_and_range() {
        let tone: Vec<f32> = (0..16_000)
            .map(|i| (i as f32 * 440.0 * 2.0 * std::f32::consts::PI / 16_000.0).sin() * 0.5)
            .collect();
        let (mel, frames) = log_mel(&tone, 80, 160);
        assert_eq!(frames, 101);
        assert_eq!(mel.len(), 80 * 101);
        let max = mel.iter().cloned().fold(f32::MIN, f32::max);
        let min = mel.iter().cloned().fold(f32::MAX, f32::min);
        assert!((max - min - 2.0).abs() < 1e-4 || max - min < 2.0);
    }
}
