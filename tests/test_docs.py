import subprocess
import sys

from tests.conftest import REPO


def test_models_doc_is_current():
    proc = subprocess.run([sys.executable, "scripts/gen_models_doc.py", "--check"], cwd=REPO, capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr
