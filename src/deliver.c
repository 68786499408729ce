/*-------------------------------------------------------------------------
 *
 * deliver.c
 *	  The delivery engine.  Claims due items with SELECT ... FOR UPDATE SKIP
 *	  LOCKED (so concurrent deliverers never send an item twice at once),
 *	  keeps up to `concurrency` requests in flight per server on the
 *	  backend's libcurl multi handle, and records outcomes in batches.
 *
 *	  Per person, items go out one at a time and in id order: an item is
 *	  claimed only when no older item of the same person is waiting (one a
 *	  deliverer holds still looks waiting to everybody else).
 *
 *	  Everything happens in the caller's transaction: results become
 *	  visible at its commit, and if it aborts the items are sent again
 *	  later (at least once).  While a deliverer holds items it holds the
 *	  campus_sync deliverer lock, which is how the queue view tells that
 *	  they are in flight.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "common/pg_prng.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/lock.h"
#include "tcop/utility.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "campus_sync.h"
#include "deliver.h"
#include "health.h"
#include "http.h"
#include "request.h"
#include "target.h"

/* results recorded per UPDATE, and how long they may wait */
#define RESULT_BATCH 256
#define RESULT_MAX_WAIT_MS 200
#define PROGRESS_INTERVAL_S 5
#define POLL_MS 100

/* The advisory lock every deliverer holds (see the queue view). */
#define DELIVERER_LOCK_CLASS 0x43535943	/* "CSYC" */
#define DELIVERER_LOCK_OBJID 1
#define DELIVERER_LOCK_SUBID 7

typedef struct ServerRun ServerRun;

typedef struct DeliverItem
{
	SyncJob		job;			/* first: a transfer's owner is its job */
	dlist_node	node;			/* in its server's list of items in flight */
	ServerRun  *server;
	MemoryContext mcxt;
	int64		id;
	char	   *person_key;
	char	   *payload;
	char	   *enqueued_by;
	int			attempts;
	bool		probe;
} DeliverItem;

/* A role's secret for a server, looked up once per run. */
typedef struct RoleSecret
{
	char	   *role;
	TargetSecret *secret;		/* NULL: no user mapping */
} RoleSecret;

struct ServerRun
{
	SyncTarget *target;
	TargetHealth health;
	List	   *claimed;		/* DeliverItem, claimed and not started */
	dlist_head	flying;			/* DeliverItem, started and not ended */
	int			in_flight;
	int64		cursor;			/* claims continue after this id */
	bool		exhausted;		/* nothing due at the last claim */
	List	   *secrets;		/* RoleSecret */
	DeliverCounts counts;
};

/* Outcomes waiting to be written. */
typedef struct ResultBatch
{
	MemoryContext mcxt;
	int			n;
	Datum		id[RESULT_BATCH];
	Datum		state[RESULT_BATCH];
	Datum		attempts[RESULT_BATCH];
	Datum		next_at[RESULT_BATCH];
	Datum		http_status[RESULT_BATCH];
	bool		http_status_null[RESULT_BATCH];
	Datum		error[RESULT_BATCH];
	bool		error_null[RESULT_BATCH];
	Datum		remote_id[RESULT_BATCH];
	bool		remote_id_null[RESULT_BATCH];
	Datum		done_at[RESULT_BATCH];
	bool		done_at_null[RESULT_BATCH];
	TimestampTz oldest;
} ResultBatch;

typedef struct DeliverRun
{
	MemoryContext mcxt;
	List	   *servers;		/* ServerRun */
	ResultBatch results;
	int64		max_items;		/* 0: no limit */
	int64		started;
	TimestampTz deadline;
} DeliverRun;

