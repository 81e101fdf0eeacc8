#!/usr/bin/env bash
# A hosted runtime (Colab, Kaggle) in miniature, run by .ci/run after `make test`:
#   1. a fresh venv with torch preinstalled (this project's .venv torch, linked: scripts/link_torch.py)
#      and ipywidgets 7.7, as Colab ships it;
#   2. `make bundle`, then notebooks 00-03 and the wheel copied to an empty temp folder (no
#      repository, no ../shared beside it); the notebook's own install cell installs the wheel
#      (non-editable, no constraints.txt: pip resolves pyproject's loose bounds);
#   3. the notebooks run in quick mode under nbval with no data, no internet (a network namespace
#      when `unshare -n` is allowed, else a dead proxy), IMIX_OFFLINE=1 and an empty HOME.
# Usage: [VENV=.venv] scripts/hosted_check.sh [NOTEBOOK_PREFIX ...]   (default: 00 01 02 03)
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
venv=${VENV:-$repo/.venv}  # the project's venv (made by `make test`), whose torch is reused
py=$venv/bin/python
[ $# -gt 0 ] && prefixes=("$@") || prefixes=(00 01 02 03)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
t0=$SECONDS
say() { echo "[hosted-check +$((SECONDS - t0))s] $*"; }

say "1/3 fresh venv in $tmp with the project's torch linked in, ipywidgets 7.7"
"$py" -m venv "$tmp/venv"
hpy=$tmp/venv/bin/python
"$py" scripts/link_torch.py "$tmp/torch"
echo "$tmp/torch" > "$("$hpy" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/hosted_torch.pth"
"$hpy" -m pip install -q "ipywidgets==7.7.*" nbval ipykernel pytest

say "2/3 make bundle; notebooks ${prefixes[*]} and the wheel in an empty folder; the install cell installs the wheel"
make -s bundle
mkdir "$tmp/course"
cp dist/imix-teach/*.whl "$tmp/course/"
for p in "${prefixes[@]}"; do cp dist/imix-teach/"$p"_*.ipynb "$tmp/course/"; done
cp tests/nbval_sanitize.cfg tests/test_widgets_compat.py "$tmp/"
install_cell='import json, sys; nb = json.load(open(sys.argv[1])); exec(next("".join(c["source"]) for c in nb["cells"] if "google.colab" in "".join(c["source"])))'
cd "$tmp/course"  # from here on, nothing of the repository is importable
env -u PYTHONPATH "$hpy" -c "$install_cell" "$(ls ./*.ipynb | head -1)"
env -u PYTHONPATH "$hpy" -c 'import imix_teach, ipywidgets, torch
assert "site-packages" in imix_teach.__file__, imix_teach.__file__
print(f"imix_teach from site-packages (not editable), ipywidgets {ipywidgets.__version__}, torch {torch.__version__}")'
env -u PYTHONPATH "$hpy" -m pytest -q -p no:cacheprovider -W ignore::DeprecationWarning "$tmp/test_widgets_compat.py"

offline=(env HTTP_PROXY=http://127.0.0.1:9 HTTPS_PROXY=http://127.0.0.1:9 http_proxy=http://127.0.0.1:9 https_proxy=http://127.0.0.1:9)
how="a dead proxy"
if unshare -n true 2>/dev/null && command -v ip >/dev/null; then
    offline=(unshare -n sh -c 'ip link set lo up && exec "$@"' sh)
    how="a network namespace with only loopback"
fi
say "3/3 notebooks in quick mode, no data, no internet ($how)"
mkdir "$tmp/home"
"${offline[@]}" env -i PATH="$tmp/venv/bin:/usr/bin:/bin" HOME="$tmp/home" XDG_CACHE_HOME="$tmp/home/.cache" \
    LANG=C.UTF-8 OMP_WAIT_POLICY=PASSIVE IMIX_QUICK=1 IMIX_OFFLINE=1 \
    "$hpy" -m pytest -q -p no:cacheprovider ./*.ipynb --nbval-lax --nbval-sanitize-with "$tmp/nbval_sanitize.cfg"
say "passed"
