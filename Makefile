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
TEST_LIBS = $(LIBS) $(shell pkg-config --libs cmocka)

# Every module but the two programs' entry points goes into the core archive.
CORE_SRCS = $(filter-out src/main.c src/folioctl.c src/possim.c,$(wildcard src/*.c))
CORE_OBJS = $(CORE_SRCS:src/%.c=$(BUILD)/obj/%.o)
UNIT_SRCS = $(wildcard tests/unit/test_*.c)
UNIT_BINS = $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/tests/unit/%)
ITEST_COMMON = $(filter-out tests/integration/test_%.c,$(wildcard tests/integration/*.c))
ITEST_SRCS = $(wildcard tests/integration/test_*.c)
ITEST_BINS = $(ITEST_SRCS:tests/integration/%.c=$(BUILD)/tests/integration/%)

.PHONY: all run check check-build check-unit check-integration bench fuzz lint format install clean
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
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(LIBS)

# The POS simulator: an outlet's side of the POS interface, for people and tests.
$(BUILD)/possim: $(BUILD)/obj/possim.o $(BUILD)/libfoliod.a
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(LIBS)

$(BUILD)/tests/unit/%: tests/unit/%.c $(BUILD)/libfoliod.a $(wildcard include/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(LDFLAGS_ALL) -o $@ $< $(BUILD)/libfoliod.a $(TEST_LIBS)

$(BUILD)/tests/integration/%: tests/integration/%.c $(ITEST_COMMON) $(BUILD)/libfoliod.a $(wildcard include/*.h) $(wildcard tests/integration/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -Itests/integration $(LDFLAGS_ALL) -o $@ $< $(ITEST_COMMON) $(BUILD)/libfoliod.a $(TEST_LIBS)

run: all
	bash scripts/run.sh $(BUILD)

# `make check` always tests the sanitizer build with -Werror.
check:
	bash scripts/deps.sh
	$(MAKE) SAN=1 WERROR=-Werror check-build
	$(MAKE) SAN=1 WERROR=-Werror check-unit
	$(MAKE) SAN=1 WERROR=-Werror check-integration

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
