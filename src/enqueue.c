/*-------------------------------------------------------------------------
 *
 * enqueue.c
 *	  enqueue() and sync_trigger(): a person onto the durable queue, inside
 *	  the caller's transaction (the trigger's items are written at commit,
 *	  see queue_buffer.c).  The body is built and checked now; a row
 *	  that cannot be sent does not block the write (it is kept as an
 *	  invalid item, with a WARNING) unless the server says on_invalid
 *	  'error'.  An UPDATE that changes nothing that would be sent queues
 *	  nothing, nor does a body the target already has (skip_unchanged, see
 *	  sync_state.c).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "commands/trigger.h"
#include "common/jsonapi.h"
#include "foreign/foreign.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "tcop/utility.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/jsonb.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/syscache.h"

#include "compat.h"
#include "payload.h"
#include "inbox.h"
#include "queue_buffer.h"
#include "queue_store.h"
#include "row_plan.h"
#include "sync_state.h"
#include "trigger_check.h"

PG_FUNCTION_INFO_V1(campus_sync_enqueue);
PG_FUNCTION_INFO_V1(campus_sync_sync_trigger);

static void
queue_row_of(QueueRow *row, SyncTarget *target, const char *enqueued_by, Payload *payload)
{
	memset(row, 0, sizeof(QueueRow));
	row->server = target->server_name;
	row->server_oid = target->server_oid;
	row->service = target->service->name;
	row->key_field = target_key_field(target);
	row->enqueued_by = enqueued_by;
	row->person_key = payload->person_key;
	row->payload = payload->body;
	row->error = payload->error ? payload_error_text(payload->error) : NULL;
	row->check_unchanged = target->skip_unchanged && payload->body != NULL;
	row->url = target->url;
}

/*
 * Writes an item at once; returns its id, or 0 when it is not queued: the
 * target has its body, and nothing of the person waits before it (in
 * this transaction's buffer, which sync_state.c cannot see, or queued).
 */
static int64
put_now(QueueRow *row)
{
	/* the buffer is looked at only for a body found unchanged */
	if (row->check_unchanged && queue_rows_drop_unchanged(row, 1) == 0 &&
		!queue_buffer_holds(row->server_oid, row->person_key))
		return 0;
	return inbox_put(row);
}

/*
 * An invalid row: refused (on_invalid 'error') or queued as an invalid
 * item with a WARNING that says so.
 */
static void
check_invalid(SyncTarget *target, Payload *payload)
{
	if (payload->error == NULL)
		return;
	if (target->on_invalid_error)
		payload_raise(payload->error);
	ereport(WARNING,
			(errcode(payload->error->sqlstate),
			 errmsg("campus_sync: row queued as an invalid item for server \"%s\": %s",
					target->server_name, payload->error->message),
			 payload->error->detail ? errdetail("%s", payload->error->detail) : 0,
			 errhint("Correct the row; its next change queues the person again. Set the server option on_invalid to 'error' to refuse such writes instead.")));
}

/*
 * enqueue(server, person, mapping) -> the queue item's id; NULL when the
 * target already has this body (skip_unchanged) and nothing is queued.
 */
Datum
campus_sync_enqueue(PG_FUNCTION_ARGS)
{
	RowPlan    *plan;
	Payload		payload;
	QueueRow	row;
	int64		id;

	if (PG_ARGISNULL(1))
		PG_RETURN_NULL();
	PreventCommandIfReadOnly("campus_sync.enqueue()");
	plan = row_plan_get(fcinfo, PG_GETARG_HEAPTUPLEHEADER(1), server_arg(fcinfo, 0),
						PG_ARGISNULL(2) ? NULL : PG_GETARG_JSONB_P(2), NULL,
						NULL);
	/* no mapping for this role is a configuration error: say so now */
	(void) target_secret(plan->target, GetUserId(), false);

	row_plan_build(plan, PG_GETARG_HEAPTUPLEHEADER(1), &payload);
	check_invalid(plan->target, &payload);
	queue_row_of(&row, plan->target, GetUserNameFromId(GetUserId(), false), &payload);
	id = put_now(&row);
	if (id == 0)
		PG_RETURN_NULL();
	PG_RETURN_INT64(id);
}

/*
 * What a sync trigger plans, kept for the backend's life: the target, the
 * payload plan for the table's row type, and the roles already checked.
 * Invalidation callbacks only mark entries stale (they may run while an
 * entry is in use); a stale entry is rebuilt at its next use.
 */
