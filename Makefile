# foliod build. Plain GNU make; objects under build/ (release) or build/san (sanitizers).
#   make            release build: build/foliod, build/folioctl
#   make run        set up the demo hotel on a private PostgreSQL and run foliod in the foreground
#   make check      sanitizer build with -Werror, unit tests, integration tests
#   make lint       cppcheck and clang-tidy
#   make format     clang-format every source file

SAN ?= 0
ifeq ($(SAN),1)
BUILD ?= build/san
OPT = -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all
SANLD = -fsanitize=address,undefined
else
BUILD ?= build
OPT = -O2 -g -D_FORTIFY_SOURCE=2
SANLD =
endif

PKGS = libevent libevent_openssl libevent_pthreads jansson openssl libpq
WARN = -Wall -Wextra -Wformat=2 -Wshadow -Wmissing-prototypes -Wstrict-prototypes \
       -Wpointer-arith -Wwrite-strings -Wvla -Wimplicit-fallthrough
WERROR ?=
CC ?= cc
CFLAGS_ALL = -std=c11 -D_GNU_SOURCE -DOPENSSL_API_COMPAT=30000 $(WARN) $(WERROR) $(OPT) \
             -fstack-protector-strong -fPIE -Iinclude $(shell pkg-config --cflags $(PKGS)) $(CFLAGS)
LDFLAGS_ALL = -pie -Wl,-z,relro,-z,now $(SANLD) $(LDFLAGS)
LIBS = $(shell pkg-config --libs $(PKGS)) -lpthread
TEST_LIBS = $(LIBS) $(shell pkg-config --libs cmocka) $(PDF_LIBS)
# libharu (PDF statements) has no pkg-config file; only folioctl and the tests link it.
PDF_LIBS = -lhpdf

