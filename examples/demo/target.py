"""A demo target for the compose stack: GET /health answers 200 "ok" until POST /break, and
200 again after POST /fix (what medic's demo chain calls)."""
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

state = {"healthy": True}


class Handler(BaseHTTPRequestHandler):
    def _answer(self, code, body):
        data = body.encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == "/health":
            if state["healthy"]:
                self._answer(200, "ok\n")
            else:
                self._answer(503, "broken\n")
        else:
            self._answer(404, "not found\n")

    def do_POST(self):
        if self.path in ("/break", "/fix"):
            state["healthy"] = self.path == "/fix"
            self._answer(200, "done\n")
        else:
            self._answer(404, "not found\n")


ThreadingHTTPServer(("0.0.0.0", 8080), Handler).serve_forever()
