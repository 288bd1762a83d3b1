#!/usr/bin/env python3
"""Generate the safetensors test fixtures (committed; CI never runs this).

  python3 tools/gen_st_fixtures.py            # from the repository root

Writes
  tests/data/st/python_written.safetensors    every dtype fluxkit supports, written by the
                                              reference `safetensors` library (Rust core), with
                                              a __metadata__ dict full of characters JSON escapes
  tests/data/st/python_empty_meta.safetensors one tensor, metadata={} (an empty __metadata__)
  tests/data/st/python_no_tensors.safetensors no tensors, no metadata (header "{}" + padding)
  tests/data/malformed/*.safetensors          small broken files, one defect each
  tests/fuzz/corpus/*                         seed corpus for tests/fuzz/fuzz_st_header.c

tests/unit/test_safetensors.c reads the python_* files, checks every value against the
formulas below (repeated there), and rewrites them with fk_st_write_tensors: the bytes must
be identical, which shows without Python in CI that fluxkit files load in the reference.
The reference keeps __metadata__ in a Rust HashMap, so the key order in
python_written.safetensors changes from one run of this script to the next; the test
passes the keys in the order the file has them.

BF16 and F8 tensors go through safetensors.TensorSpec with raw bytes (numpy has no bfloat16
or float8; this is the same call safetensors.numpy.save_file makes, minus the dtype lookup).
Each malformed file is also offered to the reference reader and the script prints whether it
accepts it (fluxkit is stricter only where noted in the table below).
"""
import json
import os
import shutil
import struct
import sys

import numpy as np
import safetensors
from safetensors import TensorSpec

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ST_DIR = os.path.join(ROOT, "tests", "data", "st")
BAD_DIR = os.path.join(ROOT, "tests", "data", "malformed")
CORPUS_DIR = os.path.join(ROOT, "tests", "fuzz", "corpus")


# ---- the reference-written files ---------------------------------------------------------

def f32_bits(x):
    return struct.unpack("<I", struct.pack("<f", x))[0]


def python_tensors():
    """name -> (reference dtype name, shape, numpy array holding the raw little-endian data).
    The formulas are repeated in tests/unit/test_safetensors.c."""
    t = {}
    k6 = np.arange(6)
    t["int64.counts"] = ("int64", [2, 3], ((k6 - 2) * 1000000007 * 1000).astype("<i8"))
    k5 = np.arange(5, dtype=np.float64)
    t["f64.values"] = ("float64", [5], ((k5 - 2) * 0.1).astype("<f8"))
    t["a.weight"] = ("float32", [2, 3], ((k6.astype(np.float32) - np.float32(2.5)) * np.float32(0.25)).astype("<f4"))
    t["B.bias"] = ("float32", [4], (np.arange(4, dtype=np.float32) * np.float32(1.5)).astype("<f4"))
    t["scalar"] = ("float32", [], np.array(3.25, dtype="<f4"))
    t["empty"] = ("float32", [0, 4], np.zeros((0, 4), dtype="<f4"))
    t["a.10"] = ("float32", [1], np.array([10.0], dtype="<f4"))
    t["a.9"] = ("float32", [1], np.array([9.0], dtype="<f4"))
    t["\u00e9.layer"] = ("float32", [1], np.array([7.0], dtype="<f4"))
    k4 = np.arange(4)
    t["i32.idx"] = ("int32", [4], (k4 * k4 - 5).astype("<i4"))
    # bf16: top half of the f32 bits of k*0.5 - 1 (exact in bf16)
    t["bf16.w"] = ("bfloat16", [2, 2],
                   np.array([f32_bits(k * 0.5 - 1.0) >> 16 for k in range(4)], dtype="<u2"))
    k3 = np.arange(3)
    t["f16.w"] = ("float16", [3], (k3 * 0.5 - 0.75).astype("<f2"))
    t["i16.v"] = ("int16", [3], (-300 + k3 * 250).astype("<i2"))
    # float8_e4m3fn bytes: 1.0, -1.0, 448 (max), 2^-9 (smallest subnormal)
    t["f8.e4m3"] = ("float8_e4m3fn", [4], np.array([0x38, 0xB8, 0x7E, 0x01], dtype=np.uint8))
    # float8_e5m2 bytes: 1.0, -2.0, 57344 (max), 2^-16 (smallest subnormal)
    t["f8.e5m2"] = ("float8_e5m2", [2, 2], np.array([0x3C, 0xC0, 0x7B, 0x01], dtype=np.uint8))
    t["i8.v"] = ("int8", [4], np.array([-128, -1, 0, 127], dtype=np.int8))
    t["u8.v"] = ("uint8", [5], (np.arange(5) * 50).astype(np.uint8))
    t["mask"] = ("bool", [3], np.array([True, False, True], dtype=np.bool_))
    return t