static SPIPlanPtr claim_plan = NULL;
static SPIPlanPtr record_plan = NULL;
static SPIPlanPtr purge_plan = NULL;
static SPIPlanPtr successor_plan = NULL;

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
prepare_plans(void)
{
	Oid			claim_types[5] = {NAMEOID, TIMESTAMPTZOID, INT8OID, INT4OID, INT8ARRAYOID};
	Oid			record_types[8] = {INT8ARRAYOID, TEXTARRAYOID, INT4ARRAYOID,
	TIMESTAMPTZARRAYOID, INT4ARRAYOID, TEXTARRAYOID, TEXTARRAYOID, TIMESTAMPTZARRAYOID};
	Oid			purge_types[2] = {NAMEOID, TIMESTAMPTZOID};
	Oid			successor_types[3] = {NAMEOID, TEXTOID, INT8OID};

	if (claim_plan != NULL)
		return;
	claim_plan = prepare(
						 "SELECT q.id, q.person_key, q.payload, q.attempts, q.enqueued_by "
						 "FROM campus_sync.queue_items q "
						 "WHERE q.server = $1 AND q.state IN ('pending', 'retrying') "
						 "  AND q.next_attempt_at <= $2 AND q.id > $3 AND q.id <> ALL ($5) "
						 "  AND NOT EXISTS (SELECT 1 FROM campus_sync.queue_items o "
						 "                  WHERE o.server = $1 AND o.person_key = q.person_key "
						 "                    AND o.state IN ('pending', 'retrying') AND o.id < q.id) "
						 "ORDER BY q.id LIMIT $4 "
						 "FOR UPDATE OF q SKIP LOCKED", 5, claim_types);
	record_plan = prepare(
						  "UPDATE campus_sync.queue_items q "
						  "SET state = r.state, attempts = r.attempts, next_attempt_at = r.next_at, "
						  "    last_http_status = r.http_status, last_error = r.error, "
						  "    remote_id = coalesce(r.remote_id, q.remote_id), delivered_at = r.done_at "
						  "FROM unnest($1, $2, $3, $4, $5, $6, $7, $8) "
						  "     AS r(id, state, attempts, next_at, http_status, error, remote_id, done_at) "
						  "WHERE q.id = r.id", 8, record_types);
	purge_plan = prepare(
						 "DELETE FROM campus_sync.queue_items "
						 "WHERE server = $1 AND state = 'delivered' AND delivered_at < $2",
						 2, purge_types);
	successor_plan = prepare(
							 "SELECT 1 FROM campus_sync.queue_items "
							 "WHERE server = $1 AND person_key = $2 AND id > $3 "
							 "  AND state IN ('pending', 'retrying') LIMIT 1",
							 3, successor_types);
}

static Datum
name_datum(const char *s)
{
	return DirectFunctionCall1(namein, CStringGetDatum(s));
}

static void flush_results(DeliverRun *run);
static Datum array_of(Datum *values, bool *nulls, int n, Oid type);

/*
 * The items this run holds for a server.  They are locked by this
 * transaction, so SKIP LOCKED does not skip them: the claim must.
 */
static Datum
held_ids(ServerRun *sr)
{
	int			n = list_length(sr->claimed) + sr->in_flight;
	Datum	   *ids = palloc(sizeof(Datum) * Max(n, 1));
	int			i = 0;
	ListCell   *lc;
	dlist_iter	iter;

	foreach(lc, sr->claimed)
		ids[i++] = Int64GetDatum(((DeliverItem *) lfirst(lc))->id);
	dlist_foreach(iter, &sr->flying)
		ids[i++] = Int64GetDatum(dlist_container(DeliverItem, node, iter.cur)->id);
	return array_of(ids, NULL, i, INT8OID);
}

/*
 * Claims up to n due items of a server after its cursor (then, once, from
 * the start: items before the cursor may have become due).  Outcomes not
 * yet written are written first, or this run's own finished items would
 * look due again.
 */
static int
claim(DeliverRun *run, ServerRun *sr, int n, bool probe)
{
	Datum		args[5];
	uint64		rows;

	flush_results(run);
	for (int pass = 0; pass < 2; pass++)
	{
		args[0] = name_datum(sr->target->server_name);
		args[1] = TimestampTzGetDatum(GetCurrentTimestamp());
		args[2] = Int64GetDatum(sr->cursor);
		args[3] = Int32GetDatum(n);
		args[4] = held_ids(sr);
		if (SPI_execute_plan(claim_plan, args, NULL, false, 0) != SPI_OK_SELECT)
			elog(ERROR, "could not claim campus_sync queue items");
		rows = SPI_processed;
		if (rows > 0 || sr->cursor == 0)
			break;
		sr->cursor = 0;
		SPI_freetuptable(SPI_tuptable);
	}

	for (uint64 i = 0; i < rows; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		MemoryContext item_cxt = AllocSetContextCreate(run->mcxt, "campus_sync item",
													   ALLOCSET_SMALL_SIZES);
		DeliverItem *item = MemoryContextAllocZero(item_cxt, sizeof(DeliverItem));
		MemoryContext old = MemoryContextSwitchTo(item_cxt);
		bool		isnull;

		item->mcxt = item_cxt;
		item->server = sr;
		item->probe = probe;
		item->id = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
		item->person_key = SPI_getvalue(tup, desc, 2);
		item->payload = SPI_getvalue(tup, desc, 3);
		item->attempts = DatumGetInt32(SPI_getbinval(tup, desc, 4, &isnull));
		item->enqueued_by = SPI_getvalue(tup, desc, 5);
		MemoryContextSwitchTo(old);

		sr->claimed = lappend(sr->claimed, item);
		sr->cursor = Max(sr->cursor, item->id);
	}
	SPI_freetuptable(SPI_tuptable);
	sr->exhausted = rows == 0;
	return (int) rows;
}

