/*-------------------------------------------------------------------------
 *
 * queue_buffer.c
 *	  The sync trigger's items wait here, in the transaction's memory, and
 *	  are appended to campus_sync.inbox just before it commits
 *	  (XACT_EVENT_PRE_COMMIT), in multi-insert batches.  Each takes its id
 *	  when it is queued, so a person's items keep the order they were
 *	  queued in, however they reach the inbox.
 *
 *	  A rolled-back transaction drops them with its memory.  Only the top
 *	  level buffers: an item queued inside a subtransaction is written at
 *	  once, so that a rolled-back savepoint takes it along.  Items are also
 *	  written when the buffer grows large, and before deliver() reads the
 *	  queue (it sends its own transaction's items too).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "utils/memutils.h"

#include "inbox.h"
#include "queue_buffer.h"
#include "sync_state.h"

/* Written at once past these. */
#define BUFFER_MAX_ITEMS 10000
#define BUFFER_MAX_BYTES (16 * 1024 * 1024)

static MemoryContext buffer_cxt = NULL;	/* child of TopTransactionContext */
static QueueRow *rows = NULL;
static int	nrows = 0;
static int	capacity = 0;
static Size bytes = 0;
static const char *last_url = NULL;	/* in buffer_cxt */

static void
forget_buffer(void)
{
	/* the memory goes with TopTransactionContext */
	buffer_cxt = NULL;
	rows = NULL;
	nrows = capacity = 0;
	bytes = 0;
	last_url = NULL;
}

static void
buffer_xact_callback(XactEvent event, void *arg)
{
	(void) arg;
	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
		case XACT_EVENT_PARALLEL_PRE_COMMIT:
		case XACT_EVENT_PRE_PREPARE:
			queue_buffer_flush();
			break;
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			forget_buffer();
			break;
	}
}

void
queue_buffer_init(void)
{
	RegisterXactCallback(buffer_xact_callback, NULL);
}

static char *
copy(const char *s)
{
	if (s == NULL)
		return NULL;
	bytes += strlen(s) + 1;
	return MemoryContextStrdup(buffer_cxt, s);
}

/* A copy of a row's url, shared with the row before when it is the same. */
static const char *
copy_url(const char *url)
{
	if (url == NULL)
		return NULL;
	if (last_url == NULL || strcmp(last_url, url) != 0)
		last_url = MemoryContextStrdup(buffer_cxt, url);
	return last_url;
}

/*
 * queue_buffer_add
 *		Keeps an item for the commit.  Returns false (nothing kept) inside a
 *		subtransaction: the caller writes it at once.
 */
bool
queue_buffer_add(QueueRow *row)
{
	QueueRow   *b;

	if (GetCurrentTransactionNestLevel() > 1)
		return false;
	if (buffer_cxt == NULL)
		buffer_cxt = AllocSetContextCreate(TopTransactionContext, "campus_sync queue buffer",
										   ALLOCSET_DEFAULT_SIZES);
	if (nrows == capacity)
	{
		capacity = Max(64, capacity * 2);
		rows = rows ? repalloc(rows, sizeof(QueueRow) * capacity) :
			MemoryContextAlloc(buffer_cxt, sizeof(QueueRow) * capacity);
	}
	b = &rows[nrows++];
	memset(b, 0, sizeof(QueueRow));
	b->id = inbox_next_id();
	b->server = copy(row->server);
	b->server_oid = row->server_oid;
	b->service = row->service;	/* constants */
	b->key_field = row->key_field;
	b->kind = row->kind;		/* a constant */
	b->enqueued_by = copy(row->enqueued_by);
	b->person_key = copy(row->person_key);
	b->payload = copy(row->payload);
	b->error = copy(row->error);
	b->check_unchanged = row->check_unchanged;
	b->url = copy_url(row->url);

	if (nrows >= BUFFER_MAX_ITEMS || bytes >= BUFFER_MAX_BYTES)
		queue_buffer_flush();
	return true;
}

/* Does the buffer hold an item of this person (for a write at once)? */
bool
queue_buffer_holds(Oid server_oid, const char *person_key)
{
	for (int i = nrows - 1; i >= 0; i--)
		if (rows[i].server_oid == server_oid && person_key && rows[i].person_key &&
			strcmp(rows[i].person_key, person_key) == 0)
			return true;
	return false;
}

/*
 * queue_buffer_flush
 *		Writes the kept items, in the order they came, but those whose body
 *		the target already has (sync_state.c).  Outside the top level it
 *		leaves them for the commit: written inside a subtransaction, they
 *		would share its fate.
 */
void
queue_buffer_flush(void)
{
	int			n;

	if (nrows == 0 || GetCurrentTransactionNestLevel() > 1)
		return;
	n = queue_rows_drop_unchanged(rows, nrows);
	if (n > 0)
		inbox_put_many(rows, n);

	MemoryContextReset(buffer_cxt);
	rows = NULL;
	nrows = capacity = 0;
	bytes = 0;
	last_url = NULL;
}
