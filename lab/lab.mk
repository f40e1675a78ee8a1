# The lab rack (lab/README-interface.md): included by the Makefile. lab-up/lab-down need root.
#   make lab-build   control plane + KWOK from Go modules into the cache (no-op when cached)
#   make lab-up      bridge, host namespaces with sshd, etcd, API server, controllers, KWOK
#   make lab-down    removes everything lab-up made (also after a failed or partial lab-up)
.PHONY: lab-build lab-up lab-down

lab-build:
	@lab/build.sh >/dev/null

lab-up:
	@$(MAKE) --no-print-directory venv
	@lab/lab-up.sh

lab-down:
	@lab/lab-down.sh

# The end-to-end test of the lab guide: lab-up, seven steps with the real engine, lab-down.
# e2e-faults: in a fresh lab, interrupted runs, the API server or a host down, an API server
# restart mid-run (lab/e2e_faults.py; HOMELAB_FAULTS_SEED=<n> repeats its random kill points).
.PHONY: e2e e2e-faults
e2e: venv toolchain lab-build
	@lab/e2e.sh

e2e-faults: venv toolchain lab-build
	@lab/e2e.sh e2e_faults.py
