/*-------------------------------------------------------------------------
 *
 * deliver.h
 *	  The delivery engine: sends due queue items, many at once, and records
 *	  what became of them.  Runs with SPI connected: in the caller's
 *	  transaction (deliver()), or committing as it goes (deliver_batches(),
 *	  later the background worker).
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

/* Commits the current transaction and starts the next one. */
typedef void (*DeliverCommitFunc) (void *arg);

extern List *deliver_run(List *server_oids, double max_seconds, int64 max_items,
						 bool report_progress, DeliverCommitFunc commit,
						 void *commit_arg);

#endif							/* CAMPUS_SYNC_DELIVER_H */
