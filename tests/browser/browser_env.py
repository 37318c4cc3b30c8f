"""What the browser tests need: node, Debian's chromium and playwright-core (from npm, pinned by
package-lock.json). `prepare()` installs playwright-core with `npm ci` when it is missing, under
a file lock, since ctest runs tests in parallel and several may ask at once."""
import fcntl
import os
import pathlib
import shutil
import subprocess

HERE = pathlib.Path(__file__).resolve().parent


def prepare():
    """(node, None) when the browser tests can run, else (None, why not)."""
    node = shutil.which("node")
    chromium = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    if node is None or not os.path.exists(chromium):
        return None, f"the browser tests need node and {chromium} (scripts/bootstrap installs chromium)"
    with open(HERE / ".npm-install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (HERE / "node_modules" / "playwright-core").exists():
            result = subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=HERE,
                                    capture_output=True, text=True)
            if result.returncode != 0:
                return None, "cannot install playwright-core with npm ci:\n" + result.stderr[-2000:]
    return node, None


def artifacts_dir():
    """Where screenshots go: $EDGELOOP_ARTIFACTS_DIR, else tests/browser/artifacts."""
    path = pathlib.Path(os.environ.get("EDGELOOP_ARTIFACTS_DIR", HERE / "artifacts"))
    path.mkdir(parents=True, exist_ok=True)
    return path
