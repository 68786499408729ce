/*-------------------------------------------------------------------------
 *
 * deliver_sql.c
 *	  The SQL entry points of the delivery engine: deliver(), a function
 *	  that runs in its caller's transaction, and deliver_batches(), a
 *	  procedure that commits outcomes as they come.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/pg_class.h"
#include "catalog/namespace.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "tcop/utility.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"

#include "deliver.h"
#include "target.h"

PG_FUNCTION_INFO_V1(campus_sync_deliver);
PG_FUNCTION_INFO_V1(campus_sync_deliver_batches);

/* The arguments deliver() and deliver_batches() share, checked. */
typedef struct DeliverArgs
{
	List	   *servers;		/* OIDs */
	double		max_seconds;
	int64		max_items;		/* 0: no limit */
} DeliverArgs;

static void
deliver_args(FunctionCallInfo fcinfo, const char *what, DeliverArgs *args)
{
	args->max_seconds = PG_ARGISNULL(1) ? 10.0 : PG_GETARG_FLOAT8(1);
	args->max_items = PG_ARGISNULL(2) ? 0 : PG_GETARG_INT32(2);

	if (!(args->max_seconds > 0) || isinf(args->max_seconds))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_seconds must be a positive number of seconds")));
	if (!PG_ARGISNULL(2) && args->max_items <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_items must be positive, or NULL for no limit")));
	if (IsolationUsesXactSnapshot())
		ereport(ERROR,
				(errcode(ERRCODE_ACTIVE_SQL_TRANSACTION),
				 errmsg("%s must run in a READ COMMITTED transaction", what),
				 errdetail("It claims items other sessions queue while it runs."),
				 errhint("Call it outside of REPEATABLE READ and SERIALIZABLE transactions.")));
	PreventCommandIfReadOnly(what);

	if (PG_ARGISNULL(0))
		args->servers = target_all_servers();
	else
		args->servers = list_make1_oid(target_load(NameStr(*PG_GETARG_NAME(0)), NULL,
												   NULL, InvalidOid)->server_oid);
}

/*
 * deliver(server, max_seconds, max_items)
 *		RETURNS TABLE (server, delivered, retried, failed)
 *
 * Everything in the caller's transaction: an aborted call sends again all
 * it sent (deliver_batches() does not).
 */
Datum
campus_sync_deliver(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	DeliverArgs args;
	List	   *counts;
	ListCell   *lc;

	deliver_args(fcinfo, "campus_sync.deliver()", &args);
	InitMaterializedSRF(fcinfo, 0);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	counts = deliver_run(args.servers, args.max_seconds, args.max_items, true, NULL);

	/* the counts live in SPI's memory, which SPI_finish() frees */
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
	SPI_finish();
	return (Datum) 0;
}

/*
 * deliver_batches() acts with the rights of the queue's owner (like
 * deliver(), which is SECURITY DEFINER with its own search_path; a
 * procedure that commits can be neither), and gives them back before each
 * commit, so that an error after a commit never leaves the session as that
 * owner.  As the owner it also runs with search_path pg_catalog, pg_temp:
 * with the caller's, an operator the caller defined in a schema of its own
 * would run with the owner's rights in the engine's SQL.
 */
typedef struct BatchIdentity
{
	Oid			caller;
	int			caller_context;
	char	   *caller_search_path;
	Oid			owner;
} BatchIdentity;

static void
set_search_path(const char *value)
{
	(void) set_config_option("search_path", value, PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SET, true, 0, false);
}

static Oid
queue_owner(void)
{
	Oid			relid = get_relname_relid("queue_items", get_namespace_oid("campus_sync", false));
	HeapTuple	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	Oid			owner;

	if (!HeapTupleIsValid(tup))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation campus_sync.queue_items does not exist"),
				 errhint("The campus_sync extension is not installed correctly; reinstall it.")));
	owner = ((Form_pg_class) GETSTRUCT(tup))->relowner;
	ReleaseSysCache(tup);
	return owner;
}

static void
act_as_owner(BatchIdentity *id)
{
	SetUserIdAndSecContext(id->owner, id->caller_context | SECURITY_LOCAL_USERID_CHANGE);
	set_search_path("pg_catalog, pg_temp");
}

static void
act_as_caller(BatchIdentity *id)
{
	set_search_path(id->caller_search_path);
	SetUserIdAndSecContext(id->caller, id->caller_context);
}

static void
commit_batch(void *arg)
{
	BatchIdentity *id = arg;

	act_as_caller(id);
	SPI_commit();				/* and starts the next transaction */
	act_as_owner(id);
}

static void
report_totals(List *counts)
{
	ListCell   *lc;
	int64		delivered = 0,
				retried = 0,
				failed = 0,
				unchanged = 0;

	foreach(lc, counts)
	{
		DeliverCounts *c = lfirst(lc);

		delivered += c->delivered;
		retried += c->retried;
		failed += c->failed;
		unchanged += c->unchanged;
	}
	ereport(NOTICE,
			(errmsg("campus_sync: delivered " INT64_FORMAT ", retried " INT64_FORMAT ", failed " INT64_FORMAT,
					delivered, retried, failed),
			 unchanged > 0 ?
			 errdetail("Removed unsent, the target having their body already (skip_unchanged): " INT64_FORMAT ".",
					   unchanged) : 0));
}

/*
 * CALL deliver_batches(server, max_seconds, max_items)
 *		Delivers like deliver(), committing outcomes in small batches while
 *		requests are in flight; ends with a NOTICE of what it did.
 */
Datum
campus_sync_deliver_batches(PG_FUNCTION_ARGS)
{
	CallContext *call = (CallContext *) fcinfo->context;
	DeliverArgs args;
	BatchIdentity id;
	DeliverHooks hooks = {commit_batch, NULL, &id};
	List	   *volatile counts = NIL;

	if (call == NULL || !IsA(call, CallContext) || call->atomic)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TRANSACTION_TERMINATION),
				 errmsg("campus_sync.deliver_batches() must be called with CALL outside a transaction block"),
				 errdetail("It commits what it delivers as it goes."),
				 errhint("Run CALL campus_sync.deliver_batches(); on its own, or use SELECT * FROM campus_sync.deliver(); inside a transaction.")));
	deliver_args(fcinfo, "campus_sync.deliver_batches()", &args);

	GetUserIdAndSecContext(&id.caller, &id.caller_context);
	id.owner = queue_owner();
	if (SPI_connect_ext(SPI_OPT_NONATOMIC) != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	/* in SPI's procedure memory, which outlives the commits */
	id.caller_search_path = pstrdup(namespace_search_path);
	act_as_owner(&id);
	PG_TRY();
	{
		counts = deliver_run(args.servers, args.max_seconds, args.max_items, true,
							 &hooks);
	}
	PG_FINALLY();
	{
		act_as_caller(&id);
	}
	PG_END_TRY();
	report_totals(counts);		/* before SPI_finish() frees them */
	SPI_finish();
	PG_RETURN_VOID();
}

