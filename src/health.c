/*-------------------------------------------------------------------------
 *
 * health.c
 *	  Target health: the rules (pure functions of the outcomes) and their
 *	  storage in campus_sync.target_health.
 *
 *	  deliver() runs in its caller's transaction, so a row it updates stays
 *	  locked until that transaction ends.  Saving therefore never waits: a
 *	  row another deliverer holds is left to it (FOR UPDATE SKIP LOCKED).
 *	  The caller must be connected to SPI.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

#include "health.h"

static SPIPlanPtr load_plan = NULL;
static SPIPlanPtr update_plan = NULL;
static SPIPlanPtr insert_plan = NULL;

static SPIPlanPtr
prepare(const char *sql, int nargs, Oid *types)
{
	SPIPlanPtr	plan = SPI_prepare(sql, nargs, types);

	if (plan == NULL)
		elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
	SPI_keepplan(plan);
	return plan;
}

static void
health_defaults(TargetHealth *h)
{
	memset(h, 0, sizeof(TargetHealth));
	h->up = true;
	h->probe_interval_s = HEALTH_FIRST_PROBE_S;
}

static TimestampTz
timestamp_col(HeapTuple tup, TupleDesc desc, int col)
{
	bool		isnull;
	Datum		d = SPI_getbinval(tup, desc, col, &isnull);

	return isnull ? 0 : DatumGetTimestampTz(d);
}

void
health_load(const char *server, TargetHealth *h)
{
	Oid			types[1] = {TEXTOID};
	Datum		args[1];
	HeapTuple	tup;
	TupleDesc	desc;
	bool		isnull;
	Datum		d;

	health_defaults(h);
	h->mcxt = CurrentMemoryContext;
	if (load_plan == NULL)
		load_plan = prepare("SELECT up, failures, down_since, next_probe_at, probe_interval_s, "
							"last_success_at, last_error, last_error_at "
							"FROM campus_sync.target_health WHERE server = $1", 1, types);
	args[0] = CStringGetTextDatum(server);
	if (SPI_execute_plan(load_plan, args, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read campus_sync.target_health");
	if (SPI_processed == 0)
		return;

	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	h->up = DatumGetBool(SPI_getbinval(tup, desc, 1, &isnull));
	h->failures = DatumGetInt32(SPI_getbinval(tup, desc, 2, &isnull));
	h->down_since = timestamp_col(tup, desc, 3);
	h->next_probe_at = timestamp_col(tup, desc, 4);
	d = SPI_getbinval(tup, desc, 5, &isnull);
	if (!isnull)
		h->probe_interval_s = DatumGetFloat8(d);
	h->last_success_at = timestamp_col(tup, desc, 6);
	h->last_error = SPI_getvalue(tup, desc, 7);
	if (h->last_error)
		h->last_error = MemoryContextStrdup(h->mcxt, h->last_error);
	h->last_error_at = timestamp_col(tup, desc, 8);
}

static Datum
nullable_ts(TimestampTz t, char *null)
{
	*null = t == 0 ? 'n' : ' ';
	return TimestampTzGetDatum(t);
}

/* Saves the health, unless another deliverer holds the row. */
void
health_save(const char *server, TargetHealth *h)
{
	Oid			types[9] = {TEXTOID, BOOLOID, INT4OID, TIMESTAMPTZOID, TIMESTAMPTZOID,
	FLOAT8OID, TIMESTAMPTZOID, TEXTOID, TIMESTAMPTZOID};
	Datum		args[9];
	char		nulls[9];

	if (!h->changed)
		return;
	if (update_plan == NULL)
	{
		update_plan = prepare("WITH mine AS (SELECT server FROM campus_sync.target_health "
							  "WHERE server = $1 FOR UPDATE SKIP LOCKED) "
							  "UPDATE campus_sync.target_health h SET up = $2, failures = $3, "
							  "down_since = $4, next_probe_at = $5, probe_interval_s = $6, "
							  "last_success_at = $7, last_error = $8, last_error_at = $9 "
							  "FROM mine WHERE h.server = mine.server", 9, types);
		insert_plan = prepare("INSERT INTO campus_sync.target_health (server, up, failures, "
							  "down_since, next_probe_at, probe_interval_s, last_success_at, "
							  "last_error, last_error_at) "
							  "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) "
							  "ON CONFLICT (server) DO NOTHING", 9, types);
	}

	memset(nulls, ' ', sizeof(nulls));
	args[0] = CStringGetTextDatum(server);
	args[1] = BoolGetDatum(h->up);
	args[2] = Int32GetDatum(h->failures);
	args[3] = nullable_ts(h->down_since, &nulls[3]);
	args[4] = nullable_ts(h->next_probe_at, &nulls[4]);
	args[5] = Float8GetDatum(h->probe_interval_s);
	args[6] = nullable_ts(h->last_success_at, &nulls[6]);
	args[7] = h->last_error ? CStringGetTextDatum(h->last_error) : (Datum) 0;
	nulls[7] = h->last_error ? ' ' : 'n';
	args[8] = nullable_ts(h->last_error_at, &nulls[8]);

	if (SPI_execute_plan(update_plan, args, nulls, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "could not update campus_sync.target_health");
	if (SPI_processed == 0 &&
		SPI_execute_plan(insert_plan, args, nulls, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "could not insert into campus_sync.target_health");
	h->changed = false;
}

/* The target answered. */
static void
mark_up(TargetHealth *h)
{
	if (!h->up)
	{
		h->up = true;
		h->down_since = 0;
		h->next_probe_at = 0;
		h->probe_interval_s = HEALTH_FIRST_PROBE_S;
	}
	h->failures = 0;
	h->changed = true;
}

void
health_success(TargetHealth *h, TimestampTz now)
{
	mark_up(h);
	h->last_success_at = now;
}

static TimestampTz
after_seconds(TimestampTz now, double seconds)
{
	return now + (int64) (seconds * USECS_PER_SEC);
}

/*
 * health_failure
 *		Counts a failed attempt.  A permanent failure is an answer: the
 *		target is up.  Returns true when the target is (now) down.
 */
bool
health_failure(TargetHealth *h, bool temporary, const char *error,
			   double retry_after_s, TimestampTz now, bool was_probe)
{
	double		wait_s;

	if (h->last_error)
		pfree(h->last_error);
	h->last_error = MemoryContextStrdup(h->mcxt, error);
	h->last_error_at = now;
	h->changed = true;
	if (!temporary)
	{
		mark_up(h);
		return false;
	}

	h->failures++;
	if (h->up && h->failures >= HEALTH_DOWN_AFTER)
	{
		h->up = false;
		h->down_since = now;
		h->probe_interval_s = HEALTH_FIRST_PROBE_S;
	}
	else if (!h->up && was_probe)
		h->probe_interval_s = Min(HEALTH_MAX_PROBE_S, h->probe_interval_s * 2);
	else
		return !h->up;

	/* the next probe: Retry-After is honoured up to the 30 s probe bound */
	wait_s = Min(HEALTH_MAX_PROBE_S, Max(h->probe_interval_s, retry_after_s));
	h->next_probe_at = after_seconds(now, wait_s);
	return true;
}

bool
health_probe_due(TargetHealth *h, TimestampTz now)
{
	return !h->up && now >= h->next_probe_at;
}
