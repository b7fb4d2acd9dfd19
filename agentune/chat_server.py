"""A local OpenAI-compatible chat-completions server for tests, benchmarks and offline dry runs (stdlib only):
scripted replies, injected failures and a fixed answer delay, on 127.0.0.1 at a free port.

    with ChatServer(replies=["Action: ..."], faults=[429, 500, "timeout"], delay_s=0.2) as server:
        agent = make_agent("openai", model="test", base_url=server.url)

Each request first takes the next fault, if any is left: 429 / 500 (an error status), "timeout"
(answers only after hang_s, past the client's timeout), "disconnect" (closes the connection
without answering) or "context" (the 400 context_length_exceeded error OpenAI sends). Otherwise,
after delay_s, it answers with the next scripted reply, or reply_fn(messages) when the script is
used up, or "OK". server.requests holds every request body received.
"""
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CONTEXT_ERROR = {"error": {
    "message": "This model's maximum context length is 2048 tokens. However, your messages "
               "resulted in 4096 tokens. Please reduce the length of the messages.",
    "type": "invalid_request_error", "param": "messages", "code": "context_length_exceeded"}}


class ChatServer:
    def __init__(self, replies=(), reply_fn=None, faults=(), delay_s=0.0, hang_s=5.0):
        self.replies, self.faults = list(replies), list(faults)
        self.reply_fn, self.delay_s, self.hang_s = reply_fn, delay_s, hang_s
        self.requests = []
        self.lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = None

    def start(self):
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        return self

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def _next(self, messages):
        """(fault, reply) for one request."""
        with self.lock:
            if self.faults:
                return self.faults.pop(0), None
            if self.replies:
                return None, self.replies.pop(0)
        return None, self.reply_fn(messages) if self.reply_fn else "OK"

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as real servers do

            def log_message(self, *args):
                pass

            def send_json(self, status, body):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    server.requests.append(body)
                if self.path != "/v1/chat/completions":
                    return self.send_json(404, {"error": {"message": f"no route {self.path}"}})
                fault, content = server._next(body["messages"])
                try:
                    if fault in (429, 500):
                        return self.send_json(fault, {"error": {"message": f"injected {fault}",
                                                                "type": "server_error", "code": None}})
                    if fault == "context":
                        return self.send_json(400, CONTEXT_ERROR)
                    if fault == "disconnect":
                        self.close_connection = True
                        return
                    if fault == "timeout":
                        time.sleep(server.hang_s)
                        content = "too late"  # the client has given up by now
                    elif fault is not None:
                        raise ValueError(f"unknown fault {fault!r}")
                    else:
                        time.sleep(server.delay_s)
                    prompt_tokens = sum(len(m["content"].split()) for m in body["messages"])
                    self.send_json(200, {
                        "id": "chatcmpl-test", "object": "chat.completion", "created": int(time.time()),
                        "model": body.get("model", "test"),
                        "choices": [{"index": 0, "finish_reason": "stop",
                                     "message": {"role": "assistant", "content": content}}],
                        "usage": {"prompt_tokens": prompt_tokens,
                                  "completion_tokens": len(content.split()),
                                  "total_tokens": prompt_tokens + len(content.split())}})
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout): nothing to answer

        return Handler
