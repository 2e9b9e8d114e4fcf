# understudy: `make demo` and `make test` set everything up from a bare checkout.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV := .venv
PYTHON := $(VENV)/bin/python
VENV_STAMP := $(VENV)/.installed
LOCAL := .local
CARGO ?= cargo

.PHONY: help venv build demo test lint rust-tests stack-selftest validate local-up local-down package clean statemachines

help:
	@echo "make demo        set up, start the local stack, refresh a seeded staging from a seeded production"
	@echo "make test        set up and run every test (lint, unit, functions against moto, state machines in moto)"
	@echo "make local-up    start the local stack (moto + Lambda invoke host) in the background; prints exports"
	@echo "make local-down  stop it"
	@echo "make statemachines  regenerate statemachines/*.asl.json, their diagrams and statemachines/README.md"
	@echo "make package     sam build: arm64 Lambda zips (ARCH=x86_64 for the other), each one's size"
	@echo "make bench-mirror  the S3 mirror against aws s3 sync and rclone on a local garage (not in make test)"
	@echo "make bench-scale   scale-to-zero's AWS calls and time on a seeded staging of 250 resources (not in make test)"
	@echo "make bench-coldstart  each function's release-build cold start (ready, first invoke, peak RSS) against Python + boto3 (not in make test)"

# Python side of the local stack: the pinned emulator and cfn-lint.
$(VENV_STAMP): tests/local/requirements.txt
	python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --disable-pip-version-check -r tests/local/requirements.txt
	touch $@

venv: $(VENV_STAMP)

# Debug builds of every function binary (the invoke host runs them) and of the
# tests, in the one shared target dir.
build:
	$(CARGO) build --workspace --bins --tests

demo: venv build
	target/debug/demo

test: venv build lint validate stack-selftest rust-tests
	@python3 -c 'import re; r=open("$(LOCAL)/rust-tests.log").read(); p=open("$(LOCAL)/stack-selftest.log").read(); \
	n=sum(int(x) for x in re.findall(r"test result: \w+\. (\d+) passed", r)) + int(re.search(r"Ran (\d+) test", p).group(1)); \
	f=sum(int(x) for x in re.findall(r"(\d+) failed;", r)); print(f"total: {n} passed, {f} failed")'

# The definitions are the generator's output (statemachines/generator); a test
# fails while the committed files differ from it.
statemachines:
	$(CARGO) run --quiet -p understudy-statemachines

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --quiet -- -D warnings

# asl-validator, pinned in tests/asl/package-lock.json, on every definition; and
# once on a broken one it must refuse, so the check cannot pass vacuously.
ASL_VALIDATOR := tests/asl/node_modules/.bin/asl-validator
$(ASL_VALIDATOR): tests/asl/package-lock.json
	npm ci --prefix tests/asl --silent --no-audit --no-fund
	touch $@

