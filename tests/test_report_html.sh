#!/usr/bin/env bash
# The run report in a real browser: a training run's report.html (written by `spillway train
# --run` and again by `spillway report --run`) and one with evaluation records are rendered by
# headless Chromium. The page must load with no console message (SVG attribute errors, failed
# resources and script errors all land there; a page with a script error shows the check
# works), reference nothing outside itself, and the rendered DOM must carry one loss point per
# distinct step of metrics.jsonl (counted here by Python's json module, not by spillway) and
# one evaluation point per evaluation record; a run with no step yet renders too. Skips only
# when Chromium is not installed
# (`make deps` installs Debian's chromium).
set -u
bin=${SW_BIN:-build/spillway}
fail() { echo "FAIL: $*"; exit 1; }
browser=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
if [ -z "$browser" ]; then
  echo "skip: no chromium (headless browser) installed; 'make deps' installs Debian's chromium"
  exit 77
fi
w=$(mktemp -d /tmp/sw-report-html.XXXXXX)
trap 'rm -rf "$w"' EXIT

# render FILE OUTPREFIX [shot]: OUTPREFIX.dom (the DOM after load), .console (console lines)
# and with "shot" OUTPREFIX.png
render() {
  : >"$2.log1"
  [ "${3:-}" = shot ] && { timeout 120 "$browser" --headless --no-sandbox --disable-gpu --no-first-run \
    --user-data-dir="$w/profile" --enable-logging=stderr --v=0 --window-size=960,1900 \
    --screenshot="$2.png" "$1" >/dev/null 2>"$2.log1" || fail "chromium could not screenshot $1"; }
  timeout 120 "$browser" --headless --no-sandbox --disable-gpu --no-first-run \
    --user-data-dir="$w/profile" --enable-logging=stderr --v=0 --dump-dom "$1" \
    >"$2.dom" 2>"$2.log2" || fail "chromium could not load $1"
  cat "$2.log1" "$2.log2" | grep -E ':CONSOLE|Failed to load|net::ERR' >"$2.console" || true
}
# points CLASS DOMFILE: the number of points in <polyline class=CLASS>, -1 when there is none
points() {
  python3 - "$1" "$2" <<'PY'
import sys
from html.parser import HTMLParser
cls, path = sys.argv[1], sys.argv[2]
class P(HTMLParser):
    n = -1
    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "polyline" and cls in (a.get("class") or "").split():
            self.n = len((a.get("points") or "").split())
p = P(); p.feed(open(path).read()); print(p.n)
PY
}
# distinct steps of a metrics file with the given number field, per Python's json module
steps_with() {
  python3 - "$1" "$2" <<'PY'
import json, sys
print(len({o["step"] for o in map(json.loads, filter(str.strip, open(sys.argv[1]))) if sys.argv[2] in o}))
PY
}

# the check itself: a page with a script error is caught
printf '<!DOCTYPE html><html><body><script>no_such_function();</script></body></html>\n' >"$w/bad.html"
render "$w/bad.html" "$w/bad"
[ -s "$w/bad.console" ] || fail "the console check missed a script error: $(cat "$w/bad.log2")"
echo "ok a script error is seen: $(head -c 120 "$w/bad.console")"

"$bin" init --arch llama --dim 32 --layers 2 --heads 2 --ffn 64 --vocab 258 --seed 5 --out "$w/m" >/dev/null || fail init
"$bin" data --text tests/data/corpus.txt --out "$w/d.tok" >/dev/null || fail data
head -c 3000 tests/data/corpus.txt >"$w/e.txt"; "$bin" data --text "$w/e.txt" --out "$w/e.tok" >/dev/null || fail data
mkdir -p "$w/nv"
"$bin" train --model "$w/m" --data "$w/d.tok" --eval-data "$w/e.tok" --eval-every 4 --backend cpu --steps 12 --lr 3e-3 --seq-len 32 \
  --batch-tokens 64 --gpu-mem 536KiB --cpu-mem 1284KiB --threads 2 --nvme "$w/nv" --chunk 4096 --run "$w/run" \
  --quiet >"$w/train.out" 2>&1 || { cat "$w/train.out"; fail "train"; }
