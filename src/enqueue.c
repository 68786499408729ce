/*-------------------------------------------------------------------------
 *
 * enqueue.c
 *	  enqueue() and sync_trigger(): a person onto the durable queue, inside
 *	  the caller's transaction.  The body is built and checked now; a row
 *	  that cannot be sent does not block the write (it is kept as an
 *	  invalid item, with a WARNING) unless the server says on_invalid
 *	  'error'.  An UPDATE that changes nothing that would be sent queues
 *	  nothing.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "commands/trigger.h"
#include "miscadmin.h"
#include "tcop/utility.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/rel.h"

#include "payload.h"
#include "queue_store.h"
#include "row_plan.h"

PG_FUNCTION_INFO_V1(campus_sync_enqueue);
PG_FUNCTION_INFO_V1(campus_sync_sync_trigger);

/*
 * Queues the payload, or raises/warns for an invalid one.  Returns the id
 * of the item.
 */
static int64
queue_payload(SyncTarget *target, Payload *payload)
{
	QueueStore *store;
	int64		id;

	if (payload->error && target->on_invalid_error)
		payload_raise(payload->error);

	store = queue_store_open();
	id = queue_store_put(store, target->server_name, payload);
	queue_store_close(store);

	if (payload->error)
		ereport(WARNING,
				(errcode(payload->error->sqlstate),
				 errmsg("campus_sync: row kept as invalid queue item " INT64_FORMAT " for server \"%s\": %s",
						id, target->server_name, payload->error->message),
				 payload->error->detail ? errdetail("%s", payload->error->detail) : 0,
				 errhint("Correct the row; its next change queues the person again. Set the server option on_invalid to 'error' to refuse such writes instead.")));
	return id;
}

/* enqueue(server, person, mapping) -> the queue item's id */
Datum
campus_sync_enqueue(PG_FUNCTION_ARGS)
{
	RowPlan    *plan;
	Payload		payload;

	if (PG_ARGISNULL(1))
		PG_RETURN_NULL();
	PreventCommandIfReadOnly("campus_sync.enqueue()");
	plan = row_plan_get(fcinfo, PG_GETARG_HEAPTUPLEHEADER(1), server_arg(fcinfo, 0),
						PG_ARGISNULL(2) ? NULL : PG_GETARG_JSONB_P(2), NULL,
						SERVICE_ANY);
	/* no mapping for this role is a configuration error: say so now */
	(void) target_secret(plan->target, GetUserId(), false);

	row_plan_build(plan, PG_GETARG_HEAPTUPLEHEADER(1), &payload);
	PG_RETURN_INT64(queue_payload(plan->target, &payload));
}

/* What a sync trigger plans once per statement. */
typedef struct TriggerPlan
{
	Oid			trigger_oid;
	TupleDesc	desc;
	SyncTarget *target;
	PayloadPlan *payload;
} TriggerPlan;

static void
check_trigger_call(FunctionCallInfo fcinfo)
{
	TriggerData *td = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("campus_sync.sync_trigger() can only be called as a trigger")));
	if (!TRIGGER_FIRED_AFTER(td->tg_event) || !TRIGGER_FIRED_FOR_ROW(td->tg_event) ||
		!(TRIGGER_FIRED_BY_INSERT(td->tg_event) || TRIGGER_FIRED_BY_UPDATE(td->tg_event)))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("trigger \"%s\" on \"%s\" must fire AFTER INSERT OR UPDATE ... FOR EACH ROW",
						td->tg_trigger->tgname, RelationGetRelationName(td->tg_relation)),
				 errhint("CREATE TRIGGER ... AFTER INSERT OR UPDATE ON ... FOR EACH ROW EXECUTE FUNCTION campus_sync.sync_trigger('opscom');")));
	if (td->tg_trigger->tgnargs < 1 || td->tg_trigger->tgnargs > 2)
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("trigger \"%s\" on \"%s\" needs the server name and optionally a mapping as arguments",
						td->tg_trigger->tgname, RelationGetRelationName(td->tg_relation)),
				 errhint("For example EXECUTE FUNCTION campus_sync.sync_trigger('opscom', '{\"unique_id\": \"banner_id\"}').")));
}

/*
 * The trigger's plan, made once per statement (fn_extra lives as long as
 * the statement's executor state).  USAGE on the server is checked for the
 * table's owner, who created the trigger: whoever may write the table fires
 * it, with no privilege on campus_sync of their own.
 */
static TriggerPlan *
trigger_plan(FunctionCallInfo fcinfo)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	TriggerPlan *plan = fcinfo->flinfo->fn_extra;
	Relation	rel = td->tg_relation;
	MemoryContext old;
	Jsonb	   *mapping = NULL;

	if (plan != NULL && plan->trigger_oid == td->tg_trigger->tgoid &&
		plan->desc == RelationGetDescr(rel))
		return plan;

	old = MemoryContextSwitchTo(fcinfo->flinfo->fn_mcxt);
	plan = palloc0(sizeof(TriggerPlan));
	plan->trigger_oid = td->tg_trigger->tgoid;
	plan->desc = RelationGetDescr(rel);
	plan->target = target_load(td->tg_trigger->tgargs[0], NULL, SERVICE_ANY,
							   rel->rd_rel->relowner);
	if (td->tg_trigger->tgnargs == 2)
		mapping = DatumGetJsonbP(DirectFunctionCall1(jsonb_in,
													 CStringGetDatum(td->tg_trigger->tgargs[1])));
	plan->payload = payload_plan_create(plan->target, plan->desc, mapping);
	MemoryContextSwitchTo(old);

	/* the writer's user mapping (or PUBLIC's) will be used to deliver */
	(void) target_secret(plan->target, GetUserId(), false);
	fcinfo->flinfo->fn_extra = plan;
	return plan;
}

static void
build_from_tuple(TriggerPlan *plan, HeapTuple tuple, Payload *out)
{
	RowValues	row;

	row_values_from_tuple(plan->desc, tuple, &row);
	payload_build(plan->payload, &row, out);
}

/*
 * sync_trigger(server [, mapping])
 *		AFTER INSERT OR UPDATE ... FOR EACH ROW: queue the new row.
 */
Datum
campus_sync_sync_trigger(PG_FUNCTION_ARGS)
{
	TriggerData *td;
	TriggerPlan *plan;
	Payload		payload;

	check_trigger_call(fcinfo);
	td = (TriggerData *) fcinfo->context;
	plan = trigger_plan(fcinfo);

	if (TRIGGER_FIRED_BY_UPDATE(td->tg_event))
	{
		Payload		old_payload;

		build_from_tuple(plan, td->tg_newtuple, &payload);
		build_from_tuple(plan, td->tg_trigtuple, &old_payload);
		if (payload_equal(&payload, &old_payload))
			return PointerGetDatum(NULL);	/* nothing that is sent changed */
	}
	else
		build_from_tuple(plan, td->tg_trigtuple, &payload);

	(void) queue_payload(plan->target, &payload);
	return PointerGetDatum(NULL);
}
