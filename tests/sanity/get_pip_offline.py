"""Stand-in for the get-pip.py that ansible-test downloads from a host these machines cannot reach.

ansible-test creates its sanity venvs without pip and bootstraps pip by running get-pip.py with pip-install
arguments. get-pip.py is a zipped pip that installs the requested pip into the running interpreter; this does
the same with the pip wheel bundled in the interpreter's ``ensurepip`` and installs the requested versions from
PyPI (which is reachable). tests/run.sh copies it into ansible-test's cache before the sanity stage.
"""

from __future__ import annotations

import ensurepip
import glob
import os
import sys

bundled = sorted(glob.glob(os.path.join(os.path.dirname(ensurepip.__file__), "_bundled", "pip-*.whl")))
if not bundled:
    sys.exit("get_pip_offline: this Python has no bundled pip wheel (install python3-venv / python3-pip-whl)")
sys.path.insert(0, bundled[-1])

from pip._internal.cli.main import main as pip_main  # noqa: E402  (importable only from the wheel above)

args = [arg for arg in sys.argv[1:] if arg not in ("--no-setuptools", "--no-wheel")]
# ansible-test runs this with a filtered environment: keep the machine's CA bundle (a TLS-inspecting proxy
# may sit between this machine and PyPI).
bundle = os.environ.get("PIP_CERT") or os.environ.get("SSL_CERT_FILE") or "/etc/ssl/certs/ca-certificates.crt"
if os.path.exists(bundle):
    args = ["--cert", bundle, *args]
sys.exit(pip_main(["install", "--upgrade", "--force-reinstall", *args]))
