"""The Debian package, built as an operator would (scripts/package.sh:
a Release build, cpack), unpacked into a scratch root with dpkg-deb -x:
its dependencies come from the binary's libraries, the config is a
conffile, the maintainer scripts create the tollgate user, the layout is
what the man pages and units name, the installed binary accepts the
installed config, systemd-analyze accepts the units, and the shipped
unit's own ExecStart/ExecReload/KillSignal drive the sd_notify protocol
as systemd would (a Unix datagram socket stands in for systemd)."""
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest

import harness

ROOT = os.path.abspath(os.path.join(harness.HERE, "..", ".."))


def unit_values(text):
    out = {}
    for line in text.splitlines():
        m = re.match(r"^([A-Za-z]+)=(.*)$", line)
        if m:
            out.setdefault(m.group(1), []).append(m.group(2))
    return out


class PackageTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="tg-package-")
        p = subprocess.run(["sh", os.path.join(ROOT, "scripts", "package.sh"), os.path.join(cls.tmp, "build")],
                           capture_output=True, text=True, timeout=1200)
        assert p.returncode == 0, p.stdout + p.stderr
        cls.deb = p.stdout.strip().splitlines()[-1]
        cls.root = os.path.join(cls.tmp, "root")
        subprocess.run(["dpkg-deb", "-x", cls.deb, cls.root], check=True, timeout=60)
        cls.control = os.path.join(cls.tmp, "control")
        subprocess.run(["dpkg-deb", "-e", cls.deb, cls.control], check=True, timeout=60)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def field(self, name):
        return subprocess.run(["dpkg-deb", "-f", self.deb, name], capture_output=True, text=True,
                              timeout=60).stdout.strip()

    def test_control_and_dependencies(self):
        self.assertEqual(self.field("Package"), "tollgate")
        depends = self.field("Depends")
        for lib in ("libevent-core-2.1-7", "libevent-pthreads-2.1-7", "libnghttp2-14", "libssl3", "libyaml-0-2", "libc-ares2",
                    "libc6", "adduser"):
            self.assertIn(lib, depends)
        # every shared library the binary needs is covered by a dependency
        needed = subprocess.run(["objdump", "-p", os.path.join(self.root, "usr/sbin/tollgate")],
                                capture_output=True, text=True, timeout=60).stdout
        for soname in re.findall(r"NEEDED\s+(\S+)", needed):
            owner = subprocess.run(["dpkg", "-S", f"*/{soname}"], capture_output=True, text=True, timeout=60).stdout
            # one line per package shipping a file of that name (libc6 and libc6-i386 both have
            # libm.so.6): one of them must be a dependency
            pkgs = {line.split(":")[0].split(",")[0].strip() for line in owner.splitlines() if ":" in line}
            self.assertTrue(any(p in depends for p in pkgs), f"{soname} comes from one of {sorted(pkgs)}")
        self.assertEqual(open(os.path.join(self.control, "conffiles")).read().split(), ["/etc/tollgate/tollgate.yaml"])
        for script in ("postinst", "prerm", "postrm"):
            path = os.path.join(self.control, script)
            self.assertTrue(os.access(path, os.X_OK), script)
            p = subprocess.run(["sh", "-n", path], capture_output=True, text=True, timeout=30)
            self.assertEqual(p.returncode, 0, p.stderr)

    def run_postinst(self, user_exists):
        """postinst configure, with the commands it calls replaced by stubs
        that record their arguments."""
        stubs = tempfile.mkdtemp(dir=self.tmp)
        log = os.path.join(stubs, "calls")
        for cmd, rc in (("getent", 0 if user_exists else 2), ("adduser", 0), ("dpkg-statoverride", 1),
                        ("chown", 0), ("chmod", 0), ("systemctl", 0), ("deb-systemd-helper", 0),
                        ("deb-systemd-invoke", 0)):
            with open(os.path.join(stubs, cmd), "w") as f:
                f.write(f'#!/bin/sh\necho "{cmd} $*" >> {log}\nexit {rc}\n')
            os.chmod(os.path.join(stubs, cmd), 0o755)
        p = subprocess.run(["sh", os.path.join(self.control, "postinst"), "configure", ""], capture_output=True,
                           text=True, timeout=30, env=dict(os.environ, PATH=f"{stubs}:/usr/bin:/bin"))
        self.assertEqual(p.returncode, 0, p.stderr)
        return open(log).read() if os.path.exists(log) else ""

    def test_postinst_creates_the_user_once(self):
        calls = self.run_postinst(user_exists=False)
        self.assertIn("getent passwd tollgate", calls)
        self.assertRegex(calls, r"adduser --system --group --no-create-home --home /nonexistent .*tollgate\n")
        # a first install enables the unit (deb-systemd-helper keeps an administrator's choice later)
        self.assertIn("deb-systemd-helper enable tollgate.service", calls)
        self.assertNotIn("systemctl enable", calls)
        calls = self.run_postinst(user_exists=True)
        self.assertNotIn("adduser", calls)

    def test_layout_and_installed_config(self):
        for path in ("usr/sbin/tollgate", "etc/tollgate/tollgate.yaml", "usr/lib/systemd/system/tollgate.service",
                     "usr/lib/systemd/system/tollgate.socket", "usr/share/man/man8/tollgate.8.gz",
                     "usr/share/man/man5/tollgate.yaml.5.gz", "usr/share/tollgate/tollgate.schema.json",
                     "usr/share/doc/tollgate/copyright", "usr/share/doc/tollgate/changelog.gz",
                     "usr/share/doc/tollgate/configuration.md", "usr/share/doc/tollgate/monitoring/tollgate.rules.yml"):
            self.assertTrue(os.path.exists(os.path.join(self.root, path)), path)
        binary = os.path.join(self.root, "usr/sbin/tollgate")
        conf = os.path.join(self.root, "etc/tollgate/tollgate.yaml")
        p = subprocess.run([binary, "-t", "-c", conf], capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(open(conf).readline().strip(),
                         "# yaml-language-server: $schema=/usr/share/tollgate/tollgate.schema.json")
        # ctl's default config is the packaged one
        self.assertIn("/etc/tollgate/tollgate.yaml", subprocess.run([binary, "--help"], capture_output=True,
                                                                    text=True, timeout=30).stdout)
        for page in ("usr/share/man/man8/tollgate.8.gz", "usr/share/man/man5/tollgate.yaml.5.gz"):
            m = subprocess.run(["man", "-l", os.path.join(self.root, page)], capture_output=True, text=True,
                               timeout=60, env=dict(os.environ, MANWIDTH="120"))
            self.assertEqual(m.returncode, 0, m.stderr)
            self.assertIn("tollgate", m.stdout)

    def test_units_verify(self):
        for unit in ("tollgate.service", "tollgate.socket"):
            p = subprocess.run(["systemd-analyze", "verify", f"--root={self.root}",
                                os.path.join(self.root, "usr/lib/systemd/system", unit)],
                               capture_output=True, text=True, timeout=60)
            # a bare scratch root has no sysinit.target and no /bin/kill; anything else is the unit's fault
            # nor the host's man database the pages the unit's Documentation= names (man:tollgate(8))
            rest = [l for l in (p.stdout + p.stderr).splitlines()
                    if l.strip() and "sysinit.target not found" not in l and "/bin/kill is not executable" not in l
                    and "Command 'man " not in l]
            self.assertEqual(rest, [], unit)
        unit = unit_values(open(os.path.join(self.root, "usr/lib/systemd/system/tollgate.service")).read())
        for key, value in (("Type", "notify"), ("User", "tollgate"), ("CapabilityBoundingSet", "CAP_NET_BIND_SERVICE"),
                           ("ProtectSystem", "strict"), ("NoNewPrivileges", "yes"), ("KillSignal", "SIGTERM")):
            self.assertEqual(unit[key], [value], key)
        sock = unit_values(open(os.path.join(self.root, "usr/lib/systemd/system/tollgate.socket")).read())
        self.assertEqual(sock["Service"], ["tollgate.service"])

    def test_lintian_clean(self):
        """Debian's own checker: no error and no warning. Two informational
        tags stay: .comment left by strip, and a unit without an init.d
        script (tollgate runs under systemd only) — docs/operations.md."""
        p = subprocess.run(["lintian", "--tag-display-limit", "0", self.deb], capture_output=True, text=True,
                           timeout=600)
        tags = [l for l in (p.stdout + p.stderr).splitlines() if re.match(r"^[EW]: ", l)]
        self.assertEqual(tags, [], p.stdout + p.stderr)

    def test_unit_hardening_score(self):
        """systemd-analyze security on the shipped unit: exposure 3.0 ("OK")
        or lower (docs/operations.md records the score)."""
        p = subprocess.run(["systemd-analyze", "security", "--offline=true",
                            os.path.join(self.root, "usr/lib/systemd/system/tollgate.service")],
                           capture_output=True, text=True, timeout=60)
        m = re.search(r"Overall exposure level for tollgate.service: ([\d.]+)", p.stdout + p.stderr)
        self.assertIsNotNone(m, p.stdout + p.stderr)
        self.assertLessEqual(float(m.group(1)), 3.0, p.stdout)

    def test_shipped_unit_drives_the_notify_protocol(self):
        """ExecStartPre, ExecStart, ExecReload and KillSignal of the shipped
        unit, run the way systemd runs them, against a datagram socket."""
        unit = unit_values(open(os.path.join(self.root, "usr/lib/systemd/system/tollgate.service")).read())
        rebase = lambda arg: os.path.join(self.root, arg.lstrip("/")) if arg.startswith(("/usr/", "/etc/")) else arg
        # the installed config, on ports of our own
        conf = os.path.join(self.root, "etc/tollgate/tollgate.yaml")
        port, admin = harness.free_port(), harness.free_port()
        text = open(conf).read().replace("0.0.0.0:8080", f"127.0.0.1:{port}").replace("127.0.0.1:9901",
                                                                                       f"127.0.0.1:{admin}")
        with open(conf, "w") as f:
            f.write(text)
        pre = [rebase(a) for a in shlex.split(unit["ExecStartPre"][0])]
        self.assertEqual(subprocess.run(pre, capture_output=True, timeout=60).returncode, 0)
        path = os.path.join(self.tmp, "notify.sock")
        nsock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        nsock.bind(path)
        nsock.settimeout(15)
        watchdog_s = 1  # the unit's WatchdogSec, shortened so the test sees pings
        self.assertTrue(unit["WatchdogSec"])
        env = dict(os.environ, NOTIFY_SOCKET=path, WATCHDOG_USEC=str(watchdog_s * 1000000))
        argv = [rebase(a) for a in shlex.split(unit["ExecStart"][0])]
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            seen = []

            def until(word):
                deadline = time.time() + 30
                while time.time() < deadline:
                    msg = nsock.recv(4096).decode()
                    seen.append(msg)
                    if word in msg.split("\n"):
                        return msg
                raise AssertionError(f"no {word}: {seen}")

            ready = until("READY=1")
            self.assertRegex(ready, r"STATUS=serving 1 listener")
            with socket.create_connection(("127.0.0.1", port), timeout=5):
                pass  # READY came after the listener was bound
            until("WATCHDOG=1")
            reload_cmd = shlex.split(unit["ExecReload"][0].replace("$MAINPID", str(proc.pid)))
            self.assertEqual(subprocess.run(reload_cmd, timeout=30).returncode, 0)
            self.assertRegex(until("RELOADING=1"), r"MONOTONIC_USEC=\d+")
            self.assertIn("config reloaded", until("READY=1"))
            proc.send_signal(getattr(signal, unit["KillSignal"][0]))
            until("STOPPING=1")
            self.assertEqual(proc.wait(timeout=int(unit["TimeoutStopSec"][0])), 0)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            nsock.close()
            err = proc.stderr.read().decode()
            proc.stderr.close()
        self.assertNotIn("error", err.lower().replace("log_level", ""), err)


if __name__ == "__main__":
    harness.main()