typedef struct TriggerPlan
{
	Oid			trigger_oid;	/* hash key */
	bool		valid;
	Oid			relid;
	MemoryContext mcxt;			/* holds everything below */
	TupleDesc	desc;
	SyncTarget *target;
	PayloadPlan *payload;
	Oid			checked_role;	/* a writer whose user mapping exists */
	char	   *checked_role_name;
	int		   *source_columns; /* attnos (0-based) the payload reads */
	int			nsource_columns;
} TriggerPlan;

static HTAB *trigger_plans = NULL;

static void
invalidate_all_plans(Datum arg, int cacheid, uint32 hashvalue)
{
	HASH_SEQ_STATUS status;
	TriggerPlan *plan;

	(void) arg;
	(void) cacheid;
	(void) hashvalue;
	hash_seq_init(&status, trigger_plans);
	while ((plan = hash_seq_search(&status)) != NULL)
		plan->valid = false;
}

static void
invalidate_table_plans(Datum arg, Oid relid)
{
	HASH_SEQ_STATUS status;
	TriggerPlan *plan;

	(void) arg;
	hash_seq_init(&status, trigger_plans);
	while ((plan = hash_seq_search(&status)) != NULL)
		if (!OidIsValid(relid) || plan->relid == relid)
			plan->valid = false;
}

static HTAB *
get_trigger_plans(void)
{
	HASHCTL		ctl;

	if (trigger_plans != NULL)
		return trigger_plans;
	ctl.keysize = sizeof(Oid);
	ctl.entrysize = sizeof(TriggerPlan);
	ctl.hcxt = CacheMemoryContext;
	trigger_plans = hash_create("campus_sync trigger plans", 64, &ctl,
								HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	/* servers (options, USAGE), user mappings, pg_trigger, the tables */
	CacheRegisterSyscacheCallback(FOREIGNSERVEROID, invalidate_all_plans, (Datum) 0);
	CacheRegisterSyscacheCallback(USERMAPPINGOID, invalidate_all_plans, (Datum) 0);
	CacheRegisterRelcacheCallback(invalidate_table_plans, (Datum) 0);
	return trigger_plans;
}

static void
check_trigger_call(FunctionCallInfo fcinfo)
{
	TriggerData *td = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("campus_sync.sync_trigger() can only be called as a trigger")));
	if (!TRIGGER_FIRED_AFTER(td->tg_event) || !TRIGGER_FIRED_FOR_ROW(td->tg_event) ||
		!(TRIGGER_FIRED_BY_INSERT(td->tg_event) || TRIGGER_FIRED_BY_UPDATE(td->tg_event) ||
		  TRIGGER_FIRED_BY_DELETE(td->tg_event)))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("trigger \"%s\" on \"%s\" must fire AFTER INSERT OR UPDATE [OR DELETE] ... FOR EACH ROW",
						td->tg_trigger->tgname, RelationGetRelationName(td->tg_relation)),
				 errhint("CREATE TRIGGER ... AFTER INSERT OR UPDATE OR DELETE ON ... FOR EACH ROW EXECUTE FUNCTION campus_sync.sync_trigger('cloudcard'); a TRUNCATE queues nothing.")));
}

/*
 * The writer's user mapping (or PUBLIC's) will be used to deliver: it must
 * exist.  The name is what the queue records.
 */
static void
check_writer(TriggerPlan *plan)
{
	(void) target_secret(plan->target, GetUserId(), false);
	plan->checked_role = GetUserId();
	plan->checked_role_name = MemoryContextStrdup(plan->mcxt,
												  GetUserNameFromId(GetUserId(), false));
}

/* Names the trigger in the CONTEXT of an error its arguments cause. */
static void
trigger_error_context(void *arg)
{
	Trigger    *tg = ((void **) arg)[0];
	Relation	rel = ((void **) arg)[1];

	errcontext("campus_sync.sync_trigger() of trigger \"%s\" on table \"%s\"",
			   tg->tgname, RelationGetRelationName(rel));
}

/*
 * trigger_target_and_payload
 *		Checks a sync trigger's arguments the way its first write does and
 *		plans its payload, in the current memory context.  Errors name the
 *		trigger and say how to mend it.  USAGE on the server is checked for
 *		the table's owner, who created the trigger: whoever may write the
 *		table fires it, with no privilege on campus_sync of their own.
 */