[ -s "$w/run/report.html" ] || fail "train --run wrote no report.html"
[ -s "$w/run/run.json" ] || fail "train --run wrote no run.json"
ls "$w/run" | grep -q tmp && fail "a temporary file was left in the run directory: $(ls "$w/run")"
grep -q '://' "$w/run/report.html" && fail "report.html references something outside itself: $(grep -o '[a-z]*://[^" ]*' "$w/run/report.html" | head -1)"
grep -qi '<script' "$w/run/report.html" && fail "report.html has a script"

"$bin" report --run "$w/run" >"$w/rep.out" 2>&1 || { cat "$w/rep.out"; fail "spillway report"; }
render "$w/run/report.html" "$w/train" shot
[ -s "$w/train.console" ] && fail "console messages while loading the report: $(cat "$w/train.console")"
n=$(steps_with "$w/run/metrics.jsonl" loss)
[ "$n" = 12 ] || fail "metrics.jsonl has $n steps, expected 12"
got=$(points loss-train "$w/train.dom")
[ "$got" = "$n" ] || fail "the rendered loss curve has $got points for $n steps"
ne=$(steps_with "$w/run/metrics.jsonl" eval_loss)
[ "$ne" = 3 ] || fail "metrics.jsonl has $ne evaluations, expected 3 (--eval-every 4 of 12 steps)"
[ "$(points loss-eval "$w/train.dom")" = 3 ] || fail "the rendered eval curve has $(points loss-eval "$w/train.dom") points for 3 evaluations"
for cls in tps steptime; do
  [ "$(points $cls "$w/train.dom")" -ge 1 ] || fail "no $cls curve in the rendered page"
done
grep -q 'id="placement"' "$w/train.dom" && grep -q 'id="budgets"' "$w/train.dom" && grep -q -- '--batch-tokens' "$w/train.dom" \
  || fail "placement, budgets or the command line missing from the page"
[ "$(stat -c %s "$w/train.png")" -gt 20000 ] || fail "the screenshot is too small to show the charts"
echo "ok train run with --eval-data: $got loss points for $n steps, 3 eval points, no console messages, screenshot $(stat -c %s "$w/train.png") bytes"

# evaluation records and a resumed run's repeated steps (the last line of a step wins)
cp -r "$w/run" "$w/ev"
sed -n 5,6p "$w/run/metrics.jsonl" >>"$w/ev/metrics.jsonl"
for s in 4 8 12; do echo "{\"step\": $s, \"eval_loss\": 3.$s}" >>"$w/ev/metrics.jsonl"; done
"$bin" report --run "$w/ev" >"$w/rep.out" 2>&1 || { cat "$w/rep.out"; fail "spillway report with eval"; }
render "$w/ev/report.html" "$w/ev"
[ -s "$w/ev.console" ] && fail "console messages while loading the eval report: $(cat "$w/ev.console")"
ne=$(steps_with "$w/ev/metrics.jsonl" eval_loss)
nt=$(steps_with "$w/ev/metrics.jsonl" loss)
[ "$(points loss-eval "$w/ev.dom")" = "$ne" ] || fail "eval curve has $(points loss-eval "$w/ev.dom") points for $ne eval records"
[ "$(points loss-train "$w/ev.dom")" = "$nt" ] || fail "train curve has $(points loss-train "$w/ev.dom") points for $nt steps"
echo "ok eval run: $ne eval points, $nt train points (repeated steps drawn once)"
# a run directory with nothing logged yet (a run that has not finished its first step)
mkdir -p "$w/empty" && : >"$w/empty/metrics.jsonl"
"$bin" report --run "$w/empty" >"$w/rep.out" 2>&1 || { cat "$w/rep.out"; fail "spillway report with no steps"; }
render "$w/empty/report.html" "$w/empty"
[ -s "$w/empty.console" ] && fail "console messages while loading an empty report: $(cat "$w/empty.console")"
[ "$(points loss-train "$w/empty.dom")" = 0 ] || fail "an empty run's loss curve has points"
echo "ok empty run: renders, no points"
[ -n "${SW_REPORT_SHOTS:-}" ] && cp "$w/train.png" "$SW_REPORT_SHOTS/report-train.png"
exit 0
