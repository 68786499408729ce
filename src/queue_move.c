/*-------------------------------------------------------------------------
 *
 * queue_move.c
 *	  Moves new items from campus_sync.inbox into campus_sync.queue_items.
 *
 *	  Writers only append to the inbox (no index to maintain there); the
 *	  delivery engine pays for the indexing, in batches sorted by person,
 *	  off the writers' path.  Per person and batch, only the newest pending
 *	  item moves (and the newest invalid one when it is newer still, for
 *	  the DBA to see): the states it supersedes would never be sent.
 *
 *	  The mass-change guard is applied here, once per item: past its
 *	  server's max_disables_per_hour, a disable enters the queue 'held'
 *	  (campus_sync.admit_disables() keeps each server's hour).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "foreign/foreign.h"
#include "utils/builtins.h"

#include "inbox.h"
#include "queue_store.h"
#include "target.h"

static int
compare_items(const void *a, const void *b)
{
	const InboxItem *x = a;
	const InboxItem *y = b;
	int			c = (x->row.server_oid > y->row.server_oid) - (x->row.server_oid < y->row.server_oid);

	if (c != 0)
		return c;
	if (x->row.person_key == NULL || y->row.person_key == NULL)
		c = (x->row.person_key == NULL) - (y->row.person_key == NULL);
	else
		c = strcmp(x->row.person_key, y->row.person_key);
	if (c != 0)
		return c;
	return x->id < y->id ? -1 : x->id > y->id;
}

static bool
same_person(InboxItem *a, InboxItem *b)
{
	return a->row.person_key && b->row.person_key &&
		a->row.server_oid == b->row.server_oid &&
		strcmp(a->row.person_key, b->row.person_key) == 0;
}

static bool
is_disable(QueueRow *row)
{
	return row->payload != NULL && row->kind != NULL && strcmp(row->kind, "disable") == 0;
}

static int
compare_disables(const void *a, const void *b)
{
	const QueueRow *x = *(QueueRow *const *) a;
	const QueueRow *y = *(QueueRow *const *) b;

	if (x->server_oid != y->server_oid)
		return x->server_oid < y->server_oid ? -1 : 1;
	return x->id < y->id ? -1 : x->id > y->id;
}

/* How many of n more disables the server may send in its hour. */
static int
admit_disables(Oid server_oid, int n, int *per_hour)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[3] = {OIDOID, INT4OID, INT4OID};
	Datum		args[3];
	ForeignServer *server = GetForeignServerExtended(server_oid, FSV_MISSING_OK);
	const char *option = server ? defelem_value(server->options, "max_disables_per_hour") : NULL;
	bool		isnull;
	int			admitted;

	*per_hour = option ? pg_strtoint32(option) : DEFAULT_MAX_DISABLES_PER_HOUR;
	if (server == NULL)
		return n;				/* never sent: a dropped server's */
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (plan == NULL)
	{
		plan = SPI_prepare("SELECT campus_sync.admit_disables($1, $2, $3)", 3, types);
		if (plan == NULL)
			elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
		SPI_keepplan(plan);
	}
	args[0] = ObjectIdGetDatum(server_oid);
	args[1] = Int32GetDatum(n);
	args[2] = Int32GetDatum(*per_hour);
	if (SPI_execute_plan(plan, args, NULL, false, 1) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "could not count campus_sync disables");
	admitted = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1,
										   &isnull));
	SPI_finish();
	return admitted;
}

/*
 * The guard: per server, the oldest disables of the batch its hour admits
 * go out; the others are held, with a WARNING that says what to do.
 */
static void
hold_excess_disables(QueueRow *rows, int n)
{
	QueueRow  **disables = palloc(sizeof(QueueRow *) * Max(n, 1));
	int			ndisables = 0;

	for (int i = 0; i < n; i++)
		if (is_disable(&rows[i]))
			disables[ndisables++] = &rows[i];
	qsort(disables, ndisables, sizeof(QueueRow *), compare_disables);
	for (int start = 0; start < ndisables;)
	{
		int			end = start;
		int			per_hour;
		int			admitted;

		while (end < ndisables && disables[end]->server_oid == disables[start]->server_oid)
			end++;
		admitted = admit_disables(disables[start]->server_oid, end - start, &per_hour);
		for (int i = start + admitted; i < end; i++)
			disables[i]->held = true;
		if (start + admitted < end)
			ereport(WARNING,
					(errmsg("campus_sync: %d disables of server \"%s\" are held: more than max_disables_per_hour (%d) in an hour",
							end - start - admitted, disables[start]->server, per_hour),
					 errdetail("Nothing is sent for a held item until someone decides; a newer item of the person replaces it."),
					 errhint("SELECT campus_sync.release_held(%s); sends them, SELECT campus_sync.discard_held(%s); drops them.",
							 quote_literal_cstr(disables[start]->server),
							 quote_literal_cstr(disables[start]->server))));
		start = end;
	}
	pfree(disables);
}

/* Moves one batch of inbox rows: per person, the newest pending one. */
static void
move_batch(InboxItem *items, int n, void *arg)
{
	QueueStore *store = arg;
	QueueRow   *keep = palloc(sizeof(QueueRow) * n);
	int			nkeep = 0;

	qsort(items, n, sizeof(InboxItem), compare_items);
	for (int start = 0; start < n;)
	{
		int			end = start + 1;
		int			pending = -1;
		int			invalid = -1;

		while (end < n && same_person(&items[start], &items[end]))
			end++;
		/* ids ascend within the group: the last of each kind is the newest */
		for (int i = start; i < end; i++)
		{
			if (items[i].row.person_key == NULL)
				keep[nkeep++] = items[i].row;	/* no key: nothing to coalesce */
			else if (items[i].row.payload)
				pending = i;
			else
				invalid = i;
		}
		if (pending >= 0)
			keep[nkeep++] = items[pending].row;
		if (invalid > pending)
			keep[nkeep++] = items[invalid].row;
		start = end;
	}
	hold_excess_disables(keep, nkeep);
	queue_store_put_many(store, keep, nkeep);
	pfree(keep);
}

/*
 * queue_move_inbox
 *		Moves every committed inbox row into the queue.  The caller holds
 *		the mover lock.  Returns how many rows left the inbox.
 */
int
queue_move_inbox(QueueStore *store)
{
	return inbox_drain(move_batch, store);
}
