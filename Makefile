# hubmeter — one non-recursive Makefile.
# Release objects go to build/rel, sanitized objects (tests, e2e binary) to build/san.
# Every library comes from pkg-config; dependency files (-MMD -MP) keep rebuilds exact.

PREFIX  ?= /usr/local
CC      ?= cc
PKGS    := libmicrohttpd libcurl hiredis libpq jansson libcrypto
WARN    := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
           -Wformat=2 -Wpointer-arith -Wvla -Wundef
BASE    := -std=c11 -D_GNU_SOURCE -g -pthread $(WARN) -I. -Ibuild/gen \
           $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LIBS    := $(shell pkg-config --libs $(PKGS) 2>/dev/null) -pthread -lm
SAN     := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
CFLAGS_REL := $(BASE) -O2 $(CFLAGS)
CFLAGS_SAN := $(BASE) -O1 $(SAN) $(CFLAGS)

MODULES := common registry meter billing gateway main
SRC     := $(foreach m,$(MODULES),$(wildcard $(m)/*.c))
LIB_SRC := $(filter-out main/main.c,$(SRC))
GEN_SRC := build/gen/embedded_sql.c build/gen/openapi_json.c
SQL     := $(sort $(wildcard sql/*.sql))

REL_OBJ := $(patsubst %.c,build/rel/%.o,$(SRC)) build/rel/gen/embedded_sql.o \
           build/rel/gen/openapi_json.o
SAN_LIB := $(patsubst %.c,build/san/%.o,$(LIB_SRC)) build/san/gen/embedded_sql.o \
           build/san/gen/openapi_json.o
TEST_SRC := $(wildcard tests/test_*.c)
TEST_SUP := $(filter-out $(TEST_SRC),$(wildcard tests/*.c))
TEST_BIN := $(patsubst tests/%.c,build/san/tests/%,$(TEST_SRC))
TEST_SUP_OBJ := $(patsubst %.c,build/san/%.o,$(TEST_SUP))

.PHONY: all run stop test test-only clean install lint check-deps deps fmt bench
all: bin/hubmeter

bin/hubmeter: $(REL_OBJ)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_REL) -o $@ $^ $(LIBS)

build/san/hubmeter: $(SAN_LIB) build/san/main/main.o
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_SAN) -o $@ $^ $(LIBS)

build/rel/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_REL) -MMD -MP -c -o $@ $<

build/san/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_SAN) -MMD -MP -c -o $@ $<

build/rel/gen/%.o: build/gen/%.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_REL) -c -o $@ $<

build/san/gen/%.o: build/gen/%.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_SAN) -c -o $@ $<

build/gen/embedded_sql.c: $(SQL) scripts/embed-sql.sh
	@mkdir -p $(@D)
	sh scripts/embed-sql.sh $(SQL) > $@.tmp && mv $@.tmp $@

# The org API's OpenAPI document, served at /-/v1/openapi.json.
build/gen/openapi_json.c: gateway/openapi.json scripts/embed-text.sh
	@mkdir -p $(@D)
	sh scripts/embed-text.sh gw_openapi_json gateway/openapi.json > $@.tmp && mv $@.tmp $@

build/san/tests/%: tests/%.c $(TEST_SUP_OBJ) $(SAN_LIB)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_SAN) -MMD -MP -o $@ $< $(TEST_SUP_OBJ) $(SAN_LIB) $(LIBS) \
	    $(shell pkg-config --libs criterion 2>/dev/null)

deps:
	bash scripts/deps.sh

# The README's two commands.
run: deps
	$(MAKE) bin/hubmeter
	bash scripts/run.sh

# Stops the private Redis and PostgreSQL that `make run` started (their data stays).
stop:
	bash scripts/services.sh stop var/run

test: deps
	$(MAKE) test-only

test-only: $(TEST_BIN) build/san/hubmeter bin/hubmeter
	bash scripts/test.sh $(TEST_BIN)

# Benchmarks against an nginx reverse proxy; writes BENCH.md (see scripts/bench.sh).
bench: deps
	$(MAKE) bin/hubmeter
	bash scripts/bench-pipeline.sh
	bash scripts/bench.sh

install: bin/hubmeter
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 0755 bin/hubmeter $(DESTDIR)$(PREFIX)/bin/hubmeter

# Module boundaries (DESIGN.md): each library belongs to one module, arrows point one way.
check-deps:
	bash scripts/check-deps.sh

lint: check-deps
	bash scripts/lint.sh

fmt:
	clang-format -i $(SRC) $(wildcard */*.h) $(wildcard tests/*.c)

clean:
	rm -rf build bin

.SECONDARY:

-include $(shell find build -name '*.d' 2>/dev/null)