void
trigger_target_and_payload(Trigger *tg, Relation rel, SyncTarget **target,
						   PayloadPlan **payload)
{
	const char *table = RelationGetRelationName(rel);
	Jsonb	   *mapping = NULL;
	ErrorContextCallback context;
	void	   *context_arg[2] = {tg, rel};

	if (tg->tgnargs < 1 || tg->tgnargs > 2)
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("trigger \"%s\" on \"%s\" needs the server name and optionally a mapping as arguments",
						tg->tgname, table),
				 errhint("For example EXECUTE FUNCTION campus_sync.sync_trigger('opscom', '{\"unique_id\": \"banner_id\"}').")));
	if (GetForeignServerByName(tg->tgargs[0], true) == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("trigger \"%s\" on table \"%s\" sends to server \"%s\", which does not exist",
						tg->tgname, table, tg->tgargs[0]),
				 errhint("Create the server again (CREATE SERVER %s FOREIGN DATA WRAPPER campus_sync ...), or drop the trigger: DROP TRIGGER %s ON %s;",
						 quote_identifier(tg->tgargs[0]), quote_identifier(tg->tgname),
						 quote_identifier(table))));
	if (tg->tgnargs == 2)
	{
		JsonLexContext *lex = cs_json_lexer(tg->tgargs[1], GetDatabaseEncoding());

		if (pg_parse_json(lex, &nullSemAction) != JSON_SUCCESS)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
					 errmsg("trigger \"%s\" on table \"%s\" has a mapping argument that is not valid JSON",
							tg->tgname, table),
					 errdetail("The mapping argument is: %s", tg->tgargs[1]),
					 errhint("Re-create the trigger with a JSON object such as '{\"unique_id\": \"banner_id\"}'; campus_sync.check_trigger('%s') checks it without writing a row.",
							 quote_identifier(table))));
		mapping = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(tg->tgargs[1])));
	}

	context.callback = trigger_error_context;
	context.arg = context_arg;
	context.previous = error_context_stack;
	error_context_stack = &context;
	*target = target_load(tg->tgargs[0], NULL, NULL, rel->rd_rel->relowner);
	*payload = payload_plan_create(*target, RelationGetDescr(rel), mapping);
	error_context_stack = context.previous;
}

/* The trigger's plan, built at its first use and kept. */
static TriggerPlan *
trigger_plan(FunctionCallInfo fcinfo)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	Relation	rel = td->tg_relation;
	Oid			tgoid = td->tg_trigger->tgoid;
	bool		found;
	TriggerPlan *plan = hash_search(get_trigger_plans(), &tgoid, HASH_ENTER, &found);
	MemoryContext old;

	if (found && plan->valid && plan->desc == RelationGetDescr(rel))
	{
		if (plan->checked_role != GetUserId())
			check_writer(plan);
		return plan;
	}

	if (found && plan->mcxt)
		MemoryContextDelete(plan->mcxt);
	plan->valid = false;
	plan->mcxt = NULL;
	plan->relid = RelationGetRelid(rel);
	plan->checked_role = InvalidOid;

	plan->mcxt = AllocSetContextCreate(CacheMemoryContext, "campus_sync trigger plan",
									   ALLOCSET_SMALL_SIZES);
	old = MemoryContextSwitchTo(plan->mcxt);
	plan->desc = RelationGetDescr(rel);
	trigger_target_and_payload(td->tg_trigger, rel, &plan->target, &plan->payload);
	plan->source_columns = payload_source_columns(plan->payload, &plan->nsource_columns);
	MemoryContextSwitchTo(old);

	check_writer(plan);
	plan->valid = true;
	return plan;
}

static void
build_from_tuple(TriggerPlan *plan, HeapTuple tuple, Payload *out)
{
	RowValues	row;

	row_values_from_tuple(plan->desc, tuple, &row);
	payload_build(plan->payload, &row, out);
}

/* Do the two rows agree on every column the payload reads? */
static bool
same_source_values(TriggerPlan *plan, HeapTuple a, HeapTuple b)
{
	for (int i = 0; i < plan->nsource_columns; i++)
	{
		int			attno = plan->source_columns[i] + 1;
		Form_pg_attribute att = TupleDescAttr(plan->desc, attno - 1);
		bool		a_null,
					b_null;
		Datum		a_value = heap_getattr(a, attno, plan->desc, &a_null);
		Datum		b_value = heap_getattr(b, attno, plan->desc, &b_null);

		if (a_null != b_null)
			return false;
		if (!a_null && !datum_image_eq(a_value, b_value, att->attbyval, att->attlen))
			return false;
	}
	return true;
}

/*
 * Past max_disables_per_hour disables of a server in one transaction, its
 * writer is warned once: the delivery engine will hold the rest.  Counted
 * per transaction (the engine counts per hour, over every transaction).
 */
