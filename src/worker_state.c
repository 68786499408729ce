/*-------------------------------------------------------------------------
 *
 * worker_state.c
 *	  The background worker's shared state (one struct in shared memory):
 *	  the worker writes who it is and what it did; any backend reads it
 *	  (campus_sync.worker_status()) and wakes the worker when a transaction
 *	  that queued items commits.
 *
 *	  The wake is a flag and the worker's latch: the latch ends its sleep,
 *	  the flag survives waits inside PostgreSQL (a lock wait) that reset
 *	  the latch before the worker looks.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "commands/dbcommands.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "storage/spin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/timestamp.h"

#include "compat.h"
#include "shmem.h"
#include "worker_state.h"

#define ERROR_TEXT_MAX 1024

typedef struct WorkerShared
{
	slock_t		mutex;
	pid_t		pid;			/* 0: no worker */
	int			pgprocno;		/* its PGPROC, for the latch */
	Oid			database;
	WorkerActivity activity;
	bool		wake_pending;	/* a commit queued items since it last looked */
	TimestampTz started_at;
	TimestampTz last_cycle_at;	/* 0: none yet */
	int64		delivered;
	TimestampTz last_error_at;	/* 0: none */
	char		last_error[ERROR_TEXT_MAX];
} WorkerShared;

static WorkerShared *shared = NULL;

static const char *const activity_names[] = {
	[WORKER_STARTING] = "starting",
	[WORKER_WAITING_FOR_EXTENSION] = "waiting for extension",
	[WORKER_STANDBY] = "standby",
	[WORKER_IDLE] = "idle",
	[WORKER_DELIVERING] = "delivering",
};

static void
init_shared(void *part, LWLock *lock)
{
	(void) lock;
	SpinLockInit(&((WorkerShared *) part)->mutex);
}

/* From _PG_init, while shared_preload_libraries are loaded. */
static void wake_xact_callback(XactEvent event, void *arg);

void
worker_state_request_shmem(void)
{
	RegisterXactCallback(wake_xact_callback, NULL);
	shmem_part_add("campus_sync worker", sizeof(WorkerShared), false,
				   (void **) &shared, init_shared);
}

static void
forget_worker(int code, Datum arg)
{
	(void) code;
	(void) arg;
	SpinLockAcquire(&shared->mutex);
	shared->pid = 0;
	SpinLockRelease(&shared->mutex);
}

/* The worker, once connected to its database. */
void
worker_state_started(void)
{
	SpinLockAcquire(&shared->mutex);
	shared->pid = MyProcPid;
	shared->pgprocno = cs_my_procno();
	shared->database = MyDatabaseId;
	shared->activity = WORKER_STARTING;
	shared->wake_pending = true;	/* look at the queue at once */
	shared->started_at = GetCurrentTimestamp();
	shared->last_cycle_at = 0;
	shared->delivered = 0;
	SpinLockRelease(&shared->mutex);
	before_shmem_exit(forget_worker, (Datum) 0);
}

void
worker_state_set(WorkerActivity activity)
{
	SpinLockAcquire(&shared->mutex);
	shared->activity = activity;
	SpinLockRelease(&shared->mutex);
}

void
worker_state_cycle_ended(int64 delivered)
{
	TimestampTz now = GetCurrentTimestamp();

	SpinLockAcquire(&shared->mutex);
	shared->last_cycle_at = now;
	shared->delivered += delivered;
	SpinLockRelease(&shared->mutex);
}

void
worker_state_error(const char *message)
{
	TimestampTz now = GetCurrentTimestamp();

	SpinLockAcquire(&shared->mutex);
	strlcpy(shared->last_error, message ? message : "", sizeof(shared->last_error));
	shared->last_error_at = now;
	SpinLockRelease(&shared->mutex);
}

/* Was the worker woken since it last asked?  Clears the flag. */
bool
worker_state_take_wake(void)
{
	bool		woken;

	SpinLockAcquire(&shared->mutex);
	woken = shared->wake_pending;
	shared->wake_pending = false;
	SpinLockRelease(&shared->mutex);
	return woken;
}

