#!/usr/bin/env bash
# The newcomer's first hour, from the built wheel: install it into a fresh venv outside the
# repository, `llmroute init` an empty project, start `llmroute fake-server`, and run the
# README's Quickstart snippet unchanged with the environment the server printed. It must
# print the fake provider's answer. A second empty directory, without `init`, checks that
# the catalogue inside the wheel is found on its own.
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
python="${PYTHON:-python3}"
work="$(mktemp -d "${TMPDIR:-/tmp}/llmroute-wheel-smoke.XXXXXX")"
server_pid=""
cleanup() {
    if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
        kill -TERM "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

step() { printf 'wheel-smoke: %s\n' "$*"; }

step "building the wheel"
"$python" -m pip wheel --no-deps --quiet --wheel-dir "$work/dist" "$repo"
wheel="$(ls "$work"/dist/llmroute-*.whl)"

step "installing $(basename "$wheel") into a fresh venv in $work"
"$python" -m venv "$work/venv"
"$work/venv/bin/python" -m pip install --quiet "$wheel"
llmroute="$work/venv/bin/llmroute"
"$llmroute" --version

# The Quickstart snippet, exactly as the README shows it.
"$work/venv/bin/python" - "$repo/README.md" "$work/quickstart.py" <<'PY'
import re, sys
text = open(sys.argv[1], encoding="utf-8").read()
section = text[text.index("## Quickstart"):]
code = re.search(r"^```python\n(.*?)^```", section, re.MULTILINE | re.DOTALL).group(1)
open(sys.argv[2], "w", encoding="utf-8").write(code)
PY

mkdir "$work/project"
cd "$work/project"
step "llmroute init in an empty directory"
"$llmroute" init
test -f config/models.yaml && test -f config/limits.yaml && test -f .env.example

step "starting llmroute fake-server in the background"
"$llmroute" fake-server >"$work/fake.env" 2>"$work/fake.log" &
server_pid=$!
for _ in $(seq 1 100); do
    grep -q '^GOOGLE_AI_STUDIO_KEY_5=' "$work/fake.env" 2>/dev/null && break
    kill -0 "$server_pid" 2>/dev/null || { cat "$work/fake.log"; exit 1; }
    sleep 0.1
done
grep -q '^GROQ_BASE_URL=http://127.0.0.1:' "$work/fake.env"

run_quickstart() {
    (set -a && . "$work/fake.env" && "$work/venv/bin/python" "$work/quickstart.py") >"$work/out.txt"
    cat "$work/out.txt"
    grep -q "fake answer" "$work/out.txt"
}

step "the Quickstart snippet in the initialised project"
run_quickstart

step "the Quickstart snippet in a directory without config/ (the catalogue in the wheel)"
mkdir "$work/bare" && cd "$work/bare"
run_quickstart

step "stopping the fake server"
kill -INT "$server_pid"
wait "$server_pid"
server_pid=""
grep -q "stopped" "$work/fake.log"
if grep -q Traceback "$work/fake.log"; then cat "$work/fake.log"; exit 1; fi
step "ok"
