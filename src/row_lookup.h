/*-------------------------------------------------------------------------
 *
 * row_lookup.h
 *	  The look-ups of a query's rows, many at once (row_lookup.c): for a
 *	  set-returning function that reads what a service has for every row of
 *	  a caller's query.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CAMPUS_SYNC_ROW_LOOKUP_H
#define CAMPUS_SYNC_ROW_LOOKUP_H

#include "postgres.h"

#include "utils/jsonb.h"

#include "request.h"
#include "target.h"

/*
 * Called for each look-up that has ended (any outcome), in a memory
 * context of the row's that is deleted when it returns.  job->payload is
 * the row's body, job->person_key its key.  It may raise: the run ends.
 */
typedef void (*RowLookupDone) (SyncJob *job, void *arg);

extern void row_lookup_run(const char *caller, const char *query,
						   SyncTarget *target, TargetSecret *secret,
						   Jsonb *mapping, RowLookupDone done, void *arg);

#endif							/* CAMPUS_SYNC_ROW_LOOKUP_H */
