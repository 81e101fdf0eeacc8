# The commands a new user needs; lab, demo and test create .venv and install on first use.
#   make lab    open the course in JupyterLab (extra Jupyter flags: make lab ARGS="--port 8899")
#   make demo   a 2-3 minute headless i-Mix vs. baseline run on scikit-learn's digits (3 seeds, one CPU thread)
#   make test   the whole test suite, notebooks included (nbval, quick mode)
#   make bundle dist/imix-teach.zip: the wheel beside the notebooks, for Colab or a machine without this repository
#   make site   the course website in site/, from the committed notebooks (runs none); python3 -m http.server -d site
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
# pip byte-compiles the ~15,000 installed files one by one (~50 s); compileall -j 0 does it on every core afterwards
# (|| true: like pip, it passes over the odd file that is not Python 3). Not compiling at all is slower: with
# PYTHONDONTWRITEBYTECODE=1, set in many containers, every process would compile torch again.
PIP_INSTALL := $(PY) -m pip install --no-compile -c constraints.txt
COMPILE     := $(PY) -m compileall -qq -j 0 $(VENV)/lib || true
# CPU-only torch (about 5 GB smaller): make install TORCH_INDEX=https://download.pytorch.org/whl/cpu
TORCH_INDEX ?=
ARGS ?=
# make test: pytest-xdist workers, one per core (at most 4: each holds torch and a notebook kernel, ~1.5 GB).
TEST_WORKERS ?= auto
# Offline real data for tests/notebooks: ../shared/data when it sits beside the project.
IMIX_DATA ?= $(if $(wildcard ../shared/data),$(abspath ../shared/data),)
export IMIX_DATA
# Idle OpenMP threads spin-wait by default; on a busy 2-core machine that made torch ~100x slower.
OMP_WAIT_POLICY ?= PASSIVE
export OMP_WAIT_POLICY
# Jupyter refuses to start as root (containers, cloud machines) without --allow-root; with no
# display it must not try to open a browser (a text browser would take over the terminal).
LAB_FLAGS = $(if $(filter 0,$(shell id -u)),--allow-root) \
            $(if $(DISPLAY)$(WAYLAND_DISPLAY)$(filter Darwin,$(shell uname -s)),,--ServerApp.open_browser=False)

.PHONY: lab demo test install bundle clean

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(if $(TORCH_INDEX),$(PIP_INSTALL) --index-url $(TORCH_INDEX) torch torchvision torchaudio)
	$(PIP_INSTALL) -e ".[lab,test]"
	$(COMPILE)
	$(PY) -m ipykernel install --prefix $(VENV) --name python3 >/dev/null
	touch $@

install: $(VENV)/.installed

lab: $(VENV)/.installed
	@echo "Starting JupyterLab on notebooks/: open the http://127.0.0.1:... URL (with its token) that it prints below. Ctrl-C stops it."
	$(VENV)/bin/jupyter lab notebooks/ $(strip $(LAB_FLAGS)) $(ARGS)

demo: $(VENV)/.installed
	$(PY) -m imix_teach.course.demo

test: $(VENV)/.installed
	IMIX_QUICK=1 $(PY) -m pytest tests notebooks --nbval-lax --nbval-sanitize-with tests/nbval_sanitize.cfg -p no:cacheprovider \
	    -n $(TEST_WORKERS) --maxprocesses 4 --dist loadfile --no-loadscope-reorder --durations=20

# Mutation testing of the core (losses, mixing, methods) against their tests; config in pyproject.toml's [tool.mutmut],
# equivalent survivors in tests/MUTANTS.md. One OpenMP thread: mutmut forks after torch started its thread pools,
# and a forked pool hangs about one mutant in eight. ~15 min on 2 cores (MUTATE_JOBS children).
MUTATE_JOBS ?= 2
.PHONY: mutate
mutate: $(VENV)/.installed
	rm -rf mutants
	OMP_NUM_THREADS=1 $(VENV)/bin/mutmut run --max-children $(MUTATE_JOBS) | tr "\r" "\n" | tail -n 2
	$(PY) scripts/mutation_score.py

# The wheel and the notebooks in one folder: a notebook's first cell installs a wheel it finds beside it.
# Needs only pip (no .venv): the wheel is built in pip's isolated build environment.
bundle:
	rm -rf dist/imix-teach dist/imix-teach.zip
	$(PYTHON) -m pip wheel --no-deps -q -w dist/imix-teach .
	cp notebooks/*.ipynb dist/imix-teach/
	$(PYTHON) -m zipfile -c dist/imix-teach.zip dist/imix-teach
	@echo "Built dist/imix-teach.zip: $$(ls dist/imix-teach/*.whl | xargs -n1 basename) and $$(ls dist/imix-teach/*.ipynb | wc -l) notebooks."

# The course website: MkDocs (Material theme) + mkdocs-jupyter, hooks in scripts/site/ (see docs/development.md).
# NO_MKDOCS_2_WARNING: Material prints a banner about its end of life (May 2027) on every build.
.PHONY: site
site: $(VENV)/.docs-installed
	@start=$$(date +%s); NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --quiet && \
	echo "Built site/ in $$(( $$(date +%s) - start )) s: python3 -m http.server -d site, then open http://127.0.0.1:8000"

$(VENV)/.docs-installed: $(VENV)/.installed
	$(PIP_INSTALL) -e ".[docs]"
	$(COMPILE)
	touch $@

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis demo_out dist build
