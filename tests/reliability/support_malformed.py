"""Malformed requests generated from the app's own OpenAPI schema, for the reliability suite
(``tests/reliability/test_malformed_requests.py``, small) and ``benchmarks/reliability.py``
(full scale). A seeded :class:`random.Random` picks a route (every path and method of
``app.openapi()``, plus the routes kept out of the schema), builds a plausible request from the
route's schema and then breaks it: wrong JSON types, missing and extra keys, huge, negative and
non-finite numbers, deep nesting, invalid UTF-8, lone surrogates, empty bodies, wrong content
types, long strings and odd path parameters. The same seed gives the same requests, so a failure
found at scale is reproduced by its index.

:func:`check` says what is wrong with one answer: a 5xx, or a 4xx whose body is not the OpenAI
error object ``{"error": {"message", "type", "param", "code"}}``."""

from __future__ import annotations

import copy
import json
import random
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

# Routes the schema leaves out (docs, studio): probed with the same path mutations.
EXTRA_ROUTES = [("get", "/"), ("get", "/health"), ("get", "/studio/static/{path}"), ("get", "/docs")]

ODD_IDS = [
    "..", "../../etc/passwd", "..\\..\\x.jsonl", "%2e%2e%2f%2e%2e%2f", "a\x00b", "\x00", "/", "//", " ",
    "ü🙂日本", "\u202e\u0000", "\ud800", "\udfff", "ft:tiny-random:x:1", "file-", "ftjob-" + "0" * 40,
    "x" * 5000, "é" * 3000, "NaN", "-1", "1e309", "null", "{}", "[]", "'; DROP TABLE files;--",
    "js/api.js\x00.png", "%00", "%ff%fe", "CON", "a/../../b",
]
ODD_STRINGS = ["", " ", "\x00", "\ud800", "\udfff", "a\ud800b", "ü🙂", "\u202e", "x" * 100_000,
               "\n" * 1000, "<script>alert(1)</script>", "null", "1e999", "tiny-random\x00"]
ODD_NUMBERS = [0, -1, -(10 ** 30), 10 ** 30, 2 ** 63, 2 ** 64 + 1, 1e308, -1e308, 1e-320, 0.5, -0.0,
               float("nan"), float("inf"), float("-inf"), True, False]
CONTENT_TYPES = ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data",
                 "multipart/form-data; boundary=", "application/json; charset=latin-1", "application/xml",
                 "", "application/json\x7f", "image/png"]


def valid_bodies(known: dict[str, str]) -> dict[str, dict]:
    """A body each JSON route accepts, naming the things in ``known``."""
    model = known.get("model", "tiny-random")
    return {
        "/v1/chat/completions": {"model": model, "max_tokens": 2, "temperature": 0.5, "stop": ["\n\n"],
                                 "messages": [{"role": "system", "content": "Be brief."},
                                              {"role": "user", "content": "hi", "name": "ann"}]},
        "/v1/fine_tuning/jobs": {"model": model, "training_file": known.get("training_file", "file-x"),
                                 "suffix": "probe", "metadata": {"team": "a"},
                                 "hyperparameters": {"n_epochs": 1, "batch_size": 1}},
        "/v1/deployments": {"name": "probe-2", "model": model, "blocklist": ["secret"], "tpm": 1000},
    }


@dataclass
class Request:
    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    content: bytes | None = None
    mutation: str = ""

    def describe(self) -> str:
        body = (self.content or b"")[:160]
        return f"{self.method} {self.url[:160]} [{self.mutation}] {self.headers} {body!r}"