static void
wake_worker(void)
{
	int			pgprocno = -1;

	SpinLockAcquire(&shared->mutex);
	if (shared->pid != 0 && shared->database == MyDatabaseId)
	{
		shared->wake_pending = true;
		pgprocno = shared->pgprocno;
	}
	SpinLockRelease(&shared->mutex);
	if (pgprocno >= 0)
		SetLatch(&GetPGProcByNumber(pgprocno)->procLatch);
}

static bool wake_at_commit = false;

static void
wake_xact_callback(XactEvent event, void *arg)
{
	(void) arg;
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			/* the commit is visible now: the worker finds the items */
			if (wake_at_commit)
				wake_worker();
			wake_at_commit = false;
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:	/* COMMIT PREPARED: the next poll */
			wake_at_commit = false;
			break;
		default:
			break;
	}
}

/*
 * worker_wake_at_commit
 *		This transaction queued items: wake the worker when (and only if)
 *		it commits.  Nothing without a worker (not preloaded).
 */
void
worker_wake_at_commit(void)
{
	if (shared != NULL)
		wake_at_commit = true;
}

PG_FUNCTION_INFO_V1(campus_sync_wake_worker);
PG_FUNCTION_INFO_V1(campus_sync_worker_status);

/* campus_sync.wake_worker(): for retry() and retry_failed(). */
Datum
campus_sync_wake_worker(PG_FUNCTION_ARGS)
{
	(void) fcinfo;
	worker_wake_at_commit();
	PG_RETURN_VOID();
}

/* Only roles that may read the status view see the worker's last error. */
static bool
may_read_errors(void)
{
	Oid			status = get_relname_relid("status", get_namespace_oid("campus_sync", false));

	return OidIsValid(status) &&
		pg_class_aclcheck(status, GetUserId(), ACL_SELECT) == ACLCHECK_OK;
}

static Datum
nullable_timestamp(TimestampTz t, bool *isnull)
{
	*isnull = (t == 0);
	return TimestampTzGetDatum(t);
}

/*
 * campus_sync.worker_status()
 *		RETURNS (running, pid, database, state, started_at, last_cycle_at,
 *				 delivered, last_error, last_error_at)
 *		About the worker that serves this database; running false and the
 *		rest NULL when none does (or the library is not preloaded).
 */
Datum
campus_sync_worker_status(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Datum		values[9] = {0};
	bool		nulls[9];
	WorkerShared copy;
	bool		ours;

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	for (int i = 0; i < 9; i++)
		nulls[i] = true;

	if (shared != NULL)
	{
		SpinLockAcquire(&shared->mutex);
		copy = *shared;
		SpinLockRelease(&shared->mutex);
	}
	else
		memset(&copy, 0, sizeof(copy));
	ours = copy.pid != 0 && copy.database == MyDatabaseId;

	values[0] = BoolGetDatum(ours);
	nulls[0] = false;
	if (ours)
	{
		char	   *dbname = get_database_name(copy.database);

		values[1] = Int32GetDatum(copy.pid);
		nulls[1] = false;
		if (dbname != NULL)
		{
			values[2] = DirectFunctionCall1(namein, CStringGetDatum(dbname));
			nulls[2] = false;
		}
		values[3] = CStringGetTextDatum(activity_names[copy.activity]);
		nulls[3] = false;
		values[4] = nullable_timestamp(copy.started_at, &nulls[4]);
		values[5] = nullable_timestamp(copy.last_cycle_at, &nulls[5]);
		values[6] = Int64GetDatum(copy.delivered);
		nulls[6] = false;
		if (copy.last_error_at != 0 && may_read_errors())
		{
			values[7] = CStringGetTextDatum(copy.last_error);
			nulls[7] = false;
			values[8] = nullable_timestamp(copy.last_error_at, &nulls[8]);
		}
	}
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}
