# The two set-up commands of README.md: `make dev` runs the product with demo tenants, `make test` runs every test.
DEV_STATE := .state/dev

.PHONY: dev down test
dev:
	@tests/controlplane/down.sh $(DEV_STATE) >/dev/null 2>&1 || true
	@tests/dev.sh $(DEV_STATE)

down:
	@tests/controlplane/down.sh $(DEV_STATE)

test:
	@tests/run.sh

# Every benchmark: the in-process criterion benches (S10k) and the end-to-end list comparison on the local control plane.
.PHONY: bench
bench:
	@cargo bench
	@benches/e2e_list.sh 1000 5000
