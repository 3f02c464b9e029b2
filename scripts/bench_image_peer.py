#!/usr/bin/env python3
"""The diffusers side of `cargo bench --bench image`, CPU only.

    prepare --out DIR
        Writes a Stable Diffusion 1.5 pipeline in the diffusers layout with SD 1.5's real UNet,
        VAE and CLIP text-encoder configurations and random weights (fixed seed, float16 files,
        ~2 GB). No registry ships SD weights; the sizes are real, so the timings are. The
        tokenizer is the tiny fixture's (tokenisation cost is nil).

    run --dir DIR --threads N --size S --steps K
        diffusers' StableDiffusionPipeline (torch, float32, N threads): seconds per UNet step
        (one classifier-free-guided UNet call: batch 2), seconds for one S x S image with K
        PNDM steps (guidance 7.5, seed 0), and the process's peak RSS. Prints one JSON object.

    run-sdcpp --dir DIR --threads N --size S --steps K [--wtype f32]
        stable-diffusion.cpp (through stable-diffusion-cpp-python, which builds it from its sdist:
        `pip install --no-binary stable-diffusion-cpp-python stable-diffusion-cpp-python` into
        its own venv, e.g. ~/.cache/xinference-rs/sdcpp/venv), N threads, weights as float32
        (--wtype; the files are float16): seconds per guided UNet step as (time of a K-step image
        - time of a 1-step image) / (K - 1) with its Euler sampler (one step: the UNet on the
        prompt and on the empty prompt), seconds for one S x S image with K steps (guidance 7.5,
        seed 0), peak RSS. Prints one JSON object. stable-diffusion.cpp does not recognise a
        diffusers folder ("get sd version from file failed"), so it reads the same weights as
        one checkpoint in the original layout, DIR.safetensors beside the folder, which
        `prepare` writes with scripts/sd15_to_single_file.py (key renaming only).

    layers --threads N [--reps R]
        torch's own 3x3 convolutions (float32, N threads, batch 2) on the shapes that
        `cargo bench --bench image_layers` times ours on (320 channels on 64x64, 640 on 32x32,
        1280 on 16x16 and 8x8, 2560 -> 1280 on 16x16): median seconds of R calls after a
        warm-up, one JSON line per shape, to read beside that bench's rows.
"""
import argparse
import json
import shutil
import statistics
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def prepare(out: Path):
    import torch
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
        block_out_channels=(320, 640, 1280, 1280),
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        cross_attention_dim=768, attention_head_dim=8,
    )
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2,
        block_out_channels=(128, 256, 512, 512),
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        sample_size=512,
    )
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
        num_attention_heads=12, max_position_embeddings=77, hidden_act="quick_gelu",
        projection_dim=768,
    ))
    tokenizer = CLIPTokenizer.from_pretrained(ROOT / "tests/fixtures/tiny-diffusion/sd15/tokenizer")
    scheduler = PNDMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000,
        set_alpha_to_one=False, skip_prk_steps=True, steps_offset=1,
    )
    pipe = StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    if out.exists():
        shutil.rmtree(out)
    pipe.to(torch.float16).save_pretrained(out, safe_serialization=True)
    # The same weights as one original-layout checkpoint, for stable-diffusion.cpp.
    import subprocess
    import sys

    single = single_file(out)
    subprocess.run([sys.executable, str(ROOT / "scripts/sd15_to_single_file.py"), "--dir", str(out),
                    "--out", str(single)], check=True)
    print(json.dumps({"prepared": str(out), "single_file": str(single)}))


def single_file(folder: Path) -> Path:
    """Where `prepare` writes the folder's weights as one original-layout checkpoint."""
    return folder.parent / (folder.name + ".safetensors")