# The IAM audit (tests/local/iam_audit.py): both templates, expanded with samtranslator,
# with their defaults and every samconfig environment; its failing fixtures are
# tests/fixtures/iam-refused, refused by test_iam_audit.py in stack-selftest.
validate: venv $(ASL_VALIDATOR)
	$(VENV)/bin/cfn-lint infra/template.yaml infra/production-access.yaml
	$(PYTHON) tests/local/samconfig.py --lint $(VENV)/bin/cfn-lint
	$(PYTHON) -W ignore tests/local/iam_audit.py
	$(ASL_VALIDATOR) $(foreach f,$(wildcard statemachines/*.asl.json),--json-path $(f))
	@if $(ASL_VALIDATOR) --silent --json-path tests/fixtures/asl-invalid.asl.json; then \
		echo "asl-validator accepted tests/fixtures/asl-invalid.asl.json"; exit 1; fi

stack-selftest: venv
	@mkdir -p $(LOCAL)
	set -o pipefail; $(PYTHON) -m unittest discover -s tests/local -p 'test_*.py' 2>&1 | tee $(LOCAL)/stack-selftest.log

rust-tests: build
	@mkdir -p $(LOCAL)
	set -o pipefail; $(CARGO) test --workspace 2>&1 | tee $(LOCAL)/rust-tests.log

local-up: venv build
	@mkdir -p $(LOCAL)
	@if [ -f $(LOCAL)/stack.pid ] && kill -0 $$(cat $(LOCAL)/stack.pid) 2>/dev/null; then \
		echo "already running (PID $$(cat $(LOCAL)/stack.pid))"; cat $(LOCAL)/stack.env; exit 0; fi
	@nohup $(PYTHON) tests/local/stack.py --bin-dir target/debug --log-dir $(LOCAL)/logs > $(LOCAL)/stack.env 2> $(LOCAL)/stack.log & echo $$! > $(LOCAL)/stack.pid
	@for i in $$(seq 1 100); do grep -q "ready" $(LOCAL)/stack.env 2>/dev/null && break; sleep 0.2; done
	@grep -q "ready" $(LOCAL)/stack.env || { echo "the stack did not start; see $(LOCAL)/stack.log"; exit 1; }
	@grep '^export' $(LOCAL)/stack.env

local-down:
	@if [ -f $(LOCAL)/stack.pid ]; then kill $$(cat $(LOCAL)/stack.pid) 2>/dev/null || true; rm -f $(LOCAL)/stack.pid $(LOCAL)/stack.env; echo stopped; else echo "not running"; fi

# make package: sam build (BuildMethod: rust-cargolambda) with aws-sam-cli, cargo-lambda
# and zig pinned in a venv of their own, on PATH; then a zip per function and its size.
# ARCH=x86_64 builds the other architecture (deploy with Architecture=x86_64 then).
PACKAGE_VENV := .package-venv
ARCH ?= arm64
RUST_TARGET_arm64 := aarch64-unknown-linux-gnu
RUST_TARGET_x86_64 := x86_64-unknown-linux-gnu
FUNCTIONS := $(notdir $(wildcard functions/*))

$(PACKAGE_VENV)/.installed: infra/package-requirements.txt
	python3 -m venv $(PACKAGE_VENV)
	$(PACKAGE_VENV)/bin/pip install --quiet --disable-pip-version-check -r infra/package-requirements.txt
	touch $@

package: $(PACKAGE_VENV)/.installed
	@test -n "$(RUST_TARGET_$(ARCH))" || { echo "ARCH must be arm64 or x86_64, not $(ARCH)"; exit 1; }
	rustup target add $(RUST_TARGET_$(ARCH))
	PATH="$(CURDIR)/$(PACKAGE_VENV)/bin:$$PATH" SAM_CLI_TELEMETRY=0 \
		$(PACKAGE_VENV)/bin/sam build --parameter-overrides Architecture=$(ARCH)
	$(PACKAGE_VENV)/bin/python infra/package.py --expect $(FUNCTIONS)

clean: local-down
	$(CARGO) clean
	rm -rf $(VENV) $(LOCAL) $(PACKAGE_VENV) .aws-sam tests/asl/node_modules

# The mirror benchmark (issue #4), not part of make test: garage 2.5.0 built once
# into a cache outside the checkout (~12 min on 2 cores), rclone from Debian, the
# AWS CLI in its own venv, the mirror and the delaying proxy in a release build.
.PHONY: bench-mirror
BENCH_VENV := .bench-venv
GARAGE_ROOT ?= $(HOME)/.cache/understudy/garage-2.5.0
GARAGE := $(GARAGE_ROOT)/bin/garage

$(BENCH_VENV)/.installed: tests/bench/requirements.txt
	python3 -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install --quiet --disable-pip-version-check -r tests/bench/requirements.txt
	touch $@

$(GARAGE):
	nice -n 19 $(CARGO) install garage@2.5.0 --locked --root $(GARAGE_ROOT)

bench-mirror: $(BENCH_VENV)/.installed $(GARAGE)
	@command -v rclone > /dev/null || { apt-get update -qq && apt-get install -y -qq rclone; }
	nice -n 10 $(CARGO) build --profile bench-mirror -p understudy-tests --bin mirror-cli --bin delay-proxy
	@mkdir -p $(LOCAL)
	python3 tests/bench/mirror_bench.py --garage $(GARAGE) --aws $(BENCH_VENV)/bin/aws \
		--bin-dir target/bench-mirror --output $(LOCAL)/bench-mirror.json

# scale-to-zero's cost (issue #5), not part of make test: the real debug binary in the
# local stack, slow transitions off, on 200 ECS services and 50 databases seeded in
# staging plus bystanders it must not touch; calls per phase from the request recorder,
# then the wake-restores-everything check (see tests/bench/scale_bench.py).
.PHONY: bench-scale
bench-scale: venv build
	@mkdir -p $(LOCAL)
	$(PYTHON) tests/bench/scale_bench.py --bin-dir target/debug --output $(LOCAL)/bench-scale.json

# Cold start (issue #14), not part of make test: every function's release build (the
# workspace's [profile.release], what Lambda gets: opt-level s, fat LTO, strip,
# panic=abort; about 35 min from scratch on 2 cores), for this host, started behind
# the local Lambda host's Runtime API; ready (spawn to the first /next), first
# invocation and peak RSS, 5 runs each, against a Python + boto3 peer that builds the
# same clients, from the bench venv (see tests/bench/coldstart_bench.py).
.PHONY: bench-coldstart

bench-coldstart: venv $(BENCH_VENV)/.installed
	nice -n 10 $(CARGO) build --release --bins $(addprefix -p ,$(FUNCTIONS))
	@mkdir -p $(LOCAL)
	$(PYTHON) tests/bench/coldstart_bench.py --bin-dir target/release --python $(BENCH_VENV)/bin/python \
		--output $(LOCAL)/bench-coldstart.json
