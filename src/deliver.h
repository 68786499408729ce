/*-------------------------------------------------------------------------
 *
 * deliver.h
 *	  The delivery engine: sends due queue items, many at once, and records
 *	  what became of them.  Runs inside a transaction with SPI connected:
 *	  in a backend (deliver()) or, later, in the background worker.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CAMPUS_SYNC_DELIVER_H
#define CAMPUS_SYNC_DELIVER_H

#include "postgres.h"

#include "nodes/pg_list.h"

/* What a run did for one server. */
typedef struct DeliverCounts
{
	char	   *server;
	int64		delivered;
	int64		retried;
	int64		failed;
} DeliverCounts;

extern List *deliver_run(List *server_oids, double max_seconds, int64 max_items,
						 bool report_progress);

#endif							/* CAMPUS_SYNC_DELIVER_H */
