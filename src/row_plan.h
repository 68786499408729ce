/*-------------------------------------------------------------------------
 *
 * row_plan.h
 *	  A per-call-site cache of the target and payload plan, so that
 *	  SELECT campus_sync.opscom_push(p) FROM people p plans once per query,
 *	  not once per row.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CAMPUS_SYNC_ROW_PLAN_H
#define CAMPUS_SYNC_ROW_PLAN_H

#include "postgres.h"

#include "fmgr.h"
#include "utils/jsonb.h"

#include "payload.h"
#include "target.h"

typedef struct RowPlan
{
	MemoryContext mcxt;
	Oid			typid;			/* the row type planned for */
	int32		typmod;
	char	   *server_name;
	Jsonb	   *mapping;		/* copies of the arguments planned for */
	Jsonb	   *options;
	SyncTarget *target;
	TupleDesc	desc;
	PayloadPlan *payload;
} RowPlan;

extern RowPlan *row_plan_get(FunctionCallInfo fcinfo, HeapTupleHeader rec,
							 const char *server_name, Jsonb *mapping,
							 Jsonb *options,
							 const ServiceDescriptor *service);
extern void row_plan_build(RowPlan *plan, HeapTupleHeader rec, Payload *out);
extern const char *server_arg(FunctionCallInfo fcinfo, int argno);

#endif							/* CAMPUS_SYNC_ROW_PLAN_H */
