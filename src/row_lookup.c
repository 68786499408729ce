/*-------------------------------------------------------------------------
 *
 * row_lookup.c
 *	  The look-ups of a query's rows, many at once, whatever the service.
 *	  The caller's query runs through an SPI cursor, with the caller's
 *	  privileges, a batch of rows at a time.  Each row is built into its
 *	  service's body with the plan every other function uses (an invalid
 *	  row raises, as the payload functions do) and becomes a look-up job
 *	  (JOB_LOOKUP).  Up to the server's concurrency jobs are in flight on
 *	  the backend's libcurl multi handle, each started when the server's
 *	  pace (max_rate, a 429's Retry-After) allows; each job that ends is
 *	  handed to the caller, then its row's memory is freed.  What is held
 *	  is what is in flight and the next batch, whatever the number of rows.
 *
 *	  A function called once per row (in a LATERAL join) cannot do this:
 *	  the executor asks for the next row only when the call for this one
 *	  has returned, so its look-ups go one after another.
 *
 *	  Only this run's own transfers are looked at (their done flag), never
 *	  the multi handle's list of finished ones: the caller's query may run
 *	  look-ups of its own between two batches.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/portal.h"
#include "utils/timestamp.h"
#include "utils/typcache.h"

#include "http.h"
#include "pace.h"
#include "payload.h"
#include "row_lookup.h"

/* rows fetched at a time: twice the concurrency, at least this many */
#define FETCH_MIN 64
/* the longest wait for answers between two checks for interrupts */
#define POLL_MS 100

typedef struct LookupRow
{
	SyncJob		job;			/* first: a transfer's owner is its job */
	dlist_node	node;			/* in the run's pending or flying list */
	MemoryContext mcxt;			/* the row's: its body, key and answer */
	int64		rowno;			/* 1-based, in the query's order */
} LookupRow;

typedef struct LookupRun
{
	const char *caller;			/* the SQL function, for messages */
	SyncTarget *target;
	TargetSecret *secret;
	RowLookupDone done;
	void	   *arg;
	MemoryContext mcxt;			/* lives as long as the run */
	MemoryContext scratch;		/* one row's building, reset after it */
	MemoryContext loop;			/* one turn of the loop, reset after it */
	Portal		portal;
	TupleDesc	desc;			/* the row's */
	bool		whole_row;		/* the query's one column is the row */
	PayloadPlan *plan;
	bool		exhausted;		/* the cursor has given its last row */
	int64		rows;			/* read so far */
	dlist_head	pending;		/* LookupRow: built, not started */
	int			npending;
	dlist_head	flying;			/* LookupRow: started, not ended */
	int			in_flight;
	int64		current_row;	/* the row an error is about; 0: none */
} LookupRun;

/* Errors about one row say which. */
static void
row_context(void *arg)
{
	LookupRun  *run = arg;

	if (run->current_row > 0)
		errcontext("%s: row " INT64_FORMAT " of the query", run->caller, run->current_row);
}

/*
 * Opens the cursor and plans the bodies.  A query whose one column is of
 * a composite type (SELECT p FROM people p) gives its rows in that column;
 * any other query's columns are the row (SELECT * FROM people).
 */
static void
open_query(LookupRun *run, const char *query, Jsonb *mapping)
{
	SPIPlanPtr	plan = SPI_prepare_cursor(query, 0, NULL, CURSOR_OPT_NO_SCROLL);
	TupleDesc	desc;
	Form_pg_attribute first;
	MemoryContext old;

	if (plan == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not prepare the query given to %s", run->caller),
				 errdetail_internal("%s", SPI_result_code_string(SPI_result))));
	if (!SPI_is_cursor_plan(plan))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the query given to %s must be one statement that returns rows",
						run->caller),
				 errhint("Give a SELECT of the person rows, such as 'SELECT * FROM people'.")));
	run->portal = SPI_cursor_open(NULL, plan, NULL, NULL, false);
	desc = run->portal->tupDesc;
	first = TupleDescAttr(desc, 0);

	old = MemoryContextSwitchTo(run->mcxt);
	if (desc->natts == 1 && first->atttypid != RECORDOID && type_is_rowtype(first->atttypid))
	{
		TupleDesc	rowdesc = lookup_rowtype_tupdesc_domain(first->atttypid, -1, false);

		run->desc = CreateTupleDescCopy(rowdesc);
		ReleaseTupleDesc(rowdesc);
		run->whole_row = true;
	}
	else
		run->desc = CreateTupleDescCopy(desc);
	run->plan = payload_plan_create(run->target, run->desc, mapping);
	MemoryContextSwitchTo(old);
}

