# The two commands: `make dev` serves the API locally, `make test` runs every test.
# Both build with the one dev profile and the same targets (tests included), so the local
# server and the tests share every compiled artifact.
CARGO_BUILD := cargo build --workspace --all-targets
ORG ?= org_acme

.PHONY: setup dev test token lint load chaos fuzz bench scale

setup:
	@scripts/setup

dev: setup
	$(CARGO_BUILD)
	./target/debug/local-api

# The functions' binaries first: a test runs one under the loopback Runtime API.
test: setup
	$(CARGO_BUILD)
	cargo test --workspace -- --skip chaos::
	# The fault campaign on its own: its clients, crashes, two proxies and the emulator load the
	# machine enough to starve tests running beside it on 2 cores.
	cargo test --test integration chaos::
	scripts/contract

# An unsigned local token: TOKEN=$$(make -s token ORG=org_acme)
token:
	@$(CARGO_BUILD) --quiet
	@./target/debug/local-api token $(ORG)

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

# 5,000 creates from 32 clients over loopback, then a full page walk (make test runs 600);
# then the publish lag at a steady rate.
load: setup
	LOAD_REQUESTS=5000 LOAD_CLIENTS=32 cargo test --test load -- --nocapture --include-ignored --test-threads 1

# The randomized fault campaign (tests/integration/chaos/) for CHAOS_SECONDS (make test runs 20 s):
# CHAOS_SEED reproduces a run's faults and operations; CHAOS_FAULT_RATE, CHAOS_CRASH_RATE and
# CHAOS_CLIENTS set it.
CHAOS_SECONDS ?= 300
chaos: setup
	CHAOS_SECONDS=$(CHAOS_SECONDS) cargo test --test integration chaos:: -- --nocapture

# Each fuzz target for FUZZ_SECONDS (default 60), from the committed seeds in fuzz/seeds/.
# cargo-fuzz needs nightly features: RUSTC_BOOTSTRAP lets the stable toolchain use them.
FUZZ_SECONDS ?= 60
fuzz:
	command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
	mkdir -p fuzz/logs
	for target in body query scalars; do \
	  mkdir -p fuzz/corpus/$$target; \
	  if RUSTC_BOOTSTRAP=1 cargo fuzz run $$target fuzz/corpus/$$target fuzz/seeds/$$target \
	       -- -max_total_time=$(FUZZ_SECONDS) > fuzz/logs/$$target.log 2>&1; \
	  then echo "fuzz $$target: $$(grep -E '^Done' fuzz/logs/$$target.log)"; \
	  else tail -n 60 fuzz/logs/$$target.log; exit 1; fi; \
	done

# Cold start, warm latency, memory and zip size of the release functions against floors
# measured in the same run; JSON goes to bench/results/.
bench: setup
	cargo build --release -p list -p retrieve -p record-attempt -p bench
	./target/release/bench

# One organization's write units per partition key through a metering proxy (BENCHMARKS.md).
scale: setup
	cargo run -q -p bench --bin scale