typedef struct DisableCount
{
	Oid			server_oid;
	int64		n;
} DisableCount;

#define MAX_COUNTED_SERVERS 16
static DisableCount disable_counts[MAX_COUNTED_SERVERS];
static int	ndisable_counts = 0;

static void
forget_disable_counts(XactEvent event, void *arg)
{
	(void) event;
	(void) arg;
	ndisable_counts = 0;
}

static void
count_disable(SyncTarget *target)
{
	static bool registered = false;
	DisableCount *c = NULL;

	if (!registered)
	{
		RegisterXactCallback(forget_disable_counts, NULL);
		registered = true;
	}
	for (int i = 0; i < ndisable_counts && c == NULL; i++)
		if (disable_counts[i].server_oid == target->server_oid)
			c = &disable_counts[i];
	if (c == NULL)
	{
		if (ndisable_counts == MAX_COUNTED_SERVERS)
			return;
		c = &disable_counts[ndisable_counts++];
		c->server_oid = target->server_oid;
		c->n = 0;
	}
	if (++c->n == (int64) target->max_disables_per_hour + 1)
		ereport(WARNING,
				(errmsg("campus_sync: this transaction disables more than %d persons of server \"%s\" (max_disables_per_hour)",
						target->max_disables_per_hour, target->server_name),
				 errdetail("Past that many in an hour, disables are held: nothing is sent for them until someone decides."),
				 errhint("After the commit, SELECT campus_sync.release_held(%s); sends them, campus_sync.discard_held(%s); drops them; the status view counts them (held).",
						 quote_literal_cstr(target->server_name),
						 quote_literal_cstr(target->server_name))));
}

/*
 * A DELETE of a person on a server with on_delete 'disable' queues the
 * person's disable, in order with its other items (a re-insert after it
 * enables the person again).  The key is read from the deleted row.
 */
static void
queue_disable(TriggerPlan *plan, HeapTuple old)
{
	SyncTarget *target = plan->target;
	Payload		payload;
	QueueRow	row;

	if (target->service->disable_body == NULL)	/* CREATE TRIGGER refuses it */
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("campus_sync.sync_trigger() fired on DELETE, but server \"%s\" cannot disable anyone",
						target->server_name),
				 errdetail("%s", target->service->cannot_disable),
				 errhint("Create the trigger AFTER INSERT OR UPDATE only.")));
	if (!target->on_delete_disable)
		return;
	build_from_tuple(plan, old, &payload);
	if (payload.person_key == NULL)
	{
		ereport(WARNING,
				(errmsg("campus_sync: the deleted row has no person key for server \"%s\": no one is disabled",
						target->server_name),
				 payload.error ? errdetail("%s", payload.error->message) : 0));
		return;
	}
	payload.body = unconstify(char *, target->service->disable_body);
	payload.error = NULL;
	queue_row_of(&row, target, plan->checked_role_name, &payload);
	row.kind = "disable";
	count_disable(target);
	if (!queue_buffer_add(&row))
		(void) put_now(&row);	/* in a subtransaction */
}

/*
 * sync_trigger(server [, mapping])
 *		AFTER INSERT OR UPDATE [OR DELETE] ... FOR EACH ROW: queue the new
 *		row.  An UPDATE that leaves every column the body is made of as it
 *		was queues nothing; a DELETE queues a disable (on_delete 'disable')
 *		or nothing.
 */
Datum
campus_sync_sync_trigger(PG_FUNCTION_ARGS)
{
	TriggerData *td;
	TriggerPlan *plan;
	Payload		payload;
	QueueRow	row;

	check_trigger_call(fcinfo);
	td = (TriggerData *) fcinfo->context;
	plan = trigger_plan(fcinfo);

	if (TRIGGER_FIRED_BY_DELETE(td->tg_event))
	{
		queue_disable(plan, td->tg_trigtuple);
		return PointerGetDatum(NULL);
	}
	if (TRIGGER_FIRED_BY_UPDATE(td->tg_event))
	{
		if (same_source_values(plan, td->tg_trigtuple, td->tg_newtuple))
			return PointerGetDatum(NULL);
		build_from_tuple(plan, td->tg_newtuple, &payload);
	}
	else
		build_from_tuple(plan, td->tg_trigtuple, &payload);

	check_invalid(plan->target, &payload);
	queue_row_of(&row, plan->target, plan->checked_role_name, &payload);
	if (!queue_buffer_add(&row))
		(void) put_now(&row);	/* in a subtransaction */
	return PointerGetDatum(NULL);
}
