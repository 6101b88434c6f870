#!/usr/bin/env bash
# The project's test command (README "Run the tests", .ci/run): install what the tests need, then pytest.
#   scripts/test.sh [pytest args...]      e.g. scripts/test.sh tests/test_gallery.py -x
# - Python packages: requirements.txt (pinned; includes selenium for the browser tests).
# - The browser tests (tests/test_browser.py) drive Debian's chromium through chromium-driver; they are
#   installed with apt-get when /usr/bin/chromium or /usr/bin/chromedriver is missing (root, or sudo).
#   fonts-wqy-microhei lets screenshots show the Chinese labels. The browser tests fail without a
#   browser; IEB_SKIP_BROWSER=1 skips them on purpose.
set -euo pipefail
cd "$(dirname "$0")/.."
pip install -q -r requirements.txt
if [ "${IEB_SKIP_BROWSER:-0}" != "1" ] && { [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; }; then
    SUDO=""
    if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium chromium-driver fonts-wqy-microhei
fi
exec python -m pytest -q "$@"
