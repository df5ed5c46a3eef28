# Agentry — common tasks. The test and lint targets use the workspace's feature set (`--workspace`), so
# switching between them does not force rebuilds; the release server is built on its own (`build`).

.PHONY: run build test check-deps fmt lint test-sqlite test-postgres fuzz bench bench-insights link-order clean

run: ## Start the server with its embedded defaults (127.0.0.1:8080, SQLite in ./data, mock provider)
	cargo run --release -p agentry --bin agentry -- serve

# The server binary is built on its own: with other packages in the same cargo invocation,
# their features change its dependencies' symbol names, and its recorded code order
# (crates/server/link-order.txt, decision 129) would no longer apply.
build: ## The release server binary (target/release/agentry)
	cargo build --release -p agentry

test: ## fmt, clippy, the domain dependency rule, and all tests on SQLite and PostgreSQL
	scripts/test.sh

check-deps: ## The domain crate must not depend on frameworks or infrastructure
	scripts/check-domain-deps.sh

fmt:
	cargo fmt --all

lint:
	cargo clippy --workspace --all-targets -- -D warnings

test-sqlite:
	cargo nextest run --workspace

test-postgres:
	AGENTRY_TEST_DATABASE=postgres AGENTRY_TEST_REQUIRE_POSTGRES=1 cargo nextest run --workspace

fuzz: ## Schema-based fuzzing of the OpenAPI document (schemathesis; no 5xx allowed)
	scripts/fuzz.sh

bench-insights: ## Insights at 1,000,000 stored turns on SQLite and PostgreSQL (scripts/bench_insights.py; uses the release binary if built)
	scripts/bench_insights.py

bench: ## Benchmark (release build, fake upstream, oha): rewrites the results in docs/performance.md. BENCH_LITELLM=1 adds LiteLLM, BENCH_QUICK=1 is a smoke run
	scripts/bench.sh

link-order: ## Record the functions a running server executes into crates/server/link-order.txt, the release binary's code order (needs valgrind; decision 129)
	cargo build --release -p agentry
	cargo build --release -p agentry-fake-upstream
	scripts/link_order.py
	cargo build --release -p agentry

clean:
	cargo clean
