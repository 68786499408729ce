# campus_sync: a PostgreSQL extension (PGXS build; also out of the tree,
# as pg_buildext builds it: paths start from this Makefile's directory)
TOP := $(dir $(abspath $(lastword $(MAKEFILE_LIST))))
EXTENSION = campus_sync
EXTVERSION = $(shell sed -n "s/^default_version = '\(.*\)'/\1/p" $(TOP)campus_sync.control)

MODULE_big = campus_sync
# every C file of src/: a new service is a new file and nothing more here
OBJS = $(patsubst $(TOP)%.c,%.o,$(sort $(wildcard $(TOP)src/*.c)))

# every install and upgrade script: ALTER EXTENSION ... UPDATE walks the chain
DATA = $(notdir $(wildcard $(TOP)campus_sync--*.sql))

REGRESS = $(patsubst $(TOP)sql/%.sql,%,$(sort $(wildcard $(TOP)sql/*.sql)))
REGRESS_OPTS = --inputdir=$(TOP)

# the PGXS convention: PG_CONFIG from the environment, else the one in PATH
PG_CONFIG ?= pg_config
# -isystem: warnings inside PostgreSQL's own headers are not ours to fix
PG_CPPFLAGS = -DEXTVERSION=\"$(EXTVERSION)\" -isystem $(shell $(PG_CONFIG) --includedir-server) \
	$(shell pkg-config --cflags libcurl libcjson)
PG_CFLAGS = -Wall -Wextra $(EXTRA_CFLAGS)
SHLIB_LINK = $(shell pkg-config --libs libcurl libcjson libcrypto)

PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# The tests that send to the mock APIs (test/run.sh starts them and gives
# their addresses in test.* settings): a pg_regress suite of its own, so
# that `make installcheck` needs no remote.
ONLINE_REGRESS = $(patsubst $(TOP)test/regress_online/sql/%.sql,%,$(sort $(wildcard $(TOP)test/regress_online/sql/*.sql)))

.PHONY: installcheck-online
installcheck-online:
	$(pg_regress_installcheck) --inputdir=$(TOP)test/regress_online --outputdir=$(TOP)test/regress_online $(ONLINE_REGRESS)

# out of the tree, the objects' directory is made first
$(OBJS): | objdir
.PHONY: objdir
objdir:
	@mkdir -p src
