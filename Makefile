# cgsentry — two commands matter:  `make demo` (set up + run the demo)  and  `make test`.
# The venv uses Debian's python3 with --system-site-packages so it sees BCC (python3-bpfcc).
PY      ?= /usr/bin/python3
VENV    ?= .venv
VPY     := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: setup host venv test unit demo bench bench-smoke lint proto clean

setup: host venv

host:
	@if [ "$$(id -u)" = 0 ]; then bash scripts/host-setup; else echo "skip host setup (not root): kernel/Docker tests will be skipped"; fi

$(VENV)/.stamp: pyproject.toml
	$(PY) -m venv --system-site-packages $(VENV)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q -e '.[dev]'
	touch $@

venv: $(VENV)/.stamp

test: setup
	$(VPY) -m pytest $(PYTEST_ARGS)

unit: venv
	$(VPY) -m pytest tests/unit $(PYTEST_ARGS)

demo: setup
	$(VPY) -m scripts.demo

bench: setup
	$(VPY) -m bench.run

bench-smoke: setup
	$(VPY) -m bench.run --smoke

lint: venv
	$(VENV)/bin/ruff check .
	$(VPY) -m mypy

proto: venv
	$(VPY) -m collector.proto.build
	$(VPY) -m sensor.cri_proto.build

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
