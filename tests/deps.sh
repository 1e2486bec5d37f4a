#!/usr/bin/env bash
# Installs the Debian/Ubuntu packages spillway builds against, only those that are missing.
set -eu
pkgs=(build-essential liburing-dev libhwloc-dev libjansson-dev libxxhash-dev libopenblas-dev)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} = 0 ]; then echo "deps: all present (${pkgs[*]})"; exit 0; fi
echo "deps: installing ${missing[*]}"
sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