class Generator:
    """Seeded malformed requests for one app schema. ``known`` maps a path parameter's name
    (``file_id``, ``job_id``, ``model_id``, ``name``) or a body key (``model``, ``training_file``)
    to an existing value, so some requests get past the lookups and reach deeper code."""

    def __init__(self, schema: dict, seed: int = 0, known: dict[str, str] | None = None) -> None:
        self.schema = schema
        self.rng = random.Random(seed)
        self.known = known or {}
        self.bodies = valid_bodies(self.known)
        self.routes = [(m, p, op) for p, ops in schema["paths"].items() for m, op in ops.items()]
        self.routes += [(m, p, {}) for m, p in EXTRA_ROUTES]

    def __iter__(self):
        while True:
            yield self.one()

    # -- a plausible request from the schema

    def _resolve(self, s: dict) -> dict:
        while "$ref" in s:
            s = self.schema["components"]["schemas"][s["$ref"].rsplit("/", 1)[1]]
        return s

    def _plausible(self, s: dict, key: str = "", depth: int = 0) -> Any:
        s = self._resolve(s)
        if key in self.known and self.rng.random() < 0.8:
            return self.known[key]
        options = s.get("anyOf") or s.get("oneOf")
        if options:
            concrete = [o for o in options if self._resolve(o).get("type") != "null"] or options
            return self._plausible(self.rng.choice(concrete), key, depth)
        if "enum" in s:
            return self.rng.choice(s["enum"])
        if "const" in s:
            return s["const"]
        kind = s.get("type")
        if kind == "object" or "properties" in s:
            props = s.get("properties", {})
            required = set(s.get("required", []))
            return {k: self._plausible(v, k, depth + 1) for k, v in props.items()
                    if k in required or (depth < 3 and self.rng.random() < 0.3)}
        if kind == "array":
            return [self._plausible(s.get("items", {}), key, depth + 1) for _ in range(self.rng.randint(1, 2))]
        if kind == "integer":
            return 2 if key in ("max_tokens", "max_completion_tokens") else self.rng.randint(1, 4)
        if kind == "number":
            return round(self.rng.random(), 2)
        if kind == "boolean":
            return self.rng.random() < 0.5
        if key == "role":
            return "user"
        return self.rng.choice(["hi", "tiny-random", "q_proj", "x"])

    # -- mutations

    def _odd_value(self, depth: int = 0) -> Any:
        r = self.rng.random()
        if r < 0.3:
            return self.rng.choice(ODD_NUMBERS)
        if r < 0.55:
            return self.rng.choice(ODD_STRINGS)
        if r < 0.7:
            return self.rng.choice([None, [], {}, [None], {"": None}, ["x"], [1, "a", None]])
        if r < 0.8:
            return self._nested(self.rng.choice([50, 500, 5000]))
        if r < 0.9 and depth < 2:
            return {self.rng.choice(ODD_STRINGS)[:50]: self._odd_value(depth + 1)}
        return [self._odd_value(depth + 1) for _ in range(3)] if depth < 2 else "x"

    def _nested(self, n: int) -> Any:
        value: Any = "deep"
        for _ in range(n):
            value = [value] if self.rng.random() < 0.5 else {"a": value}
        return value

    def _mutate_tree(self, obj: Any) -> tuple[Any, str]:
        """Replace, drop or add one key somewhere in ``obj``."""
        paths: list[tuple[Any, Any]] = []

        def walk(node: Any, depth: int) -> None:
            if depth > 20:  # a value already nested deep by an earlier mutation
                return
            if isinstance(node, dict):
                for k, v in node.items():
                    paths.append((node, k))
                    walk(v, depth + 1)
            elif isinstance(node, list):
                for i, v in enumerate(node):
                    paths.append((node, i))
                    walk(v, depth + 1)

        walk(obj, 0)
        if not paths:
            return self._odd_value(), "odd-root"
        parent, key = self.rng.choice(paths)
        action = self.rng.random()
        if isinstance(parent[key], str) and action < 0.4:
            value = parent[key]
            cut = self.rng.randint(0, len(value))
            parent[key] = value[:cut] + self.rng.choice(["\ud800", "\udfff", "\x00", "\ufffe"]) + value[cut:]
            return obj, f"odd-char:{key}"
        if action < 0.65:
            parent[key] = self._odd_value()
            return obj, f"value:{key}"
        if action < 0.8 and isinstance(parent, dict):
            del parent[key]
            return obj, f"missing:{key}"
        if isinstance(parent, dict):
            parent[self.rng.choice(["extra", "__proto__", "\ud800", "", "x" * 300])] = self._odd_value()
            return obj, "extra-key"
        parent.append(self._odd_value())
        return obj, "extra-item"

    def _encode(self, obj: Any) -> bytes:
        """JSON text as a client might send it: usually ASCII escapes (a lone surrogate becomes
        ``"\\ud800"``), sometimes raw UTF-8 where a lone surrogate is invalid UTF-8."""
        try:
            text = json.dumps(obj, allow_nan=True, ensure_ascii=self.rng.random() < 0.7)
        except (RecursionError, ValueError):
            text = json.dumps(self._nested(200))
        return text.encode("utf-8", "surrogatepass")

    def _body(self, op: dict, path: str, method: str) -> tuple[bytes | None, dict[str, str], str]:
        content = op.get("requestBody", {}).get("content", {})
        if path == "/v1/files" and method == "post":
            return self._multipart()
        if "application/json" not in content:
            if self.rng.random() < 0.8:
                return None, {}, "no-body"
            return self._encode(self._odd_value()), {"content-type": "application/json"}, "unexpected-body"
        # a valid body broken in one place reaches the deepest code; one made from the schema
        # alone is refused early more often, but covers every field
        if path in self.bodies and self.rng.random() < 0.6:
            base = copy.deepcopy(self.bodies[path])
        else:
            base = self._plausible(content["application/json"]["schema"])
        r = self.rng.random()
        headers = {"content-type": "application/json"}
        if r < 0.55:
            for _ in range(self.rng.choice([1, 1, 1, 2, 3])):
                base, what = self._mutate_tree(base)
            return self._encode(base), headers, what
        if r < 0.62:
            return b"", headers, "empty-body"
        if r < 0.7:
            raw = bytearray(self._encode(base))
            raw[self.rng.randrange(len(raw))] = self.rng.choice([0x80, 0xC3, 0xFF, 0xED, 0x00])
            return bytes(raw), headers, "invalid-utf8"
        if r < 0.76:
            text = self._encode(base).decode("utf-8", "surrogatepass")
            cut = self.rng.randrange(len(text))
            return text[:cut].encode("utf-8", "surrogatepass"), headers, "truncated-json"
        if r < 0.84:
            return (self._encode(base), {"content-type": self.rng.choice(CONTENT_TYPES)}, "content-type")
        if r < 0.9:
            raw = self.rng.choice([b"NaN", b"[1,2]", b'"x"', b"null", b"\xef\xbb\xbf{}", b"{" * 100_000,
                                   b'{"a":1,"a":2}', b"[" * 3000 + b"]" * 3000, b'{"model": "\\ud800"}'])
            return raw, headers, "odd-json"
        return self._encode(self._nested(self.rng.choice([100, 1000, 3000]))), headers, "deep-nesting"

    def _multipart(self) -> tuple[bytes | None, dict[str, str], str]:
        boundary = "tunerybound"
        name = self.rng.choice(["train.jsonl", "..\\..\\x.jsonl", "a\x00b.jsonl", "ü.jsonl", "x" * 2000, ""])
        purpose = self.rng.choice(["fine-tune", "", "\ud800", "assistants", "x" * 1000])
        data = self.rng.choice([b'{"messages": [{"role": "user", "content": "\\ud800"}]}\n', b"\xff\xfe\x00",
                                b"", b"not json\n", b'{"messages": []}\n' * 10, b"\x00" * 1000])
        r = self.rng.random()
        parts = (f'--{boundary}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\n{purpose}\r\n'
                 f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
                 f"Content-Type: application/octet-stream\r\n\r\n").encode("utf-8", "surrogatepass")
        body = parts + data + f"\r\n--{boundary}--\r\n".encode()
        headers = {"content-type": f"multipart/form-data; boundary={boundary}"}
        if r < 0.2:
            return body[: self.rng.randrange(len(body))], headers, "multipart-truncated"
        if r < 0.35:
            return body, {"content-type": self.rng.choice(CONTENT_TYPES)}, "multipart-content-type"
        if r < 0.45:
            return self._encode(self._odd_value()), {"content-type": "application/json"}, "multipart-json"
        return body, headers, "multipart"

    def _path(self, template: str, op: dict, method: str) -> str:
        url = template
        for part in [p for p in template.split("/") if p.startswith("{")]:
            name = part[1:-1]
            if name in self.known and method != "delete" and self.rng.random() < 0.3:
                value = self.known[name]
            else:
                value = self.rng.choice(ODD_IDS)
            # percent-encoded, so the client sends it as is (it would normalise a raw "..")
            safe = "/" if self.rng.random() < 0.3 else ""
            url = url.replace(part, quote(value.encode("utf-8", "surrogatepass"), safe=safe))
        query = []
        for p in op.get("parameters", []):
            if p["in"] == "query" and self.rng.random() < 0.6:
                value = self._odd_value() if self.rng.random() < 0.7 else self._plausible(p.get("schema", {}), p["name"])
                raw = value.encode("utf-8", "surrogatepass") if isinstance(value, str) else self._encode(value)
                raw = raw[:4000]  # the client refuses a URL over 64 KiB
                query.append(f"{p['name']}={quote(raw, safe='')}")
        if self.rng.random() < 0.05:
            query.append("=&&==%zz&" + "a" * 3000)
        return url + ("?" + "&".join(query) if query else "")

    def one(self) -> Request:
        # half the requests go to the routes that take a body: that is where input goes deepest
        with_body = [r for r in self.routes if r[2].get("requestBody") or r[:2] == ("post", "/v1/files")]
        method, template, op = self.rng.choice(with_body if self.rng.random() < 0.5 else self.routes)
        url = self._path(template, op, method)
        content, headers, what = self._body(op, template, method)
        if self.rng.random() < 0.03:
            method = self.rng.choice(["put", "patch", "options", "head"])
        return Request(method.upper(), url, headers, content, what)


