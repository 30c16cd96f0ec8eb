# feedbackd. `make help` lists the targets.

GO       ?= go
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
REVISION ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS  := -X main.version=$(VERSION) -X main.revision=$(REVISION)
# Debian packages the tests need, as command=package.
TOOLS    := redis-server=redis-server redis-cli=redis-tools kcat=kcat curl=curl docker-compose=docker-compose promtool=prometheus prometheus=prometheus tinyproxy=tinyproxy chromium=chromium
FUZZTIME ?= 5s

.PHONY: help run build test deps check unit fuzz-short fuzz bench bench-redis-cluster chaos rules-check compose-check screenshots clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

run: ## run the whole pipeline in one process on embedded defaults (no infrastructure)
	$(GO) run -ldflags "$(LDFLAGS)" ./cmd/feedbackd --embedded

build: ## build bin/feedbackd and bin/feedbackctl
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/ ./cmd/feedbackd ./cmd/feedbackctl

test: deps check rules-check unit fuzz-short compose-check ## install what the tests need, then run every check and test

deps: ## install redis-server, kcat, curl, docker-compose, prometheus, tinyproxy and chromium with apt when missing (as root)
	@missing=""; for t in $(TOOLS); do cmd=$${t%%=*}; pkg=$${t#*=}; \
	  command -v $$cmd >/dev/null 2>&1 || missing="$$missing $$pkg"; done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "make: installing$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	else \
	  echo "make: missing Debian packages:$$missing"; \
	  echo "      install them with: sudo apt-get install$$missing"; exit 1; \
	fi

check: ## go vet, gofmt and go mod tidy leave nothing to fix
	$(GO) vet ./...
	@out=$$(gofmt -l cmd pkg schemas test); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	@cp go.mod /tmp/feedbackd.go.mod.bak && cp go.sum /tmp/feedbackd.go.sum.bak; \
	$(GO) mod tidy; \
	if ! cmp -s go.mod /tmp/feedbackd.go.mod.bak || ! cmp -s go.sum /tmp/feedbackd.go.sum.bak; then \
	  echo "go mod tidy changed go.mod/go.sum: commit the result"; exit 1; fi

unit: ## go test ./... with the race detector (unit, integration, end-to-end, short chaos suite)
	FEEDBACKD_REQUIRE_TOOLS=1 $(GO) test -race -count=1 -timeout 8m ./...

# Fuzz targets as package:target: event parsing, config validation, URL
# hosts, webhook signatures, admin tokens and JWKS, endpoint JWTs, the
# delivery transport's reading of answers (framing, leftovers), and the
# retry, dead-letter and replay record headers, the console's forms, and
# outcome records' JSON.
FUZZ := pkg/event:FuzzParseAndBody pkg/event:FuzzParseFastMatchesSchema pkg/webhook:FuzzDecode pkg/netguard:FuzzParseHost \
	pkg/signature:FuzzVerify pkg/adminauth:FuzzVerify pkg/adminauth:FuzzParseJWKS pkg/endpointauth:FuzzToken \
	pkg/deliver:FuzzReadAnswer pkg/header:FuzzParseHeaders pkg/deliverylog:FuzzParseCursor pkg/console:FuzzParseForm pkg/outcome:FuzzAppendJSON

# Go's fuzzing engine now and then fails a run that found nothing with
# "context deadline exceeded" as -fuzztime ends; such a run (no failing
# input written) is made once more.
fuzz-short: ## run each fuzz target for FUZZTIME (default 5s)
	@set -e; out=$$(mktemp); \
	for f in $(FUZZ); do pkg=$${f%%:*}; target=$${f#*:}; \
	  for try in 1 2; do \
	    echo "fuzz $$target (./$$pkg) for $(FUZZTIME)"; \
	    rc=$$( { { $(GO) test -run '^$$' -fuzz "^$$target\$$" -fuzztime $(FUZZTIME) ./$$pkg 2>&1; echo $$? >&3; } | tee $$out >&4; } 3>&1 ); \
	    [ "$$rc" = 0 ] && break; \
	    if [ $$try = 2 ] || grep -q 'Failing input written' $$out || ! grep -q 'context deadline exceeded' $$out; then rm -f $$out; exit 1; fi; \
	    echo "(Go's fuzzing engine timed itself out without a finding: once more)"; \
	  done; \
	done 4>&1; rm -f $$out

fuzz: ## run each fuzz target for 2 minutes
	$(MAKE) fuzz-short FUZZTIME=2m

BENCHFLAGS ?= --tenants 100 --events 200000

bench: deps build ## Go benchmarks of the hot path, then feedbackbench end to end, outcomes off and on (BENCHFLAGS)
	$(GO) test -run '^$$' -bench . -benchmem ./pkg/...
	$(GO) build -o bin/ ./cmd/feedbackbench
	bin/feedbackbench --feedbackd bin/feedbackd $(BENCHFLAGS)

bench-redis-cluster: deps build ## feedbackbench with one redis-server, then with a Redis Cluster of 3 masters: compare the "ratio to the raw ceiling" lines (BENCHFLAGS)
	$(GO) build -o bin/ ./cmd/feedbackbench
	bin/feedbackbench --feedbackd bin/feedbackd $(BENCHFLAGS) | grep -E 'scenario|end to end|ratio to the raw|CPU per'
	bin/feedbackbench --feedbackd bin/feedbackd --redis-cluster $(BENCHFLAGS) | grep -E 'scenario|end to end|ratio to the raw|CPU per'

CHAOS_RUNS ?= 1

chaos: deps ## chaos suite at full size, CHAOS_RUNS times: kill -9, Redis loss, dropped broker connections, broker changes, rebalances, bad records
	@set -e; for i in $$(seq 1 $(CHAOS_RUNS)); do echo "make chaos: run $$i of $(CHAOS_RUNS)"; \
	  CHAOS_FULL=1 FEEDBACKD_REQUIRE_TOOLS=1 $(GO) test -count=1 -v -timeout 30m -run '^TestChaos$$' ./test/chaos; done

rules-check: ## promtool: check the alert rules and run their unit tests
	promtool check rules config/prometheus/alerts.yml
	cd config/prometheus && promtool test rules alerts_test.yml
	promtool check config config/prometheus/prometheus.yml

compose-check: ## validate docker-compose.yml (no Docker engine is needed)
	docker-compose -f docker-compose.yml config -q

SCREENSHOTS := pkg/console/testdata/screenshots

screenshots: deps ## the console's browser test, saving a PNG of each screen in pkg/console/testdata/screenshots
	mkdir -p $(SCREENSHOTS)
	CONSOLE_SCREENSHOTS=$(CURDIR)/$(SCREENSHOTS) $(GO) test -count=1 -run '^TestConsoleInBrowser$$' ./test/e2e

clean: ## remove build output and embedded-mode data
	rm -rf bin .feedbackd
