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
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "inbox.h"
#include "queue_store.h"

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
