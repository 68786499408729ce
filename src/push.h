/*-------------------------------------------------------------------------
 *
 * push.h
 *	  The synchronous SQL functions' shared parts (push.c), for the files
 *	  of each service that define them.
 *
 *	  Every such function takes (person record, mapping jsonb, server name
 *	  [, options jsonb]) in that order.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CAMPUS_SYNC_PUSH_H
#define CAMPUS_SYNC_PUSH_H

#include "postgres.h"

#include "fmgr.h"

#include "compat.h"
#include "request.h"
#include "row_plan.h"
#include "service.h"

#define PUSH_ARG_PERSON 0

extern RowPlan *push_plan_for_call(FunctionCallInfo fcinfo,
								   const ServiceDescriptor *service,
								   bool has_options);
extern Datum push_preview(FunctionCallInfo fcinfo, const ServiceDescriptor *service);
extern void push_job_for_call(FunctionCallInfo fcinfo, const ServiceDescriptor *service,
							  JobKind kind, SyncJob *job);
extern Datum push_now(FunctionCallInfo fcinfo, const ServiceDescriptor *service);
extern CS_NORETURN void push_raise_job_failure(SyncJob *job, const char *what);

#endif							/* CAMPUS_SYNC_PUSH_H */
