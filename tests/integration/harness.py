"""Shared plumbing for tollgate's integration tests: free ports, real
upstream processes (FastAPI under uvicorn, raw socket peers), the real
tollgate binary on a generated config, and cleanup. Loopback only; every
wait is bounded."""
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
APPS = os.path.join(HERE, "apps")
PYTHON = "/usr/bin/python3"
BIN = os.environ.get("TOLLGATE_BIN", os.path.join(HERE, "..", "..", "build", "tollgate"))


# Ports for servers come from a slice of 10000-29999 chosen by the test
# process's pid, walked in order: below the kernel's ephemeral range (so no
# client socket holds them), and apart from the slices of the other test
# files ctest runs in parallel. A number the kernel hands out for bind(0)
# is free only until someone else asks; two parallel tests could then
# both get it, and one gateway would fail to bind.
_PORT_BASE, _PORT_SPAN, _PORT_SLICE = 10000, 20000, 100
_next_port = [None]


def free_port():
    if _next_port[0] is None:
        _next_port[0] = (os.getpid() % (_PORT_SPAN // _PORT_SLICE)) * _PORT_SLICE
    for _ in range(_PORT_SPAN):
        port = _PORT_BASE + _next_port[0]
        _next_port[0] = (_next_port[0] + 1) % _PORT_SPAN
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port")


_reserved = []  # sockets held for the test process's life


def dead_port():
    """A loopback port that refuses connections for as long as the test
    runs: bound but never listening, so no other test started in parallel
    can take it (a port from free_port() is free only until someone binds
    it)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    _reserved.append(s)
    return s.getsockname()[1]


def wait_port(port, timeout=15.0, proc=None, host="127.0.0.1"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {port} after {timeout}s")


_PROCS = []  # every child started: main() stops what a test left (a setUpClass that failed half-way)


class Proc:
    """A child process whose output goes to a log file we can read."""

    def __init__(self, argv, env=None, name="proc"):
        self.log = tempfile.NamedTemporaryFile(prefix=f"tg-{name}-", suffix=".log", delete=False)
        self.p = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT, env=env,
                                  stdin=subprocess.DEVNULL)
        self.name = name
        _PROCS.append(self)

    def output(self):
        with open(self.log.name, "r", errors="replace") as f:
            return f.read()

    def stop(self, sig=signal.SIGTERM, timeout=15):
        if self.p.poll() is None:
            self.p.send_signal(sig)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(5)
        return self.p.returncode

    @property
    def pid(self):
        return self.p.pid


def start_app(name="app", port=None, extra=(), server="uvicorn", env_extra=None, host="127.0.0.1"):
    """apps/app.py under uvicorn (HTTP/1.1), or under hypercorn, which also
    speaks HTTP/2 in cleartext (h2c) and WebSockets over it (RFC 8441).
    host: any loopback address (127.0.0.2, ::1) the test gives it."""
    port = port or free_port()
    env = dict(os.environ, APP_NAME=name, PYTHONDONTWRITEBYTECODE="1", PYTHONPATH=APPS, **(env_extra or {}))
    if server == "hypercorn":
        bind = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        cmd = [PYTHON, "-m", "hypercorn", "--bind", bind, "--log-level", "warning", *extra, "app:app"]
    else:
        cmd = [PYTHON, "-m", "uvicorn", "app:app", "--app-dir", APPS, "--host", host,
               "--port", str(port), "--log-level", "warning", "--no-access-log", *extra]
    proc = Proc(cmd, env=env, name=name)
    wait_port(port, proc=proc.p, host=host)
    proc.port = port
    return proc


def start_idp(name="idp", port=None, tls=None):
    """apps/idp.py (an OpenID Connect provider whose keys the test sets)
    under uvicorn; tls: {"cert": PEM, "key": PEM} to serve HTTPS."""
    port = port or free_port()
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1", PYTHONPATH=APPS)
    cmd = [PYTHON, "-m", "uvicorn", "idp:app", "--app-dir", APPS, "--host", "127.0.0.1", "--port", str(port),
           "--log-level", "warning", "--no-access-log"]
    if tls:
        cmd += ["--ssl-certfile", tls["cert"], "--ssl-keyfile", tls["key"]]
    proc = Proc(cmd, env=env, name=name)
    wait_port(port, proc=proc.p)
    proc.port = port
    return proc


class Gate:
    """A gate on a test app (apps/app.py /hold): requests to gate.path(tag)
    stay in flight until release(); held() and arrivals() read what the
    app saw, so a test synchronises on the upstream's state, not on time."""
    _n = [0]

    def __init__(self, app_port, name=None):
        Gate._n[0] += 1
        self.app_port = app_port
        self.name = name or f"g{os.getpid()}-{Gate._n[0]}"

    def path(self, tag=""):
        return f"/hold?gate={self.name}&tag={tag}"

    def _get(self, what):
        import urllib.request
        with urllib.request.urlopen(f"http://127.0.0.1:{self.app_port}/{what}?gate={self.name}", timeout=10) as r:
            return json.loads(r.read())

    def held(self):
        return self._get("gate")["held"]

    def arrivals(self):
        return self._get("gate")["arrivals"]

    def wait_held(self, n, timeout=20.0):
        return wait_until(lambda: self.held() >= n, timeout, f"{n} requests held at gate {self.name}")

    def release(self):
        self._get("release")


class ScriptedServer:
    """A raw TCP upstream on loopback whose behaviour is a function: each
    accepted connection is handed to handler(conn) in its own thread, and
    closed when the handler returns."""

    def __init__(self, handler, backlog=64):
        self.handler = handler
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(backlog)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.stopped = False
        threading.Thread(target=self.run, daemon=True).start()

    def run(self):
        self.sock.settimeout(0.2)
        while not self.stopped:
            try:
                c, _ = self.sock.accept()
            except OSError:
                continue
            self.accepted += 1
            threading.Thread(target=self.serve, args=(c,), daemon=True).start()

    def serve(self, c):
        try:
            self.handler(c)
        except OSError:
            pass
        finally:
            c.close()

    def stop(self):
        self.stopped = True
        self.sock.close()


class RecordingUpstream(ScriptedServer):
    """Records every byte it receives and answers each complete request
    (Content-Length or chunked body) with 200 "ok"."""

    def __init__(self):
        self.lock = threading.Lock()
        self.raw = b""
        self.complete = []
        super().__init__(self.handle)

    def handle(self, c):
        buf = b""
        c.settimeout(10)
        while True:
            try:
                b = c.recv(65536)
            except OSError:
                return
            if not b:
                return
            with self.lock:
                self.raw += b
            buf += b
            while b"\r\n\r\n" in buf:
                head, _, rest = buf.partition(b"\r\n\r\n")
                lower = head.lower()
                if b"transfer-encoding: chunked" in lower:
                    end = rest.find(b"0\r\n\r\n")
                    if end < 0 or (end > 0 and rest[end - 2:end] != b"\r\n"):
                        break
                    body, buf = rest[:end + 5], rest[end + 5:]
                else:
                    n = 0
                    for line in head.split(b"\r\n"):
                        if line.lower().startswith(b"content-length:"):
                            n = int(line.split(b":")[1])
                    if len(rest) < n:
                        break
                    body, buf = rest[:n], rest[n:]
                with self.lock:
                    self.complete.append(head + b"\r\n\r\n" + body)
                c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")


def read_request(c):
    """Reads one request (head + Content-Length body) from a socket;
    returns (head bytes, body bytes), or (b"", b"") if the peer closed."""
    data = b""
    while b"\r\n\r\n" not in data:
        b = c.recv(65536)
        if not b:
            return b"", b""
        data += b
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    while len(body) < length:
        b = c.recv(1 << 20)
        if not b:
            break
        body += b
    return head, body


def read_response(f):
    """One Content-Length framed response from a socket's file
    (sock.makefile("rb")): (status, body)."""
    status = f.readline()
    length = 0
    while True:
        line = f.readline()
        if line in (b"\r\n", b""):
            break
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    return int(status.split()[1]), f.read(length)


def reset_handler(c):
    """Reads whatever arrives, then resets the connection (SO_LINGER 0)."""
    import struct
    c.recv(65536)
    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


class BlackHole:
    """A listener whose accept queue is full, so the kernel drops new SYNs:
    a connect to it times out (a real connect timeout on loopback)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(0)
        self.port = self.sock.getsockname()[1]
        self.fill = []
        for _ in range(3):
            c = socket.socket()
            c.setblocking(False)
            try:
                c.connect(("127.0.0.1", self.port))
            except BlockingIOError:
                pass
            self.fill.append(c)
        time.sleep(0.1)

    def stop(self):
        for c in self.fill:
            c.close()
        self.sock.close()


def rss_kib(pid):
    """Resident set size of a process, in KiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def metric(text, name, **labels):
    """The value of one sample in a Prometheus text exposition; labels
    must be given in the order the gateway writes them."""
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pat = re.escape(name) + (r"\{" + re.escape(want) + r"\}" if labels else "") + r" (\S+)$"
    for line in text.splitlines():
        m = re.match(pat, line)
        if m:
            return float(m.group(1))
    raise AssertionError(f"no sample {name}{{{want}}}")


def yaml_list(items):
    return "[" + ", ".join(items) + "]"


SCHEMA = os.path.join(HERE, "..", "..", "docs", "tollgate.schema.json")
_validator = []


def yaml_load(text):
    """YAML as tollgate (libyaml) and editors (YAML 1.2) read it: only
    true/false are booleans, so `on:` (retry) stays a key named "on"."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.yaml_implicit_resolvers = {
        k: [(t, r) for t, r in v if t != "tag:yaml.org,2002:bool"]
        for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}
    Loader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                                 list("tTfF"))
    return yaml.load(text, Loader=Loader)


def schema_problems(config_text):
    """What docs/tollgate.schema.json (the binary's --schema, checked by
    test_schema.py) finds wrong with a config: [] when it validates."""
    import jsonschema
    import yaml
    if not _validator:
        with open(SCHEMA) as f:
            _validator.append(jsonschema.Draft202012Validator(json.load(f)))
    try:
        doc = yaml_load(config_text)
    except yaml.YAMLError:
        return []  # tollgate refuses it as well; that is the test's business
    return [f"{'/'.join(map(str, e.path))}: {e.message[:300]}" for e in _validator[0].iter_errors(doc)]


_LIVE_GATEWAYS = []  # every Gateway started and not stopped: main() fails the file for any left running


class Gateway:
    """The real tollgate binary on a config written to a temp file. A
    config the gateway runs on must also validate against the schema
    (checked by GatewayTest.finish)."""

    def __init__(self, config_text, port=None, log_level=None, env_extra=None, args=(), files=None, prefix=(),
                 binary=None):
        log_level = log_level or os.environ.get("TOLLGATE_LOG_LEVEL", "info")
        self.dir = tempfile.mkdtemp(prefix="tg-test-")
        for name, data in (files or {}).items():  # beside the config, for relative paths
            with open(os.path.join(self.dir, name), "wb") as f:
                f.write(data)
        self.path = os.path.join(self.dir, "tollgate.yaml")
        with open(self.path, "w") as f:
            f.write(config_text)
        self.schema_problems = schema_problems(config_text)
        self.port = port
        env = dict(os.environ, **(env_extra or {}))
        self.proc = Proc([*prefix, binary or BIN, "-c", self.path, "-l", log_level, *args], env=env, name="tollgate")
        _LIVE_GATEWAYS.append(self)
        if port:
            wait_port(port, proc=self.proc.p)

    def stop(self):
        if self in _LIVE_GATEWAYS:
            _LIVE_GATEWAYS.remove(self)
        rc = self.proc.stop()
        out = self.proc.output()
        return rc, out

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"


SANITIZER_MARKERS = ("AddressSanitizer", "LeakSanitizer", "runtime error:")


def assert_clean_exit(test, gw):
    """Stops a gateway a test started itself: it must exit 0 with no
    sanitizer report."""
    rc, out = gw.stop()
    test.assertEqual(rc, 0, out[-3000:])
    for marker in SANITIZER_MARKERS:
        test.assertNotIn(marker, out, out[-3000:])
    test.assertEqual(gw.schema_problems, [])


def simple_config(port, endpoints, extra_routes="", workers=2, limits="", route_extra="", cluster_extra=""):
    return f"""
workers: {workers}
drain_timeout: 10s
{limits}
listeners:
  - name: main
    listen: 127.0.0.1:{port}
routes:
{extra_routes}
  - name: default
    cluster: app
{route_extra}
clusters:
  - name: app
    endpoints: {yaml_list(endpoints)}
{cluster_extra}
"""


def read_to_close(s):
    """Everything a socket receives until the peer closes (the socket's own
    timeout bounds each wait)."""
    out = b""
    while True:
        d = s.recv(65536)
        if not d:
            return out
        out += d


def raw_request(port, data, timeout=5.0, read_until_close=True):
    """Sends raw bytes, returns everything read until close or timeout."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(data)
        chunks = []
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                b = s.recv(65536)
            except socket.timeout:
                break
            except ConnectionResetError:
                break
            if not b:
                break
            chunks.append(b)
            if not read_until_close:
                break
        return b"".join(chunks)
    finally:
        s.close()


class GatewayTest(unittest.TestCase):
    """Base class: subclasses set up apps and a gateway in setUpClass and
    call cls.finish() in tearDownClass; a clean exit and a clean sanitizer
    report are asserted for every gateway run."""

    procs = []
    gateway = None

    @classmethod
    def start_app_and_gateway(cls, name, body, workers=1, files=None):
        """One FastAPI app (cluster `app`), one listener (`main`), and the
        test's own routes/filters (body) around them."""
        cls.app = start_app(name)
        cls.procs = [cls.app]
        cls.port = free_port()
        cfg = (f"workers: {workers}\nlisteners:\n  - name: main\n    listen: 127.0.0.1:{cls.port}\n"
               f"clusters:\n  - name: app\n    endpoints: [127.0.0.1:{cls.app.port}]\n{body}")
        cls.gateway = Gateway(cfg, port=cls.port, files=files)

    def stop_gateway(self):
        """A gateway the test started for itself (self.gateway, not the
        class's): stopped, with a clean exit asserted."""
        gw = self.__dict__.pop("gateway", None)
        if gw is not None:
            assert_clean_exit(self, gw)

    @classmethod
    def start_gateway(cls, body, workers=2):
        """A gateway with an admin listener and one listener (`main`) on
        free ports (cls.port, cls.admin), and the test's own routes and
        clusters (body)."""
        cls.port, cls.admin = free_port(), free_port()
        cls.gateway = Gateway(f"workers: {workers}\nadmin: {{ listen: 127.0.0.1:{cls.admin} }}\n"
                              f"listeners: [{{ name: main, listen: 127.0.0.1:{cls.port} }}]\n{body}", port=cls.port)

    @classmethod
    def start_with_app(cls, name, **config_kw):
        """One FastAPI app and a gateway with a single route to it."""
        cls.app = start_app(name)
        cls.procs = [cls.app]
        cls.port = free_port()
        cls.gateway = Gateway(simple_config(cls.port, [f"127.0.0.1:{cls.app.port}"], **config_kw), port=cls.port)

    @classmethod
    def tearDownClass(cls):
        cls.finish()

    @classmethod
    def finish(cls):
        problems = []
        if cls.gateway is not None:
            rc, out = cls.gateway.stop()
            if rc != 0:
                problems.append(f"tollgate exited with {rc}")
            elif cls.gateway.schema_problems:
                problems.append("tollgate ran on a config the schema refuses: " +
                                "; ".join(cls.gateway.schema_problems))
            for marker in SANITIZER_MARKERS:
                if marker in out:
                    problems.append(f"sanitizer report ({marker})")
            if problems:
                sys.stderr.write(out[-20000:])
        for p in cls.procs:
            p.stop()
        cls.procs = []
        if problems:
            raise AssertionError("; ".join(problems))


def wait_until(fn, timeout=20.0, what="the condition", interval=0.02):
    """Polls fn() until it returns a true value, which is returned; fails
    the test with `what` after timeout seconds. The bound only stops a
    test that would otherwise hang: a verdict never depends on it."""
    deadline = time.time() + timeout
    while True:
        got = fn()
        if got:
            return got
        if time.time() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what} (last: {got!r})")
        time.sleep(interval)


def scrape(admin_port, token=None):
    """The admin listener's /metrics text."""
    import urllib.request
    req = urllib.request.Request(f"http://127.0.0.1:{admin_port}/metrics",
                                 headers={"X-Tollgate-Admin": token} if token else {})
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.read().decode()


def metric_or(text, name, default=0.0, **labels):
    try:
        return metric(text, name, **labels)
    except AssertionError:
        return default


def wait_metric(admin_port, name, want, timeout=20.0, **labels):
    """Waits until a sample reaches at least `want` (absent counts as 0);
    returns its value. Synchronises a test on what the gateway did."""
    return wait_until(lambda: (lambda v: v if v >= want else None)(
        metric_or(scrape(admin_port), name, **labels)), timeout, f"{name}{labels} >= {want}")


def syn_sent_to(port):
    """How many sockets on this machine are in SYN-SENT toward 127.0.0.1:port
    (a connect the peer's full accept queue left hanging)."""
    n = 0
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            parts = line.split()
            rem, st = parts[2], parts[3]
            if st == "02" and int(rem.split(":")[1], 16) == port:
                n += 1
    return n


def syscalls_during(pid, seconds):
    """How many system calls all threads of process pid make in a window of
    `seconds` (strace -c). A count, not a time: a spinning loop makes
    thousands whatever the machine's speed, an idle one a handful."""
    out = tempfile.NamedTemporaryFile(prefix="tg-strace-", suffix=".txt", delete=False).name
    tracer = subprocess.Popen(["strace", "-f", "-c", "-o", out, "-p", str(pid)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    # attached once strace says so for every thread; then the window runs
    time.sleep(seconds)
    tracer.send_signal(signal.SIGINT)
    _, err = tracer.communicate(timeout=30)
    with open(out) as f:
        text = f.read()
    os.unlink(out)
    if "attached" not in err.decode(errors="replace"):
        raise AssertionError(f"strace did not attach: {err.decode(errors='replace')[-500:]}")
    if not text.strip():
        return 0, text  # strace writes no table when there was no call
    m = re.search(r"^\s*100\.00\s+\S+\s+\S+\s+(\d+)\s+(\d+\s+)?total$", text, re.M)
    if not m:
        raise AssertionError(f"no strace summary: {text[-2000:]}")
    return int(m.group(1)), text


class SyscallCounts:
    """strace -c on every thread of process pid for as long as the with
    block runs, entered once strace has attached to each thread; .calls
    maps a syscall's name to how many times it was made. Counts, not
    times: the verdicts built on them do not move with the machine's load."""

    def __init__(self, pid):
        self.pid = pid
        self.calls = {}

    def __enter__(self):
        self.out = tempfile.NamedTemporaryFile(prefix="tg-strace-", suffix=".txt", delete=False).name
        self.err = tempfile.TemporaryFile()
        self.tracer = subprocess.Popen(["strace", "-f", "-c", "-o", self.out, "-p", str(self.pid)],
                                       stdout=subprocess.DEVNULL, stderr=self.err)

        def attached():  # "Process N attached with T threads": all of them
            self.err.seek(0)
            return b"attached" in self.err.read()
        wait_until(attached, timeout=20, what="strace attached")
        return self

    def __exit__(self, *exc):
        self.tracer.send_signal(signal.SIGINT)
        self.tracer.wait(timeout=30)
        with open(self.out) as f:
            text = f.read()
        os.unlink(self.out)
        for line in text.splitlines():
            m = re.match(r"^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)$", line)
            if m and m.group(2) != "total":
                self.calls[m.group(2)] = int(m.group(1))
        return False


def accept_queue(port):
    """Connections waiting in the accept queues of the listening sockets on
    port (the rx_queue of its LISTEN entries, summed: one per worker with
    SO_REUSEPORT), or None if none listens."""
    total = None
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            parts = line.split()
            if parts[3] == "0A" and int(parts[1].split(":")[1], 16) == port:
                total = (total or 0) + int(parts[4].split(":")[1], 16)
    return total


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   timeout=30)


def make_key(d, name):
    openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", f"{name}.key", cwd=d)


def make_ca(d, name, cn, signer=None):
    """A CA in directory d: self-signed, or an intermediate signed by signer."""
    make_key(d, name)
    if signer is None:
        openssl("req", "-x509", "-new", "-key", f"{name}.key", "-out", f"{name}.crt", "-days", "30",
                "-subj", f"/CN={cn}", cwd=d)
    else:
        issue_cert(d, name, signer, f"/CN={cn}", "basicConstraints=critical,CA:TRUE\nkeyUsage=keyCertSign,cRLSign\n")


def issue_cert(d, name, signer, subj, ext, days="30"):
    """A key and a certificate signed by the CA `signer` (files in d)."""
    make_key(d, name)
    openssl("req", "-new", "-key", f"{name}.key", "-out", f"{name}.csr", "-subj", subj, cwd=d)
    with open(os.path.join(d, f"{name}.ext"), "w") as f:
        f.write(ext)
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{signer}.crt", "-CAkey", f"{signer}.key",
            "-CAcreateserial", "-out", f"{name}.crt", "-days", days, "-extfile", f"{name}.ext", cwd=d)


def make_certs(d):
    """A throwaway PKI made with the openssl CLI in directory d: a CA and
    a second, unrelated CA; two server certificates for localhost/api.test
    (CN localhost and localhost-second) and one for other.test; client
    certificates (good, from the other CA, expired).
    Returns a dict of name -> path. No private key outlives the test."""
    make_ca(d, "ca", "tollgate test CA")
    make_ca(d, "other-ca", "unrelated CA")
    issue_cert(d, "server", "ca", "/CN=localhost", "subjectAltName=DNS:localhost,DNS:api.test,IP:127.0.0.1\n")
    issue_cert(d, "server2", "ca", "/CN=localhost-second", "subjectAltName=DNS:localhost,DNS:api.test,IP:127.0.0.1\n")
    issue_cert(d, "other", "ca", "/CN=other.test", "subjectAltName=DNS:other.test,DNS:*.wild.test\n")
    client_ext = "subjectAltName=URI:spiffe://test/client-a,DNS:client-a.test\nextendedKeyUsage=clientAuth\n"
    issue_cert(d, "client", "ca", "/O=Acme/CN=client-a", client_ext)
    issue_cert(d, "client2", "ca", "/O=Acme/CN=client-b", "extendedKeyUsage=clientAuth\n")
    issue_cert(d, "stranger", "other-ca", "/O=Elsewhere/CN=client-a", client_ext)
    issue_cert(d, "expired", "ca", "/O=Acme/CN=client-old", client_ext, days="-1")
    names = ["ca", "other-ca", "server", "server2", "other", "client", "client2", "stranger", "expired"]
    out = {}
    for n in names:
        out[n + ".crt"] = os.path.join(d, n + ".crt")
        out[n + ".key"] = os.path.join(d, n + ".key")
    return out


def curl(*args, timeout=30, stdin_data=None):
    """Runs curl; returns (exit code, stdout bytes, stderr text). stdin_data:
    bytes for curl to read as standard input (e.g. --data-binary @-)."""
    p = subprocess.run(["curl", "-sS", "--max-time", str(timeout), *args], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=timeout + 10,
                       **({"input": stdin_data} if stdin_data is not None else {"stdin": subprocess.DEVNULL}))
    return p.returncode, p.stdout, p.stderr.decode(errors="replace")


REDIS_SERVER = "/usr/bin/redis-server"
REDIS_CLI = "/usr/bin/redis-cli"


def start_redis(port=None, args=(), name="redis", tls=None):
    """A real redis-server on loopback, nothing persisted. tls: a dict of
    cert/key/ca paths to serve TLS only (the port is then its TLS port)."""
    port = port or free_port()
    argv = [REDIS_SERVER, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--protected-mode", "no",
            "--dir", tempfile.mkdtemp(prefix=f"tg-{name}-")]
    if tls:
        argv += ["--port", "0", "--tls-port", str(port), "--tls-cert-file", tls["cert"], "--tls-key-file",
                 tls["key"], "--tls-ca-cert-file", tls["ca"], "--tls-auth-clients", tls.get("auth_clients", "no")]
    else:
        argv += ["--port", str(port)]
    proc = Proc(argv + list(args), name=name)
    wait_port(port, proc=proc.p)
    proc.port = port
    return proc


def redis_cli(port, *args, tls=None, password=None):
    """Runs one redis-cli command against a test Redis; returns its output."""
    argv = [REDIS_CLI, "-p", str(port)]
    if password:
        argv += ["-a", password, "--no-auth-warning"]
    if tls:
        argv += ["--tls", "--cacert", tls["ca"], "--cert", tls["cert"], "--key", tls["key"]]
    return subprocess.run(argv + [str(a) for a in args], capture_output=True, text=True, timeout=30,
                          stdin=subprocess.DEVNULL).stdout.strip()


def start_grpc_backend(name, port=None, extra=()):
    """The gRPC test backend (apps/grpc_server.py) on a free port."""
    port = port or free_port()
    proc = Proc([PYTHON, os.path.join(APPS, "grpc_server.py"), str(port), name, *extra],
                env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1"), name=f"grpc-{name}")
    wait_port(port, proc=proc.p)
    proc.port = port
    return proc


def grpc_frame(msg):
    """One gRPC length-prefixed message (uncompressed)."""
    return b"\x00" + len(msg).to_bytes(4, "big") + msg


# --- running a test file -------------------------------------------------
#
# A skip is never a pass. A test may skip only for a reason listed in
# tests/skips.allowed, written as "[KEY] detail"; any other skip fails the
# file. Each skip is appended to $TOLLGATE_SKIP_LOG (scripts/test.sh prints
# them all at the end), and a file whose every test skipped exits with
# SKIP_EXIT so that ctest reports it as skipped, by name.

SKIP_EXIT = 77
ALLOWED_SKIPS = os.path.join(HERE, "..", "skips.allowed")


def allowed_skips():
    keys = {}
    with open(ALLOWED_SKIPS) as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith("#"):
                key, _, why = line.partition(" ")
                keys[key] = why.strip()
    return keys


def skip_key(reason):
    m = re.match(r"\[([a-z0-9-]+)\]", reason or "")
    return m.group(1) if m else None


def main():
    """Runs the calling test file's tests (like unittest.main) under the
    skip rule above; exits 0, 1 (a failure or a skip not allowed) or
    SKIP_EXIT (every test skipped, each for an allowed reason)."""
    name = os.path.splitext(os.path.basename(sys.argv[0]))[0]
    prog = unittest.main(module="__main__", exit=False, verbosity=int(os.environ.get("TOLLGATE_TEST_VERBOSITY", "1")))
    for gw in list(_LIVE_GATEWAYS):  # a test that leaves a gateway running fails the file
        if gw.proc.p.poll() is not None:
            continue  # stopped by the test its own way (a signal, a drain)
        print(f"{name}: a gateway was left running by a test (config {gw.path}); stopped now", file=sys.stderr)
        gw.stop()
        prog.result.errors.append((name, "a test left a gateway running"))
    for p in _PROCS:  # peers (apps, gRPC backends) a failed set-up never got to stop: no orphans
        if p.p.poll() is None:
            p.stop()
    result = prog.result
    allowed = allowed_skips()
    bad = []
    lines = []
    for test, reason in result.skipped:
        key = skip_key(reason)
        ok = key in allowed
        lines.append(f"{name} {test.id()}: {reason} ({'allowed' if ok else 'NOT ALLOWED'})")
        if not ok:
            bad.append(f"{test.id()}: {reason}")
    log = os.environ.get("TOLLGATE_SKIP_LOG")
    if log and lines:
        with open(log, "a") as f:
            f.write("".join(x + "\n" for x in lines))
    for x in lines:
        sys.stderr.write("SKIPPED " + x + "\n")
    if bad:
        sys.stderr.write("FAILED: skips whose reason is not in tests/skips.allowed:\n  " + "\n  ".join(bad) + "\n")
        sys.exit(1)
    if not result.wasSuccessful():
        sys.exit(1)
    # a skip in setUpClass is one entry for the whole class and is not
    # counted in testsRun; a skipped test method is counted in both
    ran = result.testsRun - sum(isinstance(t, unittest.TestCase) for t, _ in result.skipped)
    if ran == 0:
        if result.skipped:
            sys.exit(SKIP_EXIT)
        sys.stderr.write("FAILED: no test ran\n")
        sys.exit(1)
    sys.exit(0)
