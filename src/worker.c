/*-------------------------------------------------------------------------
 *
 * worker.c
 *	  The background worker: delivers the queue of one database
 *	  (campus_sync.database) with the engine of deliver(), committing
 *	  outcomes batch by batch.  It sleeps on its latch, which a transaction
 *	  that queued items sets when it commits (worker_state.c), and wakes at
 *	  least every campus_sync.poll_interval for due retries and probes.
 *
 *	  It waits, idle, while the extension is not installed in its database
 *	  and while the server is a hot standby; it never writes there.  An
 *	  error ends the cycle, not the worker: it is logged, kept for the
 *	  campus_sync.worker view, and the next cycle starts after the poll
 *	  interval.  SIGTERM ends it at the next interrupt check (the engine
 *	  checks at least every 100 ms); requests in flight are abandoned, and
 *	  their items, whose outcomes were not committed, are sent again.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "access/xlog.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "compat.h"
#include "campus_sync.h"
#include "deliver.h"
#include "target.h"
#include "worker.h"
#include "worker_state.h"

/* A cycle ends after this long, to notice new servers and settings. */
#define CYCLE_MAX_SECONDS 10.0
/* The postmaster starts the worker again this long after it exits. */
#define RESTART_SECONDS 5

char	   *campus_sync_database = NULL;
int			campus_sync_poll_interval_ms = 1000;

PGDLLEXPORT void campus_sync_worker_main(Datum arg);

/* From _PG_init, while shared_preload_libraries are loaded. */
void
worker_register(void)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	/* on a hot standby too: it shows there, idle, and delivers at promotion */
	worker.bgw_start_time = BgWorkerStart_ConsistentState;
	worker.bgw_restart_time = RESTART_SECONDS;
	strlcpy(worker.bgw_library_name, "campus_sync", BGW_MAXLEN);
	strlcpy(worker.bgw_function_name, "campus_sync_worker_main", BGW_MAXLEN);
	strlcpy(worker.bgw_name, "campus_sync worker", BGW_MAXLEN);
	strlcpy(worker.bgw_type, "campus_sync worker", BGW_MAXLEN);
	RegisterBackgroundWorker(&worker);
}

/* idle on its latch, or pausing after an error (names in pg_stat_activity from 17) */
static uint32 idle_wait_event = 0;
static uint32 pause_wait_event = 0;

/*
 * Logs a change of what the worker waits for once, not at every poll.
 */
static void
become(WorkerActivity activity)
{
	static WorkerActivity logged = WORKER_STARTING;

	worker_state_set(activity);
	if (activity == logged || activity == WORKER_DELIVERING)
		return;
	if (activity == WORKER_WAITING_FOR_EXTENSION)
		ereport(LOG,
				(errmsg("campus_sync worker: extension \"campus_sync\" is not installed in database \"%s\"; waiting for CREATE EXTENSION",
						campus_sync_database)));
	else if (activity == WORKER_STANDBY)
		ereport(LOG,
				(errmsg("campus_sync worker: the server is a hot standby; idle until it is promoted")));
	else if (activity == WORKER_IDLE)
		ereport(LOG,
				(errmsg("campus_sync worker: delivering the queue of database \"%s\"",
						campus_sync_database)));
	logged = activity;
}

/* What one cycle's commits need: the snapshot the cycle started with. */
typedef struct CycleState
{
	bool		snapshot_pushed;
} CycleState;

static void
commit_cycle_batch(void *arg)
{
	CycleState *cycle = arg;

	if (cycle->snapshot_pushed)
		PopActiveSnapshot();
	cycle->snapshot_pushed = false;
	SPI_commit();				/* and starts the next transaction */
}

static bool
woken(void *arg)
{
	(void) arg;
	return worker_state_take_wake();
}

/*
 * One cycle: if the extension is there and the server is not a standby,
 * deliver until nothing is due (or CYCLE_MAX_SECONDS pass).  Returns
 * whether it sent anything: then more may be due (the cycle ran out of
 * time), and the next cycle starts at once.
 */
