# strata.deploy — the two commands a user needs: `make lab` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON    ?= python3
VENV      := .venv
BIN       := $(VENV)/bin
INVENTORY ?= inventories/lab
COLL_LINK := .cache/collections/ansible_collections/strata/deploy

export CONTAINERS_CONF := $(CURDIR)/lab/containers.conf
export ANSIBLE_CONFIG  := $(CURDIR)/ansible.cfg
export PATH            := $(CURDIR)/$(BIN):$(PATH)

.PHONY: help host-deps venv collection-link image lab lab-up lab-down lab-status test lint sanity unit molecule \
        build clean bench-traffic bench chaos awx-check lab-check secrets-scan docs

help:  ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s $$'\t'

host-deps:  ## install the host's Debian packages (podman, debootstrap, haproxy, nginx, wrk, ...), once
	@lab/host-deps.sh

$(BIN)/.installed: requirements.txt
	@lab/host-deps.sh --python-only
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt
	@touch $@

venv: $(BIN)/.installed  ## the Python tools, pinned in requirements.txt

collection-link:  ## make the checkout importable as strata.deploy
	@mkdir -p $(dir $(COLL_LINK))
	@test -L $(COLL_LINK) || ln -sfn $(CURDIR) $(COLL_LINK)

image: host-deps  ## build the lab's Debian bookworm systemd image (skipped when this recipe's image exists)
	@$(PYTHON) lab/labctl.py image

lab: host-deps venv collection-link image  ## bring up the lab of $(INVENTORY) and converge playbooks/site.yml
	@start=$$(date +%s); \
	$(BIN)/python lab/labctl.py up -i $(INVENTORY) && \
	$(BIN)/ansible-playbook -i $(INVENTORY) playbooks/site.yml && \
	$(BIN)/python lab/labctl.py summary -i $(INVENTORY) && \
	echo "make lab: done in $$(( $$(date +%s) - start ))s"

lab-status: venv  ## what is where in the lab
	@$(BIN)/python lab/labctl.py summary -i $(INVENTORY)

lab-down: venv  ## remove every lab container, network and volume (only those carrying the lab's label)
	@$(BIN)/python lab/labctl.py down -i $(INVENTORY)

test: host-deps venv collection-link image  ## lint, sanity, unit tests and every Molecule scenario
	@tests/run.sh

lint: venv collection-link  ## ansible-lint (production profile) and ruff
	@tests/run.sh lint

sanity: venv  ## ansible-test sanity in a temporary ansible_collections tree
	@tests/run.sh sanity

unit: venv collection-link  ## pytest tests/unit
	@tests/run.sh unit

molecule: venv collection-link image  ## every Molecule scenario (or SCENARIO=name)
	@tests/run.sh molecule $(SCENARIO)

build: venv  ## build the collection tarball into build/
	@mkdir -p build && $(BIN)/ansible-galaxy collection build --force --output-path build .

clean:  ## remove build output (not the lab: use lab-down)
	rm -rf build .cache tests/output

bench-traffic: host-deps venv collection-link  ## traffic benchmark on 127.0.0.1 vs community.general.haproxy (QUICK=1: ~3 min)
	@mkdir -p bench/results
	$(BIN)/python bench/traffic.py $(if $(QUICK),--quick) --json bench/results/traffic.json --plot bench/results/traffic.png

bench: host-deps venv collection-link image  ## every benchmark -> bench/results/<date>/REPORT.md + JSON + PNG (QUICK=1: the short run)
	$(BIN)/python bench/run.py $(if $(QUICK),--quick)

chaos: host-deps venv collection-link  ## faults tried under load, and what survived (QUICK=1: the local faults only)
	$(BIN)/python bench/run.py --only chaos $(if $(QUICK),--quick)

lab-check: venv collection-link  ## prove the lab's firewall from other lab hosts (a table: from, to, port, expected, got); needs make lab
	$(BIN)/ansible-playbook -i $(INVENTORY) tests/lab/check.yml

secrets-scan: host-deps venv collection-link image  ## a FRESH lab converged with -vvv --diff and canary secrets; fails on any in the log (replaces the lab)
	$(BIN)/python tools/scan_secrets.py -i $(INVENTORY)

awx-check: venv collection-link  ## run every AWX job template's playbook through ansible-runner against the lab (needs make lab)
	PYTHONPATH=$(CURDIR)/.cache/collections $(BIN)/python awx/check_templates.py

docs: venv collection-link  ## regenerate docs/reference, the role READMEs and CHANGELOG.md (make unit checks all three)
	$(BIN)/python tools/role_docs.py
	$(BIN)/python tools/gen_reference.py
	ANSIBLE_COLLECTIONS_PATH=$(CURDIR)/.cache/collections $(BIN)/antsibull-changelog release --version \
	  $$(sed -n 's/^version: *//p' galaxy.yml) --update-existing --reload-plugins
