#!/usr/bin/env python3
"""Generate the image-decoding fixtures for tests/unit/test_image.c (committed; CI never
runs this).

  python3 tools/gen_image_fixtures.py        # from the repository root

Reference: Pillow (Image.open(...).convert("RGB") decodes; Image.resize(..., LANCZOS)).
Writes tests/data/pipeline/images/:
  rgb.png          37x23 RGB 8-bit             rgba.png     RGBA (alpha dropped on read)
  palette.png      P mode (palette)            gray16.png   16-bit grayscale
  gray.png         L 8-bit                     photo.jpg    baseline 4:2:0 JPEG, quality 90
  progressive.jpg  progressive JPEG            gray.jpg     grayscale JPEG
  cmyk.jpg         CMYK JPEG (fluxkit reports it cannot convert it)
  truncated.jpg, truncated.png, garbage.png    unreadable files
  ref.safetensors  ref.<name> (H, W, 3) U8: Pillow's RGB pixels of each readable file;
                   resize.<w>x<h> (h, w, 3) U8: rgb.png resized with Pillow's LANCZOS
"""
import io
import os

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file

OUT = "tests/data/pipeline/images"


def picture(w, h, seed):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    r = 255 * x / (w - 1)
    g = 255 * y / (h - 1)
    b = 128 + 100 * np.sin(x / 2.5) * np.cos(y / 3.5)
    img = np.stack([r, g, b], -1) + rng.normal(0, 12, (h, w, 3))
    return np.clip(img.round(), 0, 255).astype(np.uint8)


def main():
    os.makedirs(OUT, exist_ok=True)
    rgb = picture(37, 23, 1)
    Image.fromarray(rgb).save(f"{OUT}/rgb.png")
    a = (np.arange(37 * 23).reshape(23, 37) % 256).astype(np.uint8)
    Image.fromarray(np.dstack([rgb, a]), "RGBA").save(f"{OUT}/rgba.png")
    Image.fromarray(rgb).quantize(colors=16).save(f"{OUT}/palette.png")
    Image.fromarray(rgb[..., 1]).save(f"{OUT}/gray.png")
    g16 = (rgb[..., 0].astype(np.uint16) * 257 + 100).astype(np.uint16)
    Image.fromarray(g16).save(f"{OUT}/gray16.png")
    photo = picture(64, 40, 2)
    Image.fromarray(photo).save(f"{OUT}/photo.jpg", quality=90)
    Image.fromarray(photo).save(f"{OUT}/progressive.jpg", quality=85, progressive=True)
    Image.fromarray(photo[..., 0]).save(f"{OUT}/gray.jpg", quality=90)
    Image.fromarray(photo).convert("CMYK").save(f"{OUT}/cmyk.jpg", quality=90)
    data = open(f"{OUT}/photo.jpg", "rb").read()
    open(f"{OUT}/truncated.jpg", "wb").write(data[: len(data) // 2])
    data = open(f"{OUT}/rgb.png", "rb").read()
    open(f"{OUT}/truncated.png", "wb").write(data[: len(data) * 2 // 3])
    open(f"{OUT}/garbage.png", "wb").write(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)

    refs = {}
    for name in ["rgb.png", "rgba.png", "palette.png", "gray.png", "gray16.png", "photo.jpg", "progressive.jpg",
                 "gray.jpg"]:
        im = Image.open(f"{OUT}/{name}")
        if im.mode == "I;16" or im.mode == "I":
            # Pillow's convert("RGB") of 16-bit gray clips instead of scaling; libpng's
            # strip_16 keeps the high byte: the reference is the high byte (v >> 8).
            arr = np.array(im).astype(np.uint32) >> 8
            arr = np.repeat(arr[..., None].astype(np.uint8), 3, axis=2)
        else:
            arr = np.array(im.convert("RGB"))
        refs[f"ref.{name}"] = torch.from_numpy(arr.copy())
    src = Image.open(f"{OUT}/rgb.png").convert("RGB")
    for (w, h) in [(16, 16), (74, 46), (20, 40), (37, 10), (64, 23), (37, 23)]:
        refs[f"resize.{w}x{h}"] = torch.from_numpy(np.array(src.resize((w, h), Image.LANCZOS)).copy())
    save_file(refs, f"{OUT}/ref.safetensors", metadata={"pillow": Image.__version__})
    total = sum(os.path.getsize(os.path.join(OUT, f)) for f in os.listdir(OUT))
    print(f"wrote {OUT}: {total} bytes")


if __name__ == "__main__":
    main()