static TargetSecret *
secret_for(ServerRun *sr, const char *role)
{
	ListCell   *lc;
	RoleSecret *rs;
	MemoryContext old;

	foreach(lc, sr->secrets)
	{
		rs = lfirst(lc);
		if (strcmp(rs->role, role) == 0)
			return rs->secret;
	}
	old = MemoryContextSwitchTo(GetMemoryChunkContext(sr));
	rs = palloc(sizeof(RoleSecret));
	rs->role = pstrdup(role);
	/* a dropped role's items use the PUBLIC mapping */
	rs->secret = target_secret(sr->target, get_role_oid(role, true), true);
	sr->secrets = lappend(sr->secrets, rs);
	MemoryContextSwitchTo(old);
	return rs->secret;
}

static void
add_result(DeliverRun *run, DeliverItem *item, const char *state, int attempts,
		   TimestampTz next_at, const char *error, TimestampTz done_at)
{
	ResultBatch *b = &run->results;
	MemoryContext old;
	SyncJob    *job = &item->job;
	int			i;

	if (b->n == RESULT_BATCH)
		flush_results(run);
	old = MemoryContextSwitchTo(b->mcxt);
	i = b->n++;

	if (i == 0)
		b->oldest = GetCurrentTimestamp();
	b->id[i] = Int64GetDatum(item->id);
	b->state[i] = CStringGetTextDatum(state);
	b->attempts[i] = Int32GetDatum(attempts);
	b->next_at[i] = TimestampTzGetDatum(next_at);
	b->http_status[i] = Int32GetDatum(job->http_status);
	b->http_status_null[i] = job->http_status == 0;
	b->error[i] = error ? CStringGetTextDatum(error) : (Datum) 0;
	b->error_null[i] = error == NULL;
	b->remote_id[i] = job->remote_id ? CStringGetTextDatum(job->remote_id) : (Datum) 0;
	b->remote_id_null[i] = job->remote_id == NULL;
	b->done_at[i] = TimestampTzGetDatum(done_at);
	b->done_at_null[i] = done_at == 0;
	MemoryContextSwitchTo(old);
}

static Datum
array_of(Datum *values, bool *nulls, int n, Oid type)
{
	int			dims[1] = {n};
	int			lbs[1] = {1};
	int16		typlen;
	bool		typbyval;
	char		typalign;

	get_typlenbyvalalign(type, &typlen, &typbyval, &typalign);
	return PointerGetDatum(construct_md_array(values, nulls, 1, dims, lbs, type,
											  typlen, typbyval, typalign));
}