PY_META = {
    "format": "pt",
    'quote"key': "back\\slash",
    "newline": "line1\nline2\ttab\x01ctl\x1f",
    "unicode": "\u03c0 \u2248 3.14159 \u00e9 \U0001f600",
    "json": '{"a": [1, 2], "b": "c/d"}',
    "empty": "",
}


def write_reference(path, tensors, metadata):
    specs = {}
    keep = []
    for name, (dtype, shape, arr) in tensors.items():
        arr = np.ascontiguousarray(arr)
        keep.append(arr)
        specs[name] = TensorSpec(dtype=dtype, shape=list(shape), data_ptr=arr.ctypes.data,
                                 data_len=arr.nbytes)
    safetensors.serialize_file(specs, path, metadata=metadata)


# ---- malformed files ----------------------------------------------------------------------

def st_bytes(header, data=b"", pad=True, hlen=None):
    """header: str or bytes (used verbatim); hlen overrides the length field."""
    hb = header.encode("utf-8") if isinstance(header, str) else header
    if pad:
        hb += b" " * ((8 - len(hb) % 8) % 8)
    n = len(hb) if hlen is None else hlen
    return struct.pack("<Q", n) + hb + data


def entry(dtype, shape, b, e):
    return {"dtype": dtype, "shape": shape, "data_offsets": [b, e]}


def hdr(d):
    return json.dumps(d, separators=(",", ":"))


def malformed_files():
    good_hdr = hdr({"w": entry("F32", [2, 2], 0, 16)})
    good = st_bytes(good_hdr, bytes(16))
    two = lambda e1, e2, ndata: st_bytes(hdr({"a": e1, "b": e2}), bytes(ndata))
    files = {
        # name: (bytes, what fluxkit must say)
        "empty": (b"", "file shorter than 8 bytes"),
        "short_len": (b"\x10\x00\x00\x00\x00", "file shorter than 8 bytes"),
        "truncated_header": (good[: 8 + len(good_hdr) // 2], "header length beyond the file"),
        "header_past_end": (struct.pack("<Q", 4096) + b"{}", "header length beyond the file"),
        "giant_header": (struct.pack("<Q", 200_000_000) + b"{}      ", "header length above the cap"),
        "header_len_max": (struct.pack("<Q", 2**64 - 1) + b"{}      ", "header length above the cap"),
        "truncated_data": (good[:-4], "tensor w beyond the data section"),
        "overlap": (two(entry("F32", [4], 0, 16), entry("F32", [4], 8, 24), 24), "a and b overlap"),
        "out_of_range": (st_bytes(hdr({"w": entry("F32", [4], 8, 24)}), bytes(16)),
                         "tensor w beyond the data section"),
        "end_before_begin": (st_bytes(hdr({"w": entry("F32", [0], 16, 8)}), bytes(16)), "end < begin"),
        "unknown_dtype": (st_bytes(hdr({"w": entry("F33", [4], 0, 16)}), bytes(16)), "unknown dtype"),
        "unsupported_dtype": (st_bytes(hdr({"w": entry("U16", [4], 0, 8)}), bytes(8)),
                              "reference dtype fluxkit does not support"),
        "wrong_span": (st_bytes(hdr({"w": entry("F32", [2, 2], 0, 12)}), bytes(12)), "span != numel*size"),
        "duplicate_names": (st_bytes('{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},'
                                     '"w":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}', bytes(16)),
                            "duplicate name w"),
        "bad_utf8": (st_bytes(b'{"w\xff":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', bytes(4)),
                     "invalid UTF-8"),
        "overlong_utf8": (st_bytes(b'{"w\xc0\xaf":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', bytes(4)),
                          "invalid UTF-8 (overlong)"),
        "invalid_json": (st_bytes('{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]'), "invalid JSON"),
        "trailing_garbage": (st_bytes('{}xyz'), "text after the JSON object"),
        "not_object": (st_bytes("[1,2,3]"), "JSON array, not an object"),
        "entry_not_object": (st_bytes('{"w":[1,2]}'), "entry w not an object"),
        "missing_dtype": (st_bytes(hdr({"w": {"shape": [1], "data_offsets": [0, 4]}}), bytes(4)), "w: no dtype"),
        "missing_shape": (st_bytes(hdr({"w": {"dtype": "F32", "data_offsets": [0, 4]}}), bytes(4)), "w: no shape"),
        "missing_offsets": (st_bytes(hdr({"w": {"dtype": "F32", "shape": [1]}}), bytes(4)), "w: no data_offsets"),
        "offsets_arity": (st_bytes(hdr({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0]}}), bytes(4)),
                          "data_offsets not [begin, end]"),
        "negative_shape": (st_bytes(hdr({"w": entry("F32", [-1, 4], 0, 16)}), bytes(16)), "negative dim"),
        "float_shape": (st_bytes('{"w":{"dtype":"F32","shape":[2.5,4],"data_offsets":[0,40]}}', bytes(40)),
                        "fractional dim"),
        "string_shape": (st_bytes(hdr({"w": entry("F32", ["4"], 0, 16)}), bytes(16)), "string dim"),
        "too_many_dims": (st_bytes(hdr({"w": entry("F32", [1] * 9, 0, 4)}), bytes(4)), "ndim 9 > 8"),
        "numel_overflow": (st_bytes(hdr({"w": entry("F64", [2**31, 2**31, 8], 0, 8)}), bytes(8)),
                           "numel*size overflows"),
        "meta_non_string": (st_bytes(hdr({"__metadata__": {"k": 1}, "w": entry("F32", [1], 0, 4)}), bytes(4)),
                            "metadata value not a string"),
        "meta_not_object": (st_bytes(hdr({"__metadata__": [1], "w": entry("F32", [1], 0, 4)}), bytes(4)),
                            "metadata not an object"),
        "gap": (two(entry("F32", [2], 0, 8), entry("F32", [2], 16, 24), 24), "gap before b"),
        "trailing_bytes": (good + b"\0" * 8, "bytes after the last tensor"),
        "control_char": (st_bytes(b'{"w\x01":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', bytes(4)),
                         "raw control character"),
    }
    return files


