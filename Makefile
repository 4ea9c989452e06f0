# sockvisor: `make test` installs what the tests need and runs every test.
GO       ?= go
GOFLAGS  ?= -buildvcs=false
export PATH := $(PATH):/usr/local/go/bin
# A Debian/rpm-valid version from git: the tag (v1.2.0 -> 1.2.0, v1.2.0-rc1
# -> 1.2.0~rc1), else 0.1.0~git<count>.<hash>. "~" sorts before the release
# in dpkg and rpm alike, so these snapshots upgrade to 0.1.0 when it is
# tagged; "-" is not allowed in an rpm version and would be read as a Debian
# revision.
VERSION  ?= $(shell v=$$(git describe --tags --exact-match 2>/dev/null) && echo $${v\#v} | tr - '~' || echo 0.1.0~git$$(git rev-list --count HEAD 2>/dev/null || echo 0).$$(git rev-parse --short HEAD 2>/dev/null || echo local))
LDFLAGS  := -s -w -X github.com/sockvisor/sockvisor/supervisor/cli.Version=$(VERSION)
BIN      := bin/sockvisor

.PHONY: all build deps test test-unit lint bench demo package clean

all: build

build:
	CGO_ENABLED=0 $(GO) build $(GOFLAGS) -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/sockvisor

deps:
	./scripts/install-deps.sh

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

# Unit and integration tests with the race detector; the real-node test in
# test/node boots its own systemd node and needs the packages built first.
# GODEBUG=execwait=2: an exec.Cmd started and never waited for panics, with
# the stack that created it, once collected (testutil.Main collects).
test: deps lint
	GODEBUG=execwait=2 $(GO) test -race -count=1 -timeout 45m ./...

bench: deps build
	$(GO) run ./bench -bin $(BIN)

demo: deps build
	./packaging/demo/demo.sh $(BIN)

# dist/sockvisor_<version>_amd64.deb and dist/sockvisor-<version>.x86_64.rpm
# (DIST= to put them elsewhere). nfpm runs as a pinned tool through the Go
# module cache, not as a dependency of this module; offline, after one fetch:
# make package GOPROXY=file://$$(go env GOMODCACHE)/cache/download
DIST     ?= dist
NFPM     ?= $(GO) run github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.45.2
package: build
	VERSION='$(VERSION)' DIST='$(DIST)' BIN='$(BIN)' NFPM='$(NFPM)' ./packaging/package.sh

clean:
	rm -rf bin dist
