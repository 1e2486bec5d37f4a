#!/usr/bin/env bash
# Installs the Debian/Ubuntu packages spillway builds against, only those that are missing.
set -eu
pkgs=(build-essential liburing-dev libhwloc-dev libjansson-dev libxxhash-dev libopenblas-dev libonig-dev libutf8proc-dev
      python3-jinja2)
# node + npm fetch the reference tokenizers in tests; a node from elsewhere (nodesource, nvm) is fine
command -v node >/dev/null || pkgs+=(nodejs)
command -v npm >/dev/null || pkgs+=(npm)
# test-only tools, installed when the system can (the tests that need them skip without them):
# headless Chromium renders report.html (tests/test_report_html.sh), tmux holds the terminal
# that tests/test_progress_tty.sh checks the progress bar in
optional=(chromium tmux)
missing=(); opt_missing=()
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
for p in "${pkgs[@]}"; do installed "$p" || missing+=("$p"); done
for p in "${optional[@]}"; do installed "$p" || command -v "$p" >/dev/null || opt_missing+=("$p"); done
if [ ${#missing[@]} = 0 ] && [ ${#opt_missing[@]} = 0 ]; then echo "deps: all present (${pkgs[*]} ${optional[*]})"; exit 0; fi
sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
$sudo apt-get update -qq
if [ ${#missing[@]} != 0 ]; then
  echo "deps: installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
fi
if [ ${#opt_missing[@]} != 0 ]; then
  echo "deps: installing ${opt_missing[*]} (for tests only)"
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${opt_missing[@]}" >/dev/null ||
    echo "deps: could not install ${opt_missing[*]}; the tests that need them will skip"
fi
