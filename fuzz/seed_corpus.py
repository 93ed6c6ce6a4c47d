#!/usr/bin/env python3
"""Writes the fuzz seed corpora (fuzz/corpus/<target>/) from the repository's real prompts and
templates and the tiny LTX-2 checkpoints' headers. Run from the repository root; the output is
committed, so this only runs again when the sources change."""
import json, os, struct, sys, glob

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "fuzz", "corpus")
TINY = os.environ.get("COMFYRS_TINY", "/work/shared/fixtures/ltx2-tiny/models")
BOUNDARY = "comfyrsfuzzboundary"


def put(target, name, data):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def compact(obj):
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def prompts():
    for path in sorted(glob.glob(os.path.join(ROOT, "tests/workflows/api/*.json")) +
                       glob.glob(os.path.join(ROOT, "tests/workflows/frontend/*.json")) +
                       glob.glob(os.path.join(ROOT, "tests/workflows/ltx2_*.json"))):
        doc = json.load(open(path))
        name = os.path.relpath(path, ROOT).replace("/", "_")
        put("prompt_validate", name, compact(doc))
    cases = json.load(open(os.path.join(ROOT, "tests/fixtures/comfy_peer/validation.json")))["cases"]
    for case in cases:
        body = case.get("request", {}).get("json")
        if body is not None:
            put("prompt_validate", "peer_" + case["case"] + ".json", compact(body))


def ui_workflows():
    for path in sorted(glob.glob(os.path.join(ROOT, "tests/workflows/edge_cases/*.json")) +
                       glob.glob(os.path.join(ROOT, "tests/workflows/templates/*.json"))):
        doc = json.load(open(path))
        name = os.path.relpath(path, ROOT).replace("/", "_")
        put("ui_workflow", name, compact(doc))


def safetensors_file(tensors, metadata=None):
    header, data, offset = {}, b"", 0
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, (dtype, shape, size) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + size]}
        data += bytes(range(size % 256)) + bytes(size - size % 256)
        offset += size
    raw = compact(header).encode()
    return struct.pack("<Q", len(raw)) + raw + data


def safetensors():
    for name in ["ltx2-tiny", "ltx2-tiny-upscaler", "gemma3-tiny-comfy"]:
        with open(os.path.join(TINY, name + ".safetensors"), "rb") as f:
            n = struct.unpack("<Q", f.read(8))[0]
            put("safetensors_header", name + ".header", struct.pack("<Q", n) + f.read(n))
    put("safetensors_header", "small.safetensors", safetensors_file(
        {"a.weight": ("F32", [2, 3], 24), "b.bias": ("BF16", [4], 8)},
        {"config": compact({"transformer": {"num_layers": 2}, "vae": {}})}))
    put("safetensors_header", "empty.safetensors", safetensors_file({}))


def paths():
    lines = [
        "a.png\noutput\n\nworkflows/a.json",
        "ComfyUI_00001_.png [output]\ninput\nsub/dir\ncomfy.settings.json",
        "../secret.txt\noutput\n..\n../../etc/passwd",
        "x.png\ntemp\n/etc\n/abs/path",
        "-\n-\n-\n-",
        "clip.png [temp]\n-\na/./b\nworkflows/../x",
    ]
    for i, text in enumerate(lines):
        put("file_paths", f"case{i}", text)


def multipart(fields):
    out = b""
    for name, filename, value in fields:
        disp = f'Content-Disposition: form-data; name="{name}"'
        if filename is not None:
            disp += f'; filename="{filename}"'
        out += f"--{BOUNDARY}\r\n{disp}\r\n".encode()
        if filename is not None:
            out += b"Content-Type: image/png\r\n"
        out += b"\r\n" + (value if isinstance(value, bytes) else value.encode()) + b"\r\n"
    return out + f"--{BOUNDARY}--\r\n".encode()


def uploads():
    png = open(os.path.join(ROOT, "tests/fixtures/comfy_peer/test13x9.png"), "rb").read()
    put("upload_multipart", "image", multipart([("image", "a.png", png)]))
    put("upload_multipart", "full", multipart([
        ("image", "b.png", b"\x89PNG\r\n"), ("type", None, "input"), ("subfolder", None, "sub/dir"),
        ("overwrite", None, "true")]))
    put("upload_multipart", "mask", multipart([
        ("image", "m.png", b"data"), ("original_ref", None,
                                       compact({"filename": "a.png", "type": "input", "subfolder": ""}))]))
    put("upload_multipart", "traversal", multipart([("image", "../x.png", b"x"), ("subfolder", None, "../..")]))


def ws():
    put("ws_message", "flags", compact({"type": "feature_flags", "data": {"supports_preview_metadata": True}}))
    put("ws_message", "flags_off", compact({"type": "feature_flags", "data": {}}))
    put("ws_message", "other", compact({"type": "ping"}))


if __name__ == "__main__":
    prompts(); ui_workflows(); safetensors(); paths(); uploads(); ws()
    for t in sorted(os.listdir(OUT)):
        files = os.listdir(os.path.join(OUT, t))
        size = sum(os.path.getsize(os.path.join(OUT, t, f)) for f in files)
        print(f"{t}: {len(files)} files, {size // 1024} KiB", file=sys.stderr)
