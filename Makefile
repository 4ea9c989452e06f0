# sockvisor: `make test` installs what the tests need and runs every test.
GO       ?= go
GOFLAGS  ?= -buildvcs=false
export PATH := $(PATH):/usr/local/go/bin
# A Debian/rpm-valid version from git: 0.1.0+git<count>.<hash>, or the tag.
VERSION  ?= $(shell v=$$(git describe --tags --exact-match 2>/dev/null) && echo $${v\#v} || echo 0.1.0+git$$(git rev-list --count HEAD 2>/dev/null || echo 0).$$(git rev-parse --short HEAD 2>/dev/null || echo local))
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
test: deps lint
	$(GO) test -race -count=1 -timeout 45m ./...

bench: deps build
	$(GO) run ./bench -bin $(BIN)

demo: deps build
	./packaging/demo/demo.sh $(BIN)

clean:
	rm -rf bin dist