static bool
run_cycle(void)
{
	CycleState	cycle = {0};
	DeliverHooks hooks = {commit_cycle_batch, woken, &cycle};
	List	   *counts;
	ListCell   *lc;
	int64		delivered = 0;
	int64		sent = 0;

	if (RecoveryInProgress())
	{
		become(WORKER_STANDBY);
		return false;
	}

	(void) worker_state_take_wake();	/* this cycle looks at everything */
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	cycle.snapshot_pushed = true;
	if (!OidIsValid(get_extension_oid("campus_sync", true)))
	{
		PopActiveSnapshot();
		CommitTransactionCommand();
		become(WORKER_WAITING_FOR_EXTENSION);
		return false;
	}
	become(WORKER_IDLE);
	worker_state_set(WORKER_DELIVERING);
	pgstat_report_activity(STATE_RUNNING, "delivering");

	if (SPI_connect_ext(SPI_OPT_NONATOMIC) != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	counts = deliver_run(target_all_servers(), CYCLE_MAX_SECONDS, 0, false, &hooks);
	foreach(lc, counts)
	{
		DeliverCounts *c = lfirst(lc);

		delivered += c->delivered;
		sent += c->delivered + c->retried + c->failed;
	}
	SPI_finish();
	if (cycle.snapshot_pushed)
		PopActiveSnapshot();
	CommitTransactionCommand();

	pgstat_report_activity(STATE_IDLE, NULL);
	worker_state_set(WORKER_IDLE);
	worker_state_cycle_ended(delivered);
	return sent > 0;
}

/* An error ends the cycle: logged, kept for the view, cleaned up. */
static void
recover_from_error(MemoryContext cxt)
{
	ErrorData  *edata;

	MemoryContextSwitchTo(cxt);
	edata = CopyErrorData();
	EmitErrorReport();
	FlushErrorState();
	AbortCurrentTransaction();
	worker_state_error(edata->message);
	FreeErrorData(edata);
	pgstat_report_activity(STATE_IDLE, NULL);
	worker_state_set(WORKER_IDLE);
}

static void
sleep_until_woken(void)
{
	/* a wake that came while the cycle ran (its latch reset since) */
	if (worker_state_take_wake())
		return;
	(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
					 campus_sync_poll_interval_ms,
					 cs_wait_event(&idle_wait_event, "CampusSyncWorkerIdle"));
	ResetLatch(MyLatch);
}

/*
 * After an error, the next cycle comes a full poll interval later, however
 * many commits wake the worker meanwhile: a lasting error is logged once
 * per interval, not once per commit.
 */
static void
pause_after_error(void)
{
	TimestampTz until = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													campus_sync_poll_interval_ms);

	for (;;)
	{
		long		ms = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), until);

		if (ms <= 0)
			return;
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 ms, cs_wait_event(&pause_wait_event, "CampusSyncWorkerPause"));
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
}

void
campus_sync_worker_main(Datum arg)
{
	MemoryContext worker_cxt;

	(void) arg;
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	BackgroundWorkerInitializeConnection(campus_sync_database, NULL, 0);
	worker_state_started();
	ereport(LOG,
			(errmsg("campus_sync worker started for database \"%s\"", campus_sync_database)));
	/* the engine qualifies every name; nothing a user creates is looked up */
	SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_SUSET, PGC_S_OVERRIDE);
	pgstat_report_appname("campus_sync worker");

	worker_cxt = AllocSetContextCreate(TopMemoryContext, "campus_sync worker",
									   ALLOCSET_DEFAULT_SIZES);
	for (;;)
	{
		volatile bool failed = false;
		volatile bool busy = false;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}

		PG_TRY();
		{
			busy = run_cycle();
		}
		PG_CATCH();
		{
			recover_from_error(worker_cxt);
			failed = true;
		}
		PG_END_TRY();
		MemoryContextReset(worker_cxt);

		if (failed)
			pause_after_error();
		else if (!busy)
			sleep_until_woken();
	}
}
