# Thin wrapper: the logic lives in scripts/.
.PHONY: run build plugins test fmt lint setup bench

# Build everything (plugins too) and start the gateway on 127.0.0.1:5000,
# loading ./plugins. Extra flags: make run ARGS="--config portico.toml"
run: build
	exec ./target/dist/portico $(ARGS)

build:
	scripts/build

plugins:
	scripts/setup toolchain
	scripts/build-plugins

# Every test: fmt, clippy, Rust tests and the end-to-end suite.
test:
	scripts/test

setup:
	scripts/setup

# Performance benchmark (gateway vs nginx vs upstream alone); writes
# tests/bench/RESULTS.md. Durations: BENCH_* variables (see scripts/bench).
bench:
	scripts/bench

fmt:
	cargo fmt --all

lint:
	cargo fmt --all --check
	cargo clippy --release --workspace --all-targets -- -D warnings
