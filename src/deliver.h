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
	int64		unchanged;		/* removed unsent: the target had the body */
} DeliverCounts;

/*
 * What a caller that commits as it goes gives the engine (deliver() gives
 * none: everything happens in its transaction).
 */
typedef struct DeliverHooks
{
	/* commits the current transaction and starts the next one */
	void		(*commit) (void *arg);
	/* may be NULL: true when new items may have come (look again) */
	bool		(*woken) (void *arg);
	void	   *arg;
} DeliverHooks;

extern List *deliver_run(List *server_oids, double max_seconds, int64 max_items,
						 bool report_progress, const DeliverHooks *hooks);

#endif							/* CAMPUS_SYNC_DELIVER_H */
