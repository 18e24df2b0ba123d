"""`cmake --install` lays tollgate out as a package would: the binary in
sbin/, the default config in etc/tollgate/ (which the installed binary
accepts with -t), the systemd unit, the docs and examples. Installs the
build the tests run against into a scratch prefix."""
import os
import re
import subprocess
import tempfile
import unittest

import harness


class InstallTest(unittest.TestCase):
    def test_install_layout_and_config(self):
        build = os.path.dirname(os.path.abspath(harness.BIN))
        self.assertTrue(os.path.exists(os.path.join(build, "cmake_install.cmake")), build)
        prefix = tempfile.mkdtemp(prefix="tg-install-")
        p = subprocess.run(["cmake", "--install", build, "--prefix", prefix], capture_output=True, text=True,
                           timeout=120)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        for path in ("sbin/tollgate", "etc/tollgate/tollgate.yaml", "lib/systemd/system/tollgate.service",
                     "lib/systemd/system/tollgate.socket",
                     "share/doc/tollgate/configuration.md", "share/doc/tollgate/security.md",
                     "share/doc/tollgate/examples/quickstart.yaml",
                     "share/doc/tollgate/monitoring/tollgate.rules.yml",
                     "share/doc/tollgate/monitoring/grafana-dashboard.json",
                     "share/doc/tollgate/images/status-page.png",
                     "share/man/man8/tollgate.8.gz", "share/man/man5/tollgate.yaml.5.gz", "share/doc/tollgate/copyright",
                     "share/tollgate/tollgate.schema.json"):
            self.assertTrue(os.path.exists(os.path.join(prefix, path)), path)
        self.assertTrue(os.access(os.path.join(prefix, "sbin/tollgate"), os.X_OK))
        p = subprocess.run([os.path.join(prefix, "sbin/tollgate"), "-t", "-c",
                            os.path.join(prefix, "etc/tollgate/tollgate.yaml")], capture_output=True, text=True,
                           timeout=30)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("test is successful", p.stderr)
        unit = open(os.path.join(prefix, "lib/systemd/system/tollgate.service")).read()
        for line in ("Type=notify", "ExecReload=/bin/kill -HUP $MAINPID",
                     "ExecStart=/usr/sbin/tollgate -c /etc/tollgate/tollgate.yaml"):
            self.assertIn(line, unit)
        # the installed config names the installed schema for editors
        first = open(os.path.join(prefix, "etc/tollgate/tollgate.yaml")).readline()
        self.assertRegex(first, r"^# yaml-language-server: \$schema=/\S+/share/tollgate/tollgate\.schema\.json$")
        # the socket unit names a listener of the installed config
        sock = open(os.path.join(prefix, "lib/systemd/system/tollgate.socket")).read()
        name = re.search(r"^FileDescriptorName=(\S+)$", sock, re.M).group(1)
        listen = re.search(r"^ListenStream=(\S+)$", sock, re.M).group(1)
        conf = open(os.path.join(prefix, "etc/tollgate/tollgate.yaml")).read()
        self.assertRegex(conf, rf"- name: {name}\n\s+listen: {re.escape(listen)}\n")


if __name__ == "__main__":
    harness.main()