def reference_accepts(blob):
    try:
        safetensors.deserialize(blob)
        return True
    except Exception:
        return False


def main():
    os.makedirs(ST_DIR, exist_ok=True)
    os.makedirs(BAD_DIR, exist_ok=True)
    os.makedirs(CORPUS_DIR, exist_ok=True)

    pw = os.path.join(ST_DIR, "python_written.safetensors")
    write_reference(pw, python_tensors(), PY_META)
    em = os.path.join(ST_DIR, "python_empty_meta.safetensors")
    write_reference(em, {"x": ("float32", [2], np.array([1.0, -2.0], dtype="<f4"))}, {})
    nt = os.path.join(ST_DIR, "python_no_tensors.safetensors")
    write_reference(nt, {}, None)
    for p in (pw, em, nt):
        os.chmod(p, 0o644)  # the reference writes through a 0600 temporary file
        with open(p, "rb") as f:
            blob = f.read()
        n = struct.unpack("<Q", blob[:8])[0]
        print(f"{os.path.relpath(p, ROOT)}: {len(blob)} bytes, header {n}: {blob[8:8 + n][:120]!r}...")

    for old in os.listdir(BAD_DIR):
        if old.endswith(".safetensors"):
            os.remove(os.path.join(BAD_DIR, old))
    stricter = []
    for name, (blob, what) in malformed_files().items():
        with open(os.path.join(BAD_DIR, name + ".safetensors"), "wb") as f:
            f.write(blob)
        if reference_accepts(blob):
            stricter.append(name)
        print(f"malformed/{name}.safetensors ({len(blob)} bytes): {what}; "
              f"reference {'ACCEPTS' if reference_accepts(blob) else 'rejects'}")
    if stricter:
        print("fluxkit is stricter than the reference on:", ", ".join(stricter))

    # fuzz seed corpus: the valid files and a handful of broken ones
    for old in os.listdir(CORPUS_DIR):
        os.remove(os.path.join(CORPUS_DIR, old))
    for p in (pw, em, nt):
        shutil.copyfile(p, os.path.join(CORPUS_DIR, os.path.basename(p)))
    for name in ("overlap", "duplicate_names", "meta_non_string", "bad_utf8", "gap", "numel_overflow"):
        shutil.copyfile(os.path.join(BAD_DIR, name + ".safetensors"), os.path.join(CORPUS_DIR, name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