def run(folder: Path, threads: int, size: int, steps: int):
    import torch
    from diffusers import StableDiffusionPipeline

    torch.set_num_threads(threads)
    pipe = StableDiffusionPipeline.from_pretrained(
        folder, torch_dtype=torch.float32, safety_checker=None, requires_safety_checker=False
    )
    pipe.set_progress_bar_config(disable=True)
    latents = torch.randn(2, 4, size // 8, size // 8)
    context = torch.randn(2, 77, 768)
    with torch.no_grad():
        pipe.unet(latents, 500, encoder_hidden_states=context)  # warm-up
        times = []
        for _ in range(2):
            start = time.perf_counter()
            pipe.unet(latents, 500, encoder_hidden_states=context)
            times.append(time.perf_counter() - start)
    start = time.perf_counter()
    pipe("an apple", num_inference_steps=steps, height=size, width=size,
         generator=torch.Generator("cpu").manual_seed(0), output_type="np")
    image = time.perf_counter() - start
    # VmHWM, not ru_maxrss: after fork + exec, Linux's ru_maxrss keeps the parent's peak.
    rss_mb = next(
        int(line.split()[1]) / 1024
        for line in open("/proc/self/status")
        if line.startswith("VmHWM:")
    )
    print(json.dumps({"unet_step_s": statistics.median(times), "image_s": image, "steps": steps,
                      "peak_rss_mb": rss_mb, "torch": torch.__version__}))


def run_sdcpp(folder: Path, threads: int, size: int, steps: int, wtype: str):
    from stable_diffusion_cpp import StableDiffusion

    checkpoint = single_file(folder)
    if not checkpoint.exists():
        raise SystemExit(f"{checkpoint} is missing: python scripts/sd15_to_single_file.py --dir {folder} "
                         f"--out {checkpoint}")
    sd = StableDiffusion(model_path=str(checkpoint), n_threads=threads, wtype=wtype, verbose=False)

    def image(k):
        start = time.perf_counter()
        sd.generate_image(prompt="an apple", width=size, height=size, sample_steps=k, cfg_scale=7.5,
                          sample_method="euler", seed=0)
        return time.perf_counter() - start

    image(1)  # warm-up
    short = image(1)
    full = image(steps)
    rss_mb = next(
        int(line.split()[1]) / 1024
        for line in open("/proc/self/status")
        if line.startswith("VmHWM:")
    )
    print(json.dumps({"unet_step_s": (full - short) / max(steps - 1, 1), "image_s": full, "steps": steps,
                      "peak_rss_mb": rss_mb, "wtype": wtype}))


def layers(threads: int, reps: int):
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    for cin, cout, side in [(320, 320, 64), (640, 640, 32), (1280, 1280, 16), (2560, 1280, 16),
                            (1280, 1280, 8)]:
        conv = torch.nn.Conv2d(cin, cout, 3, padding=1)
        x = torch.randn(2, cin, side, side)
        with torch.no_grad():
            conv(x)
            times = []
            for _ in range(reps):
                start = time.perf_counter()
                conv(x)
                times.append(time.perf_counter() - start)
        print(json.dumps({"conv": f"{cin}->{cout} on {side}x{side}",
                          "torch_s": statistics.median(times)}))


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("prepare")
    a.add_argument("--out", type=Path, required=True)
    b = sub.add_parser("run")
    b.add_argument("--dir", type=Path, required=True)
    b.add_argument("--threads", type=int, default=2)
    b.add_argument("--size", type=int, default=512)
    b.add_argument("--steps", type=int, default=4)
    c = sub.add_parser("run-sdcpp")
    c.add_argument("--dir", type=Path, required=True)
    c.add_argument("--threads", type=int, default=2)
    c.add_argument("--size", type=int, default=512)
    c.add_argument("--steps", type=int, default=4)
    c.add_argument("--wtype", default="f32")
    d = sub.add_parser("layers")
    d.add_argument("--threads", type=int, default=2)
    d.add_argument("--reps", type=int, default=5)
    args = p.parse_args()
    if args.cmd == "prepare":
        prepare(args.out)
    elif args.cmd == "layers":
        layers(args.threads, args.reps)
    elif args.cmd == "run-sdcpp":
        run_sdcpp(args.dir, args.threads, args.size, args.steps, args.wtype)
    else:
        run(args.dir, args.threads, args.size, args.steps)


if __name__ == "__main__":
    main()
