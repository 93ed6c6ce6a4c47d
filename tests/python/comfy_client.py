#!/usr/bin/env python3
"""An outside API client for comfyrs, written the way ComfyUI's own example scripts are
(`script_examples/websockets_api_example.py`: `urllib` for HTTP, `websocket-client` for the
socket): queue a prompt with a client id, wait on the socket for `executing` with `node: None`,
then read `/history/{prompt_id}` and download the images with `/view`. It also uploads an image
and runs LoadImage on it. Works in single-user mode and, with --user/--password/--prefix,
in a workshop workspace (HTTP basic authentication).

Usage: comfy_client.py --server 127.0.0.1:8188 [--prefix /user001 --user user001 --password pw]
Prints one JSON summary line on success; exits non-zero with a message on any failure.
"""
import argparse
import base64
import json
import struct
import sys
import urllib.error
import urllib.parse
import urllib.request
import uuid
import zlib

import websocket  # websocket-client

BOUNDARY = "comfyrsclientboundary"


class Client:
    """ComfyUI's example functions, bound to one server, workspace and identity."""

    def __init__(self, server, prefix="", user=None, password=None):
        self.server = server
        self.prefix = prefix.rstrip("/")
        self.client_id = uuid.uuid4().hex
        self.headers = {}
        if user is not None:
            token = base64.b64encode(f"{user}:{password}".encode()).decode()
            self.headers["Authorization"] = f"Basic {token}"

    def url(self, path):
        return f"http://{self.server}{self.prefix}{path}"

    def request(self, path, data=None, content_type="application/json"):
        req = urllib.request.Request(self.url(path), data=data, headers=dict(self.headers))
        if data is not None:
            req.add_header("Content-Type", content_type)
        with urllib.request.urlopen(req) as response:
            return response.read()

    def queue_prompt(self, prompt):
        body = json.dumps({"prompt": prompt, "client_id": self.client_id}).encode("utf-8")
        return json.loads(self.request("/prompt", body))

    def get_image(self, filename, subfolder, folder_type):
        query = urllib.parse.urlencode({"filename": filename, "subfolder": subfolder, "type": folder_type})
        return self.request(f"/view?{query}")

    def get_history(self, prompt_id):
        return json.loads(self.request(f"/history/{prompt_id}"))

    def upload_image(self, filename, data):
        body = (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="image"; filename="{filename}"\r\n'
            f"Content-Type: image/png\r\n\r\n"
        ).encode() + data + f"\r\n--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"overwrite\"\r\n\r\ntrue\r\n--{BOUNDARY}--\r\n".encode()
        return json.loads(self.request("/upload/image", body, f"multipart/form-data; boundary={BOUNDARY}"))

    def connect(self):
        ws = websocket.WebSocket()
        header = [f"{k}: {v}" for k, v in self.headers.items()]
        ws.connect(f"ws://{self.server}{self.prefix}/ws?clientId={self.client_id}", header=header, timeout=60)
        return ws

    def get_images(self, ws, prompt):
        """Queues `prompt`, waits until it finished, returns ({node_id: [png bytes]}, events)."""
        prompt_id = self.queue_prompt(prompt)["prompt_id"]
        events = []
        while True:
            out = ws.recv()
            if isinstance(out, str):
                message = json.loads(out)
                events.append(message["type"])
                if message["type"] == "executing":
                    data = message["data"]
                    if data["node"] is None and data["prompt_id"] == prompt_id:
                        break
                if message["type"] == "execution_error" and message["data"]["prompt_id"] == prompt_id:
                    raise RuntimeError(f"execution error: {message['data']['exception_message']}")
            else:
                events.append("binary")
        history = self.get_history(prompt_id)[prompt_id]
        images = {}
        for node_id, node_output in history["outputs"].items():
            images[node_id] = [
                self.get_image(image["filename"], image["subfolder"], image["type"])
                for image in node_output.get("images", [])
            ]
        return prompt_id, history, images, events


def png_size(data):
    """(width, height) from a PNG's IHDR chunk."""
    if data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        raise ValueError("not a PNG")
    return struct.unpack(">II", data[16:24])


def tiny_png(width, height, rgb):
    """An RGB PNG of one colour (stdlib only)."""
    row = b"\x00" + bytes(rgb) * width
    raw = row * height

    def chunk(kind, payload):
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def check(condition, message):
    if not condition:
        raise AssertionError(message)


def run(client):
    info = json.loads(client.request("/object_info/SaveImage"))
    check(info["SaveImage"]["output_node"] is True, "SaveImage is an output node")
    ws = client.connect()
    first = json.loads(ws.recv())
    check(first["type"] == "status" and first["data"]["sid"] == client.client_id, f"status with our sid: {first}")

    prompt = {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 40, "height": 24, "batch_size": 2, "color": 0x3366CC}},
        "9": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "pyclient/empty"}},
    }
    prompt_id, history, images, events = client.get_images(ws, prompt)
    check(history["status"]["status_str"] == "success", f"status {history['status']}")
    check([png_size(i) for i in images["9"]] == [(40, 24), (40, 24)], "two 40x24 PNGs")
    check(events.index("execution_start") < events.index("executed") < events.index("execution_success"), f"event order {events}")

    uploaded = client.upload_image("pyclient_in.png", tiny_png(13, 7, (200, 10, 10)))
    check(uploaded["type"] == "input", f"upload answer {uploaded}")
    loaded = {
        "1": {"class_type": "LoadImage", "inputs": {"image": uploaded["name"]}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "pyclient/loaded"}},
    }
    _, _, loaded_images, _ = client.get_images(ws, loaded)
    check([png_size(i) for i in loaded_images["2"]] == [(13, 7)], "the uploaded image round-trips")

    try:
        client.request("/prompt", json.dumps({"prompt": {"1": {"class_type": "NoSuchNode", "inputs": {}}}}).encode())
        raise AssertionError("an unknown node is refused")
    except urllib.error.HTTPError as e:
        body = json.loads(e.read())
        check(e.code == 400 and body["error"]["type"] == "missing_node_type", f"error answer {body}")
    ws.close()
    return {
        "prompt_id": prompt_id,
        "files": [i["filename"] for i in history["outputs"]["9"]["images"]],
        "subfolder": history["outputs"]["9"]["images"][0]["subfolder"],
        "events": len(events),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", required=True, help="host:port")
    parser.add_argument("--prefix", default="", help="workspace path, e.g. /user001")
    parser.add_argument("--user")
    parser.add_argument("--password")
    args = parser.parse_args()
    client = Client(args.server, args.prefix, args.user, args.password)
    try:
        summary = run(client)
    except Exception as e:  # report any failure as a failed run
        print(f"comfy_client: FAILED: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
