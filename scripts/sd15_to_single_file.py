#!/usr/bin/env python3
"""Rewrites a Stable Diffusion 1.x pipeline folder in the diffusers layout (unet/, vae/,
text_encoder/ safetensors) as one checkpoint in the original CompVis layout
(`model.diffusion_model.*`, `first_stage_model.*`, `cond_stage_model.transformer.*`), the
single-file form stable-diffusion.cpp recognises ("get sd version from file failed" on a
diffusers folder).

    python scripts/sd15_to_single_file.py --dir DIR --out FILE.safetensors [--dtype f16|f32]

Only key names change (and the VAE attention's linear weights gain the 1x1 conv shape); the
mapping is the one diffusers' `convert_diffusers_to_original_stable_diffusion.py` applies, for
SD 1.x's UNet (4 blocks, 2 resnets down, 3 up) and VAE. Needs numpy and safetensors.
"""
import argparse
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file


def unet_prefixes():
    """(diffusers prefix, original prefix) pairs for SD 1.x's UNet, most specific first."""
    pairs = [
        ("time_embedding.linear_1.", "time_embed.0."),
        ("time_embedding.linear_2.", "time_embed.2."),
        ("conv_in.", "input_blocks.0.0."),
        ("conv_norm_out.", "out.0."),
        ("conv_out.", "out.2."),
        ("mid_block.attentions.0.", "middle_block.1."),
        ("mid_block.resnets.0.", "middle_block.0."),
        ("mid_block.resnets.1.", "middle_block.2."),
    ]
    for block in range(4):
        for j in range(2):
            pairs.append((f"down_blocks.{block}.resnets.{j}.", f"input_blocks.{3 * block + j + 1}.0."))
            if block < 3:
                pairs.append(
                    (f"down_blocks.{block}.attentions.{j}.", f"input_blocks.{3 * block + j + 1}.1.")
                )
        for j in range(3):
            pairs.append((f"up_blocks.{block}.resnets.{j}.", f"output_blocks.{3 * block + j}.0."))
            if block > 0:
                pairs.append((f"up_blocks.{block}.attentions.{j}.", f"output_blocks.{3 * block + j}.1."))
        if block < 3:
            pairs.append(
                (f"down_blocks.{block}.downsamplers.0.conv.", f"input_blocks.{3 * (block + 1)}.0.op.")
            )
            slot = 1 if block == 0 else 2
            pairs.append((f"up_blocks.{block}.upsamplers.0.", f"output_blocks.{3 * block + 2}.{slot}."))
    return pairs


RESNET_PARTS = [
    ("norm1.", "in_layers.0."),
    ("conv1.", "in_layers.2."),
    ("norm2.", "out_layers.0."),
    ("conv2.", "out_layers.3."),
    ("time_emb_proj.", "emb_layers.1."),
    ("conv_shortcut.", "skip_connection."),
]


def convert_unet(tensors):
    prefixes = unet_prefixes()
    out = {}
    for key, value in tensors.items():
        new = key
        for hf, sd in prefixes:
            if key.startswith(hf):
                rest = key[len(hf):]
                if ".resnets." in hf:
                    for hf_part, sd_part in RESNET_PARTS:
                        if rest.startswith(hf_part):
                            rest = sd_part + rest[len(hf_part):]
                            break
                new = sd + rest
                break
        else:
            raise SystemExit(f"unexpected UNet tensor {key}")
        out["model.diffusion_model." + new] = value
    return out


VAE_ATTENTION = [
    ("group_norm.", "norm."),
    ("to_q.", "q."),
    ("query.", "q."),
    ("to_k.", "k."),
    ("key.", "k."),
    ("to_v.", "v."),
    ("value.", "v."),
    ("to_out.0.", "proj_out."),
    ("proj_attn.", "proj_out."),
]


def vae_prefixes():
    pairs = [("mid_block.attentions.0.", "mid.attn_1.")]
    for i in range(2):
        pairs.append((f"mid_block.resnets.{i}.", f"mid.block_{i + 1}."))
    for i in range(4):
        for j in range(2):
            pairs.append((f"down_blocks.{i}.resnets.{j}.", f"down.{i}.block.{j}."))
        for j in range(3):
            pairs.append((f"up_blocks.{i}.resnets.{j}.", f"up.{3 - i}.block.{j}."))
        if i < 3:
            pairs.append((f"down_blocks.{i}.downsamplers.0.", f"down.{i}.downsample."))
            pairs.append((f"up_blocks.{i}.upsamplers.0.", f"up.{3 - i}.upsample."))
    pairs.append(("conv_norm_out.", "norm_out."))
    return pairs


def convert_vae(tensors):
    prefixes = vae_prefixes()
    out = {}
    for key, value in tensors.items():
        part, _, rest = key.partition(".")  # encoder / decoder / quant_conv / post_quant_conv
        new = key
        if part in ("encoder", "decoder"):
            for hf, sd in prefixes:
                if rest.startswith(hf):
                    tail = rest[len(hf):]
                    if hf.startswith("mid_block.attentions"):
                        for hf_part, sd_part in VAE_ATTENTION:
                            if tail.startswith(hf_part):
                                tail = sd_part + tail[len(hf_part):]
                                break
                        if tail.endswith("weight") and value.ndim == 2:
                            value = value.reshape(*value.shape, 1, 1)
                    rest = sd + tail
                    break
            new = f"{part}.{rest.replace('conv_shortcut.', 'nin_shortcut.')}"
        out["first_stage_model." + new] = value
    return out


def convert_text_encoder(tensors):
    out = {}
    for key, value in tensors.items():
        if not key.startswith("text_model."):
            key = "text_model." + key
        out["cond_stage_model.transformer." + key] = value
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--dir", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--dtype", choices=["f16", "f32"], default="f16")
    args = p.parse_args()
    unet = convert_unet(load_file(args.dir / "unet/diffusion_pytorch_model.safetensors"))
    vae = convert_vae(load_file(args.dir / "vae/diffusion_pytorch_model.safetensors"))
    text = convert_text_encoder(load_file(args.dir / "text_encoder/model.safetensors"))
    dtype = np.float16 if args.dtype == "f16" else np.float32
    merged = {k: np.ascontiguousarray(v.astype(dtype)) for k, v in {**unet, **vae, **text}.items()}
    save_file(merged, str(args.out))
    print(f"{len(merged)} tensors -> {args.out}")


if __name__ == "__main__":
    main()