static void
flush_results(DeliverRun *run)
{
	ResultBatch *b = &run->results;
	MemoryContext old;
	Datum		args[8];

	if (b->n == 0)
		return;
	old = MemoryContextSwitchTo(b->mcxt);
	args[0] = array_of(b->id, NULL, b->n, INT8OID);
	args[1] = array_of(b->state, NULL, b->n, TEXTOID);
	args[2] = array_of(b->attempts, NULL, b->n, INT4OID);
	args[3] = array_of(b->next_at, NULL, b->n, TIMESTAMPTZOID);
	args[4] = array_of(b->http_status, b->http_status_null, b->n, INT4OID);
	args[5] = array_of(b->error, b->error_null, b->n, TEXTOID);
	args[6] = array_of(b->remote_id, b->remote_id_null, b->n, TEXTOID);
	args[7] = array_of(b->done_at, b->done_at_null, b->n, TIMESTAMPTZOID);
	MemoryContextSwitchTo(old);

	if (SPI_execute_plan(record_plan, args, NULL, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "could not record campus_sync delivery results");
	b->n = 0;
	MemoryContextReset(b->mcxt);
}

/* Exponential backoff with jitter, at least Retry-After, at most the cap. */
static double
backoff_seconds(int attempts, double retry_after_s, int max_delay_s)
{
	double		delay = Min(ldexp(1.0, Min(attempts - 1, 30)), (double) max_delay_s);

	delay *= 0.5 + 0.5 * pg_prng_double(&pg_global_prng_state);
	if (retry_after_s > delay)
		delay = Min(retry_after_s, (double) max_delay_s);
	return delay;
}

/* After an item ends, may a later item of the same person be due? */
static void
note_successor(ServerRun *sr, DeliverItem *item)
{
	Datum		args[3];

	if (!sr->exhausted || item->person_key == NULL)
		return;
	args[0] = name_datum(sr->target->server_name);
	args[1] = CStringGetTextDatum(item->person_key);
	args[2] = Int64GetDatum(item->id);
	if (SPI_execute_plan(successor_plan, args, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not look for later campus_sync queue items");
	if (SPI_processed > 0)
	{
		sr->exhausted = false;
		sr->cursor = Min(sr->cursor, item->id);
	}
	SPI_freetuptable(SPI_tuptable);
}

/* Records what became of an item whose job has ended, and frees it. */
static void
complete_item(DeliverRun *run, DeliverItem *item)
{
	ServerRun  *sr = item->server;
	SyncJob    *job = &item->job;
	SyncTarget *t = sr->target;
	TimestampTz now = GetCurrentTimestamp();
	int			attempts = item->attempts + 1;

	sr->in_flight--;
	dlist_delete(&item->node);
	if (job->outcome == JOB_OK)
	{
		health_success(&sr->health, now);
		add_result(run, item, "delivered", attempts, now, NULL, now);
		sr->counts.delivered++;
	}
	else if (job->outcome == JOB_PERMANENT)
	{
		(void) health_failure(&sr->health, false, job->error, -1, now, item->probe);
		add_result(run, item, "failed", attempts, now, job->error, 0);
		sr->counts.failed++;
	}
	else if (health_failure(&sr->health, true, job->error, job->retry_after_s, now,
							item->probe))
	{
		/* the target is down: the attempt does not count, the probe decides */
		add_result(run, item, "retrying", item->attempts, now,
				   psprintf("%s (target down; the attempt was not counted)", job->error), 0);
		sr->counts.retried++;
	}
	else if (attempts >= t->max_attempts)
	{
		add_result(run, item, "failed", attempts, now,
				   psprintf("gave up after %d attempts: %s", attempts, job->error), 0);
		sr->counts.failed++;
	}
	else
	{
		double		delay = backoff_seconds(attempts, job->retry_after_s, t->retry_max_delay_s);

		add_result(run, item, "retrying", attempts,
				   now + (int64) (delay * USECS_PER_SEC), job->error, 0);
		sr->counts.retried++;
	}
	note_successor(sr, item);
	MemoryContextDelete(item->mcxt);
}

static void
start_item(DeliverRun *run, DeliverItem *item)
{
	ServerRun  *sr = item->server;
	TargetSecret *secret = secret_for(sr, item->enqueued_by);
	MemoryContext old = MemoryContextSwitchTo(item->mcxt);

	run->started++;
	sr->in_flight++;
	dlist_push_tail(&sr->flying, &item->node);
	job_init(&item->job, JOB_PUSH, sr->target, secret, item->payload, item->person_key);
	if (secret == NULL)
	{
		/* the mapping went away after the item was queued */
		item->job.outcome = JOB_PERMANENT;
		item->job.error = psprintf("no user mapping for role \"%s\" or PUBLIC on server \"%s\"",
								   item->enqueued_by, sr->target->server_name);
	}
	else
		job_start(&item->job);
	MemoryContextSwitchTo(old);
	if (item->job.outcome != JOB_RUNNING)
		complete_item(run, item);
}

static bool
stopping(DeliverRun *run)
{
	return GetCurrentTimestamp() >= run->deadline ||
		(run->max_items > 0 && run->started >= run->max_items);
}

/*
 * Starts items of a server while it has room; claims more when needed.
 * A server that is down gets one probe when one is due.
 */
static void
fill(DeliverRun *run, ServerRun *sr)
{
	int			room;

	if (!sr->health.up)
	{
		if (sr->in_flight > 0 || sr->exhausted ||
			!health_probe_due(&sr->health, GetCurrentTimestamp()))
			return;
		if (sr->claimed == NIL && claim(run, sr, 1, true) == 0)
			return;				/* nothing to probe with */
		((DeliverItem *) linitial(sr->claimed))->probe = true;
		room = 1;
	}
	else
		room = sr->target->concurrency - sr->in_flight;

	while (room > 0 && !stopping(run))
	{
		DeliverItem *item;

		if (sr->claimed == NIL)
		{
			int			want = Min(2 * sr->target->concurrency, RESULT_BATCH);

			if (sr->exhausted)
				return;
			if (run->max_items > 0)
				want = (int) Min(want, run->max_items - run->started);
			if (claim(run, sr, want, false) == 0)
				return;
		}
		item = linitial(sr->claimed);
		sr->claimed = list_delete_first(sr->claimed);
		start_item(run, item);
		room--;
		if (!sr->health.up)
			return;				/* the probe is out */
	}
}

static bool
server_idle(ServerRun *sr)
{
	if (sr->in_flight > 0)
		return false;
	if (!sr->health.up)
		return sr->exhausted || !health_probe_due(&sr->health, GetCurrentTimestamp());
	return sr->exhausted && sr->claimed == NIL;
}

static void
report_progress(DeliverRun *run, TimestampTz started_at)
{
	int64		delivered = 0,
				retried = 0,
				failed = 0;
	double		seconds = (GetCurrentTimestamp() - started_at) / (double) USECS_PER_SEC;
	ListCell   *lc;

	foreach(lc, run->servers)
	{
		ServerRun  *sr = lfirst(lc);

		delivered += sr->counts.delivered;
		retried += sr->counts.retried;
		failed += sr->counts.failed;
	}
	ereport(NOTICE,
			(errmsg("campus_sync: delivered " INT64_FORMAT ", retried " INT64_FORMAT ", failed " INT64_FORMAT " in %.0f s (%.0f per second)",
					delivered, retried, failed, seconds, seconds > 0 ? delivered / seconds : 0)));
}

static void
run_loop(DeliverRun *run, bool report)
{
	TimestampTz started_at = GetCurrentTimestamp();
	TimestampTz next_report = started_at + PROGRESS_INTERVAL_S * USECS_PER_SEC;
	MemoryContext loop_cxt = AllocSetContextCreate(run->mcxt, "campus_sync deliver loop",
												   ALLOCSET_DEFAULT_SIZES);

	for (;;)
	{
		ListCell   *lc;
		HttpTransfer *t;
		bool		busy = false;
		MemoryContext old;

		CHECK_FOR_INTERRUPTS();
		old = MemoryContextSwitchTo(loop_cxt);
		foreach(lc, run->servers)
		{
			ServerRun  *sr = lfirst(lc);

			if (!stopping(run))
				fill(run, sr);
			if (sr->in_flight > 0 || (!stopping(run) && !server_idle(sr)))
				busy = true;
		}
		if (!busy)
		{
			MemoryContextSwitchTo(old);
			break;
		}

		http_wait(POLL_MS);
		while ((t = http_next_done()) != NULL)
		{
			DeliverItem *item = (DeliverItem *) t->owner;

			MemoryContextSwitchTo(item->mcxt);
			job_step(&item->job);
			MemoryContextSwitchTo(loop_cxt);
			if (item->job.outcome != JOB_RUNNING)
				complete_item(run, item);
		}

		if (run->results.n > 0 &&
			GetCurrentTimestamp() - run->results.oldest >= RESULT_MAX_WAIT_MS * 1000)
			flush_results(run);
		if (report && GetCurrentTimestamp() >= next_report)
		{
			report_progress(run, started_at);
			next_report += PROGRESS_INTERVAL_S * USECS_PER_SEC;
		}
		MemoryContextSwitchTo(old);
		MemoryContextReset(loop_cxt);
	}
	flush_results(run);
}

/* Holds the deliverer lock until the transaction ends. */
static void
take_deliverer_lock(void)
{
	LOCKTAG		tag;

	SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, DELIVERER_LOCK_CLASS,
						 DELIVERER_LOCK_OBJID, DELIVERER_LOCK_SUBID);
	(void) LockAcquire(&tag, ShareLock, false, false);
}

static void
purge_delivered(ServerRun *sr)
{
	Datum		args[2];

	args[0] = name_datum(sr->target->server_name);
	args[1] = TimestampTzGetDatum(GetCurrentTimestamp() -
								  (int64) campus_sync_keep_delivered * USECS_PER_SEC);
	if (SPI_execute_plan(purge_plan, args, NULL, false, 0) != SPI_OK_DELETE)
		elog(ERROR, "could not purge delivered campus_sync queue items");
}

/*
 * deliver_run
 *		Delivers due items of the given servers until nothing is due, the
 *		time is up or max_items (0: no limit) have been started.  The caller
 *		has connected to SPI.  Returns a DeliverCounts per server.
 */
List *
deliver_run(List *server_oids, double max_seconds, int64 max_items,
			bool report_progress)
{
	DeliverRun *run = palloc0(sizeof(DeliverRun));
	List	   *counts = NIL;
	ListCell   *lc;

	run->mcxt = AllocSetContextCreate(CurrentMemoryContext, "campus_sync deliver",
									  ALLOCSET_DEFAULT_SIZES);
	run->results.mcxt = AllocSetContextCreate(run->mcxt, "campus_sync results",
											  ALLOCSET_DEFAULT_SIZES);
	run->max_items = max_items;
	run->deadline = GetCurrentTimestamp() + (int64) (max_seconds * USECS_PER_SEC);

	take_deliverer_lock();
	prepare_plans();
	foreach(lc, server_oids)
	{
		ServerRun  *sr = MemoryContextAllocZero(run->mcxt, sizeof(ServerRun));
		MemoryContext old = MemoryContextSwitchTo(run->mcxt);

		dlist_init(&sr->flying);
		sr->target = target_load_oid(lfirst_oid(lc));
		sr->counts.server = sr->target->server_name;
		health_load(sr->target->server_name, &sr->health);
		run->servers = lappend(run->servers, sr);
		MemoryContextSwitchTo(old);
	}

	PG_TRY();
	{
		run_loop(run, report_progress);
	}
	PG_CATCH();
	{
		http_free_all();
		PG_RE_THROW();
	}
	PG_END_TRY();

	foreach(lc, run->servers)
	{
		ServerRun  *sr = lfirst(lc);
		DeliverCounts *c = palloc(sizeof(DeliverCounts));

		health_save(sr->target->server_name, &sr->health);
		purge_delivered(sr);
		*c = sr->counts;
		c->server = pstrdup(sr->counts.server);
		counts = lappend(counts, c);
	}
	MemoryContextDelete(run->mcxt);
	return counts;
}

/*
 * deliver(server, max_seconds, max_items)
 *		RETURNS TABLE (server, delivered, retried, failed)
 */
PG_FUNCTION_INFO_V1(campus_sync_deliver);

Datum
campus_sync_deliver(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	double		max_seconds = PG_ARGISNULL(1) ? 10.0 : PG_GETARG_FLOAT8(1);
	int64		max_items = PG_ARGISNULL(2) ? 0 : PG_GETARG_INT32(2);
	List	   *servers;
	List	   *counts;
	ListCell   *lc;

	if (!(max_seconds > 0) || isinf(max_seconds))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_seconds must be a positive number of seconds")));
	if (!PG_ARGISNULL(2) && max_items <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_items must be positive, or NULL for no limit")));
	if (IsolationUsesXactSnapshot())
		ereport(ERROR,
				(errcode(ERRCODE_ACTIVE_SQL_TRANSACTION),
				 errmsg("campus_sync.deliver() must run in a READ COMMITTED transaction"),
				 errdetail("It claims items other sessions queue while it runs."),
				 errhint("Call it outside of REPEATABLE READ and SERIALIZABLE transactions.")));
	PreventCommandIfReadOnly("campus_sync.deliver()");

	InitMaterializedSRF(fcinfo, 0);
	if (PG_ARGISNULL(0))
		servers = target_all_servers();
	else
		servers = list_make1_oid(target_load(NameStr(*PG_GETARG_NAME(0)), NULL,
											 SERVICE_ANY, InvalidOid)->server_oid);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	counts = deliver_run(servers, max_seconds, max_items, true);
	SPI_finish();

	foreach(lc, counts)
	{
		DeliverCounts *c = lfirst(lc);
		Datum		values[4];
		bool		nulls[4] = {0};

		values[0] = DirectFunctionCall1(namein, CStringGetDatum(c->server));
		values[1] = Int64GetDatum(c->delivered);
		values[2] = Int64GetDatum(c->retried);
		values[3] = Int64GetDatum(c->failed);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}