def check(status: int, headers: Any, body: bytes) -> str | None:
    """What is wrong with one answer, or None: a 5xx, or an error status whose body is not the
    OpenAI error object."""
    if status >= 500:
        return f"HTTP {status}"
    if status < 400:
        return None
    try:
        err = json.loads(body)["error"]
    except (ValueError, KeyError, TypeError):
        return f"HTTP {status} without an OpenAI error body: {body[:200]!r}"
    if not isinstance(err, dict) or set(err) != {"message", "type", "param", "code"} or not err["message"]:
        return f"HTTP {status} with a malformed error object: {body[:200]!r}"
    return None


@dataclass
class Outcome:
    by_status: dict[int, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    @property
    def server_errors(self) -> int:
        return sum(n for s, n in self.by_status.items() if s >= 500)


def known_values(client: Any, model: str = "tiny-random") -> dict[str, str]:
    """Create one file, job and deployment through ``client`` (an httpx or test client), so some
    generated requests name things that exist."""
    line = json.dumps({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]})
    r = client.post("/v1/files", files={"file": ("train.jsonl", (line + "\n") * 12)}, data={"purpose": "fine-tune"})
    known = {"model": model, "model_id": model}
    if r.status_code == 200:
        known["file_id"] = known["training_file"] = r.json()["id"]
        r = client.post("/v1/fine_tuning/jobs", json={"model": model, "training_file": known["file_id"]})
        if r.status_code == 200:
            known["job_id"] = r.json()["id"]
    r = client.post("/v1/deployments", json={"name": "probe", "model": model})
    if r.status_code < 300:
        known["name"] = "probe"
    return known


def probe(client: Any, generator: Generator, n: int) -> Outcome:
    """Send ``n`` generated requests through ``client`` and check every answer."""
    out = Outcome()
    for i in range(n):
        req = generator.one()
        r = client.request(req.method, req.url, headers=req.headers, content=req.content)
        out.by_status[r.status_code] = out.by_status.get(r.status_code, 0) + 1
        problem = check(r.status_code, r.headers, b"" if req.method == "HEAD" else r.content)
        if problem and not (req.method == "HEAD" and r.status_code < 500):
            out.failures.append(f"#{i} {problem}: {req.describe()}")
    return out
