#!/usr/bin/env bash
# Installs the Debian/Ubuntu packages spillway builds against, only those that are missing.
set -eu
pkgs=(build-essential liburing-dev libhwloc-dev libjansson-dev libxxhash-dev libopenblas-dev libonig-dev libutf8proc-dev
      python3-jinja2)
# node + npm fetch the reference tokenizers in tests; a node from elsewhere (nodesource, nvm) is fine
command -v node >/dev/null || pkgs+=(nodejs)
command -v npm >/dev/null || pkgs+=(npm)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} = 0 ]; then echo "deps: all present (${pkgs[*]})"; exit 0; fi
echo "deps: installing ${missing[*]}"
sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
