/*-------------------------------------------------------------------------
 *
 * row_plan.c
 *	  Caches, in the call site's fn_extra, the target and payload plan for
 *	  a row type, server, mapping and options; rebuilt when any changes.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/typcache.h"

#include "row_plan.h"

static bool
same_jsonb(Jsonb *a, Jsonb *b)
{
	if (a == NULL || b == NULL)
		return a == b;
	return VARSIZE(a) == VARSIZE(b) && memcmp(a, b, VARSIZE(a)) == 0;
}

static Jsonb *
copy_jsonb(Jsonb *j)
{
	Jsonb	   *copy;

	if (j == NULL)
		return NULL;
	copy = palloc(VARSIZE(j));
	memcpy(copy, j, VARSIZE(j));
	return copy;
}

/* The server argument; NULL is refused like a missing server. */
const char *
server_arg(FunctionCallInfo fcinfo, int argno)
{
	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("the server argument must not be NULL"),
				 errhint("Pass the name of a campus_sync foreign server.")));
	return NameStr(*PG_GETARG_NAME(argno));
}

/*
 * row_plan_get
 *		The plan for this call: the cached one when the row type and the
 *		arguments are those it was made for, else a new one (which checks
 *		USAGE on the server for the current user).
 */
RowPlan *
row_plan_get(FunctionCallInfo fcinfo, HeapTupleHeader rec, const char *server_name,
			 Jsonb *mapping, Jsonb *options,
			 const ServiceDescriptor *service)
{
	RowPlan    *plan = fcinfo->flinfo->fn_extra;
	Oid			typid = HeapTupleHeaderGetTypeId(rec);
	int32		typmod = HeapTupleHeaderGetTypMod(rec);
	MemoryContext old;
	TupleDesc	desc;

	if (plan != NULL && plan->typid == typid && plan->typmod == typmod &&
		strcmp(plan->server_name, server_name) == 0 &&
		same_jsonb(plan->mapping, mapping) && same_jsonb(plan->options, options))
		return plan;

	if (plan != NULL)
		MemoryContextDelete(plan->mcxt);
	fcinfo->flinfo->fn_extra = NULL;

	plan = MemoryContextAllocZero(fcinfo->flinfo->fn_mcxt, sizeof(RowPlan));
	plan->mcxt = AllocSetContextCreate(fcinfo->flinfo->fn_mcxt, "campus_sync row plan",
									   ALLOCSET_SMALL_SIZES);
	old = MemoryContextSwitchTo(plan->mcxt);
	plan->typid = typid;
	plan->typmod = typmod;
	plan->server_name = pstrdup(server_name);
	plan->mapping = copy_jsonb(mapping);
	plan->options = copy_jsonb(options);
	plan->target = target_load(server_name, options, service, GetUserId());
	desc = lookup_rowtype_tupdesc(typid, typmod);
	plan->desc = CreateTupleDescCopy(desc);
	ReleaseTupleDesc(desc);
	plan->payload = payload_plan_create(plan->target, plan->desc, mapping);
	MemoryContextSwitchTo(old);

	fcinfo->flinfo->fn_extra = plan;
	return plan;
}

/* Builds the payload of one row with the plan. */
void
row_plan_build(RowPlan *plan, HeapTupleHeader rec, Payload *out)
{
	RowValues	row;

	row.desc = plan->desc;
	row_values_from_record(rec, &row);
	payload_build(plan->payload, &row, out);
}
