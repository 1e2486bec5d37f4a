#!/usr/bin/env bash
# make run's job (tests/run_default.sh, 10 steps here): the run directory it keeps holds a
# report, and the three commands it prints at the end work exactly as printed: the resume
# command continues at step 11 up to step 20 (run again, it answers "nothing to do" and how to
# go on), export writes a Hugging Face directory, and the report it names exists. The loss must
# fall from its start near ln(258) = 5.55.
set -u
bin=$(realpath "${SW_BIN:-build/spillway}")
w=$(mktemp -d /tmp/sw-run-default.XXXXXX)
trap 'rm -rf "$w"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
SW_RUN_STEPS=10 bash tests/run_default.sh "$bin" "$w/default" >"$w/out" 2>&1 || { cat "$w/out"; fail "run_default.sh"; }
cat "$w/out" | tail -n 12
grep -q '^make run: loss ' "$w/out" || fail "no summary line"
python3 - "$w/default/run/metrics.jsonl" <<'PY' || fail "the loss did not fall"
import json, sys
l = [json.loads(x)["loss"] for x in open(sys.argv[1])]
assert len(l) == 10 and l[0] > 5.0 and sum(l[-3:]) / 3 < l[0] - 0.5, l
PY
resume=$(grep -A1 'resume it' "$w/out" | tail -n 1)
export_=$(grep -A1 'export the trained model' "$w/out" | tail -n 1)
report=$(grep -A1 'open its report' "$w/out" | tail -n 1 | awk '{print $2}')
[ -s "$report" ] || fail "the printed report path '$report' is not a file"
eval "$resume" >"$w/resume.out" 2>&1 || { cat "$w/resume.out"; fail "the printed resume command: $resume"; }
grep -q '^step 11/20 ' "$w/resume.out" && grep -q '^step 20/20 ' "$w/resume.out" || { cat "$w/resume.out"; fail "the resume did not run steps 11-20"; }
grep -q '"step": 20' "$w/default/run/manifest.json" || fail "the resumed run did not save step 20"
# the same command again: the run is at --steps, so nothing to do, and the line says how to go on
eval "$resume" >"$w/again.out" 2>&1 && fail "the resume of a finished run exited 0"
grep -q "already at step 20 and --steps is 20: nothing to do.*give --steps above it" "$w/again.out" \
  || { cat "$w/again.out"; fail "the resume of a finished run did not say what to do"; }
eval "$export_" >"$w/export.out" 2>&1 || { cat "$w/export.out"; fail "the printed export command: $export_"; }
[ -s "$w/default/exported/config.json" ] && [ -s "$w/default/exported/model.safetensors" ] || fail "export wrote no HF directory"
echo "ok resume (steps 11-20), export and the report path work as printed"
