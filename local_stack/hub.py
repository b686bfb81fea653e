"""Stand-in for the Hugging Face Hub: the two endpoints a weight-staging Job's download uses,
serving local model directories, on 127.0.0.1 (nothing here can reach the hub).

huggingface_hub is pointed at it with ``HF_ENDPOINT``. It answers, as the hub does
(huggingface_hub's ``HfApi.model_info`` and ``file_download.get_hf_file_metadata``):

- ``GET /api/models/<repo>/revision/<revision>``: the repo's commit and its files with sizes;
- ``HEAD|GET /<repo>/resolve/<revision>/<file>``: the file, with ``X-Repo-Commit`` and ``ETag``.

Any revision of a served repo resolves to one fixed commit. Files are served plainly (no Xet).
"""

from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse

COMMIT = "0" * 40


def serve(repos: dict[str, Path]) -> tuple[ThreadingHTTPServer, str]:
    """Serve ``{"org/name": directory}`` from a thread; the server and its URL (HF_ENDPOINT)."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def _file(self) -> Path | None:
            path = unquote(urlparse(self.path).path)
            for repo, root in repos.items():
                prefix = f"/{repo}/resolve/"
                if path.startswith(prefix):
                    name = path[len(prefix):].split("/", 1)[1]
                    target = root / name
                    return target if target.is_file() and target.resolve().is_relative_to(root.resolve()) else None
            return None

        def _send_file(self, body: bool) -> None:
            target = self._file()
            if target is None:
                self.send_error(404)
                return
            data = target.read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("X-Repo-Commit", COMMIT)
            self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
            self.end_headers()
            if body:
                self.wfile.write(data)

        def do_HEAD(self) -> None:  # noqa: N802 (http.server's name)
            self._send_file(body=False)

        def do_GET(self) -> None:  # noqa: N802
            path = unquote(urlparse(self.path).path)
            for repo, root in repos.items():
                if path.startswith(f"/api/models/{repo}/revision/"):
                    siblings = [{"rfilename": str(f.relative_to(root)), "size": f.stat().st_size}
                                for f in sorted(root.rglob("*")) if f.is_file()]
                    data = json.dumps({"id": repo, "modelId": repo, "sha": COMMIT, "siblings": siblings}).encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
            self._send_file(body=True)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_port}"