/* Builds a fetched row's body and queues its look-up (a NULL row has none). */
static void
queue_row(LookupRun *run, HeapTuple tuple, TupleDesc tupdesc)
{
	MemoryContext old = MemoryContextSwitchTo(run->scratch);
	RowValues	row;
	bool		isnull = false;

	run->current_row = ++run->rows;
	if (run->whole_row)
	{
		Datum		d = SPI_getbinval(tuple, tupdesc, 1, &isnull);

		row.desc = run->desc;
		if (!isnull)
			row_values_from_record(DatumGetHeapTupleHeader(d), &row);
	}
	else
		row_values_from_tuple(run->desc, tuple, &row);

	if (!isnull)
	{
		Payload		payload;
		MemoryContext mcxt;
		LookupRow  *lr;

		payload_build(run->plan, &row, &payload);
		if (payload.error)
			payload_raise(payload.error);
		mcxt = AllocSetContextCreate(run->mcxt, "campus_sync row look-up",
									 ALLOCSET_SMALL_SIZES);
		lr = MemoryContextAllocZero(mcxt, sizeof(LookupRow));
		lr->mcxt = mcxt;
		lr->rowno = run->rows;
		job_init(&lr->job, JOB_LOOKUP, run->target, run->secret,
				 MemoryContextStrdup(mcxt, payload.body),
				 payload.person_key ? MemoryContextStrdup(mcxt, payload.person_key) : NULL);
		dlist_push_tail(&run->pending, &lr->node);
		run->npending++;
	}
	MemoryContextSwitchTo(old);
	MemoryContextReset(run->scratch);
	run->current_row = 0;
}

/* The next batch of rows, built and queued. */
static void
fetch_rows(LookupRun *run)
{
	long		want = Max(FETCH_MIN, 2L * run->target->concurrency);
	SPITupleTable *tuptable;
	uint64		n;

	SPI_cursor_fetch(run->portal, true, want);
	tuptable = SPI_tuptable;
	n = SPI_processed;
	if (n < (uint64) want)
		run->exhausted = true;
	for (uint64 i = 0; i < n; i++)
		queue_row(run, tuptable->vals[i], tuptable->tupdesc);
	SPI_freetuptable(tuptable);
}

/* Hands an ended look-up to the caller and frees its row. */
static void
end_row(LookupRun *run, LookupRow *lr)
{
	MemoryContext old;

	dlist_delete(&lr->node);
	run->in_flight--;
	run->current_row = lr->rowno;
	old = MemoryContextSwitchTo(lr->mcxt);
	run->done(&lr->job, run->arg);
	MemoryContextSwitchTo(old);
	MemoryContextDelete(lr->mcxt);
	run->current_row = 0;
}

/* Starts a pending look-up whose pace slot is taken. */
static void
start_row(LookupRun *run, LookupRow *lr)
{
	MemoryContext old = MemoryContextSwitchTo(lr->mcxt);

	dlist_delete(&lr->node);
	run->npending--;
	dlist_push_tail(&run->flying, &lr->node);
	run->in_flight++;
	run->current_row = lr->rowno;
	lr->job.slot_taken = true;
	job_start(&lr->job);
	MemoryContextSwitchTo(old);
	run->current_row = 0;
	if (lr->job.outcome != JOB_RUNNING)
		end_row(run, lr);		/* it ended without a request */
}

/*
 * Starts pending look-ups while there is room and the pace allows.
 * Returns when the pace lets the next one start (0: not held back).
 */
static TimestampTz
start_due(LookupRun *run)
{
	while (run->in_flight < run->target->concurrency && !dlist_is_empty(&run->pending))
	{
		TimestampTz at;

		if (run->in_flight == 0)
			pace_wait(run->target); /* nothing to wait for but the pace */
		else if (!pace_take(run->target, &at))
			return at;
		start_row(run, dlist_head_element(LookupRow, node, &run->pending));
	}
	return 0;
}

static bool
any_finished(LookupRun *run)
{
	dlist_iter	iter;

	dlist_foreach(iter, &run->flying)
	{
		HttpTransfer *t = dlist_container(LookupRow, node, iter.cur)->job.transfer;

		if (t != NULL && t->done)
			return true;
	}
	return false;
}

