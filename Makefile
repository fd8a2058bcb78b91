# Two commands set up a fresh machine: `make up` runs the app with demo data,
# `make test` runs every test. Everything else here is a building block of those two.
SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

SEED ?= demo

.PHONY: help up down status services seed app build lint test test-rust test-wasm test-infra test-browser test-load test-spin

help: ## List the targets.
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

up: services seed app ## Set up everything on this machine and run the app with demo data.
	@infra/local/status

down: ## Stop everything `make up` started.
	infra/local/down

status: ## Show which local services run.
	infra/local/status

services: ## Install what is missing; start Redis, MariaDB and the Kafka broker; migrate.
	infra/local/up

seed: ## Load seed data (SEED=demo or SEED=large); safe to repeat.
	infra/mysql/seed $(SEED)

app: ## Build the host and the components, (re)start the app on 127.0.0.1:3000.
	infra/local/app

build: ## Build native crates and the wasm32-wasip2 components.
	cargo build --workspace
	cargo build -p ticketing-core --target wasm32-wasip2
	cargo build --release --target wasm32-wasip2 --manifest-path functions/Cargo.toml

lint: ## Formatting and clippy of both workspaces (native, and the wasm components), warnings are errors.
	cargo fmt --all -- --check
	cargo fmt --all --manifest-path functions/Cargo.toml -- --check
	cargo fmt --all --manifest-path host/tests/probe/Cargo.toml -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	cargo clippy --target wasm32-wasip2 --manifest-path functions/Cargo.toml --all-targets -- -D warnings

test: services lint test-rust test-wasm test-infra test-browser test-load test-spin ## Set up everything and run every test (SPIN=/path/to/spin adds the conformance run under real Spin).

# Under edge, whatever SPIN says: test-spin runs the same tests under Spin. On an empty
# broker, whatever ran before: a broker full of old messages slows the e2e event tests.
test-rust:
	infra/local/fresh-broker
	env -u SPIN cargo test --workspace

test-wasm: ## The core and the components build for the edge target.
	cargo build -p ticketing-core --target wasm32-wasip2
	cargo build --release --target wasm32-wasip2 --manifest-path functions/Cargo.toml

test-infra: ## Schema, migrations, seed data and compose against the real local services.
	infra/tests/run

test-browser: ## The fan's page and the console in headless Chromium (Selenium), screenshots in target/browser.
	e2e/browser/run

test-load: ## Every k6 scenario, the API fuzzer and the fault drills (smoke profile), each followed by the verifier (resets the app's data).
	env -u SPIN loadtests/run all waiting-crowd onsale sellout api-fuzz drills --profile smoke

test-spin: ## The conformance run under real Spin when SPIN=/path/to/spin is given (e2e/spin/run); says it skipped otherwise.
	e2e/spin/run
