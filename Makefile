# Three commands a new user needs; each creates .venv and installs on first use.
#   make lab    open the course in JupyterLab
#   make demo   a 2-minute headless i-Mix vs. baseline run on scikit-learn's digits
#   make test   the whole test suite, notebooks included (nbval, quick mode)
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
# Offline real data for tests/notebooks: ../shared/data when it sits beside the project.
IMIX_DATA ?= $(if $(wildcard ../shared/data),$(abspath ../shared/data),)
export IMIX_DATA
# Idle OpenMP threads spin-wait by default; on a busy 2-core machine that made torch ~100x slower.
OMP_WAIT_POLICY ?= PASSIVE
export OMP_WAIT_POLICY

.PHONY: lab demo test install clean

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -c constraints.txt -e ".[lab,test]"
	$(PY) -m ipykernel install --prefix $(VENV) --name python3 >/dev/null
	touch $@

install: $(VENV)/.installed

lab: $(VENV)/.installed
	$(VENV)/bin/jupyter lab notebooks/

demo: $(VENV)/.installed
	$(PY) -m imix_teach.demo

test: $(VENV)/.installed
	IMIX_QUICK=1 $(PY) -m pytest tests notebooks --nbval-lax --nbval-sanitize-with tests/nbval_sanitize.cfg -p no:cacheprovider

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis demo_out