/* Reads the answer of every look-up whose transfer has finished. */
static void
step_finished(LookupRun *run)
{
	dlist_mutable_iter iter;

	dlist_foreach_modify(iter, &run->flying)
	{
		LookupRow  *lr = dlist_container(LookupRow, node, iter.cur);
		HttpTransfer *t = lr->job.transfer;
		MemoryContext old;

		if (t == NULL || !t->done)
			continue;
		http_wait_for(t);		/* finished: only takes it off the done list */
		run->current_row = lr->rowno;
		old = MemoryContextSwitchTo(lr->mcxt);
		job_step(&lr->job);		/* may start its next request */
		MemoryContextSwitchTo(old);
		run->current_row = 0;
		if (lr->job.outcome != JOB_RUNNING)
			end_row(run, lr);
	}
}

/* How long to wait for answers: POLL_MS, or until the pace allows. */
static int
wait_ms(TimestampTz pace_at)
{
	int64		us;

	if (pace_at == 0)
		return POLL_MS;
	us = pace_at - GetCurrentTimestamp();
	return (int) Max(1, Min(POLL_MS, us / 1000 + 1));
}

static void
run_loop(LookupRun *run)
{
	for (;;)
	{
		TimestampTz pace_at;

		CHECK_FOR_INTERRUPTS();
		if (!run->exhausted && run->npending < run->target->concurrency)
			fetch_rows(run);
		MemoryContextSwitchTo(run->loop);	/* SPI left us in its own */
		pace_at = start_due(run);
		if (run->in_flight == 0)
		{
			if (run->exhausted && run->npending == 0)
				break;
			continue;			/* the next batch */
		}
		if (!any_finished(run))
			http_wait(wait_ms(pace_at));
		step_finished(run);
		MemoryContextReset(run->loop);
	}
}

/* After an error: the transfers in flight are freed (their rows go with the run). */
static void
free_transfers(LookupRun *run)
{
	dlist_iter	iter;

	dlist_foreach(iter, &run->flying)
	{
		LookupRow  *lr = dlist_container(LookupRow, node, iter.cur);

		if (lr->job.transfer)
			http_transfer_free(lr->job.transfer);
		lr->job.transfer = NULL;
	}
}

/*
 * row_lookup_run
 *		Looks up every row of query at the target, up to its concurrency at
 *		a time, and calls done for each look-up as it ends (in no particular
 *		order).  The caller has checked the target (USAGE, not paused) and
 *		found the secret.  caller names the SQL function in messages.
 */
void
row_lookup_run(const char *caller, const char *query, SyncTarget *target,
			   TargetSecret *secret, Jsonb *mapping, RowLookupDone done, void *arg)
{
	MemoryContext caller_cxt = CurrentMemoryContext;
	MemoryContext mcxt = AllocSetContextCreate(caller_cxt, "campus_sync row look-ups",
											   ALLOCSET_DEFAULT_SIZES);
	LookupRun  *run = MemoryContextAllocZero(mcxt, sizeof(LookupRun));
	ErrorContextCallback context;

	run->caller = caller;
	run->target = target;
	run->secret = secret;
	run->done = done;
	run->arg = arg;
	run->mcxt = mcxt;
	run->scratch = AllocSetContextCreate(mcxt, "campus_sync row body", ALLOCSET_DEFAULT_SIZES);
	run->loop = AllocSetContextCreate(mcxt, "campus_sync row look-up loop",
									  ALLOCSET_DEFAULT_SIZES);
	dlist_init(&run->pending);
	dlist_init(&run->flying);

	context.callback = row_context;
	context.arg = run;
	context.previous = error_context_stack;
	error_context_stack = &context;
	PG_TRY();
	{
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		open_query(run, query, mapping);
		run_loop(run);
		SPI_cursor_close(run->portal);
		SPI_finish();
	}
	PG_CATCH();
	{
		/* the cursor and SPI go with the (sub)transaction; transfers are ours */
		error_context_stack = context.previous;
		free_transfers(run);
		MemoryContextDelete(mcxt);
		PG_RE_THROW();
	}
	PG_END_TRY();
	error_context_stack = context.previous;
	MemoryContextSwitchTo(caller_cxt);
	MemoryContextDelete(mcxt);
}