# Every module but the two programs' entry points goes into the core archive.
CORE_SRCS = $(filter-out src/main.c src/folioctl.c src/possim.c,$(wildcard src/*.c))
CORE_OBJS = $(CORE_SRCS:src/%.c=$(BUILD)/obj/%.o)
UNIT_SRCS = $(wildcard tests/unit/test_*.c)
UNIT_BINS = $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/tests/unit/%)
ITEST_COMMON = $(filter-out tests/integration/test_%.c,$(wildcard tests/integration/*.c))
ITEST_SRCS = $(wildcard tests/integration/test_*.c)
ITEST_BINS = $(ITEST_SRCS:tests/integration/%.c=$(BUILD)/tests/integration/%)

.PHONY: all run check check-build check-unit check-integration bench fuzz fuzz-smoke lint format \
        install clean
SHELL = /bin/bash
PROGRAMS = $(BUILD)/foliod $(BUILD)/folioctl $(if $(wildcard src/possim.c),$(BUILD)/possim)
all: $(PROGRAMS)

$(BUILD)/obj/%.o: src/%.c $(wildcard include/*.h) Makefile
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -c -o $@ $<

$(BUILD)/libfoliod.a: $(CORE_OBJS)
	rm -f $@ && ar rcs $@ $^

$(BUILD)/foliod: $(BUILD)/obj/main.o $(BUILD)/libfoliod.a
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(LIBS)

$(BUILD)/folioctl: $(BUILD)/obj/folioctl.o $(BUILD)/libfoliod.a
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(LIBS) $(PDF_LIBS)

# The POS simulator: an outlet's side of the POS interface, for people and tests.
$(BUILD)/possim: $(BUILD)/obj/possim.o $(BUILD)/libfoliod.a
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(LIBS)

$(BUILD)/tests/unit/%: tests/unit/%.c $(BUILD)/libfoliod.a $(wildcard include/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(LDFLAGS_ALL) -o $@ $< $(BUILD)/libfoliod.a $(TEST_LIBS)

$(BUILD)/tests/integration/%: tests/integration/%.c $(ITEST_COMMON) $(BUILD)/libfoliod.a $(wildcard include/*.h) $(wildcard tests/integration/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -Itests/integration $(LDFLAGS_ALL) -o $@ $< $(ITEST_COMMON) $(BUILD)/libfoliod.a $(TEST_LIBS)

# ---- fuzzing (clang, libFuzzer) ----
FUZZ_CC ?= clang
FUZZ_BUILD = build/fuzz
FUZZ_FLAGS = -std=c11 -D_GNU_SOURCE -DOPENSSL_API_COMPAT=30000 -g -O1 -Iinclude \
             $(shell pkg-config --cflags $(PKGS)) -fsanitize=address,undefined \
             -fno-sanitize-recover=all
FUZZ_TARGETS = $(patsubst tests/fuzz/%.c,$(FUZZ_BUILD)/%,$(wildcard tests/fuzz/fuzz_*.c))
FUZZ_SECONDS ?= 600
FUZZ_SMOKE_SECONDS ?= 5

$(FUZZ_BUILD)/obj/%.o: src/%.c $(wildcard include/*.h) Makefile
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_FLAGS) -fsanitize=fuzzer-no-link -c -o $@ $<

$(FUZZ_BUILD)/libfoliod.a: $(CORE_SRCS:src/%.c=$(FUZZ_BUILD)/obj/%.o)
	rm -f $@ && ar rcs $@ $^

$(FUZZ_BUILD)/fuzz_%: tests/fuzz/fuzz_%.c $(FUZZ_BUILD)/libfoliod.a
	$(FUZZ_CC) $(FUZZ_FLAGS) -fsanitize=fuzzer -o $@ $< $(FUZZ_BUILD)/libfoliod.a $(LIBS)

# Each target runs on a scratch copy of its seed corpus; a crash leaves its input in
# build/fuzz/ (turn it into a seed and a regression test).
define fuzz_run
	@set -e; for t in $(FUZZ_TARGETS); do \
	    name=$$(basename $$t | sed 's/^fuzz_//'); \
	    work=$(FUZZ_BUILD)/corpus-$$name; mkdir -p $$work; cp tests/fuzz/corpus/$$name/* $$work/; \
	    echo "== $$t ($(1) s)"; \
	    $$t -max_total_time=$(1) -print_final_stats=1 -artifact_prefix=$(FUZZ_BUILD)/$$name- \
	        $$work tests/fuzz/corpus/$$name 2>&1 | grep -E '^(INFO: |#[0-9]+ *DONE|stat::number_of_executed_units|==|SUMMARY)' | tail -4; \
	    test $${PIPESTATUS[0]} -eq 0; \
	done
endef

fuzz: $(FUZZ_TARGETS)
	$(call fuzz_run,$(FUZZ_SECONDS))

fuzz-smoke: $(FUZZ_TARGETS)
	$(call fuzz_run,$(FUZZ_SMOKE_SECONDS))

# ---- benchmark: bench/run.sh (release build, private PostgreSQL + foliod, about 7 minutes) ----
$(BUILD)/loadgen: bench/loadgen.c Makefile
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(LDFLAGS_ALL) -o $@ $< $(LIBS)

bench:
	$(MAKE) SAN=0 BUILD=build all
	$(MAKE) SAN=0 BUILD=build WERROR=-Werror build/loadgen
	bash bench/run.sh build

run: all
	bash scripts/run.sh $(BUILD)

# `make check` always tests the sanitizer build with -Werror.
check:
	bash scripts/deps.sh
	$(MAKE) SAN=1 WERROR=-Werror check-build
	$(MAKE) SAN=1 WERROR=-Werror check-unit
	$(MAKE) SAN=1 WERROR=-Werror check-integration
	$(MAKE) fuzz-smoke

check-build: all $(UNIT_BINS) $(ITEST_BINS)

check-unit: $(UNIT_BINS)
	@set -e; for t in $(UNIT_BINS); do echo "== $$t"; $$t; done

check-integration: all $(ITEST_BINS)
	bash tests/integration/harness.sh $(BUILD) $(ITEST_BINS)

lint:
	cppcheck --quiet --enable=warning,performance,portability --std=c11 -Iinclude src
	clang-tidy src/*.c -- -std=c11 -D_GNU_SOURCE -Iinclude $(shell pkg-config --cflags $(PKGS))

format:
	clang-format -i src/*.c include/*.h tests/unit/*.c tests/integration/*.c

PREFIX ?= /usr/local
install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/foliod/sql $(DESTDIR)/etc/foliod
	install -m 755 $(PROGRAMS) $(DESTDIR)$(PREFIX)/bin/
	install -m 644 sql/*.sql $(DESTDIR)$(PREFIX)/share/foliod/sql/
	install -m 644 etc/foliod.conf $(DESTDIR)/etc/foliod/foliod.conf

clean:
	rm -rf build
