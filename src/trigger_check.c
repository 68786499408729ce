/*-------------------------------------------------------------------------
 *
 * trigger_check.c
 *	  campus_sync.check_trigger(table): one row per sync trigger on the
 *	  table, checked the way its first write would check it, so that a DBA
 *	  (and the CREATE TRIGGER event trigger) finds a wrong server or
 *	  mapping without writing a row.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/table.h"
#include "access/xact.h"
#include "catalog/pg_trigger.h"
#include "commands/trigger.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "parser/parse_func.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/resowner.h"

#include "trigger_check.h"

PG_FUNCTION_INFO_V1(campus_sync_check_trigger);

/* Is this a campus_sync.sync_trigger() trigger? */
static bool
is_sync_trigger(Trigger *tg)
{
	static Oid	sync_trigger_oid = InvalidOid;

	if (!OidIsValid(sync_trigger_oid))
		sync_trigger_oid = LookupFuncName(list_make2(makeString("campus_sync"),
													 makeString("sync_trigger")),
										  0, NULL, false);
	return tg->tgfoid == sync_trigger_oid;
}

/* The checks of one trigger; raises the first problem. */
static void
check_one(Trigger *tg, Relation rel)
{
	SyncTarget *target;
	PayloadPlan *payload;

	if (!TRIGGER_FOR_AFTER(tg->tgtype) || !TRIGGER_FOR_ROW(tg->tgtype) ||
		!(TRIGGER_FOR_INSERT(tg->tgtype) || TRIGGER_FOR_UPDATE(tg->tgtype) ||
		  TRIGGER_FOR_DELETE(tg->tgtype)))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("trigger \"%s\" on \"%s\" must fire AFTER INSERT OR UPDATE [OR DELETE] ... FOR EACH ROW",
						tg->tgname, RelationGetRelationName(rel)),
				 errhint("CREATE TRIGGER ... AFTER INSERT OR UPDATE OR DELETE ON ... FOR EACH ROW EXECUTE FUNCTION campus_sync.sync_trigger('cloudcard'); a TRUNCATE queues nothing.")));
	trigger_target_and_payload(tg, rel, &target, &payload);
	if (TRIGGER_FOR_DELETE(tg->tgtype) && target->service->disable_body == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("trigger \"%s\" on \"%s\" fires on DELETE, but server \"%s\" cannot disable anyone",
						tg->tgname, RelationGetRelationName(rel), target->server_name),
				 errdetail("%s", target->service->cannot_disable),
				 errhint("Create the trigger AFTER INSERT OR UPDATE only.")));
}

/*
 * check_trigger(tbl regclass)
 *		RETURNS TABLE (trigger_name, server, ok, sqlstate, error, hint)
 *
 * Each trigger is checked in a subtransaction, so that one's error becomes
 * its row and the next is checked too.
 */
Datum
campus_sync_check_trigger(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Relation	rel = table_open(PG_GETARG_OID(0), AccessShareLock);
	TriggerDesc *trigdesc = rel->trigdesc;
	MemoryContext caller_cxt = CurrentMemoryContext;
	ResourceOwner caller_owner = CurrentResourceOwner;

	InitMaterializedSRF(fcinfo, 0);
	for (int i = 0; trigdesc && i < trigdesc->numtriggers; i++)
	{
		Trigger    *tg = &trigdesc->triggers[i];
		Datum		values[6];
		bool		nulls[6] = {0};

		if (!is_sync_trigger(tg))
			continue;
		values[0] = DirectFunctionCall1(namein, CStringGetDatum(tg->tgname));
		values[1] = tg->tgnargs > 0 ? CStringGetTextDatum(tg->tgargs[0]) : (Datum) 0;
		nulls[1] = tg->tgnargs == 0;
		values[2] = BoolGetDatum(true);
		nulls[3] = nulls[4] = nulls[5] = true;

		BeginInternalSubTransaction(NULL);
		MemoryContextSwitchTo(caller_cxt);
		PG_TRY();
		{
			check_one(tg, rel);
			ReleaseCurrentSubTransaction();
		}
		PG_CATCH();
		{
			ErrorData  *error;

			MemoryContextSwitchTo(caller_cxt);
			error = CopyErrorData();
			FlushErrorState();
			RollbackAndReleaseCurrentSubTransaction();
			values[2] = BoolGetDatum(false);
			values[3] = CStringGetTextDatum(unpack_sql_state(error->sqlerrcode));
			/* the message names the trigger, as the first write's context would */
			values[4] = CStringGetTextDatum(strstr(error->message, tg->tgname) ? error->message :
											psprintf("trigger \"%s\" on table \"%s\": %s",
													 tg->tgname, RelationGetRelationName(rel),
													 error->message));
			nulls[3] = nulls[4] = false;
			if (error->hint)
			{
				values[5] = CStringGetTextDatum(error->hint);
				nulls[5] = false;
			}
		}
		PG_END_TRY();
		MemoryContextSwitchTo(caller_cxt);
		CurrentResourceOwner = caller_owner;
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	table_close(rel, AccessShareLock);
	return (Datum) 0;
}
