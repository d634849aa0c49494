# ngx_http_room_affinity_module
#
#   make             build the module (and the agent) against nginx
#   make deps        install the Debian packages build, tests and demo need
#   make test        build, then run every suite (unit, runner, nginx)
#   make demo        the end-to-end demo
#   make test-nginx NGINX_SRC=/path/to/nginx
#                    build nginx itself from that tree (with --with-debug),
#                    the module against it, and run every suite with that
#                    binary (nothing is fetched; see docs/testing.md)
#
# NGINX_SRC=/path/to/nginx builds against an nginx source tree instead of
# Debian's nginx-dev headers: a release tarball (./configure) or a git
# checkout (auto/configure).  NGINX_CONFIGURE_ARGS adds flags.

NGINX_SRC            ?=
NGINX_CONFIGURE_ARGS ?=
NGINX_BIN            ?= /usr/sbin/nginx
BUILD                ?= build
CC_OPT               ?= -O2 -g -fstack-protector-strong -D_FORTIFY_SOURCE=2
CC_OPT_EXTRA          = -Wall -Wextra -Werror

MODULE  = ngx_http_room_affinity_module
SO      = $(BUILD)/$(MODULE).so
NGXDIR  = $(BUILD)/nginx
SOURCES = config $(MODULE).c $(wildcard src/*.c src/*.h)

DEBIAN_PKGS = build-essential nginx nginx-dev libhiredis-dev libjansson-dev \
              redis-server redis-tools wrk libtest-base-perl \
              libtest-longstring-perl libipc-run-perl libtext-diff-perl \
              liblist-moreutils-perl libwww-perl libjson-perl \
              python3 python3-prometheus-client libpcre3-dev zlib1g-dev \
              libssl-dev valgrind

export TEST_NGINX_BINARY      ?= $(NGINX_BIN)
export TEST_NGINX_LOAD_MODULES ?= $(CURDIR)/$(SO)

all: module agent

module: $(SO)

# what the tree in $(BUILD) was configured from: a change reconfigures it
CONFIGURED_FROM = $(NGINX_SRC)|$(NGINX_CONFIGURE_ARGS)|$(CC_OPT)

$(BUILD)/configured-from: FORCE
	@mkdir -p $(BUILD)
	@echo '$(CONFIGURED_FROM)' | cmp -s - $@ 2>/dev/null || \
	    echo '$(CONFIGURED_FROM)' > $@

$(NGXDIR)/objs/Makefile: config $(BUILD)/configured-from
	rm -rf $(NGXDIR)
	mkdir -p $(NGXDIR)
	if [ -n "$(NGINX_SRC)" ]; then \
	    if [ -x "$(NGINX_SRC)/configure" ]; then conf=./configure; \
	    elif [ -x "$(NGINX_SRC)/auto/configure" ]; then conf=auto/configure; \
	    else echo "$(NGINX_SRC): no configure nor auto/configure"; exit 1; fi; \
	    tar -C "$(NGINX_SRC)" --exclude=.git -cf - . | tar -C $(NGXDIR) -xf - && \
	    cd $(NGXDIR) && \
	    $$conf --with-compat $(NGINX_CONFIGURE_ARGS) \
	        --with-cc-opt="$(CC_OPT) $(CC_OPT_EXTRA)" \
	        --add-dynamic-module=$(CURDIR) >../configure.log \
	    || { cat ../configure.log; exit 1; }; \
	else \
	    test -f /usr/share/nginx/src/conf_flags || \
	        { echo "nginx-dev is missing: run 'make deps'"; exit 1; }; \
	    cp -r /usr/share/nginx/src/. $(NGXDIR) && cd $(NGXDIR) && \
	    bash -c '. ./conf_flags && ./configure "$${NGX_CONF_FLAGS[@]}" \
	        --with-cc-opt="$(CC_OPT) $(CC_OPT_EXTRA)" \
	        --add-dynamic-module=$(CURDIR)' >../configure.log \
	    || { cat ../configure.log; exit 1; }; \
	fi

$(SO): $(NGXDIR)/objs/Makefile $(SOURCES)
	$(MAKE) -C $(NGXDIR) -f objs/Makefile modules
	cp $(NGXDIR)/objs/$(MODULE).so $(SO).tmp
	mv -f $(SO).tmp $(SO)    # never rewrite a .so a running nginx maps

# the nginx binary of NGINX_SRC (make test-nginx)
$(NGXDIR)/objs/nginx: $(NGXDIR)/objs/Makefile
	$(MAKE) -C $(NGXDIR) -f objs/Makefile binary

# Every suite against nginx built from NGINX_SRC: --with-debug for the
# debug log lines the suites check, the sub module for t/041.  The build
# lives in TEST_NGINX_BUILD (default build-nginx), apart from $(BUILD).
# (the prefix is the build's own, so that "nginx -t" of t/050's Docker
# entrypoint finds its default temp directories).
TEST_NGINX_BUILD ?= build-nginx
TEST_NGINX_PREFIX = $(CURDIR)/$(TEST_NGINX_BUILD)/prefix
TEST_NGINX_CONFIGURE_ARGS = --with-debug --with-http_sub_module \
                            --prefix=$(TEST_NGINX_PREFIX)

test-nginx:
	@test -n "$(NGINX_SRC)" || \
	    { echo "usage: make test-nginx NGINX_SRC=/path/to/nginx-tree"; exit 1; }
	$(MAKE) BUILD=$(TEST_NGINX_BUILD) \
	    NGINX_CONFIGURE_ARGS="$(TEST_NGINX_CONFIGURE_ARGS) $(NGINX_CONFIGURE_ARGS)" \
	    module $(TEST_NGINX_BUILD)/nginx/objs/nginx
	mkdir -p $(TEST_NGINX_PREFIX)/logs
	$(TEST_NGINX_BUILD)/nginx/objs/nginx -V
	TEST_NGINX_BINARY=$(CURDIR)/$(TEST_NGINX_BUILD)/nginx/objs/nginx \
	TEST_NGINX_LOAD_MODULES=$(CURDIR)/$(TEST_NGINX_BUILD)/$(MODULE).so \
	    prove $(TEST_INC) -r t/

deps:
	@missing=""; for p in $(DEBIAN_PKGS); do \
	    dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	    sudo=""; [ "$$(id -u)" = 0 ] || sudo=sudo; \
	    echo "installing:$$missing"; \
	    $$sudo apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq \
	        --no-install-recommends $$missing; \
	else echo "all Debian packages present"; fi
	@# Node.js for the examples: the machine's own if it has one (its npm
	@# may conflict with Debian's), else Debian's
	@command -v npm >/dev/null 2>&1 || { \
	    sudo=""; [ "$$(id -u)" = 0 ] || sudo=sudo; \
	    $$sudo apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq \
	        --no-install-recommends nodejs npm; }

# the project's runner unless the real Test::Nginx is installed
TEST_INC := $(shell perl -MTest::Nginx::Socket -e1 >/dev/null 2>&1 \
              || echo -I t/lib)

agent:
	$(MAKE) -C agent

unit:
	$(MAKE) -C t/unit check

suites: module
	prove $(TEST_INC) -r t/

examples/node_modules: examples/package-lock.json
	npm ci --prefix examples --no-audit --no-fund
	touch $@

test: module agent unit suites examples/node_modules
	prove agent/test-agent.sh examples/test-examples.sh

clean:
	rm -rf $(BUILD) build-bench build-asan $(TEST_NGINX_BUILD) t/servroot*
	$(MAKE) -C t/unit clean
	$(MAKE) -C agent clean

# the module with the room_affinity_bench handler (src/ra_bench.c)
bench-micro:
	$(MAKE) BUILD=build-bench CC_OPT="$(CC_OPT) -DRA_BENCH=1" module
	$(CC) -O2 -Wall -Wextra -Werror -o build-bench/memlat bench/memlat.c
	bench/micro.sh

bench: module
	bench/throughput.sh

# the suites again, against the module built with AddressSanitizer and
# UBSan (t/tools/asan-nginx preloads them into Debian's nginx)
ASAN_OPT = -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined \
           -fno-sanitize-recover=undefined

asan:
	$(MAKE) BUILD=build-asan CC_OPT="$(ASAN_OPT)" module
	rm -f /tmp/ra-asan.*
	TEST_NGINX_BINARY=$(CURDIR)/t/tools/asan-nginx \
	TEST_NGINX_LOAD_MODULES=$(CURDIR)/build-asan/$(MODULE).so \
	RA_ASAN_LOG=/tmp/ra-asan \
	    prove $(TEST_INC) t/00[1-9]*.t t/0[1-4]*.t
	@if ls /tmp/ra-asan.* >/dev/null 2>&1; then \
	    cat /tmp/ra-asan.*; echo "sanitizer reports above"; exit 1; \
	else echo "no sanitizer report"; fi

bench-redis: module
	bench/redis.sh

# the room directory (bench/dir/run.py, docs/benchmarks.md): 3 instances,
# 10,000 rooms, with and without the directory, Redis restarted midway
bench-dir: module
	python3 bench/dir/run.py $(BENCH_DIR_ARGS)

# the sanitized module under load: two workers, failures, Redis reports
stress:
	$(MAKE) BUILD=build-asan CC_OPT="$(ASAN_OPT)" module
	bench/stress.sh

sim:
	$(MAKE) -C bench/sim run

# the simulator on bench-live's default workload, against its figures
sim-live:
	$(MAKE) -C bench/sim live

.PHONY: sim-live

# the live placement benchmark (bench/live/run.py, docs/benchmarks.md):
# real redis, 2 nginx x 2 workers, 8 WebSocket backends, seeded rooms;
# make bench-live SEEDS="1 2 3" PERIODS="1 5 30 300" runs more
SEEDS   ?= 1
PERIODS ?= 5

bench-live: module examples/node_modules
	SEEDS="$(SEEDS)" PERIODS="$(PERIODS)" python3 bench/live/run.py

.PHONY: all module agent deps unit suites test clean bench bench-micro \
        bench-redis sim asan stress test-nginx bench-live bench-dir FORCE

demo: module agent examples/node_modules
	bash examples/demo/demo.sh

.PHONY: demo
